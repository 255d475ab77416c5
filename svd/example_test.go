package svd_test

import (
	"fmt"

	"github.com/adaptool/adaptool/svd"
)

// Two rank-1 adapters, ΔW = 2·e₁·(3,0,0) + 1·e₂·(0,4,0) = diag(6, 4) in 2×3.
func ExampleFactored() {
	d, err := svd.Factored(2, 3, []svd.Term{
		{B: []float32{1, 0}, A: []float32{3, 0, 0}, Rank: 1, Weight: 2},
		{B: []float32{0, 1}, A: []float32{0, 4, 0}, Rank: 1, Weight: 1},
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("σ = %.4g\n", d.Values())
	fmt.Printf("rank for 60%% energy: %d, error at rank 1: %.4g\n", d.RankForEnergy(0.6), d.FroError(1))
	b, a := d.Split(1)
	fmt.Printf("B = %.4g, A = %.4g\n", abs(b), abs(a))
	// Output:
	// σ = [6 4]
	// rank for 60% energy: 1, error at rank 1: 4
	// B = [2.449 0], A = [2.449 0 0]
}

func ExampleFroNorm() {
	// B·A = [[1,2],[2,4]] has ‖·‖_F = 5.
	n, _ := svd.FroNorm([]float32{1, 2}, []float32{1, 2}, 1)
	fmt.Println(n)
	// Output: 5
}

func ExampleParseFn() {
	f, _ := svd.ParseFn("soft:1")
	s, _ := f.Apply([]float64{3, 2, 0.5})
	fmt.Println(s)
	// Output: [2 1 0]
}

func abs(x []float32) []float32 {
	for i, v := range x {
		if v < 0 {
			x[i] = -v
		}
	}
	return x
}
