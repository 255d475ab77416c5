package ops

// Negate returns −ΔW exactly by negating B only (negating both factors
// would be a no-op; PEM arithmetic, merging notes §11). Rank, Diag and
// Scale are kept.
func Negate(l *LowRank) *LowRank {
	return ScaleBy(l, -1)
}

// NegateIA3 returns the (IA)³ negation ⊖l = 2 − l of a scaling vector
// (PEM, merging notes §11): the hidden change l − 1 changes sign.
func NegateIA3(l []float32) []float32 {
	return ScaleIA3(l, -1)
}
