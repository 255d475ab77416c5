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
	// B̃ᵀ (R×m) and Ã (R×n), row-major: row off+j is w·dⱼ·B[:, j] and A[j, :].
	bst := blas64.General{Rows: total, Cols: m, Stride: m, Data: make([]float64, total*m)}
	as := blas64.General{Rows: total, Cols: n, Stride: n, Data: make([]float64, total*n)}
	off := 0
	for _, t := range terms {
		r := t.Rank
		for j := 0; j < r; j++ {
			c := t.Weight
			if t.Diag != nil {
				c *= float64(t.Diag[j])
			}
			row := bst.Data[(off+j)*m : (off+j+1)*m]
			for i := range row {
				row[i] = c * float64(t.B[i*r+j])
			}
			arow := as.Data[(off+j)*n : (off+j+1)*n]
			for i, x := range t.A[j*n : (j+1)*n] {
				arow[i] = float64(x)
			}
		}
		off += r
	}
	return fromStacked(m, n, bst, as)
}

// fromStacked computes the SVD of bstᵀ·as (bst R×m, as R×n), both
// overwritten: B̃ᵀ = L_B·Q_B and Ã = L_A·Q_A (thin LQ), so
// ΔW = Q_Bᵀ·(L_Bᵀ·L_A)·Q_A and only the R×R core is decomposed.
func fromStacked(m, n int, bst, as blas64.General) (*Decomposition, error) {
	if bst.Rows == 0 {
		return &Decomposition{m: m, n: n}, nil
	}
	lb, rb, tb := lqReflectors(bst)
	la, ra, ta := lqReflectors(as)
	d, err := fromCore(m, n, rb, gemm(blas.Trans, blas.NoTrans, lb, la), ra)
	if d != nil {
		d.tu, d.tv = tb, ta
	}
	return d, err
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
