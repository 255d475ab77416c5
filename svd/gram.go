package svd

import "fmt"

// FroNorm returns the Frobenius norm ‖B·A‖_F of the product of B (m×r) and
// A (r×n), row-major float32, as √[Inner](B, A, B, A) = √tr((BᵀB)(AAᵀ)):
// float64 sums, O((m+n)·r²) time, O(r²) memory, B·A never formed. A
// negative value from rounding (a product that is zero up to rounding)
// gives 0; r = 0 gives 0. Scales and diagonals are not applied (fold D into
// A; multiply the result by |s|), or use [NewGram] on a [LowRank]. Errors as
// [Inner].
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
//	⟨B₁A₁, B₂A₂⟩ = Σᵢⱼ (B₁A₁)ᵢⱼ·(B₂A₂)ᵢⱼ = Σ_pq (A₁A₂ᵀ)_pq·(B₁ᵀB₂)_pq,
//
// with B₁ m×r1, A₁ r1×n, B₂ m×r2, A₂ r2×n row-major float32 (m and n are
// inferred as len(b1)/r1 and len(a1)/r1). It is [LowRank.Inner] with scale
// 1 and no diagonal — the one implementation: the r1×r2 cross-Gram matrices
// by kernels.Dot (float32 products exact in float64, sums in float64),
// O((m+n)·r1·r2) time, O(r1·r2) memory, no m×n matrix. The result carries
// float64 rounding only. A zero rank gives 0. It returns [ErrShape] for a
// negative rank, factor lengths that are not multiples of their ranks or
// products of different shapes, and [ErrRankTooLarge] for a rank above
// [MaxGramRank].
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
	f := LowRank{Out: len(b1) / r1, In: len(a1) / r1, Rank: r1, B: b1, A: a1, Scale: 1}
	g := LowRank{Out: len(b2) / r2, In: len(a2) / r2, Rank: r2, B: b2, A: a2, Scale: 1}
	return f.Inner(g)
}
