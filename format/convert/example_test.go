package convert_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/convert"
	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/internal/testgen"
)

func Example() {
	dir, _ := os.MkdirTemp("", "convert-example")
	defer os.RemoveAll(dir)
	// a PEFT adapter: r=8, lora_alpha=16 (scale 2) on two Qwen2 projections
	gen, _ := testgen.WriteLoRA(filepath.Join(dir, "peft"), testgen.LoRA{Seed: 1, R: 8, Alpha: 16, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.v_proj", In: 64, Out: 32},
		{Name: "model.layers.0.mlp.down_proj", In: 128, Out: 64},
	}})
	a, err := adapter.Load(gen.Dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()

	res, err := convert.ToKohya(a, filepath.Join(dir, "kohya.safetensors"), convert.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range res.Modules {
		fmt.Println(m.From, "→", m.To, "scale", m.Scale)
	}

	res, err = convert.ToGGUF(a, filepath.Join(dir, "adapter.gguf"), convert.GGUFOptions{Arch: "qwen2", OutType: "f16"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("gguf alpha", *res.Alpha)
	f, _ := gguf.Open(filepath.Join(dir, "adapter.gguf"))
	defer f.Close()
	for _, t := range f.Tensors {
		fmt.Println(t.Name, t.Type, t.Dims)
	}
	// Output:
	// model.layers.0.mlp.down_proj → lycoris_model_layers_0_mlp_down_proj scale 2
	// model.layers.0.self_attn.v_proj → lycoris_model_layers_0_self_attn_v_proj scale 2
	// gguf alpha 16
	// blk.0.ffn_down.weight.lora_a F16 [128 8]
	// blk.0.ffn_down.weight.lora_b F16 [8 64]
	// blk.0.attn_v.weight.lora_a F16 [64 8]
	// blk.0.attn_v.weight.lora_b F16 [8 32]
}
