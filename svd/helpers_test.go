package svd

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// randF32 returns n Gaussian float32 values scaled by s.
func randF32(rng *rand.Rand, n int, s float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * s)
	}
	return x
}

// denseSum forms Σ w·B·diag(D)·A in float64 by the textbook triple loop.
func denseSum(m, n int, terms []Term) *mat.Dense {
	w := mat.NewDense(m, n, nil)
	for _, t := range terms {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for k := 0; k < t.Rank; k++ {
					d := 1.0
					if t.Diag != nil {
						d = float64(t.Diag[k])
					}
					s += float64(t.B[i*t.Rank+k]) * d * float64(t.A[k*n+j])
				}
				w.Set(i, j, w.At(i, j)+t.Weight*s)
			}
		}
	}
	return w
}

// denseSVD returns gonum's full singular values of w (descending).
func denseSVD(t *testing.T, w *mat.Dense) (*mat.SVD, []float64) {
	t.Helper()
	var s mat.SVD
	if !s.Factorize(w, mat.SVDThin) {
		t.Fatal("gonum SVD failed")
	}
	return &s, s.Values(nil)
}

// reconstruct returns U·diag(σ)·Vᵀ of d in float64.
func reconstruct(d *Decomposition) *mat.Dense {
	w := mat.NewDense(d.m, d.n, nil)
	ut, vt := d.vectors(d.Len())
	for k, s := range d.s {
		for i := 0; i < d.m; i++ {
			x := ut.Data[k*ut.Stride+i] * s
			for j := 0; j < d.n; j++ {
				w.Set(i, j, w.At(i, j)+x*vt.Data[k*vt.Stride+j])
			}
		}
	}
	return w
}

// product32 returns B·A (m×r · r×n float32) in float64.
func product32(b, a []float32, m, r, n int) *mat.Dense {
	w := mat.NewDense(m, n, nil)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k < r; k++ {
				s += float64(b[i*r+k]) * float64(a[k*n+j])
			}
			w.Set(i, j, s)
		}
	}
	return w
}

func froDiff(a, b mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(a, b)
	return mat.Norm(&d, 2)
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }
