package svd

import "fmt"

// FroNorm returns the Frobenius norm ‖B·A‖_F of the product of B (m×r) and
// A (r×n), row-major float32, as √[Inner](B, A, B, A) = √tr((BᵀB)(AAᵀ)):
// float64 arithmetic, O((m+n)·r²) time, O(r²) memory, B·A never formed. A
// negative value from rounding (a product that is zero up to rounding)
// gives 0; r = 0 gives 0. Scales and diagonals are not applied (fold D into
// A; multiply the result by |s|). Errors as [Inner].
func FroNorm(b, a []float32, r int) (float64, error) {
	v, err := Inner(b, a, r, b, a, r)
	if err != nil {
		return 0, err
	}
	return sqrtPos(v), nil
}

// Inner returns the Frobenius inner product of two low-rank products of the
// same m×n shape,
//
//	⟨B₁A₁, B₂A₂⟩ = Σᵢⱼ (B₁A₁)ᵢⱼ·(B₂A₂)ᵢⱼ = tr((B₁ᵀB₂)·(A₂A₁ᵀ)),
//
// with B₁ m×r1, A₁ r1×n, B₂ m×r2, A₂ r2×n row-major float32 (m and n are
// inferred as len(b1)/r1 and len(a1)/r1). It forms the r1×r2 matrix B₁ᵀB₂
// and the r1·r2 dot products of the rows of A₁ and A₂, every product and
// sum in float64: O((m+n)·r1·r2) time, O(r1·r2) memory, no m×n matrix. The
// result carries float64 rounding only (relative to the sum of the absolute
// terms). Scales and diagonals are not applied: fold D into A and multiply
// the result by s₁·s₂. A zero rank gives 0. It returns [ErrShape] for a
// negative rank, factor lengths that are not multiples of their ranks, or
// products of different shapes.
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
