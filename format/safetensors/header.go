package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// MaxHeaderSize is the largest header length N (in bytes, padding included)
// that the reader accepts and the writer produces, as in the reference.
const MaxHeaderSize = 100_000_000

// prefixSize is the size of the little-endian u64 header length.
const prefixSize = 8

// TensorInfo describes one tensor of a header.
type TensorInfo struct {
	Name  string
	DType DType
	// Shape holds the dimensions (row-major); an empty shape is a scalar of
	// one element. Every dimension fits in an int (else ErrValidationOverflow).
	Shape []int
	// Offsets is the [begin, end) byte range relative to the data section.
	Offsets [2]int64
}

// NumElements returns the number of elements (1 for a scalar). For a
// validated header it does not overflow.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Size returns the tensor's data size in bytes (NumElements·Bits/8).
func (t TensorInfo) Size() int64 {
	return t.NumElements() * int64(t.DType.Bits()) / 8
}

// Header is a validated safetensors header.
type Header struct {
	Metadata   map[string]string // nil when absent or null
	Tensors    []TensorInfo      // in offset order
	HeaderSize int64             // N, padding included
	DataSize   int64             // declared data bytes (the last end offset)
	FileSize   int64             // size of the input

	index *nameIndex // name → position in Tensors; nil: search Tensors
}

// DataOffset returns the absolute file offset of the data section (8+N).
func (h *Header) DataOffset() int64 { return prefixSize + h.HeaderSize }

// Tensor returns the named tensor's description.
func (h *Header) Tensor(name string) (TensorInfo, bool) {
	if i, ok := h.Index(name); ok {
		return h.Tensors[i], true
	}
	return TensorInfo{}, false
}

// Index returns the position in Tensors of the named tensor.
func (h *Header) Index(name string) (int, bool) {
	if h.index != nil {
		return h.index.lookup(name, h.Tensors)
	}
	for i := range h.Tensors {
		if h.Tensors[i].Name == name {
			return i, true
		}
	}
	return 0, false
}

// Names returns the tensor names in offset order.
func (h *Header) Names() []string {
	s := make([]string, len(h.Tensors))
	for i, t := range h.Tensors {
		s[i] = t.Name
	}
	return s
}

// Option configures reading.
type Option func(*options)

type options struct {
	lenient       bool
	strictFields  bool
	name          string
	skipContainer bool
}

// WithLenient accepts duplicate names in the header with the reference
// semantics (the last occurrence wins) instead of failing with
// ErrDuplicateKey.
func WithLenient() Option { return func(o *options) { o.lenient = true } }

// WithStrictFields rejects unknown fields inside a tensor entry with
// ErrInvalidHeaderDeserialization (the reference ignores them).
func WithStrictFields() Option { return func(o *options) { o.strictFields = true } }

// WithName sets the file name used in error messages for readers opened with
// ReadHeader or NewReader.
func WithName(name string) Option { return func(o *options) { o.name = name } }

func buildOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// OpenHeader reads and validates only the header of the named file (rules
// 1–7): the data section is not read, so a truncated file still lists its
// tensors. Registered containers (see RegisterContainer) are recognised.
func OpenHeader(name string, opts ...Option) (*Header, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	o.name = name
	ra, size, err := openContainer(f, st.Size(), name)
	if err != nil {
		return nil, err
	}
	return readHeader(ra, size, &o)
}

// ReadHeader reads and validates the header of a safetensors stream of the
// given size (rules 1–7 of the specification, in the reference order). It
// reads the 8-byte prefix and then exactly N header bytes; the data section
// is not touched and rule 8 (data size) is not checked.
func ReadHeader(r io.ReaderAt, size int64, opts ...Option) (*Header, error) {
	o := buildOptions(opts)
	return readHeader(r, size, &o)
}

func readHeader(r io.ReaderAt, size int64, o *options) (*Header, error) {
	fail := func(tensor string, err error) error {
		return &TensorError{File: o.name, Tensor: tensor, Err: err}
	}
	// Rule 1.
	if size < prefixSize {
		return nil, fail("", fmt.Errorf("%w: %d bytes", ErrHeaderTooSmall, max(size, 0)))
	}
	var prefix [prefixSize]byte
	if n, err := r.ReadAt(prefix[:], 0); n < prefixSize {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fail("", fmt.Errorf("%w: read %d bytes", ErrHeaderTooSmall, n))
		}
		return nil, fail("", err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	// Rule 2.
	if n > MaxHeaderSize {
		return nil, fail("", fmt.Errorf("%w: N = %d%s", ErrHeaderTooLarge, n, otherFormat(prefix)))
	}
	// Rule 3 (n <= 1e8, so 8+n does not overflow).
	if int64(n)+prefixSize > size {
		return nil, fail("", fmt.Errorf("%w: N = %d, file has %d bytes%s", ErrInvalidHeaderLength, n, size, otherFormat(prefix)))
	}
	hdr := make([]byte, n)
	if got, err := r.ReadAt(hdr, prefixSize); got < len(hdr) {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fail("", fmt.Errorf("%w: N = %d, only %d header bytes readable", ErrInvalidHeaderLength, n, got))
		}
		return nil, fail("", err)
	}
	h, err := parseHeader(hdr, o)
	if err != nil {
		return nil, err
	}
	h.HeaderSize = int64(n)
	h.FileSize = size
	return h, nil
}

