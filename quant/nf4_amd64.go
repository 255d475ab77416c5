//go:build amd64 && !noasm && gc

package quant

import "golang.org/x/sys/cpu"

// packNF4AVX512 is packNF4 for n (a multiple of 16) elements with AVX-512F,
// 16 lanes at a time, bit-identical to the Go loop:
//
//	s := x[i]·inv; b := base[uint8(int32(s·scale + bias))]; if s > th[b] { b++ }
//	out[i/2] = b(2i)<<4 | b(2i+1)
//
// (VMULPS, VCVTTPS2DQ, a VPGATHERDD from the 256-entry base table, VPERMPS
// from the 16 thresholds, VCMPPS GT_OQ, a masked VPADDD, then the pairs
// are packed with VPSLLQ/VPSRLQ/VPORQ and VPMOVQB.)
//
//go:noescape
func packNF4AVX512(out *byte, x *float32, n int, inv float32, base *[256]int32, th *[16]float32, scaleBias *[2]float32)

// packNF4VBMI is packNF4AVX512 with the bucket table lookup done by one
// VPERMI2B over a 128-bucket table (AVX512_VBMI) instead of a gather.
//
//go:noescape
func packNF4VBMI(out *byte, x *float32, n int, inv float32, base *[128]uint8, th *[16]float32, scaleBias *[2]float32)

// quantNF4BlocksVBMI quantizes nblocks full blocks of bs (a multiple of 16)
// values in one call: per block absmax = max|x| (NaN ignored, as
// kernels.AbsMax), inv = 1/max(absmax, 1e-38), then packNF4VBMI's loop.
// Fusing the block absmax into the kernel removes two calls per block,
// which cost more than the 64-value block itself; it is tested equal to
// kernels.AbsMax + packNF4.
//
//go:noescape
func quantNF4BlocksVBMI(out *byte, x *float32, nblocks, bs int, absmax *float32, base *[128]uint8, th *[16]float32, scaleBias *[2]float32)

// quantNF4Fast quantizes the full blocks [b0, b1) with the fused kernel
// and reports whether it did.
func quantNF4Fast(dst []byte, absmax []float32, src []float32, bs, b0, b1 int) bool {
	if !hasNF4VBMI || b1 <= b0 {
		return false
	}
	quantNF4BlocksVBMI(&dst[b0*bs/2], &src[b0*bs], b1-b0, bs, &absmax[b0], &nf4Base128, &nf4LUT.th, &nf4SB128)
	return true
}

var (
	hasNF4AVX512 = cpu.X86.HasAVX512F
	hasNF4VBMI   = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VBMI
)

// The NF4 lookup in the layouts of the assembly kernels: the 256-bucket
// table widened to int32 for the gather, and a 128-bucket table (bucket
// width 2/126, still under a third of the smallest threshold gap) for
// VPERMI2B.
var (
	nf4Base32    [256]int32
	nf4ScaleBias [2]float32
	nf4LUT128    *lut4
	nf4Base128   [128]uint8
	nf4SB128     [2]float32
)

func init() {
	for i, b := range nf4LUT.base {
		nf4Base32[i] = int32(b)
	}
	nf4ScaleBias = [2]float32{nf4LUT.scale, nf4LUT.bias}
	r := make([]uint8, 16)
	for i := range r {
		r[i] = uint8(i)
	}
	nf4LUT128 = newLUT4N(nf4Thresholds, r, -1, 1, 128)
	copy(nf4Base128[:], nf4LUT128.base[:128])
	nf4SB128 = [2]float32{nf4LUT128.scale, nf4LUT128.bias}
}

// packNF4Fast packs with the best AVX-512 kernel available, the Go loop
// for the tail.
func packNF4Fast(out []byte, x []float32, inv float32) {
	m := 0
	if hasNF4AVX512 {
		m = len(x) &^ 15
		if m > 0 {
			if hasNF4VBMI {
				packNF4VBMI(&out[0], &x[0], m, inv, &nf4Base128, &nf4LUT.th, &nf4SB128)
			} else {
				packNF4AVX512(&out[0], &x[0], m, inv, &nf4Base32, &nf4LUT.th, &nf4ScaleBias)
			}
		}
	}
	if m < len(x) {
		packNF4(out[m/2:], x[m:], inv)
	}
}
