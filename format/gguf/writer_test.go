package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/adaptool/adaptool/quant"
	"github.com/x448/float16"
)

// handKV is the KV list of handFile, built with the constructors.
func handKV() []KV {
	return []KV{
		{"general.architecture", String("llama")},
		{"k.u8", Uint8(200)}, {"k.i8", Int8(-2)}, {"k.u16", Uint16(60000)}, {"k.i16", Int16(-3)},
		{"k.u32", Uint32(4000000000)}, {"k.i32", Int32(-4)}, {"k.f32", Float32(1.5)}, {"k.bool", Bool(true)},
		{"k.u64", Uint64(1 << 40)}, {"k.i64", Int64(-5)}, {"k.f64", Float64(2.5)},
		{"k.arr.str", Array(TypeString, []string{"a", "日本"})},
		{"k.arr.nested", Array(TypeArray, []Value{Array(TypeUint32, []uint32{7, 8}), Array(TypeUint32, []uint32{})})},
		{"general.alignment", Uint32(32)},
	}
}

func handTensors() []Tensor {
	f := make([]byte, 24)
	for i := 0; i < 6; i++ {
		binary.LittleEndian.PutUint32(f[4*i:], math.Float32bits(float32(i)-2.5))
	}
	q := make([]byte, 34)
	binary.LittleEndian.PutUint16(q, 0x3800)
	for j := 0; j < 32; j++ {
		q[2+j] = uint8(int8(j - 16))
	}
	return []Tensor{{Name: "w.f32", Type: F32, Dims: []uint64{3, 2}, Data: f}, {Name: "w.q8", Type: Q8_0, Dims: []uint64{32}, Data: q}}
}

// The writer must produce exactly the bytes built by hand from the spec.
func TestWriteMatchesHandBuilt(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, handKV(), handTensors()); err != nil {
		t.Fatal(err)
	}
	want := handFile()
	if !bytes.Equal(buf.Bytes(), want) {
		for i := range want {
			if i >= buf.Len() || buf.Bytes()[i] != want[i] {
				t.Fatalf("bytes differ at %d (len %d vs %d)", i, buf.Len(), len(want))
			}
		}
		t.Fatalf("length %d, want %d", buf.Len(), len(want))
	}
}

func TestWriteFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "rt.gguf")
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, 64*3)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	var tensors []Tensor
	for _, typ := range []GGMLType{F32, F16, BF16, Q8_0} {
		data, err := Encode(vals, typ)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, Tensor{Name: "t." + typ.String(), Type: typ, Dims: []uint64{64, 3}, Data: data})
	}
	// a streamed tensor
	stream := make([]byte, 4*5)
	tensors = append(tensors, Tensor{Name: "streamed", Type: I32, Dims: []uint64{5}, WriteTo: func(w io.Writer) error {
		_, err := w.Write(stream)
		return err
	}})
	kv := []KV{{"general.architecture", String("qwen2")}, {"general.alignment", Uint32(64)}}
	if err := WriteFile(name, kv, tensors); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
	f, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Alignment != 64 || f.DataOffset%64 != 0 || len(f.Tensors) != 5 {
		t.Fatalf("alignment %d offset %d tensors %d", f.Alignment, f.DataOffset, len(f.Tensors))
	}
	if f.FileSize%64 != 0 {
		t.Errorf("file size %d not padded to the alignment", f.FileSize)
	}
	for _, tt := range tensors[:4] {
		got, err := f.Data(tt.Name)
		if err != nil || !bytes.Equal(got, tt.Data) {
			t.Errorf("%s: data differs (%v)", tt.Name, err)
		}
		info, _ := f.Tensor(tt.Name)
		if info.Offset%64 != 0 || !reflect.DeepEqual(info.Dims, tt.Dims) || info.Type != tt.Type {
			t.Errorf("%s: info %+v", tt.Name, info)
		}
		dec, err := f.Float32(tt.Name)
		if err != nil {
			t.Fatal(err)
		}
		// tolerance per type: exact, half-ulp of f16/bf16, Q8_0 d/2 per block
		for i, v := range vals {
			tol := 0.0
			switch tt.Type {
			case F16:
				tol = math.Abs(float64(v)) * 0x1p-11
			case BF16:
				tol = math.Abs(float64(v)) * 0x1p-8
			case Q8_0:
				blk := vals[i/32*32 : i/32*32+32]
				amax := 0.0
				for _, b := range blk {
					amax = math.Max(amax, math.Abs(float64(b)))
				}
				tol = amax/127/2*1.01 + amax*0x1p-11
			}
			if d := math.Abs(float64(dec[i]) - float64(v)); d > tol {
				t.Fatalf("%s[%d] = %v, want %v ± %g", tt.Name, i, dec[i], v, tol)
			}
		}
	}
}

