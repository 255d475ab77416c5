package inspect_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/inspect"
	"github.com/adaptool/adaptool/internal/testgen"
)

// A rank-2 delta ΔW = s·B·A analysed from its factors alone.
func ExampleNewGram() {
	f := inspect.LowRank{
		Out: 3, In: 2, Rank: 2, Scale: 0.5,
		A: []float32{1, 0, 0, 1}, // A = I₂
		B: []float32{3, 0, 0, 4, 0, 0},
	}
	g, err := inspect.NewGram(f)
	if err != nil {
		panic(err)
	}
	sv, _ := g.SingularValues()
	sp := inspect.NewSpectrum(sv, g.FroNorm())
	fmt.Printf("‖ΔW‖_F = %.4g\n", sp.FroNorm)
	fmt.Printf("σ = %.4g\n", sp.SingularValues)
	fmt.Printf("effective rank %.4f, stable rank %.4f, rank for 90%% energy %d\n", sp.EffectiveRank, sp.StableRank, sp.Rank90)
	// Output:
	// ‖ΔW‖_F = 2.5
	// σ = [2 1.5]
	// effective rank 1.9796, stable rank 1.5625, rank for 90% energy 2
}

// Comparing two deltas exactly: cosine, relative distance and norm ratio.
func ExampleCompare() {
	a := inspect.LowRank{Out: 2, In: 2, Rank: 1, Scale: 1, A: []float32{1, 0}, B: []float32{1, 0}}
	b := inspect.LowRank{Out: 2, In: 2, Rank: 1, Scale: 2, A: []float32{1, 0}, B: []float32{1, 1}}
	cos, dist, ratio, _ := inspect.Compare(a, b)
	fmt.Printf("cosine %.4f, relative distance %.4f, norm ratio %.4f\n", cos, dist, ratio)
	// Output:
	// cosine 0.7071, relative distance 2.2361, norm ratio 2.8284
}

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
