// Command gentestdata regenerates the sample adapters committed under the
// repository's testdata/ directory. The output is deterministic (fixed
// seeds, canonical safetensors writer, PEFT-exact config JSON), so running
// it again reproduces the committed bytes:
//
//	go run ./internal/testgen/cmd/gentestdata            # writes testdata/tiny-llama-lora
//	go run ./internal/testgen/cmd/gentestdata -o DIR     # writes DIR/tiny-llama-lora
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/internal/testgen"
)

// TinyLlama is the name of the sample adapter directory.
const TinyLlama = "tiny-llama-lora"

// generate writes every sample adapter under root.
func generate(root string) error {
	// A two-layer Llama-shaped LoRA on q_proj (32→32) and v_proj (32→8,
	// grouped-query attention), r=8, lora_alpha=16: 8 tensors, ~5 KB.
	tmp, err := os.MkdirTemp("", "gentestdata-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var mods []testgen.Module
	for l := 0; l < 2; l++ {
		mods = append(mods,
			testgen.Module{Name: fmt.Sprintf("model.layers.%d.self_attn.q_proj", l), In: 32, Out: 32},
			testgen.Module{Name: fmt.Sprintf("model.layers.%d.self_attn.v_proj", l), In: 32, Out: 8})
	}
	res, err := testgen.WriteLoRA(tmp, testgen.LoRA{Seed: 20260401, Modules: mods, R: 8, Alpha: 16})
	if err != nil {
		return err
	}
	cfg, err := adapter.ParseConfig([]byte(`{
  "base_model_name_or_path": "synthetic/tiny-llama",
  "bias": "none",
  "lora_dropout": 0.05,
  "peft_type": "LORA",
  "task_type": "CAUSAL_LM"
}`))
	if err != nil {
		return err
	}
	out := &adapter.Output{Config: cfg, TargetModules: []string{"q_proj", "v_proj"},
		Metadata: map[string]string{"generator": "adaptool internal/testgen/cmd/gentestdata (seed 20260401)"}}
	for _, m := range mods {
		f := res.Modules[m.Name]
		out.Modules = append(out.Modules, adapter.OutModule{Name: m.Name, Rank: f.Rank, In: f.In, Out: f.Out, Scale: 2, A: f.A, B: f.B})
	}
	return adapter.WritePEFT(filepath.Join(root, TinyLlama), out)
}

func main() {
	outDir := flag.String("o", "testdata", "directory to write the sample adapters into")
	flag.Parse()
	if err := generate(*outDir); err != nil {
		fmt.Fprintln(os.Stderr, "gentestdata:", err)
		os.Exit(1)
	}
}
