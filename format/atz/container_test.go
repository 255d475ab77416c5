package atz

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/adaptool/adaptool/internal/testcorpus"
)

// stTensor is a tensor for the test safetensors builder.
type stTensor struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

// buildST writes a safetensors file by hand (independent of any writer in
// the repository): sorted keys, data in the given order, the header padded
// with spaces to a multiple of align (1 = no padding).
func buildST(ts []stTensor, align int) []byte {
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	off := 0
	for _, t := range ts {
		hdr[t.name] = map[string]any{"dtype": t.dtype, "shape": t.shape, "data_offsets": []int{off, off + len(t.data)}}
		off += len(t.data)
	}
	h, _ := json.Marshal(hdr)
	for len(h)%align != 0 {
		h = append(h, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(out, h...)
	for _, t := range ts {
		out = append(out, t.data...)
	}
	return out
}

func pack(t testing.TB, src []byte, opt PackOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	st, err := Pack(&buf, bytes.NewReader(src), int64(len(src)), opt)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	if st.PackedSize != int64(buf.Len()) || st.OriginalSize != int64(len(src)) {
		t.Fatalf("Pack stats %+v for %d → %d bytes", st, len(src), buf.Len())
	}
	return buf.Bytes()
}

func unpack(t testing.TB, c []byte, opts ...Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Unpack(&buf, bytes.NewReader(c), int64(len(c)), opts...); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	return buf.Bytes()
}

// allDTypes builds one tensor of every safetensors dtype with realistic data.
func allDTypes(n int) []stTensor {
	return []stTensor{
		{"bf16", "BF16", []int{n}, normalBF16(n, 0.02, 1)},
		{"f16", "F16", []int{n}, normalF16(n, 0.02, 2)},
		{"f32", "F32", []int{n / 4, 4}, normalF32(n, 0.02, 3)},
		{"f64", "F64", []int{n}, randomBytes(8*n, 4)},
		{"c64", "C64", []int{n / 2}, normalF32(n, 1, 5)},
		{"i8", "I8", []int{n}, randomBytes(n, 6)},
		{"u8", "U8", []int{n}, randomBytes(n, 7)},
		{"bool", "BOOL", []int{n}, bytes.Repeat([]byte{0, 1, 1}, n)[:n]},
		{"i16", "I16", []int{n}, randomBytes(2*n, 8)},
		{"u16", "U16", []int{n}, randomBytes(2*n, 9)},
		{"i32", "I32", []int{n}, randomBytes(4*n, 10)},
		{"u32", "U32", []int{n}, make([]byte, 4*n)},
		{"i64", "I64", []int{n}, randomBytes(8*n, 11)},
		{"u64", "U64", []int{n}, randomBytes(8*n, 12)},
		{"f8e4m3", "F8_E4M3", []int{n}, randomBytes(n, 13)},
		{"f8e5m2", "F8_E5M2", []int{n}, normalBF16(n, 0.02, 14)[:n]},
		{"f8e8m0", "F8_E8M0", []int{n}, randomBytes(n, 15)},
		{"empty", "F32", []int{0}, nil},
		{"scalar", "F32", []int{}, normalF32(1, 1, 16)},
		{"odd", "F32", []int{3}, randomBytes(11, 17)}, // size not a multiple of 4: stored opaque
		{"unknown", "X9", []int{5}, randomBytes(5, 18)},
	}
}

func TestPackRoundTrip(t *testing.T) {
	big := buildST([]stTensor{
		{"a", "BF16", []int{300000}, normalBF16(300000, 0.02, 20)},
		{"b", "F32", []int{200001}, normalF32(200001, 0.02, 21)},
	}, 8)
	valid := buildST(allDTypes(1000), 8)
	unaligned := buildST(allDTypes(333), 1)
	// Overlapping and out-of-order tensors, a gap and trailing garbage.
	hdr := []byte(`{"x":{"dtype":"F32","shape":[4],"data_offsets":[8,24]},"y":{"dtype":"BF16","shape":[8],"data_offsets":[0,16]},"z":{"dtype":"F32","shape":[2],"data_offsets":[40,48]}}`)
	weird := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	weird = append(weird, hdr...)
	weird = append(weird, randomBytes(64, 22)...)
	headerPastEnd := binary.LittleEndian.AppendUint64(nil, 1000)
	headerPastEnd = append(headerPastEnd, `{"a":1}`...)
	notJSON := binary.LittleEndian.AppendUint64(nil, 5)
	notJSON = append(notJSON, "hello world"...)
	for _, c := range []struct {
		name string
		src  []byte
	}{
		{"empty file", nil},
		{"crlf stub", []byte("\r\n")},
		{"seven bytes", []byte("1234567")},
		{"prefix only", binary.LittleEndian.AppendUint64(nil, 0)},
		{"every dtype aligned", valid},
		{"every dtype unaligned", unaligned},
		{"truncated file", valid[:len(valid)/2]},
		{"overlaps gaps trailing bytes", weird},
		{"header past end", headerPastEnd},
		{"header not JSON", notJSON},
		{"multi-chunk tensors", big},
		{"random bytes", randomBytes(3<<20+5, 23)},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, level := range []Level{LevelDefault, LevelFastest, LevelBest} {
				packed := pack(t, c.src, PackOptions{Level: level, Workers: 3})
				got := unpack(t, packed)
				if sha256.Sum256(got) != sha256.Sum256(c.src) || !bytes.Equal(got, c.src) {
					t.Fatalf("level %d: restored file differs (%d vs %d bytes)", level, len(got), len(c.src))
				}
				if over := len(packed) - len(c.src); over > 4096+len(c.src)/100 {
					t.Errorf("level %d: container %d bytes larger than the original", level, over)
				}
			}
		})
	}
}

