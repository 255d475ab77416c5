package ops

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/adaptool/adaptool/svd"
)

// LowRank is one module's low-rank delta ΔW = Scale·B·diag(Diag)·A in the
// PEFT (out, in) frame: B is Out×Rank and A is Rank×In, float32 row-major.
// Diag is the KaSA lora_diag or AdaLoRA lora_E (nil for plain LoRA).
type LowRank struct {
	Out, In, Rank int
	B, A          []float32
	Diag          []float32
	Scale         float64
}

// Validate checks the factor lengths and that Scale is finite.
func (l *LowRank) Validate() error {
	if l.Out <= 0 || l.In <= 0 || l.Rank < 0 {
		return fmt.Errorf("%w: delta %d×%d of rank %d", ErrIncompatible, l.Out, l.In, l.Rank)
	}
	if len(l.B) != l.Out*l.Rank || len(l.A) != l.Rank*l.In {
		return fmt.Errorf("%w: B has %d values (want %d×%d), A has %d (want %d×%d)",
			ErrIncompatible, len(l.B), l.Out, l.Rank, len(l.A), l.Rank, l.In)
	}
	if l.Diag != nil && len(l.Diag) != l.Rank {
		return fmt.Errorf("%w: diagonal has %d values, rank is %d", ErrIncompatible, len(l.Diag), l.Rank)
	}
	if math.IsNaN(l.Scale) || math.IsInf(l.Scale, 0) {
		return fmt.Errorf("%w: scale %v", ErrIncompatible, l.Scale)
	}
	return nil
}

// term returns the svd.Term w·Scale·B·diag·A.
func (l *LowRank) term(w float64) svd.Term {
	return svd.Term{B: l.B, A: l.A, Rank: l.Rank, Weight: w * l.Scale, Diag: l.Diag}
}

// foldedA returns diag(Diag)·A (A itself when Diag is nil).
func (l *LowRank) foldedA() []float32 {
	if l.Diag == nil {
		return l.A
	}
	a := make([]float32, len(l.A))
	for k := 0; k < l.Rank; k++ {
		kernels.ScaleTo(a[k*l.In:(k+1)*l.In], l.Diag[k], l.A[k*l.In:(k+1)*l.In])
	}
	return a
}

// AddTo adds w·ΔW to the dense Out×In row-major dst (kernels.RankUpdate).
func (l *LowRank) AddTo(dst []float32, w float64) {
	if l.Rank == 0 {
		return
	}
	kernels.RankUpdate(dst, l.Out, l.In, float32(w*l.Scale), l.B, l.foldedA(), l.Rank)
}

// Dense returns ΔW as a new Out×In float32 matrix.
func (l *LowRank) Dense() []float32 {
	d := make([]float32, l.Out*l.In)
	l.AddTo(d, 1)
	return d
}

// shapeOf returns the common (out, in) of the present inputs, or an error
// naming the two that differ.
func shapeOf(in []*LowRank) (out, inF int, err error) {
	first := -1
	for i, l := range in {
		if l == nil {
			continue
		}
		if err := l.Validate(); err != nil {
			return 0, 0, fmt.Errorf("input %d: %w", i+1, err)
		}
		if first < 0 {
			first, out, inF = i, l.Out, l.In
			continue
		}
		if l.Out != out || l.In != inF {
			return 0, 0, fmt.Errorf("%w: input %d is %d×%d but input %d is %d×%d",
				ErrIncompatible, first+1, out, inF, i+1, l.Out, l.In)
		}
	}
	if first < 0 {
		return 0, 0, fmt.Errorf("%w: module absent from every input", ErrIncompatible)
	}
	return out, inF, nil
}

// maxRank returns the largest rank among the present inputs.
func maxRank(in []*LowRank) int {
	r := 0
	for _, l := range in {
		if l != nil {
			r = max(r, l.Rank)
		}
	}
	return r
}

// splitPadded returns the √σ split of d at rank k, padding with zero
// columns of B and rows of A when d holds fewer than k triplets.
func splitPadded(d *svd.Decomposition, k int) (b, a []float32) {
	m, n := d.Dims()
	kk := min(k, d.Len())
	b0, a0 := d.Split(kk)
	if kk == k {
		return b0, a0
	}
	b = make([]float32, m*k)
	for i := 0; i < m; i++ {
		copy(b[i*k:i*k+kk], b0[i*kk:(i+1)*kk])
	}
	a = make([]float32, k*n)
	copy(a, a0)
	return b, a
}
