package ops

// Resize re-ranks one module exactly: the thin SVD of ΔW = s·B·D·A by
// QR-core, truncated per p (--rank K, --energy E or --threshold T; the
// default keeps the input rank, which re-factors the module in canonical
// √σ form with Scale 1). The stats give the kept energy and the Frobenius
// error √Σ_{i>k}σᵢ².
func Resize(l *LowRank, p RankParams) (*LowRank, ModuleStats, error) {
	if err := p.Validate(); err != nil {
		return nil, ModuleStats{}, err
	}
	return SVD([]*LowRank{l}, []float64{1}, p)
}
