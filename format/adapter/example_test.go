package adapter_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

// Open an adapter directory, list its modules and read one module's factors.
func Example() {
	a, err := adapter.Load("../../testdata/tiny-llama-lora")
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	fmt.Println(a.Dialect, a.PeftType, a.Architecture, len(a.Modules), "modules")
	for _, m := range a.Modules {
		fmt.Printf("%s %s r=%d alpha=%g scale=%g %d→%d\n", m.Name, m.Kind, m.Rank, m.Alpha, m.Scale, m.InFeatures, m.OutFeatures)
	}
	f, err := a.Factors(a.Modules[1])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("A %d×%d, B %d×%d, ΔW = %g·B·A\n", f.Rank, f.InK(), f.Out, f.Rank, f.Scale)
	// Output:
	// peft LORA llama 4 modules
	// model.layers.0.self_attn.q_proj lora r=8 alpha=16 scale=2 32→32
	// model.layers.0.self_attn.v_proj lora r=8 alpha=16 scale=2 32→8
	// model.layers.1.self_attn.q_proj lora r=8 alpha=16 scale=2 32→32
	// model.layers.1.self_attn.v_proj lora r=8 alpha=16 scale=2 32→8
	// A 8×32, B 8×8, ΔW = 2·B·A
}

// Read a tensor of the adapter as float32 through the open safetensors file.
func ExampleAdapter_Factors() {
	a, err := adapter.Load("../../testdata/tiny-llama-lora")
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	m := a.Module("model.layers.0.self_attn.v_proj")
	raw, err := a.File.Float32(m.Tensors[adapter.RoleB].Name)
	if err != nil {
		log.Fatal(err)
	}
	f, err := a.Factors(m)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Tensors[adapter.RoleB].Name, m.Tensors[adapter.RoleB].Shape, len(raw) == len(f.B), raw[0] == f.B[0])
	// Output:
	// base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight [8 8] true true
}

// Write a PEFT adapter directory with two modules of different rank: the
// config gets an anchored rank_pattern entry for the odd one.
func ExampleWritePEFT() {
	dir, err := os.MkdirTemp("", "example-*")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	out := &adapter.Output{Modules: []adapter.OutModule{
		{Name: "model.layers.0.self_attn.q_proj", Rank: 2, In: 2, Out: 2, Scale: 2, A: []float32{1, 0, 0, 1}, B: []float32{1, 0, 0, 1}},
		{Name: "model.layers.0.self_attn.k_proj", Rank: 1, In: 2, Out: 2, Scale: 2, A: []float32{1, 1}, B: []float32{1, 1}},
		{Name: "model.layers.0.self_attn.v_proj", Rank: 2, In: 2, Out: 2, Scale: 2, A: []float32{1, 0, 0, 1}, B: []float32{0, 1, 1, 0}},
	}}
	if err := adapter.WritePEFT(dir, out); err != nil {
		log.Fatal(err)
	}
	a, err := adapter.Load(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	fmt.Println("r =", a.Config.R, "lora_alpha =", a.Config.LoraAlpha, "rank_pattern =", a.Config.RankPattern, "alpha_pattern =", a.Config.AlphaPattern)
	for _, m := range a.Modules {
		fmt.Println(m.Name, m.Rank, m.Scale)
	}
	_, err = os.Stat(filepath.Join(dir, "adapter_model.safetensors"))
	fmt.Println(err == nil)
	// Output:
	// r = 2 lora_alpha = 4 rank_pattern = [{^model\.layers\.0\.self_attn\.k_proj 1}] alpha_pattern = [{^model\.layers\.0\.self_attn\.k_proj 2}]
	// model.layers.0.self_attn.k_proj 1 2
	// model.layers.0.self_attn.q_proj 2 2
	// model.layers.0.self_attn.v_proj 2 2
	// true
}

// Validate an adapter: findings name the file, the tensor and the rule.
func ExampleValidate() {
	rep, err := adapter.Validate("../../testdata/tiny-llama-lora")
	if err != nil {
		log.Fatal(err) // unreadable input (format error, missing file)
	}
	fmt.Println(rep.Dialect, rep.Tensors, "tensors, clean:", rep.Clean(), len(rep.Findings), "findings")
	// Output:
	// peft 8 tensors, clean: true 0 findings
}

// The dense ΔW of a LoKr module whose factors are both whole matrices: the
// shapes hold no rank, so r and alpha come from the config (scale α/r = 2),
// and ΔW = 2·kron([1 2], [1; 3]).
func ExampleAdapter_Delta() {
	dir, err := os.MkdirTemp("", "example-*")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f32 := func(v ...float32) []byte {
		b := make([]byte, 4*len(v))
		if err := safetensors.FromFloat32(b, v, safetensors.F32); err != nil {
			log.Fatal(err)
		}
		return b
	}
	err = safetensors.WriteFile(filepath.Join(dir, adapter.PEFTWeightsFile), []safetensors.Tensor{
		{Name: "base_model.model.m.q_proj.lokr_w1", DType: safetensors.F32, Shape: []int{1, 2}, Data: f32(1, 2)},
		{Name: "base_model.model.m.q_proj.lokr_w2", DType: safetensors.F32, Shape: []int{2, 1}, Data: f32(1, 3)},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	cfg := `{"peft_type": "LOKR", "r": 4, "alpha": 8, "target_modules": ["q_proj"]}`
	if err := os.WriteFile(filepath.Join(dir, adapter.ConfigFile), []byte(cfg), 0o644); err != nil {
		log.Fatal(err)
	}
	a, err := adapter.Load(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	m := a.Modules[0]
	d, err := a.Delta(m)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Kind, "r =", m.Rank, "scale =", m.Scale, "out×in =", d.Out, "×", d.Cols())
	fmt.Println(d.W)
	// Output:
	// lokr r = 4 scale = 2 out×in = 2 × 2
	// [2 4 6 12]
}
