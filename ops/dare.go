package ops

import "math"

// golden is SplitMix64's increment γ (2⁶⁴/φ).
const golden = 0x9e3779b97f4a7c15

// mix64 is SplitMix64's output function (Steele, Lea & Flood, OOPSLA 2014).
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// stream returns the SplitMix64 starting state of DARE's mask for one
// tensor: mix64(Seed ⊕ mix64(key ⊕ (input+1)·γ)), key naming the module and
// role (seedKey). Element j of the tensor (row-major index) draws
// dareUniform(state, j), the j-th output of that SplitMix64 sequence: a
// counter-based generator, so a mask does not depend on the order, the
// tiling or the worker that draws it.
func (p ElementwiseParams) stream(key uint64, input int) uint64 {
	return mix64(p.Seed ^ mix64(key^uint64(input+1)*golden))
}

// dareUniform returns the j-th (0-based) output of SplitMix64 started at state,
// mix64(state + (j+1)·γ), as a float64 in [0, 1) (its top 53 bits).
func dareUniform(state, j uint64) float64 {
	return float64(mix64(state+(j+1)*golden)>>11) * 0x1p-53
}

// dareDrop zeroes the elements of t dropped by DARE's Bernoulli(d) mask,
// element i being number off+i of its tensor (kept when uniform < d), and
// adds Σ|t| before and after the drop to l1 (in index order, float64).
func dareDrop(t []float32, off uint64, d float64, state uint64, l1 *[2]float64) {
	for i, v := range t {
		a := math.Abs(float64(v))
		l1[0] += a
		if dareUniform(state, off+uint64(i)) < d {
			l1[1] += a
		} else {
			t[i] = 0
		}
	}
}

// dareFactor returns the rescale of DARE's kept elements and whether there
// is one: "" or "inverse" 1/d (none at d = 0), "l1" Σ|t| before / after the
// drop (mergekit; none when nothing is kept), "none" none.
func dareFactor(d float64, rescale string, l1 [2]float64) (float64, bool) {
	switch rescale {
	case "", "inverse":
		return 1 / d, d != 0
	case "l1":
		return l1[0] / l1[1], l1[1] != 0
	}
	return 0, false
}

// dareScale multiplies the non-zero elements of t by f (rounded once).
func dareScale(t []float32, f float64) {
	for i, v := range t {
		if v != 0 {
			t[i] = float32(float64(v) * f)
		}
	}
}

// randomPrune keeps each element with probability d (the Bernoulli mask of
// stream state, see ElementwiseParams.stream) and rescales the kept ones,
// in place (PEFT merge_utils._random_pruning with rescale): "" or
// "inverse" divides by d, "l1" restores the tensor's L1 norm (mergekit),
// "none" does not rescale. d ≥ 1 leaves t unchanged; d = 0 zeroes it.
func randomPrune(t []float32, d float64, rescale string, state uint64) {
	if d >= 1 {
		return
	}
	var l1 [2]float64
	dareDrop(t, 0, d, state, &l1)
	if f, ok := dareFactor(d, rescale, l1); ok {
		dareScale(t, f)
	}
}
