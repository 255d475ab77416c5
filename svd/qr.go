package svd

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// thinQR factors the rows×cols matrix a (overwritten) as a = Q·R with
// k = min(rows, cols): Q is rows×k with orthonormal columns and R is k×cols
// upper trapezoidal. It never builds a rows×rows Q.
func thinQR(a blas64.General) (q, r blas64.General) {
	rows, cols := a.Rows, a.Cols
	k := min(rows, cols)
	r = blas64.General{Rows: k, Cols: cols, Stride: max(cols, 1), Data: make([]float64, k*cols)}
	q = blas64.General{Rows: rows, Cols: k, Stride: max(k, 1), Data: make([]float64, rows*k)}
	if k == 0 {
		return q, r
	}
	tau := make([]float64, k)
	work := []float64{0}
	lapack64.Geqrf(a, tau, work, -1)
	work = make([]float64, max(int(work[0]), 1))
	lapack64.Geqrf(a, tau, work, len(work))
	for i := 0; i < k; i++ {
		copy(r.Data[i*cols+i:(i+1)*cols], a.Data[i*a.Stride+i:i*a.Stride+cols])
	}
	// The first k columns of a hold the k reflectors.
	v := blas64.General{Rows: rows, Cols: k, Stride: a.Stride, Data: a.Data}
	work = []float64{0}
	lapack64.Orgqr(v, tau, work, -1)
	work = make([]float64, max(int(work[0]), 1))
	lapack64.Orgqr(v, tau, work, len(work))
	for i := 0; i < rows; i++ {
		copy(q.Data[i*k:(i+1)*k], a.Data[i*a.Stride:i*a.Stride+k])
	}
	return q, r
}

// lqReflectors factors the rows×cols matrix a (overwritten) as a = L·Q with
// k = min(rows, cols), L rows×k lower trapezoidal. For the row-major tall
// factors of an adapter this is the QR of aᵀ (aᵀ = Qᵀ·Lᵀ) with every
// reflector applied along contiguous rows. Q is returned implicitly: the k = min(rows, cols) Householder
// reflectors (the first k rows of a, a view) and their scales tau, for
// applyQ. Forming the k×cols Q is skipped.
func lqReflectors(a blas64.General) (l, refl blas64.General, tau []float64) {
	rows, cols := a.Rows, a.Cols
	k := min(rows, cols)
	l = blas64.General{Rows: rows, Cols: k, Stride: max(k, 1), Data: make([]float64, rows*k)}
	tau = make([]float64, k)
	if k == 0 {
		return l, blas64.General{Cols: cols, Stride: max(cols, 1)}, tau
	}
	work := []float64{0}
	lapack64.Gelqf(a, tau, work, -1)
	work = make([]float64, max(int(work[0]), 1))
	lapack64.Gelqf(a, tau, work, len(work))
	for i := 0; i < rows; i++ {
		copy(l.Data[i*k:i*k+min(i+1, k)], a.Data[i*a.Stride:i*a.Stride+min(i+1, k)])
	}
	return l, blas64.General{Rows: k, Cols: cols, Stride: a.Stride, Data: a.Data[:(k-1)*a.Stride+cols]}, tau
}

// applyQ returns x·Q[:kq, :] (x is r×kq) where Q is the orthogonal matrix
// of the reflectors refl (kq×cols) and tau from lqReflectors, computed as
// [x | 0]·Q by LAPACK Dormlq without forming Q.
func applyQ(x, refl blas64.General, tau []float64) blas64.General {
	cols := refl.Cols
	c := blas64.General{Rows: x.Rows, Cols: cols, Stride: max(cols, 1), Data: make([]float64, x.Rows*cols)}
	if x.Rows == 0 || refl.Rows == 0 {
		return c
	}
	for i := 0; i < x.Rows; i++ {
		copy(c.Data[i*cols:i*cols+x.Cols], x.Data[i*x.Stride:i*x.Stride+x.Cols])
	}
	work := []float64{0}
	lapack64.Ormlq(blas.Right, blas.NoTrans, refl, tau, c, work, -1)
	work = make([]float64, max(int(work[0]), cols))
	lapack64.Ormlq(blas.Right, blas.NoTrans, refl, tau, c, work, len(work))
	return c
}

