package kernels

import "sync"

// AbsMax returns the largest |x[i]|:
//
//	m := float32(0); for _, v := range x { if abs(v) > m { m = abs(v) } }
//
// NaN elements are ignored (an all-NaN or empty slice gives 0); ±Inf gives
// +Inf; the result is never negative (−0 counts as 0).
func AbsMax(x []float32) float32 {
	f := cur.absMax
	w := workers(len(x))
	if w <= 1 {
		return f(x)
	}
	var mu sync.Mutex
	var m float32
	parallel(len(x), func(lo, hi int) {
		v := f(x[lo:hi])
		mu.Lock()
		m = max(m, v)
		mu.Unlock()
	})
	return m
}

// reduceBlock is the block length of the reductions: the sum over a slice is
// the in-order float64 sum of its blocks' sums, each block summed in 16
// lanes. Fixing the blocks makes the result independent of GOMAXPROCS and of
// the path.
const reduceBlock = 1 << 16

// SumSquares returns Σ x[i]², accumulated in float64. The reference loop is
//
//	var total float64
//	for each block of 65536 elements, in order {
//		var s [16]float64
//		for i in the block's first len&^15 elements { s[i%16] += float64(x[i]) * float64(x[i]) }
//		fold s as s[j] += s[j+w] for w = 8, 4, 2, 1; t := s[0]
//		for the block's last len%16 elements { t += float64(x[i]) * float64(x[i]) }
//		total += t
//	}
//
// Every path computes exactly this (float64 products of float32 values are
// exact), so the result is bit-identical across paths and core counts. NaN or
// Inf inputs propagate as IEEE addition does.
func SumSquares(x []float32) float64 {
	f := cur.sumSquaresLanes
	if len(x) <= reduceBlock {
		return sumSquaresBlock(f, x)
	}
	return blockSum(len(x), func(lo, hi int) float64 { return sumSquaresBlock(f, x[lo:hi]) })
}

func sumSquaresBlock(f func([]float32) float64, b []float32) float64 {
	m := len(b) &^ (lanes - 1)
	t := f(b[:m])
	for _, v := range b[m:] {
		t += float64(v) * float64(v)
	}
	return t
}

// Dot returns Σ x[i]·y[i] accumulated in float64, in the same block and lane
// order as [SumSquares]. It panics if len(x) != len(y).
func Dot(x, y []float32) float64 {
	if len(x) != len(y) {
		mismatch("Dot", "x", len(x), "y", len(y))
	}
	f := cur.dotLanes
	if len(x) <= reduceBlock {
		return dotBlock(f, x, y)
	}
	return blockSum(len(x), func(lo, hi int) float64 { return dotBlock(f, x[lo:hi], y[lo:hi]) })
}

func dotBlock(f func(x, y []float32) float64, bx, by []float32) float64 {
	m := len(bx) &^ (lanes - 1)
	t := f(bx[:m], by[:m])
	for i := m; i < len(bx); i++ {
		t += float64(bx[i]) * float64(by[i])
	}
	return t
}

// blockSum sums block(lo, hi) over the reduceBlock-sized blocks of [0, n) in
// order, computing the blocks in parallel when n is large.
func blockSum(n int, block func(lo, hi int) float64) float64 {
	if n <= reduceBlock {
		return block(0, n)
	}
	nb := (n + reduceBlock - 1) / reduceBlock
	if workers(n) <= 1 {
		var total float64
		for b := range nb {
			total += block(b*reduceBlock, min((b+1)*reduceBlock, n))
		}
		return total
	}
	sums := make([]float64, nb)
	parallelPieces(nb, workers(n), func(b int) {
		sums[b] = block(b*reduceBlock, min((b+1)*reduceBlock, n))
	})
	var total float64
	for _, s := range sums {
		total += s
	}
	return total
}

// parallelBlocks calls f on contiguous ranges [b0, b1) covering the nb
// blocks, from GOMAXPROCS-bounded goroutines taking small ranges from a
// shared counter.
func parallelBlocks(nb int, f func(b0, b1 int)) {
	w := min(workers(nb*reduceBlock), nb)
	if w <= 1 {
		f(0, nb)
		return
	}
	per := max(1, nb/(4*w))
	pieces := (nb + per - 1) / per
	parallelPieces(pieces, w, func(i int) { f(i*per, min((i+1)*per, nb)) })
}
