package quant

import "math"

// quantizeBlockQ8_0 is quantize_row_q8_0_ref for one block of 32:
// amax = max|x|; d = amax/127; id = 1/d (0 when d is 0); d stored as f16;
// q = roundf(x·id), halves rounded away from zero.
func quantizeBlockQ8_0(dst []byte, x []float32, sc *f16Scratch) {
	var amax float32
	for _, v := range x {
		amax = max(amax, fabs(v))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	sc.put(dst, d)
	for j, v := range x[:32] {
		dst[2+j] = byte(int8(roundf(v * id)))
	}
}

// roundf is C's roundf: to nearest, halves away from zero.
func roundf(v float32) float32 { return float32(math.Round(float64(v))) }

// dequantizeBlockQ8_0 is dequantize_row_q8_0: y = q·d.
func dequantizeBlockQ8_0(y []float32, b []byte, sc *f16Scratch) {
	d := sc.get(b)
	for j := range y[:32] {
		y[j] = float32(int8(b[2+j])) * d
	}
}
