package svd

import (
	"fmt"
	"math/rand/v2"

	"github.com/adaptool/adaptool/ops/kernels"
	"gonum.org/v1/gonum/blas/blas64"
)

// Operator is a linear map m×n that can be applied to blocks of vectors.
// Blocks are row-major float64: x is n×c for Mul, y is m×c for MulTrans.
type Operator interface {
	// Dims returns m and n.
	Dims() (m, n int)
	// Mul sets dst (m×c) = Op·x (x n×c).
	Mul(dst, x []float64, c int)
	// MulTrans sets dst (n×c) = Opᵀ·y (y m×c).
	MulTrans(dst, y []float64, c int)
}

// Matrix32 is a dense float32 row-major Rows×Cols [Operator]. Products are
// float32 fused multiply-adds (kernels.RankUpdate) over blocks of at most
// 64 rows by 256 columns, the blocks summed in float64 (see "Accuracy of
// the randomized products" in the package doc), so extra memory is a few
// small blocks plus the float32 copy of the right-hand side.
type Matrix32 struct {
	Rows, Cols int
	Data       []float32
}

// panelRows is the height of the row panels every product streams over.
const panelRows = 64

// depthCols is the largest depth (columns of the matrix) of one float32
// partial product of Mul; partial products are summed in float64.
const depthCols = 256

// Dims implements [Operator].
func (a Matrix32) Dims() (int, int) { return a.Rows, a.Cols }

// Mul implements [Operator].
func (a Matrix32) Mul(dst, x []float64, c int) {
	s := &prodScratch{}
	s.setX(x, a.Cols, c)
	mulRows(dst, c, a.Data, 0, a.Rows, a.Cols, s)
}

// MulTrans implements [Operator].
func (a Matrix32) MulTrans(dst, y []float64, c int) {
	s := &prodScratch{}
	clear(dst[:a.Cols*c])
	mulTransRows(dst, y, c, a.Data, 0, a.Rows, a.Cols, s)
}

// prodScratch holds the float32 buffers of the products.
type prodScratch struct {
	x32 []float32 // Mul: x (cols×c) in float32, columns padded to cp
	cp  int       // Mul: c rounded up to a multiple of padCols
	bp  []float32 // Mul: one panelRows×depthCols block of the rows
	w   []float32 // Mul: panelRows×cp partial product; MulTrans: c4×cols
	yt  []float32 // MulTrans: c4×panelRows block of yᵀ (rows padded to c4)
}

// padCols is the multiple the product widths are padded to with zeros, so
// that kernels.RankUpdate runs whole SIMD vectors (16 float32 lanes) and
// whole 4-row groups; the padding only adds zero terms.
const padCols = 16

// setX stores x (cols×c float64) as float32, padding each row with zero
// columns to s.cp.
func (s *prodScratch) setX(x []float64, cols, c int) {
	s.cp = (c + padCols - 1) / padCols * padCols
	s.x32 = make([]float32, cols*s.cp)
	for j := 0; j < cols; j++ {
		for k, v := range x[j*c : (j+1)*c] {
			s.x32[j*s.cp+k] = float32(v)
		}
	}
}

// mulRows sets rows [r0, r0+h) of dst (·×c) to rows·x, where rows holds
// those h rows (h×cols float32) and x (cols×c) is s.x32. Each element is
// Σ over blocks of depthCols columns of a float32 fused multiply-add chain,
// the blocks added in float64 in column order; rows are independent, so
// the bits do not depend on how the rows are split.
func mulRows(dst []float64, c int, rows []float32, r0, h, cols int, s *prodScratch) {
	if len(s.bp) < panelRows*min(depthCols, cols) {
		s.bp = make([]float32, panelRows*min(depthCols, cols))
	}
	cp := s.cp
	if len(s.w) < panelRows*cp {
		s.w = make([]float32, panelRows*cp)
	}
	for i0 := 0; i0 < h; i0 += panelRows {
		ph := min(panelRows, h-i0)
		d := dst[(r0+i0)*c : (r0+i0+ph)*c]
		for k0 := 0; k0 < cols; k0 += depthCols {
			kc := min(depthCols, cols-k0)
			bp := s.bp[:ph*kc]
			for i := 0; i < ph; i++ {
				copy(bp[i*kc:(i+1)*kc], rows[(i0+i)*cols+k0:(i0+i)*cols+k0+kc])
			}
			w := s.w[:ph*cp]
			clear(w)
			kernels.RankUpdate(w, ph, cp, 1, bp, s.x32[k0*cp:(k0+kc)*cp], kc)
			for i := 0; i < ph; i++ {
				di, wi := d[i*c:(i+1)*c], w[i*cp:i*cp+c]
				if k0 == 0 {
					for k, v := range wi {
						di[k] = float64(v)
					}
					continue
				}
				for k, v := range wi {
					di[k] += float64(v)
				}
			}
		}
	}
}

