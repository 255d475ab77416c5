package ops

import (
	"fmt"
	"strings"
)

// Methods lists the merge methods, in documentation order.
var Methods = []string{
	"svd", "cat", "task_arithmetic", "linear",
	"ties", "ties_svd", "dare_linear", "dare_linear_svd", "dare_ties", "dare_ties_svd",
	"magnitude_prune", "magnitude_prune_svd",
}

// MergeParams are the parameters of a merge. The zero value is the default:
// method svd, every weight 1, rank = the largest input rank.
type MergeParams struct {
	// Method is one of Methods; "" means "svd".
	Method string `json:"method"`
	// Weights are wᵢ, one per input, acting on the true deltas
	// ΔWᵢ = sᵢ·Bᵢ·Aᵢ; nil means all 1.
	Weights []float64 `json:"weights,omitempty"`
	// FactorSpace selects PEFT's factor-space forms of ties, dare_linear,
	// dare_ties, magnitude_prune and task_arithmetic (add_weighted_adapter
	// without _svd): approximate, for compatibility. "linear" is always
	// factor-space.
	FactorSpace bool `json:"factor_space,omitempty"`
	RankParams
	ElementwiseParams
}

// method returns the normalised method name.
func (p MergeParams) method() string {
	if p.Method == "" {
		return "svd"
	}
	return p.Method
}

// Validate checks the method and every parameter; n is the input count.
func (p MergeParams) Validate(n int) error {
	ok := false
	for _, m := range Methods {
		ok = ok || p.method() == m
	}
	if !ok {
		return fmt.Errorf("%w: unknown method %q (want %s)", ErrParams, p.Method, strings.Join(Methods, ", "))
	}
	if p.Weights != nil && len(p.Weights) != n {
		return errWeights(len(p.Weights), n)
	}
	if err := p.RankParams.Validate(); err != nil {
		return err
	}
	return p.ElementwiseParams.Validate()
}

// weights returns the weights, defaulting to all 1.
func (p MergeParams) weights(n int) []float64 {
	if p.Weights != nil {
		return p.Weights
	}
	w := make([]float64, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// Exact reports whether the method's output equals the weighted sum Σ wᵢΔWᵢ
// up to float32 rounding when the rank suffices (cat, and svd or
// task_arithmetic at full rank).
func (p MergeParams) Exact() bool {
	switch p.method() {
	case "cat":
		return true
	case "svd":
		return p.Energy == 0 && p.Threshold == 0
	case "task_arithmetic":
		return !p.FactorSpace && p.Energy == 0 && p.Threshold == 0
	}
	return false
}

// MergeModule merges one module across the inputs (nil = absent, merged as
// zero). module names the module for error messages and DARE's seeds.
func MergeModule(p MergeParams, module string, in []*LowRank) (*LowRank, ModuleStats, error) {
	if err := p.Validate(len(in)); err != nil {
		return nil, ModuleStats{}, err
	}
	w := p.weights(len(in))
	m := p.method()
	base := strings.TrimSuffix(m, "_svd")
	var (
		res *LowRank
		st  ModuleStats
		err error
	)
	switch {
	case m == "cat":
		res, err = Cat(in, w)
		if err == nil {
			st, err = exactStats(res)
		}
	case m == "svd" || (m == "task_arithmetic" && !p.FactorSpace):
		res, st, err = SVD(in, w, p.RankParams)
	case m == "linear" || (p.FactorSpace && m == base):
		res, err = mergeFactors(m, in, w, p.ElementwiseParams, module)
		if err == nil {
			st, err = exactStats(res)
		}
	default:
		res, st, err = mergeDense(base, in, w, p.ElementwiseParams, p.RankParams, seedKey(module, "delta"))
	}
	if err != nil {
		return nil, ModuleStats{}, fmt.Errorf("module %s: %w", module, err)
	}
	return res, st, nil
}

// exactStats reports a result that represents itself exactly.
func exactStats(l *LowRank) (ModuleStats, error) {
	n, err := l.Norm()
	return ModuleStats{Rank: l.Rank, Energy: 1, Norm: n}, err
}