func TestWriteRejects(t *testing.T) {
	cases := []struct {
		name string
		kv   []KV
		ts   []Tensor
		want error
	}{
		{"dup key", []KV{{"a", Uint8(1)}, {"a", Uint8(2)}}, nil, ErrDuplicate},
		{"type mismatch", []KV{{"a", Value{Type: TypeUint32, X: int32(1)}}}, nil, ErrValueType},
		{"array mismatch", []KV{{"a", Array(TypeUint32, []int32{1})}}, nil, ErrValueType},
		{"bad alignment", []KV{{"general.alignment", Uint32(48)}}, nil, ErrAlignment},
		{"dup tensor", nil, []Tensor{{Name: "x", Type: F32, Dims: []uint64{1}, Data: make([]byte, 4)}, {Name: "x", Type: F32, Dims: []uint64{1}, Data: make([]byte, 4)}}, ErrDuplicate},
		{"short data", nil, []Tensor{{Name: "x", Type: F32, Dims: []uint64{2}, Data: make([]byte, 4)}}, ErrTensorInfo},
		{"q8 row", nil, []Tensor{{Name: "x", Type: Q8_0, Dims: []uint64{16}, Data: make([]byte, 17)}}, ErrTensorInfo},
		{"long name", nil, []Tensor{{Name: string(make([]byte, 64)), Type: F32, Dims: []uint64{1}, Data: make([]byte, 4)}}, ErrTensorInfo},
		{"5 dims", nil, []Tensor{{Name: "x", Type: F32, Dims: []uint64{1, 1, 1, 1, 1}, Data: make([]byte, 4)}}, ErrTensorInfo},
	}
	for _, c := range cases {
		if err := Write(&bytes.Buffer{}, c.kv, c.ts); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	// a failed WriteFile leaves nothing behind
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "x.gguf"), []KV{{"a", Uint8(1)}, {"a", Uint8(1)}}, nil); err == nil {
		t.Fatal("want error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// F16 through Decode and Encode checked against github.com/x448/float16
// (independent): every bit pattern widened, random and edge values narrowed.
func TestF16AgainstOracle(t *testing.T) {
	all := make([]byte, 2<<16)
	for h := 0; h < 1<<16; h++ {
		binary.LittleEndian.PutUint16(all[2*h:], uint16(h))
	}
	dec, err := Decode(all, F16, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	for h, got := range dec {
		want := float16.Frombits(uint16(h)).Float32()
		if math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
			t.Fatalf("Decode F16 %#04x = %v, want %v", h, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	special := []float32{0, float32(math.Copysign(0, -1)), 65504, 65520, 65519.99, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5, float32(math.Inf(1)), float32(math.Inf(-1)), 1.0009765625, 1.00048828125, 1.000732421875}
	for i := 0; i < 200000; i++ {
		special = append(special, math.Float32frombits(rng.Uint32()))
	}
	enc, err := Encode(special, F16)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range special {
		want := float16.Fromfloat32(f).Bits()
		got := binary.LittleEndian.Uint16(enc[2*i:])
		if f != f {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#x -> %#x not NaN", math.Float32bits(f), got)
			}
			continue
		}
		if got != want {
			t.Fatalf("Encode F16 %v (%#x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
}

func TestBF16AndQ8Hand(t *testing.T) {
	// bf16: 1 + 2^-8 is a tie between 1 and 1+2^-7: rounds to even (1.0)
	cases := map[float32]uint16{1: 0x3f80, 1 + 0x1p-8: 0x3f80, 1 + 3*0x1p-8: 0x3f82, -2: 0xc000, float32(math.Inf(1)): 0x7f80}
	for f, want := range cases {
		b, err := Encode([]float32{f}, BF16)
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint16(b); got != want {
			t.Errorf("Encode BF16 %v = %#04x, want %#04x", f, got, want)
		}
		back, err := Decode(b, BF16, 1)
		if err != nil || math.Float32bits(back[0]) != uint32(want)<<16 {
			t.Errorf("Decode BF16 %#04x = %v, %v", want, back, err)
		}
	}
	if b, _ := Encode([]float32{float32(math.NaN())}, BF16); binary.LittleEndian.Uint16(b)&0x7f80 != 0x7f80 || binary.LittleEndian.Uint16(b)&0x7f == 0 {
		t.Errorf("bf16 NaN = %x", b)
	}
	// Q8_0 by hand: block with absmax 127 -> d = 1, q = roundf(x) halves away
	x := make([]float32, 32)
	x[0], x[1], x[2], x[3], x[4] = 127, -2.5, 2.5, 0.49, -126.5
	b, err := Encode(x, Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	if d := binary.LittleEndian.Uint16(b); d != 0x3c00 {
		t.Errorf("d = %#04x, want 0x3c00 (1.0)", d)
	}
	wantQ := []int8{127, -3, 3, 0, -127}
	for i, w := range wantQ {
		if int8(b[2+i]) != w {
			t.Errorf("q[%d] = %d, want %d", i, int8(b[2+i]), w)
		}
	}
	// all-zero block: d = 0, q = 0
	z, _ := Encode(make([]float32, 32), Q8_0)
	if !bytes.Equal(z, make([]byte, 34)) {
		t.Errorf("zero block %x", z)
	}
	if _, err := Encode(make([]float32, 31), Q8_0); err == nil {
		t.Error("31 values must not encode as Q8_0")
	}
}

// Q4_K tensors written by the quant package decode through File.Float32
// (quant's dequantizer) close to the source values.
func TestDecodeQ4K(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	v := make([]float32, 512)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	raw := make([]byte, 2*144)
	if err := quant.QuantizeGGUF(raw, v, quant.GGUFQ4_K); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, nil, []Tensor{{Name: "q", Type: Q4_K, Dims: []uint64{256, 2}, Data: raw}}); err != nil {
		t.Fatal(err)
	}
	f, err := NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "q4k")
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("q")
	if err != nil {
		t.Fatal(err)
	}
	var se, ss float64
	for i := range v {
		d := float64(got[i] - v[i])
		se += d * d
		ss += float64(v[i]) * float64(v[i])
	}
	if rel := math.Sqrt(se / ss); rel > 0.12 { // 4.5-bit k-quant of N(0,1): ~0.05–0.1
		t.Errorf("Q4_K relative RMS error %.3f", rel)
	}
	if _, err := Decode(make([]byte, 66), IQ2_XXS, 256); !errors.Is(err, ErrUnsupported) {
		t.Errorf("IQ2_XXS: %v", err)
	}
}

// The unblocked types decode by hand-checked values (F64 and the integers
// round to nearest even).
func TestDecodePlainTypes(t *testing.T) {
	le := binary.LittleEndian
	f64 := make([]byte, 16)
	le.PutUint64(f64, math.Float64bits(1+0x1p-24)) // a tie: rounds to 1
	le.PutUint64(f64[8:], math.Float64bits(-3.5))
	i32 := make([]byte, 8)
	le.PutUint32(i32, uint32(1<<24+1)) // not representable: ties to even 2^24
	v := int32(-7)
	le.PutUint32(i32[4:], uint32(v))
	cases := []struct {
		typ  GGMLType
		raw  []byte
		want []float32
	}{
		{F32, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}, []float32{1, -2}},
		{F64, f64, []float32{1, -3.5}},
		{I8, []byte{0x7f, 0x80, 0xff}, []float32{127, -128, -1}},
		{I16, []byte{0xff, 0x7f, 0x00, 0x80}, []float32{32767, -32768}},
		{I32, i32, []float32{1 << 24, -7}},
	}
	for _, c := range cases {
		got, err := Decode(c.raw, c.typ, int64(len(c.want)))
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		for i := range c.want {
			if got[i] != c.want[i] {
				t.Errorf("%s[%d] = %v, want %v", c.typ, i, got[i], c.want[i])
			}
		}
	}
}
