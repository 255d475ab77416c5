package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// raw builds prefix + header + data with N = len(header).
func raw(header string, data []byte) []byte {
	return rawN(uint64(len(header)), header, data)
}

// rawN builds a file whose prefix claims n regardless of the header length.
func rawN(n uint64, header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, n)
	b = append(b, header...)
	return append(b, data...)
}

func open(b []byte, opts ...Option) (*File, error) {
	return NewReader(bytes.NewReader(b), int64(len(b)), opts...)
}

// goodFile is a small valid file: a F32 [2] at [0,8] and an I32 [] at [8,12].
func goodFile() []byte {
	return raw(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"s":{"dtype":"I32","shape":[],"data_offsets":[8,12]}}`,
		[]byte{0, 0, 128, 63, 0, 0, 0, 64, 7, 0, 0, 0})
}

// messWith returns a corrupted copy of a good file.
func messWith(b []byte, corrupt func([]byte) []byte) []byte {
	return corrupt(bytes.Clone(b))
}

type readerCase struct {
	name    string
	file    []byte
	opts    []Option
	want    error // nil = must succeed
	tensors int   // when want == nil
}

func tensorEntry(name, dtype, shape string, b, e int) string {
	return `"` + name + `":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":[` + strconv.Itoa(b) + `,` + strconv.Itoa(e) + `]}`
}