// gramRcond is the smallest reciprocal condition number (1-norm estimate)
// of the Cholesky factor for which the Gram route is used: the
// orthogonality error of Q = L⁻¹X is about ε·κ(X)², so κ ≲ 100·R keeps it
// near 1e-12 for adapter ranks.
const gramRcond = 1e-2

// gramFactor returns the lower-triangular Cholesky factor L of x·xᵀ
// (x R×cols, row-major), so that x = L·Q with Q = L⁻¹x having orthonormal
// rows, when R ≤ cols and L is well conditioned; ok is false otherwise.
func gramFactor(x blas64.General) (l blas64.General, ok bool) {
	r := x.Rows
	if r == 0 || r > x.Cols {
		return l, false
	}
	g := blas64.Symmetric{Uplo: blas.Lower, N: r, Stride: r, Data: make([]float64, r*r)}
	blas64.Syrk(blas.NoTrans, 1, x, 0, g)
	t, ok := lapack64.Potrf(g)
	if !ok {
		return l, false
	}
	t.Diag = blas.NonUnit
	if lapack64.Trcon(lapack.MaxColumnSum, t, make([]float64, 3*r), make([]int, r)) < gramRcond {
		return l, false
	}
	return blas64.General{Rows: r, Cols: r, Stride: r, Data: t.Data}, true
}

// applyGram returns cᵀ·Q (k×cols) for Q = L⁻¹x, computed as (L⁻ᵀ·c)ᵀ·x
// with one triangular solve on the small R×k matrix c.
func applyGram(c, l, x blas64.General) blas64.General {
	if c.Cols == 0 {
		return blas64.General{Cols: x.Cols, Stride: max(x.Cols, 1)}
	}
	y := blas64.General{Rows: c.Rows, Cols: c.Cols, Stride: max(c.Cols, 1), Data: make([]float64, c.Rows*c.Cols)}
	for i := 0; i < c.Rows; i++ {
		copy(y.Data[i*y.Stride:i*y.Stride+c.Cols], c.Data[i*c.Stride:i*c.Stride+c.Cols])
	}
	blas64.Trsm(blas.Left, blas.Trans, 1, blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: l.Rows, Stride: l.Stride, Data: l.Data}, y)
	return gemm(blas.Trans, blas.NoTrans, y, x)
}

// smallSVD returns the thin SVD a = u·diag(s)·vt of a (overwritten):
// u is rows×p, vt is p×cols, p = min(rows, cols).
func smallSVD(a blas64.General) (u blas64.General, s []float64, vt blas64.General, err error) {
	rows, cols := a.Rows, a.Cols
	p := min(rows, cols)
	u = blas64.General{Rows: rows, Cols: p, Stride: max(p, 1), Data: make([]float64, rows*p)}
	vt = blas64.General{Rows: p, Cols: cols, Stride: max(cols, 1), Data: make([]float64, p*cols)}
	s = make([]float64, p)
	if p == 0 {
		return u, s, vt, nil
	}
	work := []float64{0}
	lapack64.Gesvd(lapack.SVDStore, lapack.SVDStore, a, u, vt, s, work, -1)
	work = make([]float64, max(int(work[0]), 1))
	if !lapack64.Gesvd(lapack.SVDStore, lapack.SVDStore, a, u, vt, s, work, len(work)) {
		return u, s, vt, ErrNoConvergence
	}
	return u, s, vt, nil
}

// gemm returns op(a)·op(b) as a new matrix.
func gemm(ta, tb blas.Transpose, a, b blas64.General) blas64.General {
	m, n := a.Rows, b.Cols
	if ta == blas.Trans {
		m = a.Cols
	}
	if tb == blas.Trans {
		n = b.Rows
	}
	c := blas64.General{Rows: m, Cols: n, Stride: max(n, 1), Data: make([]float64, m*n)}
	if m == 0 || n == 0 {
		return c
	}
	k := a.Cols
	if ta == blas.Trans {
		k = a.Rows
	}
	if k == 0 {
		return c
	}
	blas64.Gemm(ta, tb, 1, a, b, 0, c)
	return c
}
