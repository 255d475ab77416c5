package gguf

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzReader parses arbitrary bytes; whatever parses must summarize, yield
// its tensor data, and survive a write/read round trip unchanged.
func FuzzReader(f *testing.F) {
	f.Add(handFile())
	var buf bytes.Buffer
	Write(&buf, []KV{{"general.type", String("adapter")}, {"adapter.lora.alpha", Float32(8)}},
		[]Tensor{{Name: "blk.0.attn_q.weight.lora_a", Type: F32, Dims: []uint64{2, 1}, Data: make([]byte, 8)},
			{Name: "blk.0.attn_q.weight.lora_b", Type: F16, Dims: []uint64{1, 2}, Data: make([]byte, 4)}})
	f.Add(buf.Bytes())
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := NewReader(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			if !IsFormatError(err) {
				t.Fatalf("error without a format sentinel: %v", err)
			}
			return
		}
		file.Summary()
		var ts []Tensor
		for _, ti := range file.Tensors {
			d, err := file.Data(ti.Name)
			if err != nil {
				t.Fatalf("parsed file, unreadable tensor %s: %v", ti.Name, err)
			}
			if ti.Type == F32 || ti.Type == F16 || ti.Type == BF16 || ti.Type == Q8_0 {
				if _, err := Decode(d, ti.Type, ti.NumElements()); err != nil {
					t.Fatalf("decode %s: %v", ti.Name, err)
				}
			}
			ts = append(ts, Tensor{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: d})
		}
		var out bytes.Buffer
		if err := Write(&out, file.KV, ts); err != nil {
			t.Fatalf("write back: %v", err)
		}
		again, err := NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()), "again")
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if !reflect.DeepEqual(normKV(again.KV), normKV(file.KV)) || len(again.Tensors) != len(file.Tensors) {
			t.Fatalf("round trip changed the header")
		}
		for i, ti := range again.Tensors {
			d, _ := again.Data(ti.Name)
			if ti.Name != ts[i].Name || ti.Type != ts[i].Type || !reflect.DeepEqual(ti.Dims, ts[i].Dims) || !bytes.Equal(d, ts[i].Data) {
				t.Fatalf("round trip changed tensor %s", ti.Name)
			}
		}
	})
}

// normKV makes NaN floats comparable by comparing the rendered form.
func normKV(kv []KV) []string {
	var s []string
	for _, p := range kv {
		s = append(s, p.Key+"="+p.Value.Type.String()+":"+p.Value.String())
	}
	return s
}
