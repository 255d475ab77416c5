package kernels

import (
	"math"
	"math/bits"
	"strconv"
)

// rowBlock is the number of rows of W handled per piece of work (fewer when
// that leaves too few pieces for the workers). Within a piece the column
// tiles are outermost, and the 4-row kernel prefetches the next four rows of
// the same tile, so only the first row group of each tile is not prefetched:
// one in rowBlock/4.
const rowBlock = 128

// RankUpdate adds the rank-r product s·B·A to W:
//
//	for i := 0; i < out; i++ {
//		for k := 0; k < r; k++ {
//			c := s * b[i*r+k]
//			for j := 0; j < in; j++ { w[i*in+j] = fma32(c, a[k*in+j], w[i*in+j]) }
//		}
//	}
//
// where fma32(x, y, z) is x·y+z rounded once to float32 (a fused
// multiply-add; c = s·b[i,k] is rounded to float32 first). W is out×in, B
// out×r and A r×in, all row-major float32. Each element of W receives its r
// terms in order k = 0…r-1, so every path (AVX-512 and AVX2 VFMADD231PS, the
// pure-Go twin's exact fma32), blocking and GOMAXPROCS gives the same bits.
// The fast path reads and writes each element of W once: it packs A into
// column tiles that stay in L1, keeps a 4-row block of W in registers while
// adding all r rows of the tile, and splits rows of W across GOMAXPROCS
// goroutines for large W.
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
	f, f4 := cur.rankRow, cur.rank4
	cw := rankTile(in, r)
	// Pack A tile by tile: tile [j0, j1) is the r×(j1-j0) block at
	// pa[r*j0:], row-major. In place, A's rows are in·4 bytes apart, which for
	// a power-of-two width maps a tile's r rows onto the same few L1 sets
	// (4 KiB aliasing), so the tile would not stay in L1; packed, it is one
	// contiguous block.
	pa := a
	if in > cw {
		pa = make([]float32, r*in)
		for j0 := 0; j0 < in; j0 += cw {
			j1 := min(j0+cw, in)
			for k := range r {
				copy(pa[r*j0+k*(j1-j0):], a[k*in+j0:k*in+j1])
			}
		}
	}
	// rows updates the rows [i0, i1) (at most blk); c is scratch.
	rows := func(i0, i1 int, c []float32) {
		// c holds s·B for the rows of this block, row by row, so the four
		// rows of a group have their 4r coefficients contiguous.
		for k, v := range b[i0*r : i1*r] {
			c[k] = s * v
		}
		// Column tiles outermost: the r×cw block of A stays in L1 while
		// every row group of the block passes over it.
		for j0 := 0; j0 < in; j0 += cw {
			j1 := min(j0+cw, in)
			at, lda := a[j0:], in
			if in > cw {
				at, lda = pa[r*j0:r*j1], j1-j0
			}
			i := i0
			if f4 != nil {
				// Four rows at a time share each load of A.
				for ; i+4 <= i1; i += 4 {
					f4(w[i*in+j0:], in, c[(i-i0)*r:(i-i0+4)*r], at, lda, j1-j0)
				}
			}
			for ; i < i1; i++ {
				f(w[i*in+j0:i*in+j1], c[(i-i0)*r:(i-i0+1)*r], at, lda)
			}
		}
	}
	nw := workers(out * in)
	blk := rowBlock
	if nw > 1 {
		// At least four pieces per worker, in whole row groups.
		blk = min(rowBlock, max(4, out/(4*nw)&^3))
	}
	if nw <= 1 || out < 2*blk {
		c := make([]float32, min(out, blk)*r)
		for i0 := 0; i0 < out; i0 += blk {
			rows(i0, min(i0+blk, out), c)
		}
		return
	}
	// Row blocks from a shared counter: a busy core does not stall the rest.
	nblk := (out + blk - 1) / blk
	parallelPieces(nblk, nw, func(i int) {
		rows(i*blk, min((i+1)*blk, out), make([]float32, blk*r))
	})
}

// rankL1 is the budget in bytes for the r×cw block of A that RankUpdate keeps
// in L1 (half of a 32 KiB L1d; W passes through the other half).
const rankL1 = 16 << 10

// rankTile returns the column tile width of RankUpdate: the widest multiple
// of 64 columns whose r×cw block of A fits in rankL1 (at least 64, at most in).
func rankTile(in, r int) int {
	cw := rankL1 / (4 * r) &^ 63
	return min(in, max(cw, 64))
}

