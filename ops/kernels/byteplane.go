package kernels

import (
	"encoding/binary"
	"math/bits"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/adaptool/adaptool/internal/mmapfile"
)

// Byte-plane split and merge, the shuffle at the heart of the atz codec
// (ZipNN-style float compression).
//
// An array of n elements of w bytes each (little-endian) is rearranged into w
// planes of n bytes: plane p holds byte p of every element, so
//
//	dst[p*n+i] = src[i*w+p]
//
// With rotate set, every element is first rotated left by one bit as a w-byte
// little-endian integer (u<<1 | u>>(8w-1)): the sign bit moves next to the
// mantissa, and for BF16, F32 and F64 the top byte (plane w-1) then holds only
// exponent bits (F16 keeps its 5 exponent bits plus the top 3 mantissa bits).
// The exponent plane has ≈ 2.6 bits of entropy on trained weights and
// Huffman-codes well; the other planes are close to random.
//
// MergePlanes is the exact inverse of SplitPlanes for every input.
//
// On amd64 with AVX2 (not under -tags noasm), widths 2 and 4 run hand-written
// assembly (byteplane_amd64.s) on whole 32-element groups; the word-at-a-time
// Go loops below do the rest and are the only path elsewhere. Both give the
// same bytes (tested on every length 0..300 and offset against each other
// and the byte-by-byte definition).

// parallelPlaneMin is the input size from which SplitPlanes and MergePlanes
// use several goroutines.
const parallelPlaneMin = 4 << 20

// SplitPlanes splits src, a sequence of w-byte little-endian elements, into w
// byte planes written to dst (len(dst) == len(src)): dst[p*n+i] = src[i*w+p]
// with n = len(src)/w, after rotating each element left by one bit when
// rotate is set. Widths 2, 4 and 8 use a word-at-a-time path; any width ≥ 1
// is accepted without rotation. It panics if len(dst) != len(src), w < 1,
// len(src) is not a multiple of w, or rotate is set with w not in {2, 4, 8}.
// Inputs of 4 MiB and more are split across GOMAXPROCS goroutines.
func SplitPlanes(dst, src []byte, w int, rotate bool) {
	n := checkPlanes(dst, src, w, rotate)
	planesParallel(n, w, func(i0, i1 int) { splitRange(dst, src, n, w, rotate, i0, i1) })
}

// MergePlanes is the inverse of SplitPlanes: it interleaves the w planes of
// src (each len(src)/w bytes) into elements of w bytes in dst and undoes the
// sign rotation when rotate is set. It panics on the same conditions as
// SplitPlanes.
func MergePlanes(dst, src []byte, w int, rotate bool) {
	n := checkPlanes(dst, src, w, rotate)
	planes := make([][]byte, w)
	for p := range planes {
		planes[p] = src[p*n : (p+1)*n]
	}
	planesParallel(n, w, func(i0, i1 int) { mergeRange(dst, planes, w, rotate, i0, i1) })
}

// MergePlaneSlices is MergePlanes with the planes in separate slices
// (len(planes) is the width, each plane len(dst)/width bytes), so a decoder
// can merge planes that live in different buffers without copying them
// together first. It panics if a plane has the wrong length or on the
// conditions of SplitPlanes.
func MergePlaneSlices(dst []byte, planes [][]byte, rotate bool) {
	w := len(planes)
	n := checkPlanes(dst, dst, w, rotate)
	for _, p := range planes {
		if len(p) != n {
			panic("kernels: byte-plane length mismatch")
		}
	}
	planesParallel(n, w, func(i0, i1 int) { mergeRange(dst, planes, w, rotate, i0, i1) })
}

func checkPlanes(dst, src []byte, w int, rotate bool) int {
	if w < 1 {
		panic("kernels: byte-plane width < 1")
	}
	if len(dst) != len(src) {
		panic("kernels: byte-plane length mismatch")
	}
	if len(src)%w != 0 {
		panic("kernels: byte-plane length not a multiple of the width")
	}
	if rotate && w != 2 && w != 4 && w != 8 {
		panic("kernels: sign rotation needs width 2, 4 or 8")
	}
	return len(src) / w
}

// planesParallel runs f over [0, n) elements, split into blocks of whole
// 8-element groups across goroutines when the input is large. A memory
// fault in a worker (the source is a mapped file truncated meanwhile) is
// re-raised on the caller, as in parallel.
func planesParallel(n, w int, f func(i0, i1 int)) {
	procs := runtime.GOMAXPROCS(0)
	if n*w < parallelPlaneMin || procs < 2 {
		f(0, n)
		return
	}
	parts := min(procs, n*w/(1<<20))
	per := (n/parts + 7) &^ 7
	var wg sync.WaitGroup
	var faults mmapfile.Faults
	for i0 := 0; i0 < n; i0 += per {
		i1 := min(i0+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer faults.Catch(debug.SetPanicOnFault(true))
			f(i0, i1)
		}()
	}
	wg.Wait()
	faults.Rethrow()
}

