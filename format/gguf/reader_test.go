package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// bb builds GGUF bytes by hand, straight from the spec (docs/gguf.md),
// independently of the writer.
type bb struct{ b []byte }

func (x *bb) u8(v uint8)    { x.b = append(x.b, v) }
func (x *bb) u16(v uint16)  { x.b = binary.LittleEndian.AppendUint16(x.b, v) }
func (x *bb) u32(v uint32)  { x.b = binary.LittleEndian.AppendUint32(x.b, v) }
func (x *bb) u64(v uint64)  { x.b = binary.LittleEndian.AppendUint64(x.b, v) }
func (x *bb) str(s string)  { x.u64(uint64(len(s))); x.b = append(x.b, s...) }
func (x *bb) raw(p ...byte) { x.b = append(x.b, p...) }
func (x *bb) padTo(a int) {
	for len(x.b)%a != 0 {
		x.b = append(x.b, 0)
	}
}
func (x *bb) header(version uint32, nt, nkv uint64) {
	x.raw('G', 'G', 'U', 'F')
	x.u32(version)
	x.u64(nt)
	x.u64(nkv)
}

// handFile is a v3 file with one KV of each of the 13 value types, a nested
// array, and two tensors (F32 ne [3,2] and Q8_0 ne [32]).
func handFile() []byte {
	var x bb
	x.header(3, 2, 15)
	x.str("general.architecture")
	x.u32(8)
	x.str("llama")
	x.str("k.u8")
	x.u32(0)
	x.u8(200)
	x.str("k.i8")
	x.u32(1)
	x.u8(0xFE) // -2
	x.str("k.u16")
	x.u32(2)
	x.u16(60000)
	x.str("k.i16")
	x.u32(3)
	x.u16(0xFFFD) // -3
	x.str("k.u32")
	x.u32(4)
	x.u32(4000000000)
	x.str("k.i32")
	x.u32(5)
	x.u32(0xFFFFFFFC) // -4
	x.str("k.f32")
	x.u32(6)
	x.u32(0x3FC00000) // 1.5
	x.str("k.bool")
	x.u32(7)
	x.u8(1)
	x.str("k.u64")
	x.u32(10)
	x.u64(1 << 40)
	x.str("k.i64")
	x.u32(11)
	x.u64(0xFFFFFFFFFFFFFFFB) // -5
	x.str("k.f64")
	x.u32(12)
	x.u64(0x4004000000000000) // 2.5
	x.str("k.arr.str")
	x.u32(9)
	x.u32(8)
	x.u64(2)
	x.str("a")
	x.str("日本")
	x.str("k.arr.nested")
	x.u32(9)
	x.u32(9) // array of arrays
	x.u64(2)
	x.u32(4) // [u32 × 2]
	x.u64(2)
	x.u32(7)
	x.u32(8)
	x.u32(4) // [u32 × 0]
	x.u64(0)
	x.str("general.alignment")
	x.u32(4)
	x.u32(32)
	// tensor infos
	x.str("w.f32")
	x.u32(2)
	x.u64(3)
	x.u64(2)
	x.u32(0)
	x.u64(0)
	x.str("w.q8")
	x.u32(1)
	x.u64(32)
	x.u32(8)
	x.u64(32) // 24 bytes of F32 padded to 32
	x.padTo(32)
	for i := 0; i < 6; i++ {
		x.u32(math.Float32bits(float32(i) - 2.5))
	}
	x.padTo(32)
	x.u16(0x3800) // d = 0.5 in f16
	for j := 0; j < 32; j++ {
		x.u8(uint8(int8(j - 16)))
	}
	x.padTo(32)
	return x.b
}