// otherFormat names the kind of file whose first bytes are prefix when it
// is a well-known non-safetensors format (as ", which looks like …"; "" when
// none matches), for the error of a header length no safetensors file has.
func otherFormat(prefix [prefixSize]byte) string {
	p := string(prefix[:])
	var what string
	switch {
	case p == "version ":
		what = "a Git LFS pointer, not the file it points to (run git lfs pull, or download the file itself)"
	case strings.HasPrefix(p, "PK\x03\x04"):
		what = "a ZIP archive, as torch.save writes (.bin, .pt, .pth): PyTorch pickles are never unpickled; convert it to safetensors first"
	case prefix[0] == 0x80 && prefix[1] >= 2 && prefix[1] <= 5:
		what = "a Python pickle (legacy torch.save): PyTorch pickles are never unpickled; convert it to safetensors first"
	case strings.HasPrefix(p, "GGUF"):
		what = "a GGUF file"
	case strings.HasPrefix(p, "\x89ATZ"):
		what = "an adaptool compressed container (adaptool unpack restores the safetensors file)"
	case strings.HasPrefix(p, "\x89HDF"):
		what = "an HDF5 file (Keras .h5)"
	case strings.HasPrefix(strings.ToLower(p), "<!doctyp") || strings.HasPrefix(strings.ToLower(p), "<html"):
		what = "an HTML page (a download that saved an error or login page?)"
	case p[0] == '{' || p[0] == '[':
		what = "JSON (a config file? pass the .safetensors file or the adapter directory)"
	default:
		return ""
	}
	return ", which looks like " + what
}

// rawTensor is a decoded entry before validation.
type rawTensor struct {
	name    string
	dtype   DType
	shape   []uint64
	offsets [2]uint64
}

// parseHeader applies rules 4–7 to the header bytes.
func parseHeader(hdr []byte, o *options) (*Header, error) {
	fail := func(tensor string, err error) error {
		return &TensorError{File: o.name, Tensor: tensor, Err: err}
	}
	// Rule 4: the whole header must be UTF-8 (encoding/json would silently
	// substitute U+FFFD).
	if !utf8.Valid(hdr) {
		i := 0
		for i < len(hdr) {
			r, sz := utf8.DecodeRune(hdr[i:])
			if r == utf8.RuneError && sz <= 1 {
				break
			}
			i += sz
		}
		return nil, fail("", fmt.Errorf("%w: invalid byte 0x%02x at header offset %d", ErrInvalidHeader, hdr[i], i))
	}
	// Rule 5.
	d, err := decodeEntries(hdr, o)
	if err != nil {
		var te *TensorError
		if errors.As(err, &te) {
			te.File = o.name
			return nil, te
		}
		return nil, fail("", err)
	}
	raws := d.ents
	// Rule 6: sort by (begin, end); the name breaks ties deterministically.
	slices.SortFunc(raws, func(a, b rawEntry) int {
		if c := cmpU64(a.offsets[0], b.offsets[0]); c != 0 {
			return c
		}
		if c := cmpU64(a.offsets[1], b.offsets[1]); c != 0 {
			return c
		}
		if a.name < b.name {
			return -1
		} else if a.name > b.name {
			return 1
		}
		return 0
	})
	// Rule 7.
	h := &Header{Metadata: d.meta, Tensors: make([]TensorInfo, len(raws))}
	dims := intDims(d.dims)
	var start uint64
	for i, t := range raws {
		s, e := t.offsets[0], t.offsets[1]
		shape64 := d.dims[t.dimOff : t.dimOff+t.ndim : t.dimOff+t.ndim]
		if s != start || e < s {
			return nil, fail(t.name, fmt.Errorf("%w: data_offsets [%d,%d], expected begin %d", ErrInvalidOffset, s, e, start))
		}
		start = e
		nel := uint64(1)
		overflow := false
		for _, d := range shape64 {
			hi, lo := bits.Mul64(nel, d)
			if hi != 0 {
				overflow = true
			}
			nel = lo
			if d > math.MaxInt {
				overflow = true
			}
		}
		if overflow {
			return nil, fail(t.name, fmt.Errorf("%w: shape %v", ErrValidationOverflow, shape64))
		}
		hi, nbits := bits.Mul64(nel, uint64(t.dtype.Bits()))
		if hi != 0 {
			return nil, fail(t.name, fmt.Errorf("%w: %d elements of %s", ErrValidationOverflow, nel, t.dtype))
		}
		if nbits%8 != 0 {
			return nil, fail(t.name, fmt.Errorf("%w: %s shape %v is %d bits", ErrMisalignedSlice, t.dtype, shape64, nbits))
		}
		if e-s != nbits/8 {
			return nil, fail(t.name, fmt.Errorf("%w: %s shape %v needs %d bytes, data_offsets [%d,%d] hold %d",
				ErrTensorInvalidInfo, t.dtype, shape64, nbits/8, s, e, e-s))
		}
		if e > math.MaxInt64-MaxHeaderSize-prefixSize {
			return nil, fail(t.name, fmt.Errorf("%w: end offset %d", ErrValidationOverflow, e))
		}
		shape := dims.shape(t.dimOff, t.ndim)
		h.Tensors[i] = TensorInfo{Name: t.name, DType: t.dtype, Shape: shape, Offsets: [2]int64{int64(s), int64(e)}}
	}
	h.DataSize = int64(start)
	// The index was built on header order: renumber it to offset order.
	d.index.remap(raws)
	h.index = d.index
	return h, nil
}

