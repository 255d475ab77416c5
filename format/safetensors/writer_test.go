package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeBytes(t *testing.T, tensors []Tensor, meta map[string]string, opts ...WriteOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tensors, meta, opts...); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// Goldens from the reference tests (safetensors.md §5).
func TestWriterGoldens(t *testing.T) {
	f32x6 := make([]byte, 24)
	for i := range 6 {
		binary.LittleEndian.PutUint32(f32x6[4*i:], uint32(i))
	}
	cases := []struct {
		name    string
		tensors []Tensor
		meta    map[string]string
		n       int
		header  string
	}{
		{"attn.0 F32 [1,2,3]", []Tensor{{Name: "attn.0", DType: F32, Shape: []int{1, 2, 3}, Data: f32x6}}, nil,
			64, `{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`},
		{"no tensors no metadata", nil, nil, 8, `{}      `},
		{"metadata only", nil, map[string]string{"framework": "pt"}, 40, `{"__metadata__":{"framework":"pt"}}     `},
		{"python alignment", []Tensor{
			{Name: "test1", DType: I32, Shape: []int{2, 2}, Data: make([]byte, 16)},
			{Name: "test2", DType: F16, Shape: []int{2, 2}, Data: make([]byte, 8)},
		}, nil, 128, `{"test1":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]},"test2":{"dtype":"F16","shape":[2,2],"data_offsets":[16,24]}}      `},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := writeBytes(t, c.tensors, c.meta, WithExactMetadata())
			if n := binary.LittleEndian.Uint64(b); n != uint64(c.n) {
				t.Fatalf("N = %d, want %d", n, c.n)
			}
			if got := string(b[8 : 8+c.n]); got != c.header {
				t.Fatalf("header\n got %q\nwant %q", got, c.header)
			}
			var data []byte
			for _, tt := range c.tensors {
				data = append(data, tt.Data...)
			}
			if !bytes.Equal(b[8+c.n:], data) {
				t.Fatalf("data section differs")
			}
		})
	}
}

func TestWriterDefaultMetadata(t *testing.T) {
	b := writeBytes(t, nil, nil)
	if got := string(b[8:]); got != `{"__metadata__":{"format":"pt"}}` {
		t.Fatalf("header %q", got)
	}
	b = writeBytes(t, nil, map[string]string{"z": "1", "a": "2"})
	if got := strings.TrimRight(string(b[8:]), " "); got != `{"__metadata__":{"a":"2","format":"pt","z":"1"}}` {
		t.Fatalf("header %q", got)
	}
	b = writeBytes(t, nil, map[string]string{"format": "mlx"})
	if got := strings.TrimRight(string(b[8:]), " "); got != `{"__metadata__":{"format":"mlx"}}` {
		t.Fatalf("header %q", got)
	}
	in := map[string]string{"k": "v"}
	writeBytes(t, nil, in)
	if len(in) != 1 {
		t.Fatalf("caller's metadata modified: %v", in)
	}
}