func TestReadHandBuilt(t *testing.T) {
	b := handFile()
	f, err := NewReader(bytes.NewReader(b), int64(len(b)), "hand.gguf")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"general.architecture": "llama", "k.u8": uint8(200), "k.i8": int8(-2), "k.u16": uint16(60000),
		"k.i16": int16(-3), "k.u32": uint32(4000000000), "k.i32": int32(-4), "k.f32": float32(1.5),
		"k.bool": true, "k.u64": uint64(1 << 40), "k.i64": int64(-5), "k.f64": 2.5,
		"k.arr.str": []string{"a", "日本"}, "general.alignment": uint32(32),
	}
	for k, w := range want {
		v, ok := f.Get(k)
		if !ok || !reflect.DeepEqual(v.X, w) {
			t.Errorf("%s = %#v, want %#v", k, v.X, w)
		}
	}
	nested, _ := f.Get("k.arr.nested")
	inner, ok := nested.X.([]Value)
	if !ok || len(inner) != 2 || !reflect.DeepEqual(inner[0].X, []uint32{7, 8}) || inner[1].Len() != 0 || inner[1].Elem != TypeUint32 {
		t.Errorf("nested = %#v", nested)
	}
	if f.KV[0].Key != "general.architecture" || f.KV[14].Key != "general.alignment" {
		t.Errorf("KV order not preserved: %q ... %q", f.KV[0].Key, f.KV[14].Key)
	}
	if f.DataOffset%32 != 0 || f.Alignment != 32 {
		t.Errorf("data offset %d alignment %d", f.DataOffset, f.Alignment)
	}
	ti, _ := f.Tensor("w.f32")
	if !reflect.DeepEqual(ti.Shape(), []int{2, 3}) || ti.Size() != 24 {
		t.Errorf("w.f32 info %+v", ti)
	}
	v, err := f.Float32("w.f32")
	if err != nil || !reflect.DeepEqual(v, []float32{-2.5, -1.5, -0.5, 0.5, 1.5, 2.5}) {
		t.Errorf("w.f32 = %v, %v", v, err)
	}
	q, err := f.Float32("w.q8")
	if err != nil {
		t.Fatal(err)
	}
	for j, got := range q {
		if want := float32(j-16) * 0.5; got != want {
			t.Fatalf("w.q8[%d] = %v, want %v", j, got, want)
		}
	}
	if _, err := f.Data("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tensor: %v", err)
	}
}

// mutate returns a copy of b with fn applied.
func mutate(b []byte, fn func([]byte) []byte) []byte {
	c := append([]byte(nil), b...)
	return fn(c)
}

func TestReadMalformed(t *testing.T) {
	good := handFile()
	// offsets inside handFile, derived from the layout above
	idxTensorInfo := bytes.Index(good, []byte("w.f32")) - 8
	le := binary.LittleEndian
	cases := []struct {
		name string
		b    []byte
		want error
		in   string // substring the message must contain
	}{
		{"empty", nil, ErrFormat, "shorter"},
		{"bad magic", mutate(good, func(b []byte) []byte { b[0] = 'X'; return b }), ErrFormat, "magic"},
		{"version 1", mutate(good, func(b []byte) []byte { le.PutUint32(b[4:], 1); return b }), ErrVersion, "version 1"},
		{"big endian", mutate(good, func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 3); return b }), ErrVersion, "big-endian"},
		{"huge tensor count", mutate(good, func(b []byte) []byte { le.PutUint64(b[8:], 1<<62); return b }), ErrFormat, "tensor count"},
		{"huge kv count", mutate(good, func(b []byte) []byte { le.PutUint64(b[16:], 1<<62); return b }), ErrFormat, "kv count"},
		{"huge key length", mutate(good, func(b []byte) []byte { le.PutUint64(b[24:], 1<<60); return b }), ErrFormat, "key length"},
		{"bad value type", mutate(good, func(b []byte) []byte { le.PutUint32(b[24+8+20:], 13); return b }), ErrValueType, "value type 13"},
		{"bool 2", mutate(good, func(b []byte) []byte { b[bytes.Index(b, []byte("k.bool"))+6+4] = 2; return b }), ErrFormat, "bool"},
		{"truncated", good[:300], ErrFormat, "end of file"},
		{"truncated data", good[:len(good)-40], ErrOffset, "outside"},
		{"n_dims 5", mutate(good, func(b []byte) []byte { le.PutUint32(b[idxTensorInfo+8+5:], 5); return b }), ErrTensorInfo, "5 dimensions"},
		{"unknown ggml type", mutate(good, func(b []byte) []byte { le.PutUint32(b[idxTensorInfo+8+5+4+16:], 4); return b }), ErrTensorInfo, "unknown ggml type 4"},
		{"misaligned offset", mutate(good, func(b []byte) []byte { le.PutUint64(b[idxTensorInfo+8+5+4+16+4:], 8); return b }), ErrOffset, "multiple of the alignment"},
		{"overlap", mutate(good, func(b []byte) []byte {
			i := bytes.Index(b, []byte("w.q8")) + 4 + 4 + 8 + 4
			le.PutUint64(b[i:], 0)
			return b
		}), ErrOffset, "overlaps"},
		{"q8 row 31", mutate(good, func(b []byte) []byte {
			i := bytes.Index(b, []byte("w.q8")) + 4 + 4
			le.PutUint64(b[i:], 31)
			return b
		}), ErrTensorInfo, "block size 32"},
		{"duplicate key", mutate(good, func(b []byte) []byte {
			i := bytes.Index(b, []byte("k.i8"))
			copy(b[i:], "k.u8")
			return b
		}), ErrDuplicate, "twice"},
		{"alignment zero", mutate(good, func(b []byte) []byte {
			i := bytes.Index(b, []byte("general.alignment")) + len("general.alignment") + 4
			le.PutUint32(b[i:], 0)
			return b
		}), ErrAlignment, "power of two"},
		{"alignment 24", mutate(good, func(b []byte) []byte {
			i := bytes.Index(b, []byte("general.alignment")) + len("general.alignment") + 4
			le.PutUint32(b[i:], 24)
			return b
		}), ErrAlignment, "power of two"},
		{"alignment wrong type", mutate(good, func(b []byte) []byte {
			i := bytes.Index(b, []byte("general.alignment")) + len("general.alignment")
			le.PutUint32(b[i:], 5) // i32
			return b
		}), ErrAlignment, "want u32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(c.b), int64(len(c.b)), "bad.gguf")
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), "bad.gguf") || !strings.Contains(err.Error(), c.in) {
				t.Errorf("message %q should name the file and contain %q", err, c.in)
			}
			if !IsFormatError(err) {
				t.Errorf("IsFormatError(%v) = false", err)
			}
		})
	}
}

