package ops

// disjointMerge sets out to PEFT's TIES combination of the pruned tensors
// ts (nil = zeros; the others as long as out): the majority sign is elected on the unweighted tensors ("total":
// sign Σ Pᵢ, "frequency": sign Σ sign(Pᵢ); +1 when the sum is ≥ 0), then
// result = Σ wᵢ·Pᵢ·[sign(Pᵢ) = majority] / max(Σ [sign(Pᵢ) = majority], 1).
// Zeros never count.
func disjointMerge(out []float32, ts [][]float32, w []float64, frequency bool) {
	for j := range out {
		var m float64
		for _, t := range ts {
			if t == nil {
				continue
			}
			v := t[j]
			if frequency {
				m += float64(sgn(v))
			} else {
				m += float64(v)
			}
		}
		maj := int8(1)
		if m < 0 {
			maj = -1
		}
		var num float64
		cnt := 0
		for i, t := range ts {
			if t == nil {
				continue
			}
			if sgn(t[j]) == maj {
				num += w[i] * float64(t[j])
				cnt++
			}
		}
		out[j] = float32(num / float64(max(cnt, 1)))
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
