package ops

import "github.com/adaptool/adaptool/format/adapter"

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

// ResizeAdapter re-ranks every low-rank module of the adapter at path
// (exact SVD by QR-core, truncated per p) and writes a PEFT directory with
// Scale 1 per module, reporting per module the kept energy and the
// Frobenius error. DoRA modules keep their magnitude vector; modules_to_save
// pass through; other kinds are refused.
func ResizeAdapter(path string, p RankParams, o RunOptions) (*Report, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return runSingle(path, singleOp{
		name: "resize", params: p,
		plan: func(m *adapter.Module, out, ink int) int {
			k := m.Rank
			if p.Rank > 0 {
				k = p.Rank
			}
			return max(1, min(k, out, ink, max(m.Rank, p.Rank)))
		},
		do: func(name string, l *LowRank) (*LowRank, ModuleReport, bool, error) {
			res, st, err := Resize(l, p)
			return res, ModuleReport{Stats: &st}, false, err
		},
	}, o)
}
