package svd

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestFroNormInnerMatchDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range []struct{ m, n, r1, r2 int }{{9, 7, 3, 5}, {2, 11, 4, 1}, {1, 1, 1, 2}, {16, 3, 8, 8}} {
		b1, a1 := randF32(rng, c.m*c.r1, 1), randF32(rng, c.r1*c.n, 1)
		b2, a2 := randF32(rng, c.m*c.r2, 1), randF32(rng, c.r2*c.n, 1)
		p1, p2 := product32(b1, a1, c.m, c.r1, c.n), product32(b2, a2, c.m, c.r2, c.n)
		wantIn := mat.Sum(mulElem(p1, p2))
		got, err := Inner(b1, a1, c.r1, b2, a2, c.r2)
		if err != nil {
			t.Fatal(err)
		}
		if !near(got, wantIn, 1e-12*math.Max(1, math.Abs(wantIn))) {
			t.Errorf("%v: Inner = %.15g, dense %.15g", c, got, wantIn)
		}
		fn, err := FroNorm(b1, a1, c.r1)
		if err != nil {
			t.Fatal(err)
		}
		if want := mat.Norm(p1, 2); !near(fn, want, 1e-12*want) {
			t.Errorf("%v: FroNorm = %.15g, dense %.15g", c, fn, want)
		}
	}
	if _, err := Inner(make([]float32, 6), make([]float32, 6), 2, make([]float32, 6), make([]float32, 9), 3); !errors.Is(err, ErrShape) {
		t.Errorf("shape mismatch: err = %v", err)
	}
	if v, err := Inner(nil, nil, 0, nil, nil, 0); v != 0 || err != nil {
		t.Errorf("rank 0: %v, %v", v, err)
	}
}

func mulElem(a, b *mat.Dense) *mat.Dense {
	var c mat.Dense
	c.MulElem(a, b)
	return &c
}
