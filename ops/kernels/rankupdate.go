package kernels

import (
	"math/bits"
	"strconv"
)

// rowBlock is the number of rows of W handled per piece of work.
const rowBlock = 32

// RankUpdate adds the rank-r product s·B·A to W:
//
//	for i := 0; i < out; i++ {
//		for k := 0; k < r; k++ {
//			c := s * b[i*r+k]
//			for j := 0; j < in; j++ { w[i*in+j] += float32(c * a[k*in+j]) }
//		}
//	}
//
// W is out×in, B out×r and A r×in, all row-major float32. Each element of W
// receives its r terms in order k = 0…r-1, each product rounded to float32
// before the add, so every path and blocking gives the same bits. The fast
// path reads and writes each element of W once: it keeps a W segment in
// registers while adding all r rows of A, with A's columns blocked to stay in
// cache, and splits rows of W across GOMAXPROCS goroutines for large W.
//
// It panics if a dimension is negative or len(w) != out*in,
// len(b) != out*r or len(a) != r*in.
func RankUpdate(w []float32, out, in int, s float32, b []float32, a []float32, r int) {
	if out < 0 || in < 0 || r < 0 {
		panic("kernels: RankUpdate: negative dimension out=" + strconv.Itoa(out) + " in=" + strconv.Itoa(in) + " r=" + strconv.Itoa(r))
	}
	checkProd := func(name string, got, p, q int) {
		hi, lo := bits.Mul64(uint64(p), uint64(q))
		if hi != 0 || lo != uint64(got) {
			panic("kernels: RankUpdate: len(" + name + ")=" + strconv.Itoa(got) + " != " + strconv.Itoa(p) + "×" + strconv.Itoa(q))
		}
	}
	checkProd("w", len(w), out, in)
	checkProd("b", len(b), out, r)
	checkProd("a", len(a), r, in)
	if out == 0 || in == 0 || r == 0 {
		return
	}
	f := cur.rankRow
	// Column block: keep r rows × cw columns of A (≤ 256 KiB) in cache.
	cw := in
	if r*in > 64<<10 {
		cw = max(256, (64<<10)/r&^63)
	}
	f4 := cur.rank4
	rows := func(i0, i1 int) {
		c := make([]float32, 4*r)
		for ib := i0; ib < i1; ib += rowBlock {
			ie := min(ib+rowBlock, i1)
			for j0 := 0; j0 < in; j0 += cw {
				j1 := min(j0+cw, in)
				i := ib
				if f4 != nil {
					// Four rows at a time share each load of A.
					for ; i+4 <= ie; i += 4 {
						for k := range c {
							c[k] = s * b[i*r+k]
						}
						f4(w[i*in+j0:], in, c, a[j0:], in, j1-j0)
					}
				}
				for ; i < ie; i++ {
					for k := range r {
						c[k] = s * b[i*r+k]
					}
					f(w[i*in+j0:i*in+j1], c[:r], a[j0:], in)
				}
			}
		}
	}
	nw := workers(out * in)
	if nw <= 1 || out < 2*rowBlock {
		rows(0, out)
		return
	}
	// Row blocks from a shared counter: a busy core does not stall the rest.
	nblk := (out + rowBlock - 1) / rowBlock
	parallelPieces(nblk, nw, func(i int) { rows(i*rowBlock, min((i+1)*rowBlock, out)) })
}
