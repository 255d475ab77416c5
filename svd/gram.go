package svd

import "fmt"

// FroNorm returns ‖B·A‖_F for B (m×r) and A (r×n), row-major, computed as
// √tr((BᵀB)(AAᵀ)) from r×r Gram matrices in float64, without forming B·A.
func FroNorm(b, a []float32, r int) (float64, error) {
	v, err := Inner(b, a, r, b, a, r)
	if err != nil {
		return 0, err
	}
	return sqrtPos(v), nil
}

// Inner returns the Frobenius inner product ⟨B₁A₁, B₂A₂⟩ = tr((B₁ᵀB₂)(A₂A₁ᵀ))
// of two low-rank products of the same m×n shape (B₁ m×r1, A₁ r1×n,
// B₂ m×r2, A₂ r2×n), computed from r1×r2 Gram matrices in float64.
func Inner(b1, a1 []float32, r1 int, b2, a2 []float32, r2 int) (float64, error) {
	if r1 <= 0 || r2 <= 0 {
		if r1 < 0 || r2 < 0 {
			return 0, fmt.Errorf("%w: negative rank", ErrShape)
		}
		return 0, nil
	}
	if len(b1)%r1 != 0 || len(a1)%r1 != 0 || len(b2)%r2 != 0 || len(a2)%r2 != 0 {
		return 0, fmt.Errorf("%w: factor lengths not multiples of their ranks", ErrShape)
	}
	m, n := len(b1)/r1, len(a1)/r1
	if len(b2)/r2 != m || len(a2)/r2 != n {
		return 0, fmt.Errorf("%w: products of shapes %d×%d and %d×%d", ErrShape, m, n, len(b2)/r2, len(a2)/r2)
	}
	gb := make([]float64, r1*r2) // B₁ᵀB₂
	for i := 0; i < m; i++ {
		x, y := b1[i*r1:(i+1)*r1], b2[i*r2:(i+1)*r2]
		for p, u := range x {
			if u == 0 {
				continue
			}
			row := gb[p*r2 : (p+1)*r2]
			for q, v := range y {
				row[q] += float64(u) * float64(v)
			}
		}
	}
	var s float64
	for p := 0; p < r1; p++ {
		x := a1[p*n : (p+1)*n]
		for q := 0; q < r2; q++ {
			if gb[p*r2+q] == 0 {
				continue
			}
			y := a2[q*n : (q+1)*n]
			var d float64
			for j, u := range x {
				d += float64(u) * float64(y[j])
			}
			s += gb[p*r2+q] * d // (A₁A₂ᵀ)[p,q] = (A₂A₁ᵀ)[q,p]
		}
	}
	return s, nil
}
