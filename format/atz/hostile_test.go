package atz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// hostileSource is a small valid container the corrupters start from.
func hostileSource(t testing.TB) (orig, packed []byte) {
	orig = buildST([]stTensor{
		{"layer.0.lora_A.weight", "BF16", []int{200000}, normalBF16(200000, 0.02, 40)},
		{"layer.0.lora_B.weight", "F32", []int{5000}, normalF32(5000, 0.02, 41)},
	}, 8)
	return orig, pack(t, orig, PackOptions{})
}

// rewriteDir applies f to the directory bytes of a container and fixes up
// the footer (offset, length, CRC) so only the directory content is wrong.
func rewriteDir(c []byte, f func(dir []byte) []byte) []byte {
	foot := c[len(c)-footerSize:]
	off := binary.LittleEndian.Uint64(foot)
	dir := f(bytes.Clone(c[off : len(c)-footerSize]))
	out := append(bytes.Clone(c[:off]), dir...)
	nf := bytes.Clone(foot)
	binary.LittleEndian.PutUint64(nf[8:], uint64(len(dir)))
	binary.LittleEndian.PutUint32(nf[16:], crc(dir))
	return append(out, nf...)
}

// editDir decodes the directory, lets f change it and re-encodes it.
func editDir(t testing.TB, c []byte, f func(d *directory)) []byte {
	return rewriteDir(c, func(dir []byte) []byte {
		off := int64(binary.LittleEndian.Uint64(c[len(c)-footerSize:]))
		d, err := parseDirectory(dir, off)
		if err != nil {
			t.Fatal(err)
		}
		f(d)
		return d.marshal()
	})
}

func TestHostileContainers(t *testing.T) {
	orig, good := hostileSource(t)
	mess := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	dirOff := int(binary.LittleEndian.Uint64(good[len(good)-footerSize:]))
	hl := 8 + int(binary.LittleEndian.Uint64(orig))
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"short", good[:40], ErrFormat},
		{"bad magic", mess(func(b []byte) []byte { b[1] = 'X'; return b }), ErrFormat},
		{"version 2", mess(func(b []byte) []byte { b[8] = 2; return b }), ErrVersion},
		{"preamble flags", mess(func(b []byte) []byte { b[10] = 1; return b }), ErrFormat},
		{"truncated in payload", good[:len(good)/2], ErrFormat},
		{"truncated in footer", good[:len(good)-1], ErrFormat},
		{"appended byte", append(bytes.Clone(good), 0), ErrFormat},
		{"directory bit flip", mess(func(b []byte) []byte { b[dirOff+3] ^= 1; return b }), ErrChecksum},
		{"huge directory", mess(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[len(b)-footerSize+8:], 1<<40)
			return b
		}), ErrLimit},
		{"directory offset past end", mess(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[len(b)-footerSize:], 1<<62)
			return b
		}), ErrFormat},
		{"payload bit flip", mess(func(b []byte) []byte { b[preambleSize+100] ^= 0x10; return b }), ErrChecksum},
		{"huge original size", editDir(t, good, func(d *directory) { d.origSize = 1 << 60 }), ErrFormat},
		{"original size off by one", editDir(t, good, func(d *directory) { d.origSize++ }), ErrFormat},
		{"header longer than file", editDir(t, good, func(d *directory) { d.header = append(d.header, make([]byte, len(orig))...) }), ErrFormat},
		{"chunk gap", editDir(t, good, func(d *directory) { d.chunks[1].origOff++ }), ErrFormat},
		{"chunk too large", editDir(t, good, func(d *directory) { d.chunks[0].origLen = MaxChunkSize + 2 }), ErrFormat},
		{"chunk stored past data", editDir(t, good, func(d *directory) { d.chunks[0].storedOff = int64(dirOff) }), ErrFormat},
		{"chunk stored before data", editDir(t, good, func(d *directory) { d.chunks[0].storedOff = 3 }), ErrFormat},
		{"chunk stored larger than raw", editDir(t, good, func(d *directory) { d.chunks[0].storedLen = d.chunks[0].origLen + 100 }), ErrFormat},
		{"chunk width 3", editDir(t, good, func(d *directory) { d.chunks[0].width = 3 }), ErrFormat},
		{"chunk width 0", editDir(t, good, func(d *directory) { d.chunks[0].width = 0 }), ErrFormat},
		{"unknown chunk flag", editDir(t, good, func(d *directory) { d.chunks[0].flags |= 0x80 }), ErrFormat},
		{"delta chunk without base", editDir(t, good, func(d *directory) { d.chunks[0].flags |= flagXOR }), ErrFormat},
		{"tensor past end", editDir(t, good, func(d *directory) { d.tensors[0].End = d.origSize + 1 }), ErrFormat},
		{"wrong original SHA-256", editDir(t, good, func(d *directory) { d.origSHA[0] ^= 1 }), ErrChecksum},
		{"wrong decoded CRC", editDir(t, good, func(d *directory) { d.chunks[2].decodedCRC ^= 1 }), ErrChecksum},
		{"forged payload with valid CRC", func() []byte {
			b := bytes.Clone(good)
			d, err := parseDirectory(b[dirOff:len(b)-footerSize], int64(dirOff))
			if err != nil {
				t.Fatal(err)
			}
			c := d.chunks[0]
			b[c.storedOff] = 9 // unknown plane codec
			return editDir(t, b, func(dd *directory) { dd.chunks[0].storedCRC = crc(b[c.storedOff : c.storedOff+int64(c.storedLen)]) })
		}(), ErrFormat},
		{"tensor count overflow", rewriteDir(good, func(dir []byte) []byte {
			p := 8 + 32 + 8 + hl + 1
			binary.LittleEndian.PutUint32(dir[p:], 0xFFFFFFFF)
			return dir
		}), ErrFormat},
		{"chunk count overflow", rewriteDir(good, func(dir []byte) []byte {
			n := binary.LittleEndian.Uint32(dir[len(dir)-3*chunkEntry-4:])
			if n != 3 {
				t.Fatalf("source has %d chunks, test expects 3", n)
			}
			binary.LittleEndian.PutUint32(dir[len(dir)-3*chunkEntry-4:], 0x7FFFFFFF)
			return dir
		}), ErrFormat},
		{"truncated directory", rewriteDir(good, func(dir []byte) []byte { return dir[:len(dir)-7] }), ErrFormat},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Unpack(io.Discard, bytes.NewReader(c.data), int64(len(c.data)), WithName("bad.atz"))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), "bad.atz") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// TestErrorNamesTensor checks a corrupt chunk is reported with its tensor.
