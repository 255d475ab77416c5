package ops

// disjointMerge sets out to PEFT's TIES combination of the pruned tensors
// ts (nil = zeros; the others as long as out): the majority sign is elected
// on the unweighted tensors ("total": sign Σ Pᵢ, "frequency":
// sign Σ sign(Pᵢ); +1 when the sum is ≥ 0 or NaN), then
// result = Σ wᵢ·Pᵢ·[sign(Pᵢ) = majority] / max(Σ [sign(Pᵢ) = majority], 1).
// Zeros (and NaN) never count. Sums run over the inputs in order, in
// float64; the work goes in blocks of elements so that the inner loops have
// no per-input branches.
func disjointMerge(out []float32, ts [][]float32, w []float64, frequency bool) {
	const blk = 256
	var m, num [blk]float64
	var cnt [blk]int32
	for j0 := 0; j0 < len(out); j0 += blk {
		n := min(blk, len(out)-j0)
		ms, nums, cnts := m[:n], num[:n], cnt[:n]
		clear(ms)
		clear(nums)
		clear(cnts)
		for _, t := range ts {
			if t == nil {
				continue
			}
			tt := t[j0 : j0+n]
			if frequency {
				for k, v := range tt {
					ms[k] += float64(sgn(v))
				}
			} else {
				for k, v := range tt {
					ms[k] += float64(v)
				}
			}
		}
		for i, t := range ts {
			if t == nil {
				continue
			}
			tt, wi := t[j0:j0+n], w[i]
			for k, v := range tt {
				neg := ms[k] < 0 // majority −1; +1 otherwise (ties and NaN)
				if (v > 0 && !neg) || (v < 0 && neg) {
					nums[k] += wi * float64(v)
					cnts[k]++
				}
			}
		}
		o := out[j0 : j0+n]
		for k := range o {
			o[k] = float32(nums[k] / float64(max(cnts[k], 1)))
		}
	}
}

func sgn(v float32) int8 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
