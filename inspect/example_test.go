package inspect_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/inspect"
	"github.com/adaptool/adaptool/internal/testgen"
)

// Summarize a PEFT adapter directory, reading tensor data for --stats.
func ExampleSummarize() {
	dir, _ := os.MkdirTemp("", "inspect-example")
	defer os.RemoveAll(dir)
	ad := filepath.Join(dir, "adapter")
	testgen.WriteLoRA(ad, testgen.LoRA{Seed: 1, R: 4, Alpha: 8, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.q_proj", In: 16, Out: 16},
		{Name: "model.layers.0.self_attn.v_proj", In: 16, Out: 2},
	}})
	s, err := inspect.Summarize(ad, inspect.Options{Stats: true})
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Format, s.PeftType, s.Totals.Tensors, "tensors", s.Totals.DTypes)
	for _, m := range s.Modules {
		fmt.Printf("%s %s r=%d scale=%g singular values: %d\n", m.Name, m.Kind, m.Rank, m.Scale, len(m.SingularValues))
	}
	fmt.Println(s.Warnings)
	// Output:
	// peft LORA 4 tensors map[F32:4]
	// model.layers.0.self_attn.q_proj lora r=4 scale=2 singular values: 4
	// model.layers.0.self_attn.v_proj lora r=4 scale=2 singular values: 2
	// [module "model.layers.0.self_attn.v_proj": rank 4 exceeds the layer width min(in 16, out 2) = 2, so rank(ΔW) ≤ 2]
}

// Per-tensor statistics over raw little-endian bytes in the stored dtype.
func ExampleStatsOf() {
	// BF16 values 1, −2, +Inf, 0
	raw := []byte{0x80, 0x3f, 0x00, 0xc0, 0x80, 0x7f, 0x00, 0x00}
	st, _ := inspect.StatsOf("t", "BF16", raw)
	fmt.Printf("n=%d min=%g max=%g mean=%.4g zeros=%d inf=%d\n", st.Count, st.Min, st.Max, st.Mean, st.Zeros, st.Inf)
	// Output:
	// n=4 min=-2 max=1 mean=-0.3333 zeros=1 inf=1
}
