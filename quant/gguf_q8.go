package quant

import "math"

// quantizeBlockQ8_0 is quantize_row_q8_0_ref for one block of 32:
// amax = max|x|; d = amax/127; id = 1/d (0 when d is 0); d stored as f16;
// q = roundf(x·id), halves rounded away from zero.
func quantizeBlockQ8_0(dst []byte, x []float32) (float32, float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, fabs(v))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	for j, v := range x[:32] {
		dst[2+j] = byte(int8(roundf(v * id)))
	}
	return d, 0
}

// roundf is C's roundf (to nearest, halves away from zero) for
// |v| < 2^29, without branches: float64(|v|) + 0.5 is exact there,
// truncation is floor, and the sign is copied back.
func roundf(v float32) float32 {
	r := float32(int64(math.Abs(float64(v)) + 0.5))
	return math.Float32frombits(math.Float32bits(r) | math.Float32bits(v)&(1<<31))
}

// dequantizeBlockQ8_0 is dequantize_row_q8_0: y = q·d.
func dequantizeBlockQ8_0(y []float32, b []byte, d, _ float32) {
	for j := range y[:32] {
		y[j] = float32(int8(b[2+j])) * d
	}
}
