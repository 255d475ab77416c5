package ops

// Cat returns the exact weighted sum Σ wᵢ·ΔWᵢ by concatenation (merging
// notes §2): A = [w₁s₁D₁A₁; w₂s₂D₂A₂; …] (Σrᵢ×in), B = [B₁ | B₂ | …]
// (out×Σrᵢ), Scale 1. Absent inputs (nil) contribute nothing; KaSA/AdaLoRA
// diagonals are folded into A. B·A equals the weighted sum up to float32
// rounding of the scaled A rows.
func Cat(in []*LowRank, w []float64) (*LowRank, error) {
	out, inF, err := shapeOf(in)
	if err != nil {
		return nil, err
	}
	if len(w) != len(in) {
		return nil, errWeights(len(w), len(in))
	}
	r := 0
	for _, l := range in {
		if l != nil {
			r += l.Rank
		}
	}
	res := &LowRank{Out: out, In: inF, Rank: r, B: make([]float32, out*r), A: make([]float32, r*inF), Scale: 1}
	off := 0
	for i, l := range in {
		if l == nil || l.Rank == 0 {
			continue
		}
		c := w[i] * l.Scale
		for k := 0; k < l.Rank; k++ {
			ck := c
			if l.Diag != nil {
				ck *= float64(l.Diag[k])
			}
			src := l.A[k*inF : (k+1)*inF]
			dst := res.A[(off+k)*inF : (off+k+1)*inF]
			for j, v := range src {
				dst[j] = float32(ck * float64(v))
			}
		}
		for row := 0; row < out; row++ {
			copy(res.B[row*r+off:row*r+off+l.Rank], l.B[row*l.Rank:(row+1)*l.Rank])
		}
		off += l.Rank
	}
	return res, nil
}
