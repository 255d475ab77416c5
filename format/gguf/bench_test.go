package gguf

import (
	"bytes"
	"io"
	"testing"
)

const benchBytes = 8 << 20

func benchTensors() []Tensor {
	data := make([]byte, benchBytes)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var ts []Tensor
	for i := 0; i < 8; i++ { // 8 tensors of 1 MiB F32 (ne [512, 512])
		ts = append(ts, Tensor{Name: "blk." + string(rune('0'+i)) + ".attn_q.weight.lora_a", Type: F32, Dims: []uint64{512, 512}, Data: data[i<<20 : (i+1)<<20]})
	}
	return ts
}

// BenchmarkCopy is the baseline: copy() of the same bytes.
func BenchmarkCopy(b *testing.B) {
	src := make([]byte, benchBytes)
	dst := make([]byte, benchBytes)
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	for b.Loop() {
		copy(dst, src)
	}
}

func BenchmarkWrite(b *testing.B) {
	ts := benchTensors()
	kv := []KV{{"general.architecture", String("llama")}, {"general.type", String("adapter")}}
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	for b.Loop() {
		if err := Write(io.Discard, kv, ts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	var buf bytes.Buffer
	if err := Write(&buf, []KV{{"general.architecture", String("llama")}}, benchTensors()); err != nil {
		b.Fatal(err)
	}
	r := bytes.NewReader(buf.Bytes())
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	for b.Loop() {
		f, err := NewReader(r, int64(buf.Len()), "bench")
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range f.Tensors {
			if _, err := f.Data(t.Name); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkEncodeF16(b *testing.B) {
	v := make([]float32, benchBytes/4)
	for i := range v {
		v[i] = float32(i) * 1e-3
	}
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(v, F16); err != nil {
			b.Fatal(err)
		}
	}
}
