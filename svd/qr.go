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

// thinLQ factors the rows×cols matrix a (overwritten) as a = L·Q with
// k = min(rows, cols): L is rows×k lower trapezoidal and Q is k×cols with
// orthonormal rows. For the row-major tall factors of an adapter this is
// the QR of aᵀ (aᵀ = Qᵀ·Lᵀ) with every reflector applied along contiguous
// rows.
func thinLQ(a blas64.General) (l, q blas64.General) {
	rows, cols := a.Rows, a.Cols
	k := min(rows, cols)
	l = blas64.General{Rows: rows, Cols: k, Stride: max(k, 1), Data: make([]float64, rows*k)}
	q = blas64.General{Rows: k, Cols: cols, Stride: max(cols, 1), Data: make([]float64, k*cols)}
	if k == 0 {
		return l, q
	}
	tau := make([]float64, k)
	work := []float64{0}
	lapack64.Gelqf(a, tau, work, -1)
	work = make([]float64, max(int(work[0]), 1))
	lapack64.Gelqf(a, tau, work, len(work))
	for i := 0; i < rows; i++ {
		copy(l.Data[i*k:i*k+min(i+1, k)], a.Data[i*a.Stride:i*a.Stride+min(i+1, k)])
	}
	v := blas64.General{Rows: k, Cols: cols, Stride: a.Stride, Data: a.Data}
	work = []float64{0}
	lapack64.Orglq(v, tau, work, -1)
	work = make([]float64, max(int(work[0]), 1))
	lapack64.Orglq(v, tau, work, len(work))
	for i := 0; i < k; i++ {
		copy(q.Data[i*cols:(i+1)*cols], a.Data[i*a.Stride:i*a.Stride+cols])
	}
	return l, q
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
