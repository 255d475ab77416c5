// Command gen7b writes seeded synthetic PEFT LoRA adapters shaped like a
// Llama-2-7B adapter (32 layers × q,k,v,o 4096×4096, gate/up 4096→11008,
// down 11008→4096) for reproducing adaptool's merge performance figures:
//
//	go run ./internal/testgen/cmd/gen7b -o /tmp/7b -n 2
//	/usr/bin/time -v adaptool merge --method svd -o /tmp/7b/merged /tmp/7b/a0 /tmp/7b/a1
//
// Each adapter is a directory with adapter_config.json (r, lora_alpha = 2r)
// and adapter_model.safetensors. Factors are N(0, 1/√fan) Gaussian values
// from PCG(seed, adapter index), streamed to disk (memory stays at one
// tensor).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/safetensors"
)

func main() {
	out := flag.String("o", "", "output directory (adapters go to OUT/a0, OUT/a1, ...)")
	n := flag.Int("n", 2, "number of adapters")
	rank := flag.Int("r", 16, "LoRA rank")
	layers := flag.Int("layers", 32, "number of decoder layers")
	hidden := flag.Int("hidden", 4096, "hidden size")
	inter := flag.Int("intermediate", 11008, "MLP intermediate size")
	dtype := flag.String("dtype", "BF16", "tensor dtype: F32, F16 or BF16")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gen7b: missing -o OUT")
		os.Exit(3)
	}
	dt, err := safetensors.ParseDType(*dtype)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen7b:", err)
		os.Exit(3)
	}
	for i := 0; i < *n; i++ {
		dir := filepath.Join(*out, fmt.Sprintf("a%d", i))
		if err := write(dir, *rank, *layers, *hidden, *inter, dt, *seed, uint64(i)); err != nil {
			fmt.Fprintln(os.Stderr, "gen7b:", err)
			os.Exit(4)
		}
		fmt.Println(dir)
	}
}

type module struct {
	name    string
	in, out int
}

func modules(layers, hidden, inter int) []module {
	var ms []module
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		for _, x := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
			ms = append(ms, module{p + "self_attn." + x, hidden, hidden})
		}
		ms = append(ms, module{p + "mlp.gate_proj", hidden, inter}, module{p + "mlp.up_proj", hidden, inter}, module{p + "mlp.down_proj", inter, hidden})
	}
	return ms
}

func write(dir string, r, layers, hidden, inter int, dt safetensors.DType, seed, idx uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var ts []safetensors.Tensor
	for mi, m := range modules(layers, hidden, inter) {
		p := "base_model.model." + m.name
		for j, f := range []struct {
			role  string
			shape []int
			std   float64
		}{{"lora_A.weight", []int{r, m.in}, 1 / math.Sqrt(float64(m.in))}, {"lora_B.weight", []int{m.out, r}, 1 / math.Sqrt(float64(r))}} {
			n := f.shape[0] * f.shape[1]
			stream := uint64(mi)*2 + uint64(j)
			std := f.std
			ts = append(ts, safetensors.Tensor{Name: p + "." + f.role, DType: dt, Shape: f.shape,
				WriteTo: func(w io.Writer) error {
					rng := rand.New(rand.NewPCG(seed^idx<<32, stream))
					const chunk = 1 << 16
					vals := make([]float32, chunk)
					buf := make([]byte, chunk*dt.Bits()/8)
					for done := 0; done < n; {
						k := min(chunk, n-done)
						for i := range vals[:k] {
							vals[i] = float32(rng.NormFloat64() * std)
						}
						b := buf[:k*dt.Bits()/8]
						if err := safetensors.FromFloat32(b, vals[:k], dt); err != nil {
							return err
						}
						if _, err := w.Write(b); err != nil {
							return err
						}
						done += k
					}
					return nil
				}})
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, map[string]string{"generator": "adaptool gen7b"}); err != nil {
		return err
	}
	cfg := map[string]any{
		"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM",
		"target_modules":          []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
		"base_model_name_or_path": "synthetic-llama-7b",
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "adapter_config.json"), b, 0o644)
}