// mulTransRows adds rowsᵀ·y[r0:r0+h] to dst (cols×c): per panel of 64
// rows (starting at r0, r0+64, …; callers keep r0 a multiple of
// panelRows so that every Operator computes the same panels, hence the
// same bits) a float32 fused multiply-add chain over the panel's rows,
// the panels added to dst in float64 in row order.
func mulTransRows(dst, y []float64, c int, rows []float32, r0, h, cols int, s *prodScratch) {
	c4 := (c + 3) &^ 3
	if len(s.w) < c4*cols {
		s.w = make([]float32, c4*cols)
	}
	if len(s.yt) < c4*panelRows {
		s.yt = make([]float32, c4*panelRows)
	}
	for i0 := 0; i0 < h; i0 += panelRows {
		ph := min(panelRows, h-i0)
		yt := s.yt[:c4*ph]
		clear(yt[c*ph:])
		for i := 0; i < ph; i++ {
			for j, v := range y[(r0+i0+i)*c : (r0+i0+i+1)*c] {
				yt[j*ph+i] = float32(v)
			}
		}
		zt := s.w[:c4*cols]
		clear(zt)
		kernels.RankUpdate(zt, c4, cols, 1, yt, rows[i0*cols:(i0+ph)*cols], ph)
		for j := 0; j < c; j++ {
			for i, v := range zt[j*cols : (j+1)*cols] {
				dst[i*c+j] += float64(v)
			}
		}
	}
}

// RowTiles is a Rows×Cols [Operator] whose rows are generated on demand, a
// tile of TileRows rows at a time, by Fill(r0, h, dst), which must write
// rows [r0, r0+h) as h×Cols row-major float32 into dst (len h·Cols) and
// give the same values on every call. Every product regenerates the tiles
// in order, so memory is one tile plus one float64 panel, whatever the
// matrix size. TileRows is rounded up to a multiple of 64 (the panel
// height), which makes the products bit-identical to those of a
// [Matrix32] holding the same values. Use it for matrices too large to
// hold, or cheaper to recompute than to store (a delta rebuilt from its
// factors).
type RowTiles struct {
	Rows, Cols, TileRows int
	Fill                 func(r0, h int, dst []float32)
}

// Dims implements [Operator].
func (t RowTiles) Dims() (int, int) { return t.Rows, t.Cols }

// tile returns the rounded tile height.
func (t RowTiles) tile() int {
	h := max(t.TileRows, 1)
	return (h + panelRows - 1) / panelRows * panelRows
}

// sweep calls f on every tile in row order with the filled rows.
func (t RowTiles) sweep(f func(rows []float32, r0, h int)) {
	th := t.tile()
	buf := make([]float32, min(th, t.Rows)*t.Cols)
	for r0 := 0; r0 < t.Rows; r0 += th {
		h := min(th, t.Rows-r0)
		t.Fill(r0, h, buf[:h*t.Cols])
		f(buf[:h*t.Cols], r0, h)
	}
}

// Mul implements [Operator].
func (t RowTiles) Mul(dst, x []float64, c int) {
	s := &prodScratch{}
	s.setX(x, t.Cols, c)
	t.sweep(func(rows []float32, r0, h int) { mulRows(dst, c, rows, r0, h, t.Cols, s) })
}