func TestReadDuplicateTensorAndDepth(t *testing.T) {
	var x bb
	x.header(3, 2, 0)
	for i := 0; i < 2; i++ {
		x.str("t")
		x.u32(1)
		x.u64(1)
		x.u32(0)
		x.u64(uint64(32 * i))
	}
	x.padTo(32)
	x.raw(make([]byte, 64)...)
	_, err := NewReader(bytes.NewReader(x.b), int64(len(x.b)), "dup.gguf")
	if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), `"t"`) {
		t.Errorf("duplicate tensor: %v", err)
	}

	// arrays nested MaxArrayDepth+1 deep
	var y bb
	y.header(3, 0, 1)
	y.str("deep")
	y.u32(9)
	for i := 0; i < MaxArrayDepth; i++ {
		y.u32(9)
		y.u64(1)
	}
	y.u32(0)
	y.u64(0)
	_, err = NewReader(bytes.NewReader(y.b), int64(len(y.b)), "deep.gguf")
	if !errors.Is(err, ErrValueType) || !strings.Contains(err.Error(), "nested") {
		t.Errorf("depth: %v", err)
	}

	// version 2 is accepted; no tensors, no data section needed
	var z bb
	z.header(2, 0, 1)
	z.str("general.architecture")
	z.u32(8)
	z.str("gpt2")
	f, err := NewReader(bytes.NewReader(z.b), int64(len(z.b)), "v2.gguf")
	if err != nil || f.Version != 2 {
		t.Fatalf("v2: %v", err)
	}
	if s, _ := f.String("general.architecture"); s != "gpt2" {
		t.Errorf("arch %q", s)
	}
}

// A 40-byte file claiming 2^60 array elements must fail fast without
// allocating.
func TestReadHostileCounts(t *testing.T) {
	var x bb
	x.header(3, 0, 1)
	x.str("a")
	x.u32(9)
	x.u32(10)
	x.u64(1 << 60)
	allocs := testing.AllocsPerRun(10, func() {
		_, err := NewReader(bytes.NewReader(x.b), int64(len(x.b)), "h.gguf")
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("err %v", err)
		}
	})
	if allocs > 40 {
		t.Errorf("%v allocations for a hostile 40-byte file", allocs)
	}
}