// Canonical order: dtype rank descending, then name; escaping as serde_json.
func TestWriterCanonicalOrder(t *testing.T) {
	ts := []Tensor{
		{Name: "b", DType: Bool, Shape: []int{3}, Data: []byte{1, 0, 1}},
		{Name: "f4", DType: F4, Shape: []int{2}, Data: []byte{0x21}},
		{Name: "h", DType: F16, Shape: []int{1}, Data: []byte{0, 0x3c}},
		{Name: "a", DType: F16, Shape: []int{1}, Data: []byte{0, 0x40}},
		{Name: "d", DType: F64, Shape: []int{}, Data: make([]byte, 8)},
		{Name: "u", DType: U64, Shape: []int{1}, Data: make([]byte, 8)},
		{Name: "<&>\u2028\"\\\n\x01\x08\x0c", DType: U8, Shape: []int{1}, Data: []byte{9}},
	}
	b := writeBytes(t, ts, nil, WithExactMetadata())
	n := binary.LittleEndian.Uint64(b)
	want := `{"u":{"dtype":"U64","shape":[1],"data_offsets":[0,8]},` +
		`"d":{"dtype":"F64","shape":[],"data_offsets":[8,16]},` +
		`"a":{"dtype":"F16","shape":[1],"data_offsets":[16,18]},` +
		`"h":{"dtype":"F16","shape":[1],"data_offsets":[18,20]},` +
		`"<&>` + "\u2028" + `\"\\\n\u0001\b\f":{"dtype":"U8","shape":[1],"data_offsets":[20,21]},` +
		`"f4":{"dtype":"F4","shape":[2],"data_offsets":[21,22]},` +
		`"b":{"dtype":"BOOL","shape":[3],"data_offsets":[22,25]}}`
	if got := strings.TrimRight(string(b[8:8+n]), " "); got != want {
		t.Fatalf("header\n got %s\nwant %s", got, want)
	}
	f, err := open(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Tensor("<&>\u2028\"\\\n\x01\x08\x0c"); !ok {
		t.Fatalf("escaped name does not round-trip: %v", f.Names())
	}
}

func TestWriterRefuses(t *testing.T) {
	big := strings.Repeat("x", MaxHeaderSize+1)
	cases := []struct {
		name    string
		tensors []Tensor
		meta    map[string]string
		want    error
	}{
		{"18 metadata value > 100 MB", nil, map[string]string{"k": big}, ErrHeaderTooLarge},
		{"F4 [3] sub-byte", []Tensor{{Name: "a", DType: F4, Shape: []int{3}, Data: []byte{0, 0}}}, nil, ErrMisalignedSlice},
		{"F6 [3] sub-byte", []Tensor{{Name: "a", DType: F6E2M3, Shape: []int{3}, Data: []byte{0, 0, 0}}}, nil, ErrMisalignedSlice},
		{"short data", []Tensor{{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 7)}}, nil, ErrInvalidTensorView},
		{"scalar without data", []Tensor{{Name: "a", DType: F32, Shape: []int{}}}, nil, ErrInvalidTensorView},
		{"negative dim", []Tensor{{Name: "a", DType: F32, Shape: []int{-1}}}, nil, ErrValidationOverflow},
		{"overflowing shape", []Tensor{{Name: "a", DType: F64, Shape: []int{1 << 40, 1 << 40}}}, nil, ErrValidationOverflow},
		{"duplicate names across dtypes", []Tensor{
			{Name: "a", DType: F32, Shape: []int{0}, Data: []byte{}},
			{Name: "b", DType: U8, Shape: []int{0}, Data: []byte{}},
			{Name: "a", DType: I8, Shape: []int{0}, Data: []byte{}}}, nil, ErrDuplicateKey},
		{"reserved name", []Tensor{{Name: "__metadata__", DType: U8, Shape: []int{0}, Data: []byte{}}}, nil, ErrDuplicateKey},
		{"invalid UTF-8 name", []Tensor{{Name: "a\xff", DType: U8, Shape: []int{0}, Data: []byte{}}}, nil, ErrInvalidHeader},
		{"invalid dtype", []Tensor{{Name: "a", DType: DType(99), Shape: []int{0}}}, nil, ErrInvalidHeaderDeserialization},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, c.tensors, c.meta)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes written before the error", buf.Len())
			}
		})
	}
}

func TestWriterStreamSizeChecked(t *testing.T) {
	for _, n := range []int{7, 9, 0} {
		ts := []Tensor{{Name: "a", DType: F32, Shape: []int{2}, WriteTo: func(w io.Writer) error {
			_, err := w.Write(make([]byte, n))
			if n > 8 {
				return err
			}
			return nil
		}}}
		err := Write(io.Discard, ts, nil)
		if !errors.Is(err, ErrInvalidTensorView) {
			t.Errorf("WriteTo of %d bytes for 8: error %v, want ErrInvalidTensorView", n, err)
		}
	}
	// A streamer that ignores the write error still fails the write.
	ts := []Tensor{{Name: "a", DType: U8, Shape: []int{1}, WriteTo: func(w io.Writer) error {
		w.Write([]byte{1, 2})
		return nil
	}}}
	if err := Write(io.Discard, ts, nil); !errors.Is(err, ErrInvalidTensorView) {
		t.Errorf("over-long streamer: %v", err)
	}
}

// randomTensor returns a tensor of dt with the given shape and random bytes.
func randomTensor(r *rand.Rand, name string, dt DType, shape []int) Tensor {
	t := Tensor{Name: name, DType: dt, Shape: shape}
	data := make([]byte, t.Size())
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	t.Data = data
	return t
}

