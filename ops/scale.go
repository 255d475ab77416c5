package ops

import "github.com/adaptool/adaptool/ops/kernels"

// ScaleBy returns λ·ΔW exactly by multiplying B by λ (A, Diag, Scale and
// the rank are kept).
func ScaleBy(l *LowRank, lambda float64) *LowRank {
	out := *l
	out.B = make([]float32, len(l.B))
	scaleTo(out.B, lambda, l.B)
	return &out
}

// scaleTo sets dst[i] = float32(λ·src[i]) with the product rounded once
// from its exact value whenever λ is a float32 (then the float32 product of
// kernels.ScaleTo is the correctly rounded λ·src[i]); for any other λ the
// product is formed in float64 and rounded to float32.
func scaleTo(dst []float32, lambda float64, src []float32) {
	if l32 := float32(lambda); float64(l32) == lambda {
		if len(dst) > 0 && len(src) > 0 && &dst[0] == &src[0] {
			kernels.Scale(l32, dst)
		} else {
			kernels.ScaleTo(dst, l32, src)
		}
		return
	}
	for i, v := range src {
		dst[i] = float32(lambda * float64(v))
	}
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
