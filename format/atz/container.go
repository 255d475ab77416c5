package atz

import (
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math"
	"sort"
)

// On-disk constants. All integers are little-endian. See SPEC.md §9.
const (
	// Magic opens every container (PNG-style: a high byte, the name, CR LF,
	// ^Z, LF, so text-mode transfers and `type` are detected).
	Magic = "\x89ATZ\r\n\x1a\n"
	// FooterMagic closes every container.
	FooterMagic = "ATZ\x00END\x00"
	// Version is the container version written; readers reject others.
	Version = 1

	preambleSize = 16 // magic, version u16, flags u16, reserved u32
	footerSize   = 32 // dir offset u64, dir length u64, dir CRC u32, reserved u32, magic
	chunkEntry   = 48 // bytes per chunk in the directory

	// MaxHeaderSize is the largest original safetensors header (8-byte
	// prefix included) kept verbatim; larger prefixes are stored as opaque
	// chunks. It matches the safetensors limit of 100,000,000 header bytes.
	MaxHeaderSize = 8 + 100_000_000
	// MaxDirectorySize bounds the directory a reader loads into memory.
	MaxDirectorySize = 1 << 30
	// maxOrigSize bounds the original file size a directory may declare.
	maxOrigSize = 1 << 50
)

// Chunk flags.
const (
	flagRotate = 1 << 0
	flagFloat  = 1 << 1
	flagXOR    = 1 << 2
	flagMask   = flagRotate | flagFloat | flagXOR
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// TensorEntry lists one tensor of the original file, as its header declared
// it. Begin and End are absolute byte offsets in the original file.
type TensorEntry struct {
	Name       string
	DType      string // safetensors spelling: "BF16", "F32", ...
	Shape      []int64
	Begin, End int64
}

// chunk is one directory entry.
type chunk struct {
	origOff    int64  // offset in the original file
	origLen    int    // decoded length, 1..MaxChunkSize
	storedOff  int64  // offset of the payload in the container
	storedLen  int    // payload length, ≤ origLen + 5·width
	width      int    // 1..8
	flags      uint8  // flagRotate | flagFloat | flagXOR
	baseOff    int64  // offset of the XOR base bytes in the base file
	storedCRC  uint32 // CRC-32C of the payload
	decodedCRC uint32 // CRC-32C of the original bytes
}

func (c *chunk) spec() ChunkSpec {
	return ChunkSpec{Width: c.width, Rotate: c.flags&flagRotate != 0, Float: c.flags&flagFloat != 0}
}

// directory is the decoded table at the end of a container.
type directory struct {
	origSize   int64
	origSHA    [32]byte
	header     []byte // the original prefix + JSON header, verbatim
	hasBase    bool
	baseSize   int64
	baseSHA    [32]byte
	tensors    []TensorEntry
	chunks     []chunk
	storedData int64 // end of the chunk payload area (= directory offset)
}

func (d *directory) marshal() []byte {
	b := make([]byte, 0, 64+len(d.header)+len(d.chunks)*chunkEntry+len(d.tensors)*64)
	b = binary.LittleEndian.AppendUint64(b, uint64(d.origSize))
	b = append(b, d.origSHA[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(d.header)))
	b = append(b, d.header...)
	if d.hasBase {
		b = append(b, 1)
		b = binary.LittleEndian.AppendUint64(b, uint64(d.baseSize))
		b = append(b, d.baseSHA[:]...)
	} else {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(d.tensors)))
	for _, t := range d.tensors {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Name)))
		b = append(b, t.Name...)
		b = append(b, byte(len(t.DType)))
		b = append(b, t.DType...)
		b = append(b, byte(len(t.Shape)))
		for _, s := range t.Shape {
			b = binary.LittleEndian.AppendUint64(b, uint64(s))
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(t.Begin))
		b = binary.LittleEndian.AppendUint64(b, uint64(t.End))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(d.chunks)))
	for _, c := range d.chunks {
		b = binary.LittleEndian.AppendUint64(b, uint64(c.origOff))
		b = binary.LittleEndian.AppendUint32(b, uint32(c.origLen))
		b = binary.LittleEndian.AppendUint64(b, uint64(c.storedOff))
		b = binary.LittleEndian.AppendUint32(b, uint32(c.storedLen))
		b = append(b, byte(c.width), c.flags, 0, 0)
		b = binary.LittleEndian.AppendUint64(b, uint64(c.baseOff))
		b = binary.LittleEndian.AppendUint32(b, c.storedCRC)
		b = binary.LittleEndian.AppendUint32(b, c.decodedCRC)
		b = append(b, 0, 0, 0, 0) // reserved
	}
	return b
}

// dirReader reads fields from a directory, failing with ErrFormat instead of
// reading past its end.
type dirReader struct {
	b   []byte
	err error
}

