package svd

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// Decomposition is a thin SVD ΔW = U·diag(σ)·Vᵀ of an m×n matrix, with σ
// descending and U (m×p), V (n×p) having orthonormal columns.
// A Decomposition is immutable and safe for concurrent use;
// [Decomposition.Truncate] returns a view.
//
// U and V are held in product form Uᵀ = C_Uᵀ·Q_U, Vᵀ = C_Vᵀ·Q_V (the
// thin LQ bases, with orthonormal rows, and the small core's singular
// vectors) and only the requested leading vectors are materialized, which
// saves the O(m·R·(R−k)) work of vectors that a truncation discards.
type Decomposition struct {
	m, n   int
	s      []float64      // p singular values, descending
	qu, cu blas64.General // Uᵀ = cuᵀ·qu (kU×p)ᵀ·(kU×m); cu.Rows == 0 means Uᵀ = qu
	qv, cv blas64.General // Vᵀ = cvᵀ·qv (kV×p)ᵀ·(kV×n); cv.Rows == 0 means Vᵀ = qv
	// tu, tv, when set, mean qu, qv hold LQ Householder reflectors (with
	// these scales) instead of explicit orthonormal rows.
	tu, tv []float64
	// lu, lv, when set (Rows > 0), mean qu, qv hold the stacked factors X
	// whose orthonormal rows are Q = L⁻¹X (Gram/Cholesky route).
	lu, lv blas64.General
}

// vectors returns U_kᵀ (k×m) and V_kᵀ (k×n) as row-major float64 matrices
// (row j is the j-th singular vector).
func (d *Decomposition) vectors(k int) (ut, vt blas64.General) {
	return leading(d.qu, d.cu, d.tu, d.lu, d.m, k), leading(d.qv, d.cv, d.tv, d.lv, d.n, k)
}

func leading(q, c blas64.General, tau []float64, l blas64.General, cols, k int) blas64.General {
	if c.Rows == 0 {
		return blas64.General{Rows: k, Cols: cols, Stride: max(q.Stride, 1), Data: q.Data}
	}
	ck := blas64.General{Rows: c.Rows, Cols: k, Stride: c.Stride, Data: c.Data}
	if l.Rows > 0 {
		return applyGram(ck, l, q)
	}
	if tau != nil {
		return applyQ(transpose(ck), q, tau)
	}
	return gemm(blas.Trans, blas.NoTrans, ck, q)
}

// Dims returns the dimensions m×n of the decomposed matrix.
func (d *Decomposition) Dims() (m, n int) { return d.m, d.n }

// Len returns the number of singular triplets held.
func (d *Decomposition) Len() int { return len(d.s) }

// Values returns a copy of the singular values, descending.
func (d *Decomposition) Values() []float64 { return append([]float64(nil), d.s...) }

// clamp limits k to [0, Len()].
func (d *Decomposition) clamp(k int) int { return max(0, min(k, len(d.s))) }

// Truncate returns the best rank-k approximation (Eckart–Young) as a view
// sharing storage with d. k is clamped to [0, Len()].
func (d *Decomposition) Truncate(k int) *Decomposition {
	t := *d
	t.s = d.s[:d.clamp(k):d.clamp(k)]
	return &t
}

// Norm returns the Frobenius norm √Σσᵢ².
func (d *Decomposition) Norm() float64 { return math.Sqrt(sumSq(d.s)) }

// Energy returns the fraction Σ_{i≤k}σᵢ² / Σσᵢ² kept by the first k
// triplets; a zero matrix keeps all of its (zero) energy, so Energy is 1.
func (d *Decomposition) Energy(k int) float64 {
	k = d.clamp(k)
	total := sumSq(d.s)
	if total == 0 {
		return 1
	}
	return math.Min(1, sumSq(d.s[:k])/total)
}

// FroError returns the Frobenius error √Σ_{i>k}σᵢ² of the rank-k truncation.
func (d *Decomposition) FroError(k int) float64 {
	return math.Sqrt(sumSq(d.s[d.clamp(k):]))
}

// RankForEnergy returns the smallest k whose truncation keeps at least the
// fraction e of Σσᵢ². e ≤ 0 gives 0; e ≥ 1 gives the numerical rank
// (σᵢ > max(m,n)·ε·σ₁); a zero matrix gives 0.
func (d *Decomposition) RankForEnergy(e float64) int {
	total := sumSq(d.s)
	if e <= 0 || total == 0 || math.IsNaN(e) {
		return 0
	}
	if e >= 1 {
		return d.RankForThreshold(float64(max(d.m, d.n)) * 0x1p-52 * d.s[0])
	}
	var cum float64
	for i, v := range d.s {
		cum += v * v
		if cum >= e*total {
			return i + 1
		}
	}
	return len(d.s)
}

// RankForThreshold returns the number of singular values strictly greater
// than t.
func (d *Decomposition) RankForThreshold(t float64) int {
	k := 0
	for k < len(d.s) && d.s[k] > t {
		k++
	}
	return k
}

// Split returns the rank-k factors with the singular values split evenly:
// B = U_k·diag(√σ) (m×k) and A = diag(√σ)·V_kᵀ (k×n), float32 row-major,
// so that B·A is the best rank-k approximation. k is clamped to [0, Len()].
func (d *Decomposition) Split(k int) (b, a []float32) {
	b, a, _ = d.SplitValues(d.s[:d.clamp(k)])
	return b, a
}

// SplitValues is [Decomposition.Split] with replacement singular values
// sigma (for re-weighted spectra): B = U_k·diag(√σ′), A = diag(√σ′)·V_kᵀ with
// k = len(sigma). Each σ′ must be finite and ≥ 0 and k ≤ Len().
func (d *Decomposition) SplitValues(sigma []float64) (b, a []float32, err error) {
	k := len(sigma)
	if k > len(d.s) {
		return nil, nil, fmt.Errorf("%w: %d values for a decomposition of %d triplets", ErrShape, k, len(d.s))
	}
	for _, v := range sigma {
		if !(v >= 0) || math.IsInf(v, 0) {
			return nil, nil, fmt.Errorf("%w: singular value %v", ErrNonFinite, v)
		}
	}
	ut, vt := d.vectors(k)
	b = make([]float32, d.m*k)
	a = make([]float32, k*d.n)
	for j, x := range sigma {
		r := math.Sqrt(x)
		for i, u := range ut.Data[j*ut.Stride : j*ut.Stride+d.m] {
			b[i*k+j] = float32(u * r)
		}
		ar := a[j*d.n : (j+1)*d.n]
		for i, v := range vt.Data[j*vt.Stride : j*vt.Stride+d.n] {
			ar[i] = float32(v * r)
		}
	}
	return b, a, nil
}

// Vectors returns the first k singular vectors: U_k (m×k, row-major) and
// V_kᵀ (k×n, row-major), as float32. k is clamped to [0, Len()].
func (d *Decomposition) Vectors(k int) (u, vt []float32) {
	k = d.clamp(k)
	ut64, vt64 := d.vectors(k)
	u = make([]float32, d.m*k)
	vt = make([]float32, k*d.n)
	for j := 0; j < k; j++ {
		for i, x := range ut64.Data[j*ut64.Stride : j*ut64.Stride+d.m] {
			u[i*k+j] = float32(x)
		}
		for i, x := range vt64.Data[j*vt64.Stride : j*vt64.Stride+d.n] {
			vt[j*d.n+i] = float32(x)
		}
	}
	return u, vt
}

func sumSq(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return s
}
