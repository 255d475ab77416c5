package gguf_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/gguf"
)

func Example() {
	dir, _ := os.MkdirTemp("", "gguf-example")
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "adapter.gguf")

	a, _ := gguf.Encode([]float32{1, 2, 3, 4, 5, 6, 7, 8}, gguf.F32) // torch (r=2, in=4)
	b, _ := gguf.Encode([]float32{1, 0, 0, 1, 1, 1}, gguf.F16)       // torch (out=3, r=2)
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.type", Value: gguf.String("adapter")},
		{Key: "adapter.type", Value: gguf.String("lora")},
		{Key: "adapter.lora.alpha", Value: gguf.Float32(16)},
	}
	err := gguf.WriteFile(name, kv, []gguf.Tensor{
		{Name: "blk.0.attn_q.weight.lora_a", Type: gguf.F32, Dims: []uint64{4, 2}, Data: a},
		{Name: "blk.0.attn_q.weight.lora_b", Type: gguf.F16, Dims: []uint64{2, 3}, Data: b},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(gguf.IsGGUF(name))
	s, err := gguf.Summarize(name)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Type, s.Architecture, *s.LoraAlpha, s.LoraPairs, s.Ranks, len(s.Problems))
	for _, t := range s.Tensors {
		fmt.Println(t.Name, t.Type, t.Dims, t.Bytes)
	}
	// Output:
	// true
	// adapter llama 16 1 map[2:1] 0
	// blk.0.attn_q.weight.lora_a F32 [4 2] 32
	// blk.0.attn_q.weight.lora_b F16 [2 3] 12
}
