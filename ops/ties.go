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
	var two [2]int
	n := 0
	for i, t := range ts {
		if t != nil {
			if n < 2 {
				two[n] = i
			}
			n++
		}
	}
	if n == 2 && !frequency {
		disjointMerge2(out, ts[two[0]], ts[two[1]], w[two[0]], w[two[1]])
		return
	}
	disjointMergeBlocks(out, ts, w, frequency)
}

// disjointMerge2 is disjointMerge ("total" election) for exactly two
// present tensors a, b with weights wa, wb: the same float64 operations in
// the same order, fused into one pass over the elements.
func disjointMerge2(out, a, b []float32, wa, wb float64) {
	a, b = a[:len(out)], b[:len(out)]
	for k := range out {
		va, vb := a[k], b[k]
		m := 0.0
		m += float64(va)
		m += float64(vb)
		neg := m < 0
		num, cnt := 0.0, 0
		if (va > 0 && !neg) || (va < 0 && neg) {
			num += wa * float64(va)
			cnt++
		}
		if (vb > 0 && !neg) || (vb < 0 && neg) {
			num += wb * float64(vb)
			cnt++
		}
		out[k] = float32(num / float64(max(cnt, 1)))
	}
}

// disjointMergeBlocks is disjointMerge for any number of tensors.
func disjointMergeBlocks(out []float32, ts [][]float32, w []float64, frequency bool) {
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