// The malformed and edge-case table of safetensors.md §7 (first table).
func referenceCases() []readerCase {
	tenCopies := "{"
	for i := range 10 {
		if i > 0 {
			tenCopies += ","
		}
		tenCopies += tensorEntry("t"+strconv.Itoa(i), "F32", "[4]", 0, 16)
	}
	tenCopies += "}"
	validF32 := raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	return []readerCase{
		{name: "1 empty buffer", file: nil, want: ErrHeaderTooSmall},
		{name: "1b seven bytes", file: []byte{1, 0, 0, 0, 0, 0, 0}, want: ErrHeaderTooSmall},
		{name: "2 N ~ 1.8e19", file: append([]byte{0x3C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF}, `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`...), want: ErrHeaderTooLarge},
		{name: "3 N=60 nothing after", file: rawN(60, "", nil), want: ErrInvalidHeaderLength},
		{name: "4 header 0xFF", file: raw("\xff", nil), want: ErrInvalidHeader},
		{name: "5 header {", file: raw("{", nil), want: ErrInvalidHeaderDeserialization},
		{name: "6 trailing whitespace", file: raw("{}\r \t\n", nil), tensors: 0},
		{name: "7 leading whitespace", file: raw("\t\n{}\r ", nil), tensors: 0},
		{name: "8 empty object", file: raw("{}", nil), tensors: 0},
		{name: "8b metadata only", file: raw(`{"__metadata__":{"framework":"pt"}}`, nil), tensors: 0},
		{name: "9 zero-size tensors", file: raw(`{`+tensorEntry("a", "I32", "[2,0]", 0, 0)+`,`+tensorEntry("b", "I32", "[0]", 0, 0)+`}`, nil), tensors: 2},
		{name: "10 scalar", file: raw(`{`+tensorEntry("a", "I32", "[]", 0, 4)+`}`, make([]byte, 4)), tensors: 1},
		{name: "11 I32 [2,2] at [0,4]", file: raw(`{`+tensorEntry("a", "I32", "[2,2]", 0, 4)+`}`, make([]byte, 4)), want: ErrTensorInvalidInfo},
		{name: "12a elements overflow", file: raw(`{"a":{"dtype":"I32","shape":[2,18446744073709551614],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrValidationOverflow},
		{name: "12b bits overflow", file: raw(`{"a":{"dtype":"I32","shape":[2,9223372036854775807],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrValidationOverflow},
		{name: "13 polyglot trailing bytes", file: append(bytes.Clone(validF32), "extra_bogus_data_for_polyglot_file"...), want: ErrMetadataIncompleteBuffer},
		{name: "14 missing last 2 bytes", file: validF32[:len(validF32)-2], want: ErrMetadataIncompleteBuffer},
		{name: "15 ten copies at [0,16]", file: raw(tenCopies, make([]byte, 16)), want: ErrInvalidOffset},
		{name: "16 F4 [1,3]", file: raw(`{`+tensorEntry("a", "F4", "[1,3]", 0, 2)+`}`, make([]byte, 2)), want: ErrMisalignedSlice},
		{name: "16b F4 [1,2] is one byte", file: raw(`{`+tensorEntry("a", "F4", "[1,2]", 0, 1)+`}`, make([]byte, 1)), tensors: 1},
		{name: "17 F4 [1,2] given 2 bytes", file: raw(`{`+tensorEntry("a", "F4", "[1,2]", 0, 2)+`}`, make([]byte, 2)), want: ErrTensorInvalidInfo},
		{name: "19 truncated inside header", file: validF32[:20], want: ErrInvalidHeaderLength},
		{name: "20 F32 [1024,1024] with 1 data byte", file: raw(`{`+tensorEntry("a", "F32", "[1024,1024]", 0, 4194304)+`}`, []byte{0}), want: ErrMetadataIncompleteBuffer},
		{name: "21 N=1000 file smaller", file: rawN(1000, "{}", nil), want: ErrInvalidHeaderLength},
	}
}

// The second table of safetensors.md §7 (reference result read from the code).
func additionalCases() []readerCase {
	return []readerCase{
		{name: "hole between tensors", file: raw(`{`+tensorEntry("a", "F32", "[1]", 0, 4)+`,`+tensorEntry("b", "F32", "[1]", 8, 12)+`}`, make([]byte, 12)), want: ErrInvalidOffset},
		{name: "end < begin", file: raw(`{`+tensorEntry("a", "F32", "[1]", 0, 4)+`,`+tensorEntry("b", "F32", "[0]", 4, 2)+`}`, make([]byte, 4)), want: ErrInvalidOffset},
		{name: "duplicate same offsets strict", file: raw(`{`+tensorEntry("a", "F32", "[1]", 0, 4)+`,`+tensorEntry("a", "F32", "[1]", 0, 4)+`}`, make([]byte, 4)), want: ErrDuplicateKey},
		{name: "duplicate same offsets lenient", file: raw(`{`+tensorEntry("a", "F32", "[1]", 0, 4)+`,`+tensorEntry("a", "F32", "[1]", 0, 4)+`}`, make([]byte, 4)), opts: []Option{WithLenient()}, tensors: 1},
		{name: "duplicate [0,4] then [4,8] strict", file: raw(`{`+tensorEntry("a", "F32", "[1]", 0, 4)+`,`+tensorEntry("a", "F32", "[1]", 4, 8)+`}`, make([]byte, 8)), want: ErrDuplicateKey},
		{name: "duplicate [0,4] then [4,8] lenient", file: raw(`{`+tensorEntry("a", "F32", "[1]", 0, 4)+`,`+tensorEntry("a", "F32", "[1]", 4, 8)+`}`, make([]byte, 8)), opts: []Option{WithLenient()}, want: ErrInvalidOffset},
		{name: "duplicate metadata strict", file: raw(`{"__metadata__":{},"__metadata__":{}}`, nil), want: ErrDuplicateKey},
		{name: "header []", file: raw(`[]`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "header null", file: raw(`null`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "metadata {a:1}", file: raw(`{"__metadata__":{"a":1}}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "metadata {a:null}", file: raw(`{"__metadata__":{"a":null}}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "metadata nested object", file: raw(`{"__metadata__":{"a":{"b":"c"}}}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "metadata is a string", file: raw(`{"__metadata__":"pt"}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "metadata null", file: raw(`{"__metadata__":null}`, nil), tensors: 0},
		{name: "extra field ignored", file: raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":{"x":[1,2,{}]}}}`, make([]byte, 4)), tensors: 1},
		{name: "extra field strict", file: raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}`, make([]byte, 4)), opts: []Option{WithStrictFields()}, want: ErrInvalidHeaderDeserialization},
		{name: "fields in any order", file: raw(`{"a":{"data_offsets":[0,4],"shape":[1],"dtype":"F32"}}`, make([]byte, 4)), tensors: 1},
		{name: "missing dtype", file: raw(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "missing shape", file: raw(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "missing data_offsets", file: raw(`{"a":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "dtype case differs", file: raw(`{"a":{"Dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "repeated field", file: raw(`{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "dtype F7", file: raw(`{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)), want: ErrInvalidHeaderDeserialization},
		{name: "dtype f32 lower case", file: raw(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "dtype I4", file: raw(`{"a":{"dtype":"I4","shape":[2],"data_offsets":[0,1]}}`, make([]byte, 1)), want: ErrInvalidHeaderDeserialization},
		{name: "dtype C128", file: raw(`{"a":{"dtype":"C128","shape":[1],"data_offsets":[0,16]}}`, make([]byte, 16)), want: ErrInvalidHeaderDeserialization},
		{name: "dtype number", file: raw(`{"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "offset -1", file: raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-1,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "offset 1.0", file: raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "offset 4e0", file: raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "offset 2^64", file: raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "shape null element", file: raw(`{"a":{"dtype":"F32","shape":[null],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "shape null", file: raw(`{"a":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "shape string element", file: raw(`{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "3 data_offsets", file: raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "1 data_offset", file: raw(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[0]}}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "entry is an array", file: raw(`{"a":[0,4]}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "NUL padding", file: raw("{}\x00\x00", nil), want: ErrInvalidHeaderDeserialization},
		{name: "garbage after object", file: raw("{} x", nil), want: ErrInvalidHeaderDeserialization},
		{name: "second object", file: raw("{} {}", nil), want: ErrInvalidHeaderDeserialization},
		{name: "trailing comma", file: raw(`{"__metadata__":{"a":"b"},}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "trailing comma in array", file: raw(`{"a":{"dtype":"F32","shape":[1,],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "missing colon", file: raw(`{"__metadata__" {}}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "single quotes", file: raw(`{'a':1}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "lone surrogate in name", file: raw(`{"\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), want: ErrInvalidHeaderDeserialization},
		{name: "lone trailing surrogate", file: raw(`{"__metadata__":{"a":"\udc00"}}`, nil), want: ErrInvalidHeaderDeserialization},
		{name: "surrogate pair ok", file: raw(`{"__metadata__":{"a":"\ud83d\ude00 \\ud800"}}`, nil), tensors: 0},
		{name: "invalid UTF-8 in a name", file: raw("{\"a\xc3\x28\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", make([]byte, 4)), want: ErrInvalidHeader},
		{name: "CJK name", file: raw(`{"层.权重":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), tensors: 1},
		{name: "N = 100,000,001", file: rawN(100_000_001, "{}", nil), want: ErrHeaderTooLarge},
		{name: "dim does not fit int", file: raw(`{"a":{"dtype":"F32","shape":[0,9223372036854775808],"data_offsets":[0,0]}}`, nil), want: ErrValidationOverflow},
		{name: "messWith: prefix N+1", file: messWith(goodFile(), func(b []byte) []byte { b[0]++; return b }), want: ErrInvalidHeaderDeserialization},
		{name: "messWith: data byte dropped", file: messWith(goodFile(), func(b []byte) []byte { return b[:len(b)-1] }), want: ErrMetadataIncompleteBuffer},
		{name: "messWith: byte appended", file: messWith(goodFile(), func(b []byte) []byte { return append(b, 0) }), want: ErrMetadataIncompleteBuffer},
		{name: "messWith: dtype F32 -> F64", file: messWith(goodFile(), func(b []byte) []byte { return bytes.Replace(b, []byte(`"F32"`), []byte(`"F64"`), 1) }), want: ErrTensorInvalidInfo},
		{name: "messWith: offsets swapped", file: messWith(goodFile(), func(b []byte) []byte { return bytes.Replace(b, []byte(`[8,12]`), []byte(`[9,12]`), 1) }), want: ErrInvalidOffset},
		{name: "messWith: NUL in header", file: messWith(goodFile(), func(b []byte) []byte { b[len(b)-13] = 0; return b }), want: ErrInvalidHeaderDeserialization},
		{name: "good file", file: goodFile(), tensors: 2},
	}
}

func TestReaderCases(t *testing.T) {
	for _, table := range [][]readerCase{referenceCases(), additionalCases()} {
		for _, c := range table {
			t.Run(c.name, func(t *testing.T) {
				f, err := open(c.file, c.opts...)
				if c.want != nil {
					if !errors.Is(err, c.want) {
						t.Fatalf("got error %v, want %v", err, c.want)
					}
					if !IsFormatError(err) {
						t.Errorf("IsFormatError(%v) = false", err)
					}
					var te *TensorError
					if !errors.As(err, &te) {
						t.Errorf("error %T is not a *TensorError", err)
					}
					// Exactly one sentinel in the chain.
					for _, s := range sentinels {
						if s != c.want && errors.Is(err, s) {
							t.Errorf("error %v also matches %v", err, s)
						}
					}
					return
				}
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if len(f.Tensors) != c.tensors {
					t.Fatalf("%d tensors, want %d", len(f.Tensors), c.tensors)
				}
			})
		}
	}
}

func TestErrorNamesFileAndTensor(t *testing.T) {
	b := raw(`{`+tensorEntry("layer.0.w", "I32", "[2,2]", 0, 4)+`}`, make([]byte, 4))
	_, err := NewReader(bytes.NewReader(b), int64(len(b)), WithName("x.safetensors"))
	var te *TensorError
	if !errors.As(err, &te) || te.File != "x.safetensors" || te.Tensor != "layer.0.w" {
		t.Fatalf("error %#v does not name file and tensor", err)
	}
	msg := err.Error()
	for _, want := range []string{"x.safetensors", `"layer.0.w"`, "TensorInvalidInfo", "rule 7d"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestReaderData(t *testing.T) {
	f, err := open(goodFile())
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.Float32("a")
	if err != nil || len(a) != 2 || a[0] != 1 || a[1] != 2 {
		t.Fatalf("Float32(a) = %v, %v; want [1 2]", a, err)
	}
	s, err := f.Float32("s")
	if err != nil || len(s) != 1 || s[0] != 7 {
		t.Fatalf("Float32(s) = %v, %v; want [7]", s, err)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	if _, err := f.Data("nope"); !errors.Is(err, ErrTensorNotFound) {
		t.Errorf("Data(nope) error %v, want ErrTensorNotFound", err)
	}
	if ti, ok := f.Tensor("s"); !ok || len(ti.Shape) != 0 || ti.NumElements() != 1 || ti.Size() != 4 {
		t.Errorf("scalar info %+v", ti)
	}
}

// Open maps the data: Data is zero-copy (same memory on every call, capacity
// clipped so appends cannot write into the mapping); NewReader copies.
func TestDataZeroCopy(t *testing.T) {
	name := filepath.Join(t.TempDir(), "z.safetensors")
	if err := os.WriteFile(name, goodFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if runtime.GOOS == "linux" && !f.Mapped() {
		t.Fatal("not memory-mapped on linux")
	}
	d1, _ := f.Data("a")
	d2, _ := f.Data("a")
	if f.Mapped() && (&d1[0] != &d2[0] || cap(d1) != len(d1)) {
		t.Fatal("mapped Data is not a clipped view of the mapping")
	}
	r, _ := open(goodFile())
	c1, _ := r.Data("a")
	c2, _ := r.Data("a")
	if &c1[0] == &c2[0] || !bytes.Equal(c1, d1) {
		t.Fatal("pread Data is not a fresh copy of the same bytes")
	}
	s, err := f.Section("s")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(s)
	if !bytes.Equal(b, []byte{7, 0, 0, 0}) {
		t.Fatalf("Section(s) = %v", b)
	}
}

// Files of other well-known formats keep their rule error (errors.Is) and
// say what they look like; a real header length gets no such note.
func TestOtherFormatHints(t *testing.T) {
	pad := func(s string) []byte { return append([]byte(s), make([]byte, 64)...) }
	cases := []struct {
		name string
		file []byte
		want error
		hint string
	}{
		{"git lfs pointer", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 99999\n"), ErrHeaderTooLarge, "Git LFS pointer"},
		{"torch.save zip", pad("PK\x03\x04\x14\x00\x00\x00"), ErrHeaderTooLarge, "ZIP archive"},
		{"legacy pickle", pad("\x80\x02\x8a\x0al\xfc\x9cF"), ErrHeaderTooLarge, "Python pickle"},
		{"gguf", pad("GGUF\x03\x00\x00\x00"), ErrHeaderTooLarge, "GGUF file"},
		{"atz", pad("\x89ATZ\r\n\x1a\n"), ErrHeaderTooLarge, "compressed container"},
		{"hdf5", pad("\x89HDF\r\n\x1a\n"), ErrHeaderTooLarge, "HDF5"},
		{"html", pad("<!DOCTYPE html><html>"), ErrHeaderTooLarge, "HTML page"},
		{"json", pad(`{"peft_type": "LORA"}`), ErrHeaderTooLarge, "JSON"},
		{"plain too large", rawN(100_000_001, "{}", nil), ErrHeaderTooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := open(c.file)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if c.hint == "" {
				if strings.Contains(err.Error(), "looks like") {
					t.Errorf("unexpected hint: %v", err)
				}
			} else if !strings.Contains(err.Error(), "which looks like") || !strings.Contains(err.Error(), c.hint) {
				t.Errorf("error %v does not say it looks like a %s", err, c.hint)
			}
		})
	}
}
