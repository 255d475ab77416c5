package quant

import (
	"encoding/binary"
	"math"
)

// nearestInt is ggml's nearest_int: round to nearest, ties to even, by the
// 1.5·2^23 trick (exact for |v| ≤ 4194303).
func nearestInt(v float32) int {
	val := v + 12582912
	return int(math.Float32bits(val)&0x007fffff) - 0x00400000
}

// makeQKX2Quants is ggml's make_qkx2_quants: the (scale, −min) pair of an
// asymmetric nmax-level quantization of x with weights w that minimizes the
// weighted squared error (the weighted absolute error with useMAD, as Q2_K
// asks), searching iscale = (rmin + rdelta·is + nmax)/(max−min) for
// is = 0…nstep and refining each candidate by weighted least squares.
// L receives the levels. All arithmetic is float32 in the reference's order.
func makeQKX2Quants(nmax int, x, w []float32, L, Laux []uint8, rmin, rdelta float32, nstep int, useMAD bool) (scale, theMin float32) {
	n := len(x)
	mn, mx := x[0], x[0]
	sumW := w[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		wi := w[i]
		sumW += wi
		sumX += float32(wi * x[i])
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0, -mn
	}
	fnmax := float32(nmax)
	iscale := fnmax / (mx - mn)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := nearestInt(float32(iscale * float32(x[i]-mn)))
		l = max(0, min(nmax, l))
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+mn) - x[i]
		if useMAD {
			diff = fabs(diff)
		} else {
			diff = float32(diff * diff)
		}
		bestError += float32(w[i] * diff)
	}
	if nstep < 1 {
		return scale, -mn
	}
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rmin+float32(rdelta*float32(is))) + fnmax) / (mx - mn)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := nearestInt(float32(iscale * float32(x[i]-mn)))
			l = max(0, min(nmax, l))
			Laux[i] = uint8(l)
			wi := w[i]
			fl := float32(l)
			sumL += float32(wi * fl)
			sumL2 += float32(float32(wi*fl) * fl)
			sumXL += float32(float32(wi*fl) * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(float32(thisScale*float32(Laux[i]))+thisMin) - x[i]
				if useMAD {
					diff = fabs(diff)
				} else {
					diff = float32(diff * diff)
				}
				curError += float32(w[i] * diff)
			}
			if curError < bestError {
				copy(L[:n], Laux[:n])
				bestError = curError
				scale = thisScale
				mn = thisMin
			}
		}
	}
	return scale, -mn
}

