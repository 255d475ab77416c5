package svd

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/blas64"
)

// Dense returns the exact thin SVD of the m×n row-major matrix data by
// LAPACK's Dgesvd in float64. It costs O(mn·min(m,n)) time and 8mn bytes:
// use it for small matrices only (4096² takes minutes; use [Randomized]).
func Dense(m, n int, data []float32) (*Decomposition, error) {
	if m <= 0 || n <= 0 || len(data) != m*n {
		return nil, fmt.Errorf("%w: %d values for %d×%d", ErrShape, len(data), m, n)
	}
	if i := firstNonFinite(data); i >= 0 {
		return nil, fmt.Errorf("%w: %v at index %d", ErrNonFinite, data[i], i)
	}
	a := blas64.General{Rows: m, Cols: n, Stride: n, Data: make([]float64, m*n)}
	for i, v := range data {
		a.Data[i] = float64(v)
	}
	u, s, vt, err := smallSVD(a)
	if err != nil {
		return nil, err
	}
	return &Decomposition{m: m, n: n, s: s, qu: transpose(u), qv: vt}, nil
}

func sqrtPos(v float64) float64 {
	if v <= 0 {
		return 0
	}
	return math.Sqrt(v)
}