// TestRandomAccess reads single tensors and random byte ranges through the
// Reader and compares them with the original bytes.
func TestRandomAccess(t *testing.T) {
	ts := allDTypes(70000)
	src := buildST(ts, 8)
	packed := pack(t, src, PackOptions{})
	rd, err := NewReader(bytes.NewReader(packed), int64(len(packed)), WithCacheChunks(2))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Size() != int64(len(src)) || rd.SHA256() != sha256.Sum256(src) {
		t.Fatalf("size %d sha %x, want %d %x", rd.Size(), rd.SHA256(), len(src), sha256.Sum256(src))
	}
	hl := 8 + binary.LittleEndian.Uint64(src)
	if !bytes.Equal(rd.Header(), src[:hl]) {
		t.Fatal("header bytes differ from the original")
	}
	for _, tt := range ts {
		got, err := rd.Tensor(tt.name)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !bytes.Equal(got, tt.data) {
			t.Fatalf("%s: tensor bytes differ", tt.name)
		}
	}
	if _, err := rd.Tensor("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing tensor: %v", err)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for range 200 {
		off := rng.Int64N(int64(len(src)))
		n := rng.IntN(3 << 20)
		p := make([]byte, n)
		k, err := rd.ReadAt(p, off)
		want := src[off:min(int64(len(src)), off+int64(n))]
		if k != len(want) || !bytes.Equal(p[:k], want) {
			t.Fatalf("ReadAt(%d, %d): %d bytes, differ", off, n, k)
		}
		if (k < n) != (err == io.EOF) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", off, n, k, err)
		}
	}
	// The section reader view decodes like the original.
	whole, err := io.ReadAll(io.NewSectionReader(rd, 0, rd.Size()))
	if err != nil || !bytes.Equal(whole, src) {
		t.Fatalf("sequential read differs: %v", err)
	}
}

