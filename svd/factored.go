package svd

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// Term is one low-rank summand Weight·B·diag(Diag)·A of a factored matrix.
type Term struct {
	B      []float32 // m×Rank, row-major
	A      []float32 // Rank×n, row-major
	Rank   int
	Weight float64   // multiplies the term (user weight × adapter scale)
	Diag   []float32 // optional Rank diagonal (KaSA lora_diag, AdaLoRA lora_E); nil means I
}

// Factored returns the exact thin SVD of ΔW = Σ Weight·B·diag(Diag)·A
// (m×n) by QR-core, without forming ΔW. The decomposition holds
// p = min(m, n, ΣRank) triplets; trailing ones may be (numerically) zero.
// It returns an error wrapping [ErrShape] when a term's slices do not match
// m, n and its rank, and [ErrNonFinite] for NaN or Inf inputs.
func Factored(m, n int, terms []Term) (*Decomposition, error) {
	if m <= 0 || n <= 0 {
		return nil, fmt.Errorf("%w: %d×%d matrix", ErrShape, m, n)
	}
	total := 0
	for i, t := range terms {
		if err := t.check(m, n); err != nil {
			return nil, fmt.Errorf("term %d: %w", i, err)
		}
		total += t.Rank
	}
	// B̃ᵀ (R×m) and Ã (R×n), row-major: row off+j is B[:, j] and A[j, :];
	// the weights w·dⱼ go into the core: ΔW = B̃·diag(w)·Ã.
	bst := blas64.General{Rows: total, Cols: m, Stride: m, Data: make([]float64, total*m)}
	as := blas64.General{Rows: total, Cols: n, Stride: n, Data: make([]float64, total*n)}
	w := make([]float64, total)
	off := 0
	for _, t := range terms {
		r := t.Rank
		for j := 0; j < r; j++ {
			w[off+j] = t.Weight
			if t.Diag != nil {
				w[off+j] *= float64(t.Diag[j])
			}
			row := bst.Data[(off+j)*m : (off+j+1)*m]
			for i := range row {
				row[i] = float64(t.B[i*r+j])
			}
			arow := as.Data[(off+j)*n : (off+j+1)*n]
			for i, x := range t.A[j*n : (j+1)*n] {
				arow[i] = float64(x)
			}
		}
		off += r
	}
	return fromStacked(m, n, bst, as, w)
}

// fromStacked computes the SVD of bstᵀ·diag(w)·as (bst R×m, as R×n).
//
// Both stacks are factored as X = L·Q (Q with orthonormal rows), so
// ΔW = Q_Bᵀ·(L_Bᵀ·diag(w)·L_A)·Q_A and only the R×R core is decomposed.
// When both stacks are well conditioned (reciprocal condition of L at
// least gramRcond) L comes from the Cholesky factor of the Gram matrix
// X·Xᵀ (level-3 BLAS, Q never formed: Q = L⁻¹X is applied to the k leading
// core vectors only); otherwise, and for rank-deficient or wider-than-tall
// stacks, from a Householder LQ (Dgelqf), which is backward stable for any
// conditioning. bst and as are overwritten by the LQ path.
func fromStacked(m, n int, bst, as blas64.General, w []float64) (*Decomposition, error) {
	if bst.Rows == 0 {
		return &Decomposition{m: m, n: n}, nil
	}
	if lb, ok := gramFactor(bst); ok {
		if la, ok := gramFactor(as); ok {
			d, err := fromCore(m, n, bst, weightedCore(lb, w, la), as)
			if d != nil {
				d.lu, d.lv = lb, la
			}
			return d, err
		}
	}
	lb, rb, tb := lqReflectors(bst)
	la, ra, ta := lqReflectors(as)
	d, err := fromCore(m, n, rb, weightedCore(lb, w, la), ra)
	if d != nil {
		d.tu, d.tv = tb, ta
	}
	return d, err
}

// weightedCore returns lbᵀ·diag(w)·la.
func weightedCore(lb blas64.General, w []float64, la blas64.General) blas64.General {
	wl := blas64.General{Rows: la.Rows, Cols: la.Cols, Stride: la.Cols, Data: make([]float64, la.Rows*la.Cols)}
	for i := 0; i < la.Rows; i++ {
		for j := 0; j < la.Cols; j++ {
			wl.Data[i*wl.Stride+j] = w[i] * la.Data[i*la.Stride+j]
		}
	}
	return gemm(blas.Trans, blas.NoTrans, lb, wl)
}

// fromCore returns the SVD of quᵀ·core·qv where qu (kB×m) and qv (kA×n)
// have orthonormal rows and core is kB×kA (overwritten).
func fromCore(m, n int, qu, core, qv blas64.General) (*Decomposition, error) {
	cu, s, cvt, err := smallSVD(core)
	if err != nil {
		return nil, err
	}
	return &Decomposition{m: m, n: n, s: s, qu: qu, cu: cu, qv: qv, cv: transpose(cvt)}, nil
}

func transpose(a blas64.General) blas64.General {
	t := blas64.General{Rows: a.Cols, Cols: a.Rows, Stride: max(a.Rows, 1), Data: make([]float64, a.Rows*a.Cols)}
	for i := 0; i < a.Rows; i++ {
		for j := 0; j < a.Cols; j++ {
			t.Data[j*t.Stride+i] = a.Data[i*a.Stride+j]
		}
	}
	return t
}

func (t Term) check(m, n int) error {
	if t.Rank < 0 || t.Rank > math.MaxInt32 {
		return fmt.Errorf("%w: rank %d", ErrShape, t.Rank)
	}
	if len(t.B) != m*t.Rank {
		return fmt.Errorf("%w: B has %d values, want %d×%d", ErrShape, len(t.B), m, t.Rank)
	}
	if len(t.A) != t.Rank*n {
		return fmt.Errorf("%w: A has %d values, want %d×%d", ErrShape, len(t.A), t.Rank, n)
	}
	if t.Diag != nil && len(t.Diag) != t.Rank {
		return fmt.Errorf("%w: Diag has %d values, want %d", ErrShape, len(t.Diag), t.Rank)
	}
	if math.IsNaN(t.Weight) || math.IsInf(t.Weight, 0) {
		return fmt.Errorf("%w: weight %v", ErrNonFinite, t.Weight)
	}
	for _, s := range [][]float32{t.B, t.A, t.Diag} {
		if i := firstNonFinite(s); i >= 0 {
			return fmt.Errorf("%w: %v at index %d", ErrNonFinite, s[i], i)
		}
	}
	return nil
}

func firstNonFinite(x []float32) int {
	for i, v := range x {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return i
		}
	}
	return -1
}
