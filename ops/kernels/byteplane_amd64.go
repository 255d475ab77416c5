//go:build amd64 && !noasm && gc

package kernels

import "golang.org/x/sys/cpu"

// planeAsm selects the AVX2 byte-plane paths of byteplane_amd64.s (a
// variable so tests can compare both paths on the same machine).
var planeAsm = cpu.X86.HasAVX && cpu.X86.HasAVX2

// split2AVX2 splits len(src)/64 groups of 32 two-byte elements into d0 and
// d1 (32 bytes each per group), rotating each element left by one bit when
// rotate is set.
//
//go:noescape
func split2AVX2(d0, d1, src []byte, rotate bool)

// merge2AVX2 is the inverse of split2AVX2 over len(dst)/64 groups.
//
//go:noescape
func merge2AVX2(dst, s0, s1 []byte, rotate bool)

// split4AVX2 splits len(src)/128 groups of 32 four-byte elements into the
// four planes (32 bytes each per group).
//
//go:noescape
func split4AVX2(d0, d1, d2, d3, src []byte, rotate bool)

// merge4AVX2 is the inverse of split4AVX2 over len(dst)/128 groups.
//
//go:noescape
func merge4AVX2(dst, s0, s1, s2, s3 []byte, rotate bool)

// split2Fast splits the leading whole 32-element groups of src (2-byte
// elements) into d0 and d1 and returns the number of elements done. The
// reslicing below is the bounds check the assembly relies on.
func split2Fast(d0, d1, src []byte, rotate bool) int {
	m := len(src) / 64
	if !planeAsm || m == 0 {
		return 0
	}
	split2AVX2(d0[:32*m], d1[:32*m], src[:64*m], rotate)
	return 32 * m
}

// merge2Fast is the inverse of split2Fast.
func merge2Fast(dst, s0, s1 []byte, rotate bool) int {
	m := len(dst) / 64
	if !planeAsm || m == 0 {
		return 0
	}
	merge2AVX2(dst[:64*m], s0[:32*m], s1[:32*m], rotate)
	return 32 * m
}

// split4Fast splits the whole 32-element groups of elements [i0, i1) (4-byte
// elements, n per plane) and returns the first element not done.
func split4Fast(dst, src []byte, n int, rotate bool, i0, i1 int) int {
	m := (i1 - i0) / 32
	if !planeAsm || m == 0 {
		return i0
	}
	e := i0 + 32*m
	split4AVX2(dst[i0:e], dst[n+i0:n+e], dst[2*n+i0:2*n+e], dst[3*n+i0:3*n+e], src[4*i0:4*e], rotate)
	return e
}

// merge4Fast is the inverse of split4Fast.
func merge4Fast(dst []byte, planes [][]byte, rotate bool, i0, i1 int) int {
	m := (i1 - i0) / 32
	if !planeAsm || m == 0 {
		return i0
	}
	e := i0 + 32*m
	merge4AVX2(dst[4*i0:4*e], planes[0][i0:e], planes[1][i0:e], planes[2][i0:e], planes[3][i0:e], rotate)
	return e
}