// fma32 returns x·y+z rounded once to float32 (round to nearest even), as
// VFMADD231PS computes it. x·y is exact in float64 (24+24 bits), so
// s = float64(x)·float64(y) + float64(z) is the exact sum rounded once to
// float64. Rounding s again to float32 gives the correctly rounded result
// unless s landed exactly on a float32 midpoint (double rounding): the
// float32 values and midpoints are float64 numbers, so s and the exact sum lie
// between the same two midpoints otherwise. Midpoints of normal float32 have
// the low 29 bits of s's fraction equal to 1<<28; those, zeros and results
// below the float32 normal range go through fma32Slow. NaN and Inf operands
// propagate as in the hardware; only which payload survives when several
// operands are NaN is unspecified.
func fma32(x, y, z float32) float32 {
	s := float64(x)*float64(y) + float64(z)
	if fma32Fast(s) {
		return float32(s)
	}
	return fma32Slow(x, y, z)
}

// fma32Fast reports whether float32(s) is correctly rounded for a float64 s
// that is the exact x·y+z rounded once: s is not a normal float32's midpoint
// and not below the float32 normal range.
func fma32Fast(s float64) bool {
	u := math.Float64bits(s)
	return u&(1<<29-1) != 1<<28 && (u>>52)&0x7ff >= 1023-126
}

// fma32Slow is fma32 by round-to-odd: the float64 sum's rounding error is
// recovered exactly (TwoSum); when it is nonzero the sum is replaced by its
// neighbour towards the exact value if its last bit is even, and a
// round-to-odd result with 53 ≥ 24+2 bits rounds to float32 exactly as the
// exact sum would (Boldo–Melquiond).
func fma32Slow(x, y, z float32) float32 {
	p := float64(x) * float64(y)
	zz := float64(z)
	s := p + zz
	bb := s - p
	e := (p - (s - bb)) + (zz - bb)
	if e != 0 && e == e { // inexact and finite: round to odd
		u := math.Float64bits(s)
		if u&1 == 0 {
			if (e > 0) == (s > 0) {
				u++
			} else {
				u--
			}
			s = math.Float64frombits(u)
		}
	}
	return float32(s)
}

// rankRowGeneric is: for k := range c { for j := range w { w[j] = fma32(c[k], a[k*stride+j], w[j]) } }
func rankRowGeneric(w, c, a []float32, stride int) {
	for k, ck := range c {
		ak := a[k*stride : k*stride+len(w)]
		c := float64(ck)
		// fma32's fast path, inlined (fma32 itself is too large to inline),
		// eight elements at a time: the float32↔float64 conversions write
		// only the low lanes of their registers, and eight independent
		// chains hide the resulting false dependencies.
		j := 0
		for ; j+8 <= len(w); j += 8 {
			ww, av := w[j:j+8:j+8], ak[j:j+8:j+8]
			s0 := c*float64(av[0]) + float64(ww[0])
			s1 := c*float64(av[1]) + float64(ww[1])
			s2 := c*float64(av[2]) + float64(ww[2])
			s3 := c*float64(av[3]) + float64(ww[3])
			s4 := c*float64(av[4]) + float64(ww[4])
			s5 := c*float64(av[5]) + float64(ww[5])
			s6 := c*float64(av[6]) + float64(ww[6])
			s7 := c*float64(av[7]) + float64(ww[7])
			if fma32Fast(s0) && fma32Fast(s1) && fma32Fast(s2) && fma32Fast(s3) &&
				fma32Fast(s4) && fma32Fast(s5) && fma32Fast(s6) && fma32Fast(s7) {
				ww[0], ww[1], ww[2], ww[3] = float32(s0), float32(s1), float32(s2), float32(s3)
				ww[4], ww[5], ww[6], ww[7] = float32(s4), float32(s5), float32(s6), float32(s7)
				continue
			}
			for q := range ww {
				ww[q] = fma32(ck, av[q], ww[q])
			}
		}
		for ; j < len(w); j++ {
			w[j] = fma32(ck, ak[j], w[j])
		}
	}
}

// rankUpdateGeneric is RankUpdate's reference loop, row by row:
//
//	for i := 0; i < out; i++ {
//		for k := 0; k < r; k++ {
//			c := s * b[i*r+k]
//			for j := 0; j < in; j++ { w[i*in+j] = fma32(c, a[k*in+j], w[i*in+j]) }
//		}
//	}
func rankUpdateGeneric(w []float32, out, in int, s float32, b, a []float32, r int) {
	for i := 0; i < out; i++ {
		row := w[i*in : (i+1)*in]
		for k := 0; k < r; k++ {
			rankRowGeneric(row, []float32{s * b[i*r+k]}, a[k*in:(k+1)*in], in)
		}
	}
}
