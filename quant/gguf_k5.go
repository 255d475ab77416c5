package quant

// quantizeBlockQ5_K is quantize_row_q5_K_ref for one super-block of 256:
// quantizeK8 (the header d, dmin, scales[12] as Q4_K) with
// make_qkx2_quants(32, 31, x, w, rmin −0.5, rdelta 0.1, nstep 15) and levels
// 0…31, then, per 64-value chunk c (0…3), the low nibbles of values l and
// l+32 in qs[32c+l] (low, high) and their fifth bits in bits 2c and 2c+1 of
// qh[l].
func quantizeBlockQ5_K(dst []byte, x []float32, fs *f16Scratch) {
	var L [QKK]uint8
	quantizeK8(dst[:16], &L, x, 31, -0.5, 0.1, 15, fs)
	qh := dst[16:48]
	ql := dst[48:176]
	clear(qh)
	m1, m2 := uint8(1), uint8(2)
	for n := 0; n < QKK; n += 64 {
		for j := 0; j < 32; j++ {
			l1, l2 := L[n+j], L[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[j] = l1 | l2<<4
		}
		m1 <<= 2
		m2 <<= 2
		ql = ql[32:]
	}
}

// dequantizeBlockQ5_K is dequantize_row_q5_K: y = d·sc·q − dmin·m per
// 32-value sub-block, q = nibble + 16·(qh bit) (products rounded before the
// difference).
func dequantizeBlockQ5_K(y []float32, b []byte, d, dmin float32) {
	sc := b[4:16]
	qh := b[16:48:48]
	ql := b[48:176]
	for c := 0; c < 4; c++ {
		s, m := getScaleMinK4(2*c, sc)
		d1, m1 := float32(d*float32(s)), float32(dmin*float32(m))
		s, m = getScaleMinK4(2*c+1, sc)
		d2, m2 := float32(d*float32(s)), float32(dmin*float32(m))
		q := ql[32*c : 32*c+32]
		y1, y2 := y[64*c:64*c+32], y[64*c+32:64*c+64]
		sh := uint(2 * c)
		for l := range 32 {
			// branch-free: the fifth bits of a random block are unpredictable
			h := qh[l] >> sh
			q1 := q[l]&0xF | (h&1)<<4
			q2 := q[l]>>4 | (h&2)<<3
			y1[l] = float32(d1*float32(q1)) - m1
			y2[l] = float32(d2*float32(q2)) - m2
		}
	}
}
