package ops

import (
	"fmt"
	"hash/fnv"
)

// DefaultDensity is the kept fraction used when ElementwiseParams.Density is
// nil: the TIES paper's top-20 %.
const DefaultDensity = 0.2

// ElementwiseParams are the parameters of the elementwise methods of PEFT's
// merge_utils (ties, dare_linear, dare_ties, magnitude_prune). The zero
// value is the default.
type ElementwiseParams struct {
	// Density is d, the kept fraction in [0, 1]; nil means DefaultDensity.
	// d ≥ 1 keeps every element (no DARE rescale, as PEFT); d = 0 keeps
	// none and gives a zero result (PEFT divides 0 by 0).
	Density *float64 `json:"density,omitempty"`
	// Majority is the TIES sign election: "total" (default, sign of Σ Tᵢ)
	// or "frequency" (sign of Σ sign(Tᵢ)).
	Majority string `json:"majority,omitempty"`
	// Rescale is the DARE rescale of kept elements: "" or "inverse"
	// (÷d, PEFT and the paper), "l1" (mergekit: keep each tensor's L1 norm),
	// "none".
	Rescale string `json:"rescale,omitempty"`
	// Seed seeds DARE's Bernoulli masks and the randomized SVD. Element j of
	// a tensor draws the j-th output of SplitMix64 started at
	// mix64(Seed ⊕ mix64(hash(module, role) ⊕ (input+1)·γ)) (counter-based),
	// so results depend neither on worker scheduling nor on tiling.
	Seed uint64 `json:"seed"`
}

// Float returns a pointer to v (for ElementwiseParams.Density).
func Float(v float64) *float64 { return &v }

// density returns d, validated.
func (p ElementwiseParams) density() (float64, error) {
	if p.Density == nil {
		return DefaultDensity, nil
	}
	d := *p.Density
	if !(d >= 0 && d <= 1) {
		return 0, fmt.Errorf("%w: density %v outside [0, 1]", ErrParams, d)
	}
	return d, nil
}

// Validate checks Density, Majority and Rescale.
func (p ElementwiseParams) Validate() error {
	if _, err := p.density(); err != nil {
		return err
	}
	switch p.Majority {
	case "", "total", "frequency":
	default:
		return fmt.Errorf("%w: majority %q (want total or frequency)", ErrParams, p.Majority)
	}
	switch p.Rescale {
	case "", "inverse", "l1", "none":
	default:
		return fmt.Errorf("%w: rescale %q (want inverse, l1 or none)", ErrParams, p.Rescale)
	}
	return nil
}

// seedKey hashes a module name and a role into a stream selector.
func seedKey(module, role string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(module))
	h.Write([]byte{0})
	h.Write([]byte(role))
	return h.Sum64()
}

// elementwise runs one of PEFT's merge_utils functions on equally long
// tensors ts (nil = absent = zeros), which it overwrites:
//
//	task_arithmetic  Σ wᵢ·Tᵢ
//	magnitude_prune  Σ wᵢ·topk(Tᵢ, d)
//	ties             Pᵢ = topk(Tᵢ, d); election on the unweighted Pᵢ;
//	                 Σ wᵢ·Pᵢ·maskᵢ / max(Σ maskᵢ, 1)
//	dare_linear      Σ wᵢ·(Tᵢ ⊙ Bern(d))/d
//	dare_ties        Pᵢ = (Tᵢ ⊙ Bern(d))/d, then as ties
//
// top-k keeps exactly k = ⌊d·n⌋ elements of largest |T| (ties to the lower
// index) via kernels.TopKMask, never a sort.
func elementwise(method string, ts [][]float32, w []float64, p ElementwiseParams, key uint64) ([]float32, error) {
	n := -1
	for _, t := range ts {
		if t != nil {
			n = len(t)
			break
		}
	}
	if n < 0 {
		return nil, fmt.Errorf("%w: no input tensor", ErrIncompatible)
	}
	d, err := p.density()
	if err != nil {
		return nil, err
	}
	var mask []bool
	for i, t := range ts {
		if t == nil {
			continue
		}
		switch method {
		case "magnitude_prune", "ties":
			if mask == nil {
				mask = make([]bool, n)
			}
			magnitudePrune(t, d, mask)
		case "dare_linear", "dare_ties":
			randomPrune(t, d, p.Rescale, p.stream(key, i))
		case "task_arithmetic":
		default:
			return nil, fmt.Errorf("%w: unknown elementwise method %q", ErrParams, method)
		}
	}
	out := make([]float32, n)
	if method == "ties" || method == "dare_ties" {
		disjointMerge(out, ts, w, p.Majority == "frequency")
	} else {
		weightedSum(out, ts, w)
	}
	return out, nil
}
