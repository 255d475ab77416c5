package ops

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/svd"
)

// RankParams chooses the rank of an SVD-based output (merge --method svd,
// the elementwise methods' factoring back, resize). The zero value keeps the
// largest input rank.
type RankParams struct {
	// Rank is K, the output rank; 0 means the largest input rank. With
	// Energy or Threshold it caps the chosen rank.
	Rank int `json:"rank,omitempty"`
	// Energy, when > 0, picks per module the smallest k keeping this
	// fraction of Σσᵢ² (the squared Frobenius norm).
	Energy float64 `json:"energy,omitempty"`
	// Threshold, when > 0, keeps the singular values σᵢ > Threshold.
	Threshold float64 `json:"threshold,omitempty"`
}

// Validate checks the ranges: Rank ≥ 0, Energy in [0, 1], Threshold ≥ 0,
// and at most one of Energy and Threshold.
func (p RankParams) Validate() error {
	switch {
	case p.Rank < 0:
		return fmt.Errorf("%w: rank %d < 0", ErrParams, p.Rank)
	case !(p.Energy >= 0 && p.Energy <= 1):
		return fmt.Errorf("%w: energy %v outside [0, 1]", ErrParams, p.Energy)
	case !(p.Threshold >= 0) || math.IsInf(p.Threshold, 0):
		return fmt.Errorf("%w: threshold %v", ErrParams, p.Threshold)
	case p.Energy > 0 && p.Threshold > 0:
		return fmt.Errorf("%w: energy and threshold are exclusive", ErrParams)
	}
	return nil
}

// choose returns the rank for decomposition d, def being the default K.
// The result is at least 1 and at most max(1, d.Len()).
func (p RankParams) choose(d *svd.Decomposition, def int) int {
	k := def
	if p.Rank > 0 {
		k = p.Rank
	}
	switch {
	case p.Energy > 0:
		k2 := d.RankForEnergy(p.Energy)
		if p.Rank > 0 {
			k2 = min(k2, p.Rank)
		}
		k = k2
	case p.Threshold > 0:
		k2 := d.RankForThreshold(p.Threshold)
		if p.Rank > 0 {
			k2 = min(k2, p.Rank)
		}
		k = k2
	}
	return max(1, min(k, d.Len()))
}

// ModuleStats reports how well a rank-k output represents the exact result
// of an operation on one module.
type ModuleStats struct {
	Rank     int     `json:"rank"`      // output rank
	Energy   float64 `json:"energy"`    // kept fraction of ‖ΔW‖_F²
	FroError float64 `json:"fro_error"` // ‖ΔW − ΔW_k‖_F
	Norm     float64 `json:"norm"`      // ‖ΔW‖_F of the exact result
}

func statsOf(d *svd.Decomposition, k int) ModuleStats {
	return ModuleStats{Rank: k, Energy: d.Energy(k), FroError: d.FroError(k), Norm: d.Norm()}
}

// SVD returns the best rank-K approximation (Eckart–Young) of the exact
// weighted sum Σ wᵢ·sᵢ·Bᵢ·Dᵢ·Aᵢ, computed by QR-core from the factors
// (never forming the out×in matrix), split as B = U√Σ, A = √ΣVᵀ with
// Scale 1. K follows p (default: the largest input rank), never exceeding
// min(out, in, Σrᵢ).
func SVD(in []*LowRank, w []float64, p RankParams) (*LowRank, ModuleStats, error) {
	d, err := factored(in, w)
	if err != nil {
		return nil, ModuleStats{}, err
	}
	k := p.choose(d, maxRank(in))
	b, a := splitPadded(d, k)
	m, n := d.Dims()
	return &LowRank{Out: m, In: n, Rank: k, B: b, A: a, Scale: 1}, statsOf(d, k), nil
}

// factored returns the exact SVD of Σ wᵢ·ΔWᵢ.
func factored(in []*LowRank, w []float64) (*svd.Decomposition, error) {
	out, inF, err := shapeOf(in)
	if err != nil {
		return nil, err
	}
	if len(w) != len(in) {
		return nil, errWeights(len(w), len(in))
	}
	terms := make([]svd.Term, 0, len(in))
	for i, l := range in {
		if l != nil && l.Rank > 0 {
			terms = append(terms, l.term(w[i]))
		}
	}
	return svd.Factored(out, inF, terms)
}

func errWeights(got, want int) error {
	return fmt.Errorf("%w: %d weights for %d inputs", ErrParams, got, want)
}