// shapeDims holds the dimensions of every shape of a header as ints.
type shapeDims []int

// intDims returns dims as ints: the same array where int is 64 bits wide
// (every dimension a validated header keeps is at most math.MaxInt, so its
// bits are those of the int), a converted copy elsewhere. A much
// over-allocated array is trimmed.
func intDims(dims []uint64) shapeDims {
	if len(dims) == 0 {
		return shapeDims{}
	}
	if cap(dims) > len(dims)+len(dims)/4+64 {
		dims = slices.Clip(slices.Clone(dims))
	}
	if strconv.IntSize == 64 {
		return unsafe.Slice((*int)(unsafe.Pointer(unsafe.SliceData(dims))), len(dims))
	}
	out := make([]int, len(dims))
	for i, d := range dims {
		out[i] = int(d) // a dimension above math.MaxInt fails rule 7 before use
	}
	return out
}

// shape returns the shape at dims[off:off+n], capped so that an append
// cannot overwrite the next one; never nil.
func (d shapeDims) shape(off, n uint32) []int {
	return d[off : off+n : off+n]
}

// nameIndex maps tensor names to positions in a list of entries: an
// open-addressing hash table of positions, a quarter of the memory of a
// map[string]int (4 bytes a slot, at most 2/3 full), which matters for
// headers of a million tensors. The names themselves stay in the list.
type nameIndex struct {
	seed  maphash.Seed
	slots []int32 // position+1 of the entry whose name hashes there; 0 is empty
	n     int
}

func newNameIndex(hint int) *nameIndex {
	x := &nameIndex{seed: maphash.MakeSeed()}
	x.slots = make([]int32, tableSize(hint))
	return x
}

// tableSize is the smallest power of two, at least 8, that holds n
// positions at most 2/3 full.
func tableSize(n int) int {
	size := 8
	for size*2 < n*3 {
		size <<= 1
	}
	return size
}

// lookup returns the position in ts of the tensor named name.
func (x *nameIndex) lookup(name string, ts []TensorInfo) (int, bool) {
	mask := uint64(len(x.slots) - 1)
	for h := maphash.String(x.seed, name) & mask; ; h = (h + 1) & mask {
		v := x.slots[h]
		if v == 0 {
			return 0, false
		}
		if ts[v-1].Name == name {
			return int(v - 1), true
		}
	}
}

// find returns the position in ents of the entry named name (found) or
// the free slot where name belongs (not found).
func (x *nameIndex) find(name string, ents []rawEntry) (slot, pos int, found bool) {
	mask := uint64(len(x.slots) - 1)
	for h := maphash.String(x.seed, name) & mask; ; h = (h + 1) & mask {
		v := x.slots[h]
		if v == 0 {
			return int(h), 0, false
		}
		if ents[v-1].name == name {
			return int(h), int(v - 1), true
		}
	}
}

// insert records that ents[pos] is named as find(name) found free at slot,
// growing the table when it gets more than 2/3 full.
func (x *nameIndex) insert(slot, pos int, ents []rawEntry) {
	x.slots[slot] = int32(pos + 1)
	x.n++
	if x.n*3 <= len(x.slots)*2 {
		return
	}
	old := x.slots
	x.slots = make([]int32, len(old)*2)
	mask := uint64(len(x.slots) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		h := maphash.String(x.seed, ents[v-1].name) & mask
		for x.slots[h] != 0 {
			h = (h + 1) & mask
		}
		x.slots[h] = v
	}
}

// remap renumbers the table after ents, indexed in header order (each
// entry's orig), has been reordered: the names hash to the same slots.
func (x *nameIndex) remap(ents []rawEntry) {
	pos := make([]int32, len(ents))
	for i, e := range ents {
		pos[e.orig] = int32(i)
	}
	for i, v := range x.slots {
		if v != 0 {
			x.slots[i] = pos[v-1] + 1
		}
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func deserErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidHeaderDeserialization}, args...)...)
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
