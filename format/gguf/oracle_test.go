package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// TestOracleGGUFParser parses the hand-built file and a writer-produced file
// with github.com/gpustack/gguf-parser-go (an independent Go GGUF parser, a
// test-only dependency) and compares every KV, tensor info and the data
// section offset with this package's reader.
func TestOracleGGUFParser(t *testing.T) {
	dir := t.TempDir()
	hand := filepath.Join(dir, "hand.gguf")
	if err := os.WriteFile(hand, handFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	vals := make([]float32, 64)
	for i := range vals {
		vals[i] = float32(i) * 0.25
	}
	var ts []Tensor
	for _, typ := range []GGMLType{F32, F16, BF16, Q8_0} {
		d, _ := Encode(vals, typ)
		ts = append(ts, Tensor{Name: "blk.0.attn_q.weight.lora_" + typ.String(), Type: typ, Dims: []uint64{32, 2}, Data: d})
	}
	written := filepath.Join(dir, "w.gguf")
	kv := append(handKV()[:14], KV{"adapter.lora.alpha", Float32(16)}, KV{"general.type", String("adapter")})
	if err := WriteFile(written, kv, ts); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{hand, written} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			o, err := parser.ParseGGUFFile(path)
			if err != nil {
				t.Fatalf("oracle: %v", err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if uint32(o.Header.Version) != f.Version || int(o.Header.MetadataKVCount) != len(f.KV) || int(o.Header.TensorCount) != len(f.Tensors) {
				t.Fatalf("header: oracle %+v", o.Header)
			}
			for i, okv := range o.Header.MetadataKV {
				mine := f.KV[i]
				if okv.Key != mine.Key || uint32(okv.ValueType) != uint32(mine.Value.Type) {
					t.Fatalf("kv %d: oracle %s/%v, mine %s/%v", i, okv.Key, okv.ValueType, mine.Key, mine.Value.Type)
				}
				if got := oracleValue(okv.Value); !reflect.DeepEqual(got, normalize(mine.Value)) {
					t.Errorf("kv %s: oracle %#v, mine %#v", okv.Key, got, normalize(mine.Value))
				}
			}
			if o.TensorDataStartOffset != f.DataOffset {
				t.Errorf("data offset: oracle %d, mine %d", o.TensorDataStartOffset, f.DataOffset)
			}
			for i, oti := range o.TensorInfos {
				mi := f.Tensors[i]
				if oti.Name != mi.Name || !reflect.DeepEqual(oti.Dimensions, mi.Dims) || uint32(oti.Type) != uint32(mi.Type) || oti.Offset != mi.Offset {
					t.Errorf("tensor %d: oracle %s %v %v @%d, mine %+v", i, oti.Name, oti.Dimensions, oti.Type, oti.Offset, mi)
				}
				if oti.Bytes() != uint64(mi.Size()) {
					t.Errorf("%s: oracle size %d, mine %d", mi.Name, oti.Bytes(), mi.Size())
				}
			}
			if path == written {
				a, _ := o.Header.MetadataKV.Get("adapter.lora.alpha")
				if a.ValueFloat32() != 16 {
					t.Errorf("alpha %v", a.ValueFloat32())
				}
				// data bytes at the oracle's offsets equal what was written
				raw, _ := os.ReadFile(path)
				for i, oti := range o.TensorInfos {
					start := o.TensorDataStartOffset + int64(oti.Offset)
					if !bytes.Equal(raw[start:start+int64(oti.Bytes())], ts[i].Data) {
						t.Errorf("%s: data at oracle offset differs", oti.Name)
					}
				}
			}
		})
	}
}

// oracleValue turns a gguf-parser-go value into plain Go values
// (arrays → []any of plain values).
func oracleValue(v any) any {
	if av, ok := v.(parser.GGUFMetadataKVArrayValue); ok {
		out := []any{}
		for _, e := range av.Array {
			out = append(out, oracleValue(e))
		}
		return out
	}
	return v
}

// normalize turns one of our values into the same shape.
func normalize(v Value) any {
	if v.Type != TypeArray {
		return v.X
	}
	out := []any{}
	rv := reflect.ValueOf(v.X)
	for i := 0; i < rv.Len(); i++ {
		e := rv.Index(i).Interface()
		if ev, ok := e.(Value); ok {
			out = append(out, normalize(ev))
		} else {
			out = append(out, e)
		}
	}
	return out
}