func TestErrorNamesTensor(t *testing.T) {
	_, good := hostileSource(t)
	b := bytes.Clone(good)
	b[preambleSize+10] ^= 1
	rd, err := NewReader(bytes.NewReader(b), int64(len(b)), WithName("x.atz"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rd.Tensor("layer.0.lora_A.weight")
	var ae *Error
	if !errors.As(err, &ae) || !errors.Is(err, ErrChecksum) || ae.Tensor != "layer.0.lora_A.weight" || ae.File != "x.atz" || ae.Chunk != 0 {
		t.Fatalf("got %v (%+v)", err, ae)
	}
	// The other tensor lives in other chunks and still reads.
	if _, err := rd.Tensor("layer.0.lora_B.weight"); err != nil {
		t.Fatalf("intact tensor: %v", err)
	}
}

// FuzzDecode feeds arbitrary bytes to the container reader: it must return
// an error or the bytes, never panic or allocate beyond the limits.
func FuzzDecode(f *testing.F) {
	// Small seeds only: the fuzzer mutates large inputs slowly.
	f.Add(pack(f, buildST(allDTypes(20), 8), PackOptions{}))
	f.Add(pack(f, buildST([]stTensor{{"w", "BF16", []int{600}, normalBF16(600, 0.02, 1)}}, 8), PackOptions{}))
	f.Add(pack(f, []byte("\r\n"), PackOptions{}))
	f.Add(pack(f, nil, PackOptions{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd, err := NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		rd.WriteTo(io.Discard)
		for _, tt := range rd.Tensors() {
			rd.Tensor(tt.Name)
		}
		p := make([]byte, 100)
		rd.ReadAt(p, rd.Size()/2)
	})
}

// FuzzDecodeChunk feeds arbitrary chunk payloads to the codec directly
// (container fuzzing rarely gets past the CRC).
func FuzzDecodeChunk(f *testing.F) {
	for _, s := range []ChunkSpec{{2, true, true}, {4, true, true}, {1, false, false}, {8, false, false}} {
		data := normalF32(300, 0.02, 50)
		enc, err := EncodeChunk(nil, data, nil, s, LevelBest)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc, uint8(s.Width), uint16(len(data)/s.Width))
	}
	f.Fuzz(func(t *testing.T, b []byte, w uint8, n uint16) {
		s := ChunkSpec{Width: int(w%8) + 1, Rotate: w&0x80 != 0, Float: w&0x40 != 0}
		dst := make([]byte, int(n)*s.Width)
		if err := DecodeChunk(dst, b, nil, s); err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrLimit) {
				t.Fatalf("error %v is neither ErrFormat nor ErrLimit", err)
			}
		}
	})
}