// splitRange splits elements [i0, i1) of src into the planes of dst.
func splitRange(dst, src []byte, n, w int, rotate bool, i0, i1 int) {
	switch w {
	case 1:
		copy(dst[i0:i1], src[i0:i1])
		return
	case 2:
		d0, d1, s := dst[i0:n], dst[n+i0:2*n], src[2*i0:2*i1]
		k := split2Fast(d0, d1, s, rotate)
		i0 += k + split2(d0[k:], d1[k:], s[2*k:], rotate)
	case 4:
		i0 = split4Fast(dst, src, n, rotate, i0, i1)
		i0 = split4(dst, src, n, rotate, i0, i1)
	case 8:
		i0 = split8(dst, src, n, rotate, i0, i1)
	}
	splitGeneric(dst, src, n, w, rotate, i0, i1)
}

// mergeRange merges elements [i0, i1) of the planes into dst.
func mergeRange(dst []byte, planes [][]byte, w int, rotate bool, i0, i1 int) {
	switch w {
	case 1:
		copy(dst[i0:i1], planes[0][i0:i1])
		return
	case 2:
		d, s0, s1 := dst[2*i0:2*i1], planes[0][i0:i1], planes[1][i0:i1]
		k := merge2Fast(d, s0, s1, rotate)
		i0 += k + merge2(d[2*k:], s0[k:], s1[k:], rotate)
	case 4:
		i0 = merge4Fast(dst, planes, rotate, i0, i1)
		i0 = merge4(dst, planes, rotate, i0, i1)
	case 8:
		i0 = merge8(dst, planes, rotate, i0, i1)
	}
	mergeGeneric(dst, planes, w, rotate, i0, i1)
}

// rotl rotates the w-byte little-endian integer x left by one bit.
func rotl(x uint64, w int) uint64 {
	s := uint(8*w - 1)
	mask := uint64(1)<<(8*uint(w)) - 1
	if w == 8 {
		mask = ^uint64(0)
	}
	return (x<<1 | x>>s) & mask
}

// rotr is the inverse of rotl.
func rotr(x uint64, w int) uint64 {
	s := uint(8*w - 1)
	mask := uint64(1)<<(8*uint(w)) - 1
	if w == 8 {
		mask = ^uint64(0)
	}
	return (x>>1 | x<<s) & mask
}

// splitGeneric is the reference loop (and the tail handler): element by
// element, byte by byte.
func splitGeneric(dst, src []byte, n, w int, rotate bool, i0, i1 int) {
	for i := i0; i < i1; i++ {
		e := src[i*w : i*w+w]
		if rotate {
			var x uint64
			for p := w - 1; p >= 0; p-- {
				x = x<<8 | uint64(e[p])
			}
			x = rotl(x, w)
			for p := range w {
				dst[p*n+i] = byte(x >> (8 * uint(p)))
			}
			continue
		}
		for p := range w {
			dst[p*n+i] = e[p]
		}
	}
}

// mergeGeneric is the reference inverse of splitGeneric.
func mergeGeneric(dst []byte, planes [][]byte, w int, rotate bool, i0, i1 int) {
	for i := i0; i < i1; i++ {
		e := dst[i*w : i*w+w]
		if rotate {
			var x uint64
			for p := w - 1; p >= 0; p-- {
				x = x<<8 | uint64(planes[p][i])
			}
			x = rotr(x, w)
			for p := range w {
				e[p] = byte(x >> (8 * uint(p)))
			}
			continue
		}
		for p := range w {
			e[p] = planes[p][i]
		}
	}
}

const (
	even16 = 0x00FF00FF00FF00FF
	lo16   = 0x0000FFFF0000FFFF
	lo32   = 0x00000000FFFFFFFF
)

// rot16x4 rotates each 16-bit lane of x left by one bit.
func rot16x4(x uint64) uint64 {
	return (x<<1)&0xFFFEFFFEFFFEFFFE | (x>>15)&0x0001000100010001
}

// unrot16x4 rotates each 16-bit lane of x right by one bit.
func unrot16x4(x uint64) uint64 {
	return (x>>1)&0x7FFF7FFF7FFF7FFF | (x<<15)&0x8000800080008000
}

