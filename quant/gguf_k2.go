package quant

// quantizeBlockQ2_K is quantize_row_q2_K_ref for one super-block of 256
// (scales[16], qs[64], d, dmin):
//
//  1. per 16-value sub-block, weights w = |x| and (scale, min) =
//     make_qkx2_quants(16, 3, x, w, rmin −0.5, rdelta 0.1, nstep 15) with
//     the weighted absolute error (use_mad);
//  2. scales[j] = nearest(15/max_scale·scale) | nearest(15/max_min·min) << 4
//     (a nibble is 0 when its maximum is not positive); d = max_scale/15 and
//     dmin = max_min/15 as f16 (0 likewise);
//  3. each value requantized against the f16 d·sc and dmin·m:
//     clamp(nearest((x + dm)/d), 0, 3) — a sub-block with d·sc = 0 keeps its
//     make_qkx2_quants levels;
//  4. values l, l+32, l+64, l+96 of each 128-value half share
//     qs[32·half + l] (bits 1:0, 3:2, 5:4, 7:6).
func quantizeBlockQ2_K(dst []byte, x []float32, fs *f16Scratch) {
	var L [QKK]uint8
	var Laux [16]uint8
	var weights [16]float32
	var mins, scales [QKK / 16]float32
	var maxScale, maxMin float32
	for j := 0; j < QKK/16; j++ {
		xs := x[16*j : 16*j+16]
		for l, v := range xs {
			weights[l] = fabs(v)
		}
		scales[j], mins[j] = makeQKX2Quants(3, xs, weights[:], L[16*j:16*j+16], Laux[:], -0.5, 0.1, 15, true)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	sc := dst[0:16]
	if maxScale > 0 {
		iscale := 15 / maxScale
		for j := range sc {
			sc[j] = byte(nearestInt(float32(iscale * scales[j])))
		}
		fs.put(dst[80:], maxScale/15)
	} else {
		clear(sc)
		fs.put(dst[80:], 0)
	}
	if maxMin > 0 {
		iscale := 15 / maxMin
		for j := range sc {
			sc[j] |= byte(nearestInt(float32(iscale*mins[j])) << 4)
		}
		fs.put(dst[82:], maxMin/15)
	} else {
		fs.put(dst[82:], 0)
	}
	dd, dmin := fs.get(dst[80:]), fs.get(dst[82:])
	for j := 0; j < QKK/16; j++ {
		d := float32(dd * float32(sc[j]&0xF))
		if d == 0 {
			continue
		}
		dm := float32(dmin * float32(sc[j]>>4))
		for ii := 0; ii < 16; ii++ {
			l := nearestInt((x[16*j+ii] + dm) / d)
			L[16*j+ii] = uint8(max(0, min(3, l)))
		}
	}
	qs := dst[16:80]
	for j := 0; j < QKK; j += 128 {
		for l := 0; l < 32; l++ {
			qs[l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
		qs = qs[32:]
	}
}

// dequantizeBlockQ2_K is dequantize_row_q2_K: y = d·(sc & 15)·q −
// dmin·(sc >> 4) per 16-value sub-block (products rounded before the
// difference).
func dequantizeBlockQ2_K(y []float32, b []byte, d, dmin float32) {
	sc := b[0:16:16]
	for n := 0; n < 2; n++ {
		q := b[16+32*n : 48+32*n]
		for j := 0; j < 4; j++ {
			shift := uint(2 * j)
			yj := y[128*n+32*j : 128*n+32*j+32]
			for h := 0; h < 2; h++ {
				s := sc[8*n+2*j+h]
				dl, ml := float32(d*float32(s&0xF)), float32(dmin*float32(s>>4))
				qh, yh := q[16*h:16*h+16], yj[16*h:16*h+16]
				for l := range 16 {
					yh[l] = float32(dl*float32(qh[l]>>shift&3)) - ml
				}
			}
		}
	}
}
