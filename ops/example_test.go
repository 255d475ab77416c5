package ops_test

import (
	"fmt"

	"github.com/adaptool/adaptool/ops"
)

// The worked example of the merging notes §7: two rank-2 adapters of a 2×3
// layer with scales 2 and 1, weights 1 and −0.5.
func example7() []*ops.LowRank {
	return []*ops.LowRank{
		{Out: 2, In: 3, Rank: 2, Scale: 2, A: []float32{1, -2, 3, 0.5, 4, -1.5}, B: []float32{1, 0.25, -2, 1.5}},
		{Out: 2, In: 3, Rank: 2, Scale: 1, A: []float32{-3, 1, 2.5, 2, -0.75, 1.25}, B: []float32{0.5, -1, 1.5, 2}},
	}
}

func ExampleCat() {
	res, err := ops.Cat(example7(), []float64{1, -0.5})
	if err != nil {
		panic(err)
	}
	fmt.Println("rank", res.Rank, "scale", res.Scale)
	fmt.Println("ΔW =", res.Dense())
	// Output:
	// rank 4 scale 1
	// ΔW = [4 -2.625 5.25 -2.25 20 -19.625]
}

func ExampleMergeModule() {
	p := ops.MergeParams{Method: "svd", Weights: []float64{1, -0.5}, RankParams: ops.RankParams{Rank: 1}}
	res, st, err := ops.MergeModule(p, "example", example7())
	if err != nil {
		panic(err)
	}
	fmt.Printf("rank %d keeps %.4f of the energy, Frobenius error %.4f\n", res.Rank, st.Energy, st.FroError)
	// Output:
	// rank 1 keeps 0.9816 of the energy, Frobenius error 3.9382
}
