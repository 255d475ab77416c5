package quant

import "math"

// FP4Code is the bitsandbytes FP4 code (quant_type="fp4", e2m1 with bias 2,
// not the OCP FP4) in bit-pattern order: [0, 0.0625, 8, 12, 4, 6, 2, 3]/12
// for codes 0…7, and bit 3 as the sign (code 8+j = −code j, 8 being −0).
// These are the float32 values of bitsandbytes' quant_map tensor.
var FP4Code = func() [16]float32 {
	pos := [8]float32{0, 0.0625, 8, 12, 4, 6, 2, 3}
	var c [16]float32
	for i, v := range pos {
		c[i] = v / 12
		c[i+8] = float32(math.Copysign(float64(v/12), -1))
	}
	return c
}()

// fp4Thresholds are the magnitude thresholds of bitsandbytes' dQuantizeFP4
// (kernels.cu), literally as the kernel's float literals: a magnitude above
// a threshold goes to the larger value.
var fp4Thresholds = []float32{0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333}

// fp4RankCode maps the rank of a magnitude (0…7, ascending value) to the
// FP4 bit pattern: 0, 0.0052, 0.167, 0.25, 0.333, 0.5, 0.667, 1.
var fp4RankCode = []uint8{0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011}

var fp4LUT = newLUT4(fp4Thresholds, fp4RankCode, 0, 1)

// fp4Index returns the FP4 code of a scaled value s exactly as
// bitsandbytes' dQuantizeFP4: sign bit 8 when s < 0, then the magnitude
// compared with strict > against the kernel's thresholds (a tie goes to the
// smaller magnitude). Negative values that round to zero give 0b1000 (−0);
// NaN gives 0.
func fp4Index(s float32) uint8 {
	bits := math.Float32bits(s)
	sign := uint8(bits>>28) & 8 // the sign bit, as s < 0 for nonzero s
	if s == 0 {
		sign = 0 // −0 is not < 0
	}
	a := math.Float32frombits(bits &^ (1 << 31))
	// a ≤ 1 up to rounding; NaN falls in bucket 0 and compares false → rank 0.
	r := fp4LUT.rank(a)
	if s != s {
		sign = 0
	}
	return fp4LUT.rank2code[r&15] | sign
}

// QuantizeFP4 quantizes src to packed bitsandbytes FP4 codes with per-block
// absmax, exactly as bitsandbytes quantize_4bit with quant_type="fp4": block
// absmax and float32 reciprocal scaling as in QuantizeNF4, then the CUDA
// kernel's sign-magnitude decision tree (see fp4Index), packed with the first
// element in the high nibble.
func QuantizeFP4(dst []byte, absmax []float32, src []float32, blockSize int) error {
	return quantize4(dst, absmax, src, blockSize, "fp4", true)
}

// DequantizeFP4 reverses QuantizeFP4: dst[i] = FP4Code[q_i]·absmax[block].
func DequantizeFP4(dst []float32, src []byte, absmax []float32, blockSize int) error {
	return dequantize4(dst, src, absmax, &FP4Code, blockSize, "fp4")
}

func inf32() float32 { return float32(math.Inf(1)) }
