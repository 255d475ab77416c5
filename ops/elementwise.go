package ops

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/adaptool/adaptool/svd"
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
	// Seed seeds DARE's Bernoulli masks and the randomized SVD. Each tensor
	// draws from PCG(Seed, hash(module, role, input)), so results do not
	// depend on worker scheduling.
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

func (p ElementwiseParams) rng(key uint64, input int) *rand.Rand {
	return rand.New(rand.NewPCG(p.Seed, key^(uint64(input+1)*0x9e3779b97f4a7c15)))
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
			randomPrune(t, d, p.Rescale, p.rng(key, i))
		case "task_arithmetic":
		default:
			return nil, fmt.Errorf("%w: unknown elementwise method %q", ErrParams, method)
		}
	}
	if method == "ties" || method == "dare_ties" {
		return disjointMerge(ts, w, n, p.Majority == "frequency"), nil
	}
	return weightedSum(ts, w, n), nil
}

// mergeDense applies an elementwise method to the dense deltas Δᵢ = sᵢ·Bᵢ·Dᵢ·Aᵢ
// of one module (built one at a time with kernels.RankUpdate) and factors
// the result back to rank K: exactly (LAPACK) when min(out, in) ≤ 512, else
// by randomized SVD (oversampling 10, 2 power iterations, seeded).
func mergeDense(method string, in []*LowRank, w []float64, ep ElementwiseParams, rp RankParams, key uint64) (*LowRank, ModuleStats, error) {
	out, inF, err := shapeOf(in)
	if err != nil {
		return nil, ModuleStats{}, err
	}
	if len(w) != len(in) {
		return nil, ModuleStats{}, errWeights(len(w), len(in))
	}
	ts := make([][]float32, len(in))
	for i, l := range in {
		if l != nil {
			ts[i] = l.Dense()
		}
	}
	res, err := elementwise(method, ts, w, ep, key)
	if err != nil {
		return nil, ModuleStats{}, err
	}
	clear(ts)
	return factorDense(out, inF, res, rp, maxRank(in), ep.Seed^key)
}

// denseExactLimit is the largest min(out, in) factored by exact LAPACK SVD.
const denseExactLimit = 512

// factorDense returns the rank-k factors of the dense out×in matrix x.
func factorDense(out, in int, x []float32, rp RankParams, def int, seed uint64) (*LowRank, ModuleStats, error) {
	total := kernels.SumSquares(x)
	var d *svd.Decomposition
	var err error
	if min(out, in) <= denseExactLimit && int64(out)*int64(in) <= 1<<24 {
		d, err = svd.Dense(out, in, x)
	} else {
		cap := def
		if rp.Rank > 0 {
			cap = rp.Rank
		}
		d, err = svd.Randomized(svd.Matrix32{Rows: out, Cols: in, Data: x}, max(cap, 1), svd.RandomizedOptions{Seed: seed})
	}
	if err != nil {
		return nil, ModuleStats{}, err
	}
	var k int
	if rp.Energy > 0 && total > 0 {
		// Energy relative to the exact ‖x‖², not to the sketch.
		k, cum := 0, 0.0
		for _, s := range d.Values() {
			if cum >= rp.Energy*total {
				break
			}
			cum += s * s
			k++
		}
		if rp.Rank > 0 {
			k = min(k, rp.Rank)
		}
		k = max(1, min(k, d.Len()))
		return finishDense(d, k, total)
	}
	k = rp.choose(d, def)
	return finishDense(d, k, total)
}

func finishDense(d *svd.Decomposition, k int, total float64) (*LowRank, ModuleStats, error) {
	m, n := d.Dims()
	b, a := splitPadded(d, k)
	var kept float64
	for _, s := range d.Values()[:min(k, d.Len())] {
		kept += s * s
	}
	st := ModuleStats{Rank: k, Energy: 1, FroError: math.Sqrt(math.Max(total-kept, 0)), Norm: math.Sqrt(total)}
	if total > 0 {
		st.Energy = math.Min(kept/total, 1)
	}
	return &LowRank{Out: m, In: n, Rank: k, B: b, A: a, Scale: 1}, st, nil
}
