package quant

// quantizeBlockQ4_0 is quantize_row_q4_0_ref for one block of 32: max is the
// signed value of largest magnitude (the first on ties); d = max/−8;
// id = 1/d; q = min(15, trunc(x·id + 8.5)); element j in the low nibble of
// qs[j], element j+16 in its high nibble.
func quantizeBlockQ4_0(dst []byte, x []float32) (float32, float32) {
	var amax, mx float32
	for _, v := range x[:32] {
		if amax < fabs(v) {
			amax = fabs(v)
			mx = v
		}
	}
	d := mx / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	qs := dst[2:18]
	for j := 0; j < 16; j++ {
		x0 := float32(x[j] * id)
		x1 := float32(x[16+j] * id)
		xi0 := min(15, int8(x0+8.5))
		xi1 := min(15, int8(x1+8.5))
		qs[j] = byte(xi0) | byte(xi1)<<4
	}
	return d, 0
}

func dequantizeBlockQ4_0(y []float32, b []byte, d, _ float32) {
	qs := b[2:18]
	for j := 0; j < 16; j++ {
		y[j] = float32(int(qs[j]&0x0F)-8) * d
		y[j+16] = float32(int(qs[j]>>4)-8) * d
	}
}

// quantizeBlockQ4_1 is quantize_row_q4_1_ref for one block of 32:
// min/max; d = (max−min)/15; id = 1/d; d and m=min stored as f16;
// q = min(15, trunc((x−min)·id + 0.5)).
func quantizeBlockQ4_1(dst []byte, x []float32) (float32, float32) {
	lo, hi := float32(math32MaxFloat), float32(-math32MaxFloat)
	for _, v := range x[:32] {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	d := (hi - lo) / 15
	var id float32
	if d != 0 {
		id = 1 / d
	}
	qs := dst[4:20]
	for j := 0; j < 16; j++ {
		x0 := float32((x[j] - lo) * id)
		x1 := float32((x[16+j] - lo) * id)
		xi0 := min(15, int8(x0+0.5))
		xi1 := min(15, int8(x1+0.5))
		qs[j] = byte(xi0) | byte(xi1)<<4
	}
	return d, lo
}

// dequantizeBlockQ4_1: y = q·d + m (product rounded before the sum).
func dequantizeBlockQ4_1(y []float32, b []byte, d, m float32) {
	qs := b[4:20]
	for j := 0; j < 16; j++ {
		y[j] = float32(float32(qs[j]&0x0F)*d) + m
		y[j+16] = float32(float32(qs[j]>>4)*d) + m
	}
}

// math32MaxFloat is FLT_MAX.
const math32MaxFloat = 3.40282346638528859811704183484516925440e+38
