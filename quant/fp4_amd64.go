//go:build amd64 && !noasm && gc

package quant

// packFP4VBMI is packFP4 for n (a multiple of 16) elements with AVX-512F +
// AVX512_VBMI, bit-identical to fp4Index: a = |s| by masking the sign bit;
// bucket of a over [0, 1] in a 128-entry table (VPERMI2B); rank =
// base + (a > th[base]) (VPERMPS, VCMPPS GT_OQ); code = rank2code[rank]
// (VPERMD), | 8 where s < 0 (VCMPPS LT_OQ: false for −0 and NaN); pairs
// packed high nibble first as in packNF4VBMI.
//
//go:noescape
func packFP4VBMI(out *byte, x *float32, n int, inv float32, base *[128]uint8, th *[16]float32, scaleBias *[2]float32, rank2code *[16]int32)

// quantFP4BlocksVBMI is the fused FP4 quantizer (block absmax as
// kernels.AbsMax, reciprocal, packFP4VBMI's loop) over nblocks full blocks
// of bs values, a multiple of 16.
//
//go:noescape
func quantFP4BlocksVBMI(out *byte, x *float32, nblocks, bs int, absmax *float32, base *[128]uint8, th *[16]float32, scaleBias *[2]float32, rank2code *[16]int32)

// quantFP4Fast quantizes the full blocks [b0, b1) with the fused kernel and
// reports whether it did.
func quantFP4Fast(dst []byte, absmax []float32, src []float32, bs, b0, b1 int) bool {
	if !hasNF4VBMI || b1 <= b0 {
		return false
	}
	quantFP4BlocksVBMI(&dst[b0*bs/2], &src[b0*bs], b1-b0, bs, &absmax[b0], &fp4Base128, &fp4LUT128.th, &fp4SB128, &fp4RankCode32)
	return true
}

var (
	fp4LUT128     = newLUT4N(fp4Thresholds, fp4RankCode, 0, 1, 128)
	fp4Base128    [128]uint8
	fp4SB128      [2]float32
	fp4RankCode32 [16]int32
)

func init() {
	copy(fp4Base128[:], fp4LUT128.base[:128])
	fp4SB128 = [2]float32{fp4LUT128.scale, fp4LUT128.bias}
	for i, c := range fp4LUT128.rank2code {
		fp4RankCode32[i] = int32(c)
	}
}

// packFP4Fast packs with the AVX-512 VBMI kernel where available, the Go
// loop otherwise and for the tail.
func packFP4Fast(out []byte, x []float32, inv float32) {
	m := 0
	if hasNF4VBMI {
		m = len(x) &^ 15
		if m > 0 {
			packFP4VBMI(&out[0], &x[0], m, inv, &fp4Base128, &fp4LUT128.th, &fp4SB128, &fp4RankCode32)
		}
	}
	if m < len(x) {
		packFP4(out[m/2:], x[m:], inv)
	}
}