// getScaleMinK4 is ggml's get_scale_min_k4: the 6-bit scale and min of
// sub-block j from the 12 packed scale bytes of a Q4_K block.
func getScaleMinK4(j int, q []byte) (d, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xF | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// quantizeBlockQ4_K is quantize_row_q4_K_ref for one super-block of 256:
// quantizeK8 with make_qkx2_quants(32, 15, x, w, rmin −1, rdelta 0.1,
// nstep 20), then qs in 64-value chunks: byte l = L[j+l] | L[j+l+32] << 4.
func quantizeBlockQ4_K(dst []byte, x []float32, fs *f16Scratch) {
	var L [QKK]uint8
	quantizeK8(dst[:16], &L, x, 15, -1, 0.1, 20, fs)
	q := dst[16:144]
	for j := 0; j < QKK; j += 64 {
		for l := 0; l < 32; l++ {
			q[l] = L[j+l] | L[j+l+32]<<4
		}
		q = q[32:]
	}
}

// quantizeK8 is what quantize_row_q4_K_ref and quantize_row_q5_K_ref share:
// the header hdr = d, dmin (f16), scales[12] of one super-block and its
// levels L (0…nmax), from
//
//  1. per 32-value sub-block, weights w = √(Σx²/32) + |x| and
//     (scale, min) = make_qkx2_quants(32, nmax, x, w, rmin, rdelta, nstep);
//  2. ls = min(63, nearest(63/max_scale·scale)), lm likewise for the mins,
//     packed 6-bit into scales[12] (j < 4: scales[j] = ls, scales[j+4] = lm;
//     else low nibbles in scales[j+4] and the top 2 bits in bits 7:6 of
//     scales[j−4] and scales[j]); d = max_scale/63, dmin = max_min/63 as f16;
//  3. each value requantized against the f16-rounded d·sc and dmin·m:
//     l = clamp(nearest((x + dm)/d), 0, nmax) — a sub-block whose d·sc is 0
//     keeps its make_qkx2_quants levels.
func quantizeK8(hdr []byte, L *[QKK]uint8, x []float32, nmax int, rmin, rdelta float32, nstep int, fs *f16Scratch) {
	var Laux [32]uint8
	var weights [32]float32
	var mins, scales [QKK / 32]float32
	var maxScale, maxMin float32
	for j := 0; j < QKK/32; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = avX + fabs(v)
		}
		scales[j], mins[j] = makeQKX2Quants(nmax, xs, weights[:], L[32*j:32*j+32], Laux[:], rmin, rdelta, nstep, false)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := hdr[4:16]
	clear(sc)
	for j := 0; j < QKK/32; j++ {
		ls := min(63, uint8(nearestInt(float32(invScale*scales[j]))))
		lm := min(63, uint8(nearestInt(float32(invMin*mins[j]))))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0xF | (lm&0xF)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	fs.put(hdr[0:], maxScale/63)
	fs.put(hdr[2:], maxMin/63)
	dd, dmin := fs.get(hdr[0:]), fs.get(hdr[2:])
	for j := 0; j < QKK/32; j++ {
		s, m := getScaleMinK4(j, sc)
		d := float32(dd * float32(s))
		if d == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for ii := 0; ii < 32; ii++ {
			l := nearestInt((x[32*j+ii] + dm) / d)
			L[32*j+ii] = uint8(max(0, min(nmax, l)))
		}
	}
}

// dequantizeBlockQ4_K is dequantize_row_q4_K: y = d·sc·q − dmin·m per
// 32-value sub-block (products rounded before the difference).
func dequantizeBlockQ4_K(y []float32, b []byte, d, dmin float32) {
	sc := b[4:16]
	q := b[16:144]
	is := 0
	for j := 0; j < QKK; j += 64 {
		s, m := getScaleMinK4(is, sc)
		d1, m1 := float32(d*float32(s)), float32(dmin*float32(m))
		s, m = getScaleMinK4(is+1, sc)
		d2, m2 := float32(d*float32(s)), float32(dmin*float32(m))
		for l := 0; l < 32; l++ {
			y[j+l] = float32(d1*float32(q[l]&0xF)) - m1
			y[j+32+l] = float32(d2*float32(q[l]>>4)) - m2
		}
		q = q[32:]
		is += 2
	}
}

// groupMaxEps is ggml's GROUP_MAX_EPS.
const groupMaxEps = 1e-15

// signedAbsMax returns the signed value of the largest |x| (the first one
// when tied, as ggml's loops); when its magnitude is below groupMaxEps it
// sets L[:len(x)] to 0 and reports false (the group quantizes to zeros).
func signedAbsMax(x []float32, L []int8) (mx float32, ok bool) {
	var amax float32
	for _, v := range x {
		if ax := fabs(v); ax > amax {
			amax, mx = ax, v
		}
	}
	if amax < groupMaxEps {
		clear(L[:len(x)])
		return 0, false
	}
	return mx, true
}

// makeQXQuants is ggml's make_qx_quants with rmse_type 1 and no importance
// weights (w = x²): the symmetric scale of a [−nmax, nmax−1] quantization,
// trying iscale = −(nmax + 0.1·is)/max for is = −9…9 and keeping the one that
// maximizes (Σw·x·l)²/Σw·l². L receives l + nmax.
func makeQXQuants(nmax int, x []float32, L []int8) float32 {
	mx, ok := signedAbsMax(x, L)
	if !ok {
		return 0
	}
	fnmax := float32(nmax)
	iscale := float32(-nmax) / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := nearestInt(float32(iscale * v))
		l = max(-nmax, min(nmax-1, l))
		L[i] = int8(l + nmax)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fnmax + float32(0.1*float32(is))) / mx
		sumlx, suml2 = 0, 0
		for _, v := range x {
			l := nearestInt(float32(iscale * v))
			l = max(-nmax, min(nmax-1, l))
			w := float32(v * v)
			fl := float32(l)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				l := nearestInt(float32(iscale * v))
				L[i] = int8(nmax + max(-nmax, min(nmax-1, l)))
			}
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

// quantizeBlockQ6_K is quantize_row_q6_K_ref for one super-block of 256:
// per 16-value sub-block scale = make_qx_quants(16, 32, x, rmse_type 1); the
// signed scale of largest magnitude gives iscale = −128/max_scale, d = 1/iscale
// as f16 and int8 scales min(127, nearest(iscale·scale)); values are
// requantized against the f16 d·sc (clamp to −32…31, +32; a sub-block with
// d·sc = 0 keeps its levels) and packed: ql low nibbles of values l and l+64
// (and l+32, l+96), qh the top 2 bits of the four. A super-block whose
// scales are all below 1e-15 is all zero bytes.
func quantizeBlockQ6_K(dst []byte, x []float32, fs *f16Scratch) {
	var L [QKK]int8
	var scales [QKK / 16]float32
	var maxScale, maxAbsScale float32
	for ib := 0; ib < QKK/16; ib++ {
		s := makeQXQuants(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		scales[ib] = s
		if as := fabs(s); as > maxAbsScale {
			maxAbsScale, maxScale = as, s
		}
	}
	if maxAbsScale < groupMaxEps {
		clear(dst[:210])
		fs.put(dst[208:], 0)
		return
	}
	iscale := -128 / maxScale
	fs.put(dst[208:], 1/iscale)
	sc := dst[192:208]
	for ib := range scales {
		sc[ib] = byte(int8(min(127, nearestInt(float32(iscale*scales[ib])))))
	}
	d0 := fs.get(dst[208:])
	for j := 0; j < QKK/16; j++ {
		d := float32(d0 * float32(int8(sc[j])))
		if d == 0 {
			continue
		}
		for ii := 0; ii < 16; ii++ {
			l := nearestInt(x[16*j+ii] / d)
			L[16*j+ii] = int8(max(-32, min(31, l)) + 32)
		}
	}
	ql := dst[0:128]
	qh := dst[128:192]
	for j := 0; j < QKK; j += 128 {
		for l := 0; l < 32; l++ {
			q1 := uint8(L[j+l]) & 0xF
			q2 := uint8(L[j+l+32]) & 0xF
			q3 := uint8(L[j+l+64]) & 0xF
			q4 := uint8(L[j+l+96]) & 0xF
			ql[l] = q1 | q3<<4
			ql[l+32] = q2 | q4<<4
			qh[l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
		}
		ql = ql[64:]
		qh = qh[32:]
	}
}

// dequantizeBlockQ6_K is dequantize_row_q6_K: y = d·sc·(q − 32), with the
// products evaluated left to right ((d·sc)·q).
func dequantizeBlockQ6_K(y []float32, b []byte, d, _ float32) {
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	for n := 0; n < QKK; n += 128 {
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int8(ql[l]&0xF|(qh[l]>>0&3)<<4) - 32
			q2 := int8(ql[l+32]&0xF|(qh[l]>>2&3)<<4) - 32
			q3 := int8(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int8(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
			y[n+l] = float32(d*float32(int8(sc[is]))) * float32(q1)
			y[n+l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
			y[n+l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
			y[n+l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
		}
		ql, qh, sc = ql[64:], qh[32:], sc[8:]
	}
}

var _ = binary.LittleEndian
