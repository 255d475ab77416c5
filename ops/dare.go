package ops

import (
	"math"
	"math/rand/v2"
)

// randomPrune keeps each element with probability d (Bernoulli mask drawn
// from rng) and rescales the kept ones, in place (PEFT
// merge_utils._random_pruning with rescale): "" or "inverse" divides by d,
// "l1" restores the tensor's L1 norm (mergekit), "none" does not rescale.
// d ≥ 1 leaves t unchanged; d = 0 zeroes it.
func randomPrune(t []float32, d float64, rescale string, rng *rand.Rand) {
	if d >= 1 {
		return
	}
	var l1Before, l1After float64
	for i, v := range t {
		l1Before += math.Abs(float64(v))
		if rng.Float64() < d {
			l1After += math.Abs(float64(v))
		} else {
			t[i] = 0
		}
	}
	var f float64
	switch rescale {
	case "", "inverse":
		if d == 0 {
			return
		}
		f = 1 / d
	case "l1":
		if l1After == 0 {
			return
		}
		f = l1Before / l1After
	default:
		return
	}
	for i, v := range t {
		if v != 0 {
			t[i] = float32(float64(v) * f)
		}
	}
}
