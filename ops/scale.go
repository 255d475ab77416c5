package ops

import "github.com/adaptool/adaptool/ops/kernels"

// ScaleBy returns λ·ΔW exactly by multiplying B by λ (A, Diag, Scale and
// the rank are kept).
func ScaleBy(l *LowRank, lambda float64) *LowRank {
	out := *l
	out.B = make([]float32, len(l.B))
	kernels.ScaleTo(out.B, float32(lambda), l.B)
	return &out
}

// ScaleIA3 returns 1 + λ·(l − 1): (IA)³ arithmetic in l − 1 space (merging
// notes §11), so λ = −1 is the negation 2 − l and λ = 0 the identity
// vector.
func ScaleIA3(l []float32, lambda float64) []float32 {
	out := make([]float32, len(l))
	for i, v := range l {
		out[i] = float32(1 + lambda*(float64(v)-1))
	}
	return out
}
