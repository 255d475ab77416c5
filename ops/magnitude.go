package ops

import (
	"math"

	"github.com/adaptool/adaptool/ops/kernels"
)

// magnitudePrune keeps the k = ⌊d·n⌋ elements of largest |t| (ties to the
// lower index) and zeroes the rest, in place; no rescale (PEFT
// merge_utils._magnitude_prune). d ≥ 1 leaves t unchanged. mask is scratch
// of len(t).
func magnitudePrune(t []float32, d float64, mask []bool) {
	if d >= 1 {
		return
	}
	k := int(math.Floor(d * float64(len(t))))
	kernels.TopKMask(mask, t, k)
	for i, keep := range mask {
		if !keep {
			t[i] = 0
		}
	}
}
