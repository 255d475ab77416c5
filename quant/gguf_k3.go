package quant

// makeQ3Quants is ggml's make_q3_quants with do_rmse: the symmetric scale of
// a [−nmax, nmax−1] quantization of x with weights w = x². It starts from
// iscale = −nmax/max (max = the signed value of largest |x|) and then, for
// at most 5 passes, moves each level to nearest(x·Σwl²/Σwxl) (both sums
// without that value) when that raises (Σwxl)²/Σwl²; the scale is
// Σwxl/Σwl². L receives l + nmax. All arithmetic is float32 in the
// reference's order.
func makeQ3Quants(nmax int, x []float32, L []int8) float32 {
	mx, ok := signedAbsMax(x, L)
	if !ok {
		return 0
	}
	iscale := float32(-nmax) / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := nearestInt(float32(iscale * v))
		l = max(-nmax, min(nmax-1, l))
		L[i] = int8(l)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i, v := range x {
			w := float32(v * v)
			li := float32(L[i])
			slx := sumlx - float32(float32(w*v)*li)
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*li)*li)
				nl := nearestInt(float32(v*sl2) / slx)
				nl = max(-nmax, min(nmax-1, nl))
				if nl != int(L[i]) {
					fl := float32(nl)
					slx += float32(float32(w*v) * fl)
					sl2 += float32(float32(w*fl) * fl)
					if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = int8(nl)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range x {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// q3kScale returns the 6-bit scale (0…63, stored +32) of sub-block j from the
// 12 scale bytes of a Q3_K block: the low nibble of sc[j] (j < 8) or the
// high nibble of sc[j−8], and bits 2·(j/4)+1:2·(j/4) of sc[8 + j%4] on top.
func q3kScale(j int, sc []byte) int {
	var lo byte
	if j < 8 {
		lo = sc[j] & 0xF
	} else {
		lo = sc[j-8] >> 4
	}
	return int(lo | (sc[8+j%4]>>(2*(j/4))&3)<<4)
}

// quantizeBlockQ3_K is quantize_row_q3_K_ref for one super-block of 256
// (hmask[32], qs[64], scales[12], d):
//
//  1. per 16-value sub-block scale = make_q3_quants(16, 4, x, do_rmse);
//  2. the signed scale of largest magnitude gives iscale = −32/max_scale,
//     d = 1/iscale as f16 and 6-bit scales clamp(nearest(iscale·scale),
//     −32, 31) + 32, packed by q3kScale's layout (all zero and d = 0 when
//     every scale is 0);
//  3. each value requantized against the f16 d·(sc − 32): clamp(nearest(x/d),
//     −4, 3) + 4 — a sub-block with d·sc = 0 keeps its levels;
//  4. bit 2 of value j goes to bit j/32 of hmask[j%32]; the low 2 bits of
//     values l, l+32, l+64, l+96 of each 128-value half share qs[32·half + l]
//     (bits 1:0, 3:2, 5:4, 7:6).
func quantizeBlockQ3_K(dst []byte, x []float32, fs *f16Scratch) {
	var L [QKK]int8
	var scales [QKK / 16]float32
	var maxScale, amax float32
	for j := 0; j < QKK/16; j++ {
		scales[j] = makeQ3Quants(4, x[16*j:16*j+16], L[16*j:16*j+16])
		if s := fabs(scales[j]); s > amax {
			amax, maxScale = s, scales[j]
		}
	}
	sc := dst[96:108]
	clear(sc)
	if maxScale != 0 {
		iscale := -32 / maxScale
		for j := 0; j < QKK/16; j++ {
			// int8_t l = nearest_int(…): the C conversion truncates
			l := int(int8(nearestInt(float32(iscale * scales[j]))))
			u := byte(max(-32, min(31, l)) + 32)
			if j < 8 {
				sc[j] = u & 0xF
			} else {
				sc[j-8] |= (u & 0xF) << 4
			}
			sc[j%4+8] |= (u >> 4) << (2 * (j / 4))
		}
		fs.put(dst[108:], 1/iscale)
	} else {
		fs.put(dst[108:], 0)
	}
	d0 := fs.get(dst[108:])
	for j := 0; j < QKK/16; j++ {
		d := float32(d0 * float32(q3kScale(j, sc)-32))
		if d == 0 {
			continue
		}
		for ii := 0; ii < 16; ii++ {
			l := nearestInt(x[16*j+ii] / d)
			L[16*j+ii] = int8(max(-4, min(3, l)) + 4)
		}
	}
	hm := dst[0:32]
	clear(hm)
	for j := 0; j < QKK; j++ {
		if L[j] > 3 {
			hm[j%32] |= 1 << (j / 32)
			L[j] -= 4
		}
	}
	qs := dst[32:96]
	for j := 0; j < QKK; j += 128 {
		for l := 0; l < 32; l++ {
			qs[l] = uint8(L[j+l]) | uint8(L[j+l+32])<<2 | uint8(L[j+l+64])<<4 | uint8(L[j+l+96])<<6
		}
		qs = qs[32:]
	}
}

// dequantizeBlockQ3_K is dequantize_row_q3_K: y = (d·(sc − 32))·(q − 4·(1 −
// hbit)) per 16-value sub-block, q the 2-bit value and hbit its hmask bit.
func dequantizeBlockQ3_K(y []float32, b []byte, d, _ float32) {
	hm := b[0:32:32]
	sc := b[96:108]
	for n := 0; n < 2; n++ {
		q := b[32+32*n : 64+32*n]
		for j := 0; j < 4; j++ {
			shift := uint(2 * j)
			bit := uint(4*n + j) // the hmask bit of these 32 values
			yj := y[128*n+32*j : 128*n+32*j+32]
			dl := float32(d * float32(q3kScale(8*n+2*j, sc)-32))
			for l := range 16 {
				// q − 4 when the high bit is clear, branch-free
				v := int(q[l]>>shift&3) - 4 + 4*int(hm[l]>>bit&1)
				yj[l] = float32(dl * float32(v))
			}
			dl = float32(d * float32(q3kScale(8*n+2*j+1, sc)-32))
			for l := 16; l < 32; l++ {
				v := int(q[l]>>shift&3) - 4 + 4*int(hm[l]>>bit&1)
				yj[l] = float32(dl * float32(v))
			}
		}
	}
}
