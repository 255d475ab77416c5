package ops

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/ops/kernels"
)

// weightedSum sets out to Σ wᵢ·tᵢ (nil = zeros), accumulated in float32.
func weightedSum(out []float32, ts [][]float32, w []float64) {
	clear(out)
	for i, t := range ts {
		if t != nil {
			kernels.Axpy(float32(w[i]), t, out)
		}
	}
}

// mergeFactors is PEFT's factor-space family (add_weighted_adapter with
// linear, ties, dare_linear, dare_ties, magnitude_prune; merging notes §3):
// with cᵢ = wᵢ·sᵢ, A′ = MERGE({Dᵢ·Aᵢ}, sign(cᵢ)·√|cᵢ|) and
// B′ = MERGE({Bᵢ}, √|cᵢ|), each elementwise operation run separately on A
// and on B, Scale 1. B′·A′ contains cross terms Bᵢ·Aⱼ: it is exact only
// for one input ("a very rough approximation", PEFT #3111). Present inputs
// must have equal ranks. "linear" is task_arithmetic here.
func mergeFactors(method string, in []*LowRank, w []float64, ep ElementwiseParams, module string) (*LowRank, error) {
	out, inF, err := shapeOf(in)
	if err != nil {
		return nil, err
	}
	if len(w) != len(in) {
		return nil, errWeights(len(w), len(in))
	}
	if method == "linear" {
		method = "task_arithmetic"
	}
	r := -1
	as, bs := make([][]float32, len(in)), make([][]float32, len(in))
	wa, wb := make([]float64, len(in)), make([]float64, len(in))
	for i, l := range in {
		if l == nil {
			continue
		}
		if r >= 0 && l.Rank != r {
			return nil, fmt.Errorf("%w: factor-space %s needs equal ranks, got %d and %d (use the exact svd or cat method)", ErrIncompatible, method, r, l.Rank)
		}
		r = l.Rank
		c := w[i] * l.Scale
		wb[i] = math.Sqrt(math.Abs(c))
		wa[i] = math.Copysign(wb[i], c)
		as[i] = append([]float32(nil), l.foldedA()...)
		bs[i] = append([]float32(nil), l.B...)
	}
	a, err := elementwise(method, as, wa, ep, seedKey(module, "lora_A"))
	if err != nil {
		return nil, err
	}
	b, err := elementwise(method, bs, wb, ep, seedKey(module, "lora_B"))
	if err != nil {
		return nil, err
	}
	return &LowRank{Out: out, In: inF, Rank: r, B: b, A: a, Scale: 1}, nil
}
