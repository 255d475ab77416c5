package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/adaptool/adaptool/internal/testcorpus"
)

// compareDecoders checks the hand-written scanner against the
// encoding/json token walk (header_ref_test.go) on one header: both must
// accept or both reject, with identical results. Nesting deeper than
// maxDepth is the scanner's documented extra limit.
func compareDecoders(t *testing.T, hdr []byte, lenient bool) {
	t.Helper()
	if !utf8.Valid(hdr) {
		return
	}
	o := &options{lenient: lenient}
	m1, r1, e1 := decodeHeader(hdr, o)
	m2, r2, e2 := decodeHeaderRef(hdr, o)
	if e1 != nil && strings.Contains(e1.Error(), "nesting deeper") {
		return
	}
	if (e1 == nil) != (e2 == nil) {
		t.Fatalf("scanner and encoding/json disagree on %q:\n scanner: %v\n json:    %v", hdr, e1, e2)
	}
	if e1 != nil {
		for _, s := range []error{ErrDuplicateKey, ErrInvalidHeaderDeserialization} {
			if errors.Is(e1, s) != errors.Is(e2, s) {
				t.Fatalf("different errors on %q:\n scanner: %v\n json:    %v", hdr, e1, e2)
			}
		}
		return
	}
	if len(r1) == 0 && len(r2) == 0 {
		r1, r2 = nil, nil // capacity pre-sizing is not a difference
	}
	if !reflect.DeepEqual(m1, m2) || !reflect.DeepEqual(r1, r2) {
		t.Fatalf("different results on %q:\n scanner: %v %v\n json:    %v %v", hdr, m1, r1, m2, r2)
	}
}

func headerOf(b []byte) ([]byte, bool) {
	if len(b) < 8 {
		return nil, false
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return nil, false
	}
	return b[8 : 8+n], true
}

func TestScannerMatchesEncodingJSON(t *testing.T) {
	for _, c := range append(referenceCases(), additionalCases()...) {
		if h, ok := headerOf(c.file); ok {
			compareDecoders(t, h, false)
			compareDecoders(t, h, true)
		}
	}
	extra := []string{
		`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":[[[[]]]],"y":"\"\\\/\b\f\n\r\t\u00e9"}}`,
		`{"__metadata__":{"k":"\u0000\ud83d\ude00"}}`,
		`{"__metadata__":{"k":"v"},"__metadata__":null}`,
		`{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}`,
		`{"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,4]}}`,
		`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"z":-1.5e+3}}`,
		`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"z":1.}}`,
		`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"z":tru}}`,
		`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"z":"\x"}}`,
		"{\"a\t\":1}",
		`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`,
		` { } `,
		`{"a" : { "dtype" : "F32" , "shape" : [ 1 ] , "data_offsets" : [ 0 , 4 ] } }`,
		`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4],"dtype":"F32"}}`,
		`{,}`, `{"a":}`, `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},}`,
	}
	for _, h := range extra {
		compareDecoders(t, []byte(h), false)
		compareDecoders(t, []byte(h), true)
	}
	deep := `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}}`
	if _, _, err := decodeHeader([]byte(deep), &options{}); !errors.Is(err, ErrInvalidHeaderDeserialization) {
		t.Fatalf("deep nesting accepted: %v", err)
	}
}

// fuzzSeeds returns every test file: the table cases, the goldens, and the
// corpus files under 256 KB (larger seeds make minimisation stall the fuzzer).
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, c := range append(referenceCases(), additionalCases()...) {
		if len(c.file) < 1<<20 {
			seeds = append(seeds, c.file)
		}
	}
	seeds = append(seeds, goodFile())
	if dir, err := testcorpus.Locate(); err == nil {
		files, _ := filepath.Glob(filepath.Join(dir, "*", "*.safetensors"))
		for _, f := range files {
			if st, err := os.Stat(f); err == nil && st.Size() < 256<<10 {
				b, _ := os.ReadFile(f)
				seeds = append(seeds, b)
			}
		}
	}
	return seeds
}

// FuzzReader: no input panics; the two decoders agree; whatever parses is
// written back canonically and re-read identically.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, ok := headerOf(b); ok {
			compareDecoders(t, h, false)
		}
		file, err := NewReader(bytes.NewReader(b), int64(len(b)), WithLenient())
		if err != nil {
			if !IsFormatError(err) {
				t.Fatalf("error outside the sentinels: %v", err)
			}
			return
		}
		var ts []Tensor
		for _, ti := range file.Tensors {
			if ti.DType.IsFloat() || ti.DType == I32 {
				if ti.Size() <= 1<<16 {
					file.Float32(ti.Name) // must not panic
				}
			}
			c, err := file.CopyTensor(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, c)
		}
		var out bytes.Buffer
		if err := Write(&out, ts, file.Metadata, WithExactMetadata()); err != nil {
			if errors.Is(err, ErrHeaderTooLarge) {
				return
			}
			t.Fatalf("cannot write back a parsed file: %v", err)
		}
		again, err := NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("cannot re-read the written file: %v", err)
		}
		if !reflect.DeepEqual(again.Metadata, file.Metadata) || len(again.Tensors) != len(file.Tensors) {
			t.Fatalf("metadata or tensor count changed: %v/%d vs %v/%d", again.Metadata, len(again.Tensors), file.Metadata, len(file.Tensors))
		}
		for _, ti := range file.Tensors {
			tj, ok := again.Tensor(ti.Name)
			if !ok || tj.DType != ti.DType || !reflect.DeepEqual(tj.Shape, ti.Shape) {
				t.Fatalf("tensor %q changed: %+v vs %+v", ti.Name, tj, ti)
			}
			a, _ := file.Data(ti.Name)
			c, _ := again.Data(ti.Name)
			if !bytes.Equal(a, c) {
				t.Fatalf("tensor %q data changed", ti.Name)
			}
		}
		// Canonical form is a fixed point.
		var out2 bytes.Buffer
		var ts2 []Tensor
		for _, n := range again.Names() {
			c, _ := again.CopyTensor(n)
			ts2 = append(ts2, c)
		}
		if err := Write(&out2, ts2, again.Metadata, WithExactMetadata()); err != nil || !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Fatalf("canonical form not a fixed point (%v)", err)
		}
	})
}
