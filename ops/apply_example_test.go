package ops_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/adaptool/adaptool/ops"
	"github.com/adaptool/adaptool/quant"
)

// Folding a LoRA into an NF4 base: the weight's layout is rewritten with the
// same scheme, the other tensors are copied, and the report says what
// requantizing cost.
func ExampleApply_quantized() {
	dir, _ := os.MkdirTemp("", "apply")
	defer os.RemoveAll(dir)
	r := rand.New(rand.NewPCG(1, 1))
	w := make([]float32, 64*64)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	q, _ := quant.QuantizeTensor("model.q_proj.weight", []int{64, 64}, safetensors.BF16, w, quant.Params{Scheme: quant.SchemeNF4})
	norm := safetensors.Tensor{Name: "model.norm.weight", DType: safetensors.F32, Shape: []int{64}, Data: make([]byte, 256)}
	base := filepath.Join(dir, "model.safetensors")
	if err := safetensors.WriteFile(base, append(q.Tensors, norm), nil); err != nil {
		fmt.Println(err)
		return
	}
	lora := filepath.Join(dir, "lora")
	testgen.WriteLoRA(lora, testgen.LoRA{Seed: 1, R: 8, Modules: []testgen.Module{{Name: "model.q_proj", In: 64, Out: 64}}})

	rep, err := ops.Apply(ops.ApplyParams{Base: base, Adapters: []ops.AdapterScale{{Path: lora, Scale: 0.01}}, Verify: true},
		ops.RunOptions{Output: filepath.Join(dir, "merged.safetensors")})
	if err != nil {
		fmt.Println(err)
		return
	}
	m := rep.Modules[0]
	fmt.Printf("%s: %s/%s, %d tensors rewritten, %d copied\n", m.Name, m.Requant.Scheme, m.Requant.Layout, rep.Touched, rep.Copied)
	fmt.Printf("requantization error / ||dW|| = %.2f, within the verify bound: %v\n", *m.Requant.RelDelta, !m.Verify.Exceeded)
	// Output:
	// model.q_proj: nf4/bitsandbytes, 4 tensors rewritten, 1 copied
	// requantization error / ||dW|| = 0.37, within the verify bound: true
}