// rot32x2 rotates each 32-bit lane of x left by one bit.
func rot32x2(x uint64) uint64 {
	return (x<<1)&0xFFFFFFFEFFFFFFFE | (x>>31)&0x0000000100000001
}

// unrot32x2 rotates each 32-bit lane of x right by one bit.
func unrot32x2(x uint64) uint64 {
	return (x>>1)&0x7FFFFFFF7FFFFFFF | (x<<31)&0x8000000080000000
}

// packEven gathers bytes 0, 2, 4, 6 of x into the low 32 bits.
func packEven(x uint64) uint64 {
	x &= even16
	x = (x | x>>8) & lo16
	return (x | x>>16) & lo32
}

// spreadEven is the inverse of packEven: the low 4 bytes of x go to bytes
// 0, 2, 4, 6.
func spreadEven(x uint64) uint64 {
	x &= lo32
	x = (x | x<<16) & lo16
	return (x | x<<8) & even16
}

// split2 splits 8-element groups of 2-byte elements; it returns the number
// of elements done.
func split2(d0, d1, src []byte, rotate bool) int {
	m := len(src) / 16
	d0, d1 = d0[:m*8], d1[:m*8]
	for k := range m {
		a := binary.LittleEndian.Uint64(src[16*k:])
		b := binary.LittleEndian.Uint64(src[16*k+8:])
		if rotate {
			a, b = rot16x4(a), rot16x4(b)
		}
		binary.LittleEndian.PutUint64(d0[8*k:], packEven(a)|packEven(b)<<32)
		binary.LittleEndian.PutUint64(d1[8*k:], packEven(a>>8)|packEven(b>>8)<<32)
	}
	return m * 8
}

// merge2 is the inverse of split2.
func merge2(dst, s0, s1 []byte, rotate bool) int {
	m := len(dst) / 16
	s0, s1 = s0[:m*8], s1[:m*8]
	for k := range m {
		lo := binary.LittleEndian.Uint64(s0[8*k:])
		hi := binary.LittleEndian.Uint64(s1[8*k:])
		a := spreadEven(lo) | spreadEven(hi)<<8
		b := spreadEven(lo>>32) | spreadEven(hi>>32)<<8
		if rotate {
			a, b = unrot16x4(a), unrot16x4(b)
		}
		binary.LittleEndian.PutUint64(dst[16*k:], a)
		binary.LittleEndian.PutUint64(dst[16*k+8:], b)
	}
	return m * 8
}

// zip4 turns [a0 a1 a2 a3 b0 b1 b2 b3] into [a0 b0 a1 b1 a2 b2 a3 b3]
// (two 4-byte elements interleaved byte by byte).
func zip4(x uint64) uint64 {
	t := (x>>16 ^ x) & 0x00000000FFFF0000
	x ^= t ^ t<<16
	t = (x>>8 ^ x) & 0x0000FF000000FF00
	return x ^ t ^ t<<8
}

// unzip4 is the inverse of zip4.
func unzip4(x uint64) uint64 {
	t := (x>>8 ^ x) & 0x0000FF000000FF00
	x ^= t ^ t<<8
	t = (x>>16 ^ x) & 0x00000000FFFF0000
	return x ^ t ^ t<<16
}

// split4 splits 8-element groups of 4-byte elements in [i0, i1) and returns
// the first element not done.
func split4(dst, src []byte, n int, rotate bool, i0, i1 int) int {
	m := (i1 - i0) / 8
	s := src[4*i0 : 4*(i0+8*m)]
	p0, p1, p2, p3 := dst[i0:i0+8*m], dst[n+i0:n+i0+8*m], dst[2*n+i0:2*n+i0+8*m], dst[3*n+i0:3*n+i0+8*m]
	for k := range m {
		b := s[32*k : 32*k+32]
		x0 := binary.LittleEndian.Uint64(b[0:])
		x1 := binary.LittleEndian.Uint64(b[8:])
		x2 := binary.LittleEndian.Uint64(b[16:])
		x3 := binary.LittleEndian.Uint64(b[24:])
		if rotate {
			x0, x1, x2, x3 = rot32x2(x0), rot32x2(x1), rot32x2(x2), rot32x2(x3)
		}
		x0, x1, x2, x3 = zip4(x0), zip4(x1), zip4(x2), zip4(x3)
		// plane p = 16-bit field p of x0..x3, in order.
		binary.LittleEndian.PutUint64(p0[8*k:], x0&0xFFFF|(x1&0xFFFF)<<16|(x2&0xFFFF)<<32|x3<<48)
		binary.LittleEndian.PutUint64(p1[8*k:], x0>>16&0xFFFF|(x1>>16&0xFFFF)<<16|(x2>>16&0xFFFF)<<32|(x3>>16)<<48)
		binary.LittleEndian.PutUint64(p2[8*k:], x0>>32&0xFFFF|(x1>>32&0xFFFF)<<16|(x2>>32&0xFFFF)<<32|(x3>>32)<<48)
		binary.LittleEndian.PutUint64(p3[8*k:], x0>>48|(x1>>48)<<16|(x2>>48)<<32|(x3>>48)<<48)
	}
	return i0 + 8*m
}