func TestDeltaBase(t *testing.T) {
	n := 200000
	base := buildST([]stTensor{
		{"w", "BF16", []int{n}, normalBF16(n, 0.02, 30)},
		{"v", "F32", []int{n}, normalF32(n, 0.02, 31)},
		{"only_base", "F32", []int{10}, normalF32(10, 1, 32)},
	}, 8)
	w := normalBF16(n, 0.02, 30)
	upd := normalBF16(n/100, 0.001, 33)
	for i := range n / 100 {
		w[200*i] ^= upd[2*i]
	}
	tuned := buildST([]stTensor{
		{"w", "BF16", []int{n}, w},
		{"v", "F32", []int{n}, normalF32(n, 0.02, 34)}, // unrelated values
		{"new", "F16", []int{100}, normalF16(100, 1, 35)},
	}, 8)
	plain := pack(t, tuned, PackOptions{})
	var buf bytes.Buffer
	st, err := Pack(&buf, bytes.NewReader(tuned), int64(len(tuned)), PackOptions{Base: bytes.NewReader(base), BaseSize: int64(len(base))})
	if err != nil {
		t.Fatal(err)
	}
	delta := buf.Bytes()
	if st.DeltaChunks == 0 || len(delta) >= len(plain)-len(w)/2 {
		t.Errorf("delta container %d bytes (%d delta chunks), plain %d: want ≥ %d saved", len(delta), st.DeltaChunks, len(plain), len(w)/2)
	}
	got := unpack(t, delta, WithBase(bytes.NewReader(base), int64(len(base))))
	if !bytes.Equal(got, tuned) {
		t.Fatal("delta round trip differs")
	}
	if _, err := Unpack(io.Discard, bytes.NewReader(delta), int64(len(delta))); !errors.Is(err, ErrBase) {
		t.Fatalf("unpack without base: %v, want ErrBase", err)
	}
	other := bytes.Clone(base)
	other[8+binary.LittleEndian.Uint64(base)+100] ^= 1 // inside "v" or "w": a base tensor used for XOR
	_, err = Unpack(io.Discard, bytes.NewReader(delta), int64(len(delta)), WithBase(bytes.NewReader(other), int64(len(other))))
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("unpack with a different base: %v, want ErrChecksum", err)
	}
	_, err = Unpack(io.Discard, bytes.NewReader(delta), int64(len(delta)), WithBase(bytes.NewReader(base[:10]), 10))
	if !errors.Is(err, ErrBase) {
		t.Fatalf("unpack with a short base: %v, want ErrBase", err)
	}
}

// corpusDir returns the shared corpus root, or skips the test when it is absent.
func corpusDir(t testing.TB) string { return testcorpus.Dir(t) }

// corpusFiles returns every file of the corpus manifest with its expected
// SHA-256 (the manifest is the independent oracle).
func corpusFiles(t testing.TB) map[string]string {
	root, rows := testcorpus.Manifest(t)
	files := map[string]string{}
	for _, r := range rows {
		files[r.Path(root)] = r.SHA256
	}
	return files
}

func TestCorpusRoundTrip(t *testing.T) {
	files := corpusFiles(t)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var orig, packed int64
	tmp := t.TempDir()
	for i, name := range names {
		out := filepath.Join(tmp, "c.atz")
		st, err := PackFile(out, name, PackOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if hex.EncodeToString(st.SHA256[:]) != files[name] {
			t.Errorf("%s: pack SHA-256 %x, manifest %s", name, st.SHA256, files[name])
		}
		back := filepath.Join(tmp, "back")
		if _, err := UnpackFile(back, out); err != nil {
			t.Fatalf("%s: unpack: %v", name, err)
		}
		b, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != files[name] {
			t.Fatalf("%s: restored SHA-256 %x, manifest %s", name, sum, files[name])
		}
		orig += st.OriginalSize
		packed += st.PackedSize
		if i%10 == 0 {
			t.Logf("%s: %d → %d (%.3f)", filepath.Base(filepath.Dir(name)), st.OriginalSize, st.PackedSize, st.Ratio())
		}
	}
	t.Logf("corpus: %d files, %d → %d bytes, ratio %.3f", len(names), orig, packed, float64(orig)/float64(packed))
}
