package adapter

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// sevenB returns the header-only tensor list of a 7B-shaped LoRA (32 layers
// × q,k,v,o 4096², gate/up 4096→11008, down 11008→4096, rank 16).
func sevenB() []TensorRef {
	var refs []TensorRef
	for l := 0; l < 32; l++ {
		for _, m := range []struct {
			name    string
			in, out int
		}{{"self_attn.q_proj", 4096, 4096}, {"self_attn.k_proj", 4096, 4096}, {"self_attn.v_proj", 4096, 4096}, {"self_attn.o_proj", 4096, 4096},
			{"mlp.gate_proj", 4096, 11008}, {"mlp.up_proj", 4096, 11008}, {"mlp.down_proj", 11008, 4096}} {
			p := fmt.Sprintf("base_model.model.model.layers.%d.%s", l, m.name)
			refs = append(refs,
				TensorRef{Name: p + ".lora_A.weight", DType: safetensors.F32, Shape: []int{16, m.in}},
				TensorRef{Name: p + ".lora_B.weight", DType: safetensors.F32, Shape: []int{m.out, 16}})
		}
	}
	return refs
}

// BenchmarkClassify7B measures grouping and classifying the 448 tensor
// names of a 7B-shaped adapter (what Load does after the header parse).
func BenchmarkClassify7B(b *testing.B) {
	refs := sevenB()
	cfg, err := ParseConfig([]byte(`{"peft_type":"LORA","r":16,"lora_alpha":32,"target_modules":["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"],"rank_pattern":{"down_proj":16}}`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		cl := classify(refs, nil, cfg, true, nil)
		for _, m := range cl.modules {
			if _, _, _, err := cfg.ModuleScale(m.Name, PatternsModern); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkScanFloats measures the NaN/Inf/zero scan of Validate against a
// copy() of the same bytes (ratio = scan ns / copy ns).
func BenchmarkScanFloats(b *testing.B) {
	const n = 1 << 22 // 16 MiB of F32
	v := make([]float32, n)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	data := f32bytes(v...)
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.BF16} {
		src := data
		if dt == safetensors.BF16 {
			src = make([]byte, n*2)
			safetensors.FromFloat32(src, v, dt)
		}
		b.Run("scan-"+dt.String(), func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if _, err := scanFloats(bytes.NewReader(src), dt, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("copy-"+dt.String(), func(b *testing.B) {
			dst := make([]byte, len(src))
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}