// MulTrans implements [Operator].
func (t RowTiles) MulTrans(dst, y []float64, c int) {
	s := &prodScratch{}
	clear(dst[:t.Cols*c])
	t.sweep(func(rows []float32, r0, h int) { mulTransRows(dst, y, c, rows, r0, h, t.Cols, s) })
}

// RandomizedOptions tunes [Randomized]. The zero value is the default.
type RandomizedOptions struct {
	// Oversample is p, the extra sketch columns (default 10).
	Oversample int `json:"oversample"`
	// PowerIters is q, the number of power iterations (default 2; a
	// negative value means none).
	PowerIters int `json:"power_iters"`
	// Seed seeds the Gaussian test matrix (PCG); equal seeds give equal
	// results.
	Seed uint64 `json:"seed"`
}

func (o RandomizedOptions) resolved() (p, q int) {
	p, q = o.Oversample, o.PowerIters
	if p <= 0 {
		p = 10
	}
	if q == 0 {
		q = 2
	} else if q < 0 {
		q = 0
	}
	return p, q
}

// Randomized returns an approximate rank-k SVD of op by the randomized range
// finder with power iterations (Halko, Martinsson & Tropp, Algorithms 4.4 and
// 5.1): Y = Op·Ω with Ω Gaussian n×(k+p), Q = qr(Y), q times
// {Z = qr(Opᵀ·Q); Q = qr(Op·Z)}, then the exact SVD of QᵀOp, truncated to k.
// Every QR is thin. Cost: (2q+2) block products with k+p columns.
func Randomized(op Operator, k int, opts RandomizedOptions) (*Decomposition, error) {
	m, n := op.Dims()
	if m <= 0 || n <= 0 {
		return nil, fmt.Errorf("%w: %d×%d operator", ErrShape, m, n)
	}
	if k < 0 {
		return nil, fmt.Errorf("%w: rank %d", ErrShape, k)
	}
	if a, ok := op.(Matrix32); ok {
		if len(a.Data) != m*n {
			return nil, fmt.Errorf("%w: %d values for %d×%d", ErrShape, len(a.Data), m, n)
		}
		if i := firstNonFinite(a.Data); i >= 0 {
			return nil, fmt.Errorf("%w: %v at index %d", ErrNonFinite, a.Data[i], i)
		}
	}
	k = min(k, m, n)
	if k == 0 {
		return &Decomposition{m: m, n: n}, nil
	}
	p, q := opts.resolved()
	l := min(k+p, m, n)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x9e3779b97f4a7c15))
	omega := make([]float64, n*l)
	for i := range omega {
		omega[i] = rng.NormFloat64()
	}
	y := blas64.General{Rows: m, Cols: l, Stride: l, Data: make([]float64, m*l)}
	op.Mul(y.Data, omega, l)
	qm, _ := thinQR(y)
	for range q {
		z := blas64.General{Rows: n, Cols: qm.Cols, Stride: qm.Cols, Data: make([]float64, n*qm.Cols)}
		op.MulTrans(z.Data, qm.Data, qm.Cols)
		qz, _ := thinQR(z)
		y := blas64.General{Rows: m, Cols: qz.Cols, Stride: qz.Cols, Data: make([]float64, m*qz.Cols)}
		op.Mul(y.Data, qz.Data, qz.Cols)
		qm, _ = thinQR(y)
	}
	// Bᵀ = Opᵀ·Q (n×l) = W·R; B = Rᵀ·Wᵀ and Op ≈ Q·B = (Q·Rᵀ)·Wᵀ.
	bt := blas64.General{Rows: n, Cols: qm.Cols, Stride: qm.Cols, Data: make([]float64, n*qm.Cols)}
	op.MulTrans(bt.Data, qm.Data, qm.Cols)
	w, r := thinQR(bt)
	core := transpose(r)
	d, err := fromCore(m, n, transpose(qm), core, transpose(w))
	if err != nil {
		return nil, err
	}
	return d.Truncate(k), nil
}