// merge4 is the inverse of split4.
func merge4(dst []byte, planes [][]byte, rotate bool, i0, i1 int) int {
	m := (i1 - i0) / 8
	d := dst[4*i0 : 4*(i0+8*m)]
	p0, p1, p2, p3 := planes[0][i0:i0+8*m], planes[1][i0:i0+8*m], planes[2][i0:i0+8*m], planes[3][i0:i0+8*m]
	for k := range m {
		a := binary.LittleEndian.Uint64(p0[8*k:])
		b := binary.LittleEndian.Uint64(p1[8*k:])
		c := binary.LittleEndian.Uint64(p2[8*k:])
		e := binary.LittleEndian.Uint64(p3[8*k:])
		x0 := a&0xFFFF | (b&0xFFFF)<<16 | (c&0xFFFF)<<32 | e<<48
		x1 := a>>16&0xFFFF | (b>>16&0xFFFF)<<16 | (c>>16&0xFFFF)<<32 | (e>>16)<<48
		x2 := a>>32&0xFFFF | (b>>32&0xFFFF)<<16 | (c>>32&0xFFFF)<<32 | (e>>32)<<48
		x3 := a>>48 | (b>>48)<<16 | (c>>48)<<32 | (e>>48)<<48
		x0, x1, x2, x3 = unzip4(x0), unzip4(x1), unzip4(x2), unzip4(x3)
		if rotate {
			x0, x1, x2, x3 = unrot32x2(x0), unrot32x2(x1), unrot32x2(x2), unrot32x2(x3)
		}
		o := d[32*k : 32*k+32]
		binary.LittleEndian.PutUint64(o[0:], x0)
		binary.LittleEndian.PutUint64(o[8:], x1)
		binary.LittleEndian.PutUint64(o[16:], x2)
		binary.LittleEndian.PutUint64(o[24:], x3)
	}
	return i0 + 8*m
}

// transpose8 transposes the 8×8 byte matrix whose rows are r[0..7] (byte j
// of r[i] is element (i, j)). It is its own inverse.
func transpose8(r *[8]uint64) {
	for i := range 4 {
		t := (r[i]>>32 ^ r[i+4]) & 0x00000000FFFFFFFF
		r[i] ^= t << 32
		r[i+4] ^= t
	}
	for _, i := range [4]int{0, 1, 4, 5} {
		t := (r[i]>>16 ^ r[i+2]) & 0x0000FFFF0000FFFF
		r[i] ^= t << 16
		r[i+2] ^= t
	}
	for _, i := range [4]int{0, 2, 4, 6} {
		t := (r[i]>>8 ^ r[i+1]) & 0x00FF00FF00FF00FF
		r[i] ^= t << 8
		r[i+1] ^= t
	}
}

// split8 splits 8-element groups of 8-byte elements in [i0, i1) and returns
// the first element not done.
func split8(dst, src []byte, n int, rotate bool, i0, i1 int) int {
	m := (i1 - i0) / 8
	var r [8]uint64
	for k := range m {
		b := src[8*(i0+8*k) : 8*(i0+8*k)+64]
		for j := range 8 {
			r[j] = binary.LittleEndian.Uint64(b[8*j:])
			if rotate {
				r[j] = bits.RotateLeft64(r[j], 1)
			}
		}
		transpose8(&r)
		o := i0 + 8*k
		for p := range 8 {
			binary.LittleEndian.PutUint64(dst[p*n+o:p*n+o+8], r[p])
		}
	}
	return i0 + 8*m
}

// merge8 is the inverse of split8.
func merge8(dst []byte, planes [][]byte, rotate bool, i0, i1 int) int {
	m := (i1 - i0) / 8
	var r [8]uint64
	for k := range m {
		o := i0 + 8*k
		for p := range 8 {
			r[p] = binary.LittleEndian.Uint64(planes[p][o : o+8])
		}
		transpose8(&r)
		b := dst[8*o : 8*o+64]
		for j := range 8 {
			x := r[j]
			if rotate {
				x = bits.RotateLeft64(x, -1)
			}
			binary.LittleEndian.PutUint64(b[8*j:], x)
		}
	}
	return i0 + 8*m
}