func (r *dirReader) take(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = formatErr("directory truncated reading %s (%d bytes wanted, %d left)", what, n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *dirReader) u8(what string) uint8 {
	if v := r.take(1, what); v != nil {
		return v[0]
	}
	return 0
}

func (r *dirReader) u32(what string) uint32 {
	if v := r.take(4, what); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *dirReader) u64(what string) uint64 {
	if v := r.take(8, what); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

// parseDirectory decodes and validates a directory. dataEnd is the offset
// of the directory in the container: every chunk payload must lie in
// [preambleSize, dataEnd).
func parseDirectory(b []byte, dataEnd int64) (*directory, error) {
	r := &dirReader{b: b}
	d := &directory{storedData: dataEnd}
	origSize := r.u64("original size")
	if r.err == nil && origSize > maxOrigSize {
		return nil, formatErr("original size %d exceeds %d", origSize, uint64(maxOrigSize))
	}
	d.origSize = int64(origSize)
	copy(d.origSHA[:], r.take(32, "original SHA-256"))
	hl := r.u64("header length")
	if r.err == nil && (hl > MaxHeaderSize || hl > origSize) {
		return nil, formatErr("header length %d exceeds the original size %d or the limit", hl, origSize)
	}
	d.header = r.take(hl, "header")
	switch r.u8("base flag") {
	case 0:
	case 1:
		d.hasBase = true
		bs := r.u64("base size")
		if bs > maxOrigSize {
			return nil, formatErr("base size %d exceeds %d", bs, uint64(maxOrigSize))
		}
		d.baseSize = int64(bs)
		copy(d.baseSHA[:], r.take(32, "base SHA-256"))
	default:
		if r.err == nil {
			return nil, formatErr("invalid base flag")
		}
	}
	nt := r.u32("tensor count")
	// Each tensor entry takes at least 4+1+1+16 bytes: bound the count by
	// the bytes left before allocating.
	if r.err == nil && uint64(nt)*22 > uint64(len(r.b)) {
		return nil, formatErr("tensor count %d does not fit in the directory", nt)
	}
	d.tensors = make([]TensorEntry, 0, nt)
	for i := 0; i < int(nt) && r.err == nil; i++ {
		var t TensorEntry
		t.Name = string(r.take(uint64(r.u32("name length")), "tensor name"))
		t.DType = string(r.take(uint64(r.u8("dtype length")), "dtype"))
		nd := r.u8("rank")
		for range int(nd) {
			v := r.u64("dimension")
			if v > math.MaxInt64 {
				r.err = formatErr("tensor %q: dimension %d overflows", t.Name, v)
			}
			t.Shape = append(t.Shape, int64(v))
		}
		begin, end := r.u64("begin"), r.u64("end")
		if r.err == nil && (begin > end || end > origSize) {
			return nil, formatErr("tensor %q: offsets [%d, %d) outside the %d-byte original", t.Name, begin, end, origSize)
		}
		t.Begin, t.End = int64(begin), int64(end)
		d.tensors = append(d.tensors, t)
	}
	nc := r.u32("chunk count")
	if r.err == nil && uint64(nc)*chunkEntry != uint64(len(r.b)) {
		return nil, formatErr("chunk count %d does not match the %d directory bytes left", nc, len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	d.chunks = make([]chunk, nc)
	next := int64(hl)
	for i := range d.chunks {
		e := r.take(chunkEntry, "chunk entry")
		c := chunk{
			origOff:    int64(binary.LittleEndian.Uint64(e[0:])),
			origLen:    int(binary.LittleEndian.Uint32(e[8:])),
			storedOff:  int64(binary.LittleEndian.Uint64(e[12:])),
			storedLen:  int(binary.LittleEndian.Uint32(e[20:])),
			width:      int(e[24]),
			flags:      e[25],
			baseOff:    int64(binary.LittleEndian.Uint64(e[28:])),
			storedCRC:  binary.LittleEndian.Uint32(e[36:]),
			decodedCRC: binary.LittleEndian.Uint32(e[40:]),
		}
		if c.origOff != next {
			return nil, formatErr("chunk %d starts at %d, want %d (chunks must tile the original)", i, c.origOff, next)
		}
		if c.origLen < 1 || c.origLen > MaxChunkSize {
			return nil, formatErr("chunk %d: length %d outside [1, %d]", i, c.origLen, MaxChunkSize)
		}
		if c.flags&^flagMask != 0 || e[26] != 0 || e[27] != 0 {
			return nil, formatErr("chunk %d: unknown flags", i)
		}
		if !c.spec().valid() || c.origLen%c.width != 0 {
			return nil, formatErr("chunk %d: invalid width %d for %d bytes", i, c.width, c.origLen)
		}
		if c.storedLen > c.origLen+chunkHeaderSize(c.width) {
			return nil, formatErr("chunk %d: stored length %d exceeds %d", i, c.storedLen, c.origLen+chunkHeaderSize(c.width))
		}
		if c.storedOff < preambleSize || c.storedOff > dataEnd || int64(c.storedLen) > dataEnd-c.storedOff {
			return nil, formatErr("chunk %d: payload [%d, +%d) outside the data area [%d, %d)", i, c.storedOff, c.storedLen, preambleSize, dataEnd)
		}
		if c.flags&flagXOR != 0 {
			if !d.hasBase {
				return nil, formatErr("chunk %d: delta chunk in a container without a base", i)
			}
			if c.baseOff < 0 || c.baseOff > d.baseSize || int64(c.origLen) > d.baseSize-c.baseOff {
				return nil, formatErr("chunk %d: base range [%d, +%d) outside the %d-byte base", i, c.baseOff, c.origLen, d.baseSize)
			}
		}
		next += int64(c.origLen)
		if next > d.origSize {
			return nil, formatErr("chunk %d ends past the original size %d", i, d.origSize)
		}
		d.chunks[i] = c
	}
	if next != d.origSize {
		return nil, formatErr("chunks cover %d of %d original bytes", next, d.origSize)
	}
	return d, nil
}

// layout is the plan of how the original bytes are chunked.
type layout struct {
	header  int64 // bytes kept verbatim (prefix + JSON header), 0 if none
	tensors []TensorEntry
	chunks  []chunk // origOff, origLen, width, flags filled in
}

// dtypeSpec maps a safetensors dtype to the chunk transform.
func dtypeSpec(dt string) (ChunkSpec, bool) {
	switch dt {
	case "BF16", "F16":
		return ChunkSpec{2, true, true}, true
	case "F32", "C64":
		return ChunkSpec{4, true, true}, true
	case "F64":
		return ChunkSpec{8, true, true}, true
	case "I16", "U16":
		return ChunkSpec{2, false, false}, true
	case "I32", "U32":
		return ChunkSpec{4, false, false}, true
	case "I64", "U64":
		return ChunkSpec{8, false, false}, true
	case "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F4", "F6_E2M3", "F6_E3M2":
		return ChunkSpec{1, false, true}, true
	case "BOOL", "U8", "I8":
		return ChunkSpec{1, false, false}, true
	}
	return ChunkSpec{1, false, false}, false
}

// chunkLen is the number of original bytes per chunk for a spec: 128 Ki
// elements (every plane fits one Huffman block), or 1 MiB of opaque bytes.
func chunkLen(s ChunkSpec) int {
	if s.Width == 1 && !s.Float {
		return 1 << 20
	}
	return s.Width * maxPlaneBlock
}

// parseHeader reads the safetensors prefix and header leniently: it never
// fails, it only decides how many leading bytes are kept verbatim and which
// byte ranges hold which dtype. Anything it cannot make sense of is left as
// opaque bytes, which are stored just as exactly.
func parseHeader(prefix []byte, size int64) (hdrLen int64, tensors []TensorEntry) {
	if size < 8 || len(prefix) < 8 {
		return 0, nil
	}
	n := binary.LittleEndian.Uint64(prefix)
	if n > MaxHeaderSize-8 || int64(n) > size-8 || uint64(len(prefix)) < 8+n {
		return 0, nil
	}
	hdrLen = int64(8 + n)
	var raw map[string]json.RawMessage
	if json.Unmarshal(prefix[8:8+n], &raw) != nil {
		return hdrLen, nil
	}
	for name, v := range raw {
		if name == "__metadata__" {
			continue
		}
		var ti struct {
			DType   string  `json:"dtype"`
			Shape   []int64 `json:"shape"`
			Offsets []int64 `json:"data_offsets"`
		}
		if json.Unmarshal(v, &ti) != nil || len(ti.Offsets) != 2 || len(ti.Shape) > 255 || len(ti.DType) > 255 {
			continue
		}
		b, e := ti.Offsets[0], ti.Offsets[1]
		if b < 0 || e < b || e > size-hdrLen {
			continue
		}
		tensors = append(tensors, TensorEntry{Name: name, DType: ti.DType, Shape: ti.Shape, Begin: hdrLen + b, End: hdrLen + e})
	}
	sort.Slice(tensors, func(i, j int) bool {
		if tensors[i].Begin != tensors[j].Begin {
			return tensors[i].Begin < tensors[j].Begin
		}
		if tensors[i].End != tensors[j].End {
			return tensors[i].End < tensors[j].End
		}
		return tensors[i].Name < tensors[j].Name
	})
	return hdrLen, tensors
}

// planLayout tiles [hdrLen, size) with chunks: tensor byte ranges get their
// dtype's transform, gaps, overlaps and odd-sized ranges are opaque.
func planLayout(hdrLen, size int64, tensors []TensorEntry) []chunk {
	var chunks []chunk
	add := func(begin, end int64, s ChunkSpec) {
		step := int64(chunkLen(s))
		for off := begin; off < end; off += step {
			l := min(step, end-off)
			var fl uint8
			if s.Rotate {
				fl |= flagRotate
			}
			if s.Float {
				fl |= flagFloat
			}
			chunks = append(chunks, chunk{origOff: off, origLen: int(l), width: s.Width, flags: fl})
		}
	}
	opaque := ChunkSpec{Width: 1}
	cur := hdrLen
	for _, t := range tensors {
		if t.Begin < cur || t.End == t.Begin {
			continue // overlapping or empty: its bytes are covered elsewhere
		}
		add(cur, t.Begin, opaque)
		s, _ := dtypeSpec(t.DType)
		if (t.End-t.Begin)%int64(s.Width) != 0 {
			s = opaque
		}
		add(t.Begin, t.End, s)
		cur = t.End
	}
	add(cur, size, opaque)
	return chunks
}