// Read → write → read is bit-identical for all 22 dtypes, including scalars,
// zero-size and sub-byte tensors.
func TestRoundTripAllDTypes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ts []Tensor
	for d := range NumDTypes {
		dt := DType(d)
		ts = append(ts,
			randomTensor(r, dt.String()+"/matrix", dt, []int{3, 8}),
			randomTensor(r, dt.String()+"/zero", dt, []int{4, 0, 2}),
			randomTensor(r, dt.String()+"/empty", dt, []int{0}))
		if dt.Bits()%8 == 0 {
			ts = append(ts, randomTensor(r, dt.String()+"/scalar", dt, []int{}))
		} else {
			ts = append(ts, randomTensor(r, dt.String()+"/vec", dt, []int{8}))
		}
	}
	ts = append(ts, randomTensor(r, "模型.层.0.权重", F16, []int{2, 3}))
	b1 := writeBytes(t, ts, map[string]string{"note": "héllo <&>"})
	f1, err := open(b1)
	if err != nil {
		t.Fatalf("re-read: %v", err)
	}
	if len(f1.Tensors) != len(ts) {
		t.Fatalf("%d tensors, want %d", len(f1.Tensors), len(ts))
	}
	for _, want := range ts {
		info, ok := f1.Tensor(want.Name)
		if !ok {
			t.Fatalf("tensor %q missing", want.Name)
		}
		got, _ := f1.Data(want.Name)
		if info.DType != want.DType || !slices.Equal(info.Shape, want.Shape) || !bytes.Equal(got, want.Data) {
			t.Fatalf("tensor %q: %v %v differs from %v %v", want.Name, info.DType, info.Shape, want.DType, want.Shape)
		}
		// Natural alignment of every tensor relative to the file start.
		if el := int64(max(want.DType.Bits()/8, 1)); (f1.DataOffset()+info.Offsets[0])%el != 0 {
			t.Errorf("tensor %q at file offset %d not aligned to %d", want.Name, f1.DataOffset()+info.Offsets[0], el)
		}
	}
	// Write again from the reader: identical bytes.
	var again []Tensor
	for _, n := range f1.Names() {
		c, err := f1.CopyTensor(n)
		if err != nil {
			t.Fatal(err)
		}
		again = append(again, c)
	}
	b2 := writeBytes(t, again, f1.Metadata, WithExactMetadata())
	if !bytes.Equal(b1, b2) {
		t.Fatalf("rewrite differs from the first write (%d vs %d bytes)", len(b1), len(b2))
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomicOnError(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "out.safetensors")
	orig := []byte("previous contents")
	if err := os.WriteFile(target, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	ts := []Tensor{
		{Name: "a", DType: F32, Shape: []int{1 << 18}, Data: make([]byte, 1<<20)},
		{Name: "b", DType: U8, Shape: []int{4}, WriteTo: func(w io.Writer) error {
			w.Write([]byte{1, 2})
			return boom
		}},
	}
	if err := WriteFile(target, ts, nil); !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	got, _ := os.ReadFile(target)
	if !bytes.Equal(got, orig) {
		t.Fatalf("target modified on error")
	}
	if names := listDir(t, dir); len(names) != 1 {
		t.Fatalf("temporary files left behind: %v", names)
	}
	// Validation errors create nothing at all.
	if err := WriteFile(filepath.Join(dir, "x.safetensors"), []Tensor{{Name: "a", DType: F4, Shape: []int{1}}}, nil); !errors.Is(err, ErrMisalignedSlice) {
		t.Fatalf("error %v", err)
	}
	if names := listDir(t, dir); len(names) != 1 {
		t.Fatalf("files left behind: %v", names)
	}
}

// Rewriting a file in place while its data is memory-mapped and streamed
// from the old file must not corrupt either.
func TestWriteFileOverMappedInput(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "m.safetensors")
	r := rand.New(rand.NewPCG(3, 4))
	ts := []Tensor{randomTensor(r, "w", F32, []int{256, 256}), randomTensor(r, "v", BF16, []int{1000})}
	if err := WriteFile(name, ts, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.Mapped() {
		t.Log("file is not memory-mapped on this platform; testing the pread path")
	}
	old, _ := f.Data("w")
	oldCopy := bytes.Clone(old)
	// New file: w streamed from the old mapping, plus a new tensor.
	cw, _ := f.CopyTensor("w")
	cv, _ := f.CopyTensor("v")
	extra := randomTensor(r, "x", F64, []int{64})
	if err := WriteFile(name, []Tensor{cw, cv, extra}, map[string]string{"rev": "2"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(old, oldCopy) {
		t.Fatal("mapped input corrupted by the rewrite")
	}
	g, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, want := range []Tensor{ts[0], ts[1], extra} {
		got, err := g.Data(want.Name)
		if err != nil || !bytes.Equal(got, want.Data) {
			t.Fatalf("tensor %q differs after rewrite (%v)", want.Name, err)
		}
	}
	if g.Metadata["rev"] != "2" || g.Metadata["format"] != "pt" {
		t.Fatalf("metadata %v", g.Metadata)
	}
}

// A WriteTo callback that mixes small writes (buffered) with large ones
// (written straight to the file after a flush) gives the bytes of Write.
func TestWriteFileMixedWriteSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	data := make([]byte, 3*directWriteMin+77)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	chunks := []int{3, directWriteMin, 5, directWriteMin - 1, directWriteMin + 9}
	ts := []Tensor{
		{Name: "head", DType: U8, Shape: []int{5}, Data: []byte{1, 2, 3, 4, 5}},
		{Name: "mixed", DType: U8, Shape: []int{len(data)}, WriteTo: func(w io.Writer) error {
			rest := data
			for _, n := range chunks {
				if _, err := w.Write(rest[:n]); err != nil {
					return err
				}
				rest = rest[n:]
			}
			_, err := w.Write(rest)
			return err
		}},
		{Name: "tail", DType: U8, Shape: []int{3}, Data: []byte{9, 8, 7}},
	}
	var want bytes.Buffer
	if err := Write(&want, ts, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "m.safetensors")
	if err := WriteFile(out, ts, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("WriteFile and Write differ")
	}
}
