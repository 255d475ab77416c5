package quant

// Row-level transcriptions of ggml-quants.c quantize_row_q2_K_ref,
// quantize_row_q3_K_ref, quantize_row_q5_K_ref and their dequantize_row_*,
// written from the reference's description (make_qkx2_quants with use_mad,
// make_q3_quants with do_rmse, the block structs of ggml-common.h)
// independently of gguf_k2.go, gguf_k3.go and gguf_k5.go, with the helpers
// of refgguf_test.go: fp16 through github.com/x448/float16 (RNE), nearest_int
// as math.RoundToEven, every float32 product rounded explicitly (no FMA),
// blocks built by appending bytes and decoded value by value.

import "math"

// rQKX2MAD transcribes make_qkx2_quants(n, nmax, x, weights, L, &the_min,
// Laux, rmin, rdelta, nstep, use_mad = true): as rQKX2, with the error of a
// value w·|diff| instead of w·diff².
func rQKX2MAD(n, nmax int, x, weights []float32, L []uint8, rmin, rdelta float32, nstep int) (float32, float32) {
	lo, hi := x[0], x[0]
	sw := weights[0]
	sx := float32(weights[0] * x[0])
	for i := 1; i < n; i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		sw = sw + weights[i]
		sx = sx + float32(weights[i]*x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0, -lo
	}
	level := func(is float32, v float32) int {
		return max(0, min(nmax, rNearest(float32(is*float32(v-lo)))))
	}
	errOf := func(s, m float32, lv []uint8) float32 {
		var e float32
		for i := 0; i < n; i++ {
			d := float32(float32(float32(s*float32(lv[i]))+m) - x[i])
			e = e + float32(weights[i]*float32(math.Abs(float64(d))))
		}
		return e
	}
	inv := float32(nmax) / float32(hi-lo)
	scale := 1 / inv
	for i := 0; i < n; i++ {
		L[i] = uint8(level(inv, x[i]))
	}
	best := errOf(scale, lo, L)
	aux := make([]uint8, n)
	for step := 0; step <= nstep; step++ {
		inv = float32(float32(rmin+float32(rdelta*float32(step)))+float32(nmax)) / float32(hi-lo)
		var s1, s2, sxl float32
		for i := 0; i < n; i++ {
			l := level(inv, x[i])
			aux[i] = uint8(l)
			wl := float32(weights[i] * float32(l))
			s1 = s1 + wl
			s2 = s2 + float32(wl*float32(l))
			sxl = sxl + float32(wl*x[i])
		}
		det := float32(sw*s2) - float32(s1*s1)
		if !(det > 0) {
			continue
		}
		ts := float32(float32(sw*sxl)-float32(sx*s1)) / det
		tm := float32(float32(s2*sx)-float32(s1*sxl)) / det
		if tm > 0 {
			tm, ts = 0, sxl/s2
		}
		if e := errOf(ts, tm, aux); e < best {
			copy(L[:n], aux)
			best, scale, lo = e, ts, tm
		}
	}
	return scale, -lo
}

func rRowQ2_K(x []float32) []byte {
	var out []byte
	for i := 0; i < len(x); i += 256 {
		xb := x[i : i+256]
		L := make([]uint8, 256)
		var scales, mins [16]float32
		var maxScale, maxMin float32
		for j := 0; j < 16; j++ {
			w := make([]float32, 16)
			for l := range w {
				w[l] = float32(math.Abs(float64(xb[16*j+l])))
			}
			scales[j], mins[j] = rQKX2MAD(16, 3, xb[16*j:16*j+16], w, L[16*j:16*j+16], -0.5, 0.1, 15)
			if scales[j] > maxScale {
				maxScale = scales[j]
			}
			if mins[j] > maxMin {
				maxMin = mins[j]
			}
		}
		sc := make([]byte, 16)
		dh, mh := rF16(0), rF16(0)
		if maxScale > 0 {
			is := 15 / maxScale
			for j := range sc {
				sc[j] = byte(rNearest(float32(is * scales[j])))
			}
			dh = rF16(maxScale / 15)
		}
		if maxMin > 0 {
			im := 15 / maxMin
			for j := range sc {
				sc[j] |= byte(rNearest(float32(im*mins[j])) << 4)
			}
			mh = rF16(maxMin / 15)
		}
		d0, m0 := rF32(dh[:]), rF32(mh[:])
		for j := 0; j < 16; j++ {
			d := float32(d0 * float32(sc[j]%16))
			if d == 0 {
				continue
			}
			dm := float32(m0 * float32(sc[j]/16))
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = uint8(max(0, min(3, rNearest(float32(xb[16*j+ii]+dm)/d))))
			}
		}
		out = append(out, sc...)
		for half := 0; half < 2; half++ {
			for l := 0; l < 32; l++ {
				var b byte
				for k := 0; k < 4; k++ {
					b |= L[128*half+32*k+l] << (2 * k)
				}
				out = append(out, b)
			}
		}
		out = append(out, dh[0], dh[1], mh[0], mh[1])
	}
	return out
}

// rQ3 transcribes make_q3_quants(n, nmax, x, L, do_rmse = true): L
// receives l + nmax.
func rQ3(n, nmax int, x []float32, L []int8) float32 {
	var big, amax float32
	for i := 0; i < n; i++ {
		if a := float32(math.Abs(float64(x[i]))); a > amax {
			amax, big = a, x[i]
		}
	}
	if amax < 1e-15 {
		for i := range L[:n] {
			L[i] = 0
		}
		return 0
	}
	clamp := func(v int) int { return max(-nmax, min(nmax-1, v)) }
	inv := float32(-nmax) / big
	lv := make([]int, n)
	var slx, sl2 float32
	for i := 0; i < n; i++ {
		lv[i] = clamp(rNearest(float32(inv * x[i])))
		w := float32(x[i] * x[i])
		slx = slx + float32(float32(w*x[i])*float32(lv[i]))
		sl2 = sl2 + float32(float32(w*float32(lv[i]))*float32(lv[i]))
	}
	for pass := 0; pass < 5; pass++ {
		moved := false
		for i := 0; i < n; i++ {
			w := float32(x[i] * x[i])
			a := slx - float32(float32(w*x[i])*float32(lv[i]))
			if !(a > 0) {
				continue
			}
			b := sl2 - float32(float32(w*float32(lv[i]))*float32(lv[i]))
			nl := clamp(rNearest(float32(x[i]*b) / a))
			if nl == lv[i] {
				continue
			}
			a = a + float32(float32(w*x[i])*float32(nl))
			b = b + float32(float32(w*float32(nl))*float32(nl))
			if b > 0 && float32(float32(a*a)*sl2) > float32(float32(slx*slx)*b) {
				lv[i], slx, sl2 = nl, a, b
				moved = true
			}
		}
		if !moved {
			break
		}
	}
	for i := 0; i < n; i++ {
		L[i] = int8(lv[i] + nmax)
	}
	if sl2 > 0 {
		return slx / sl2
	}
	return 0
}

// rQ3Scale reads the 6-bit scale j of a Q3_K block's 12 scale bytes as
// dequantize_row_q3_K's kmask unpacking does on four little-endian words:
// words 0/1 keep their low nibbles (scales 0–7), word 2/3 take the high
// nibbles of words 0/1 (scales 8–15); the top two bits come from word
// aux[2] shifted by 0, 2, 4, 6 for the four groups of four.
func rQ3Scale(sc []byte, j int) int {
	word := func(k int) uint32 {
		return uint32(sc[4*k]) | uint32(sc[4*k+1])<<8 | uint32(sc[4*k+2])<<16 | uint32(sc[4*k+3])<<24
	}
	a0, a1, tmp := word(0), word(1), word(2)
	const m1, m2 = 0x03030303, 0x0f0f0f0f
	aux := [4]uint32{
		a0&m2 | (tmp>>0&m1)<<4,
		a1&m2 | (tmp>>2&m1)<<4,
		a0>>4&m2 | (tmp>>4&m1)<<4,
		a1>>4&m2 | (tmp>>6&m1)<<4,
	}
	return int(int8(aux[j/4] >> (8 * (j % 4))))
}

func rRowQ3_K(x []float32) []byte {
	var out []byte
	for i := 0; i < len(x); i += 256 {
		xb := x[i : i+256]
		L := make([]int8, 256)
		var scales [16]float32
		var maxScale, amax float32
		for j := 0; j < 16; j++ {
			scales[j] = rQ3(16, 4, xb[16*j:16*j+16], L[16*j:16*j+16])
			if a := float32(math.Abs(float64(scales[j]))); a > amax {
				amax, maxScale = a, scales[j]
			}
		}
		sc := make([]byte, 12)
		dh := rF16(0)
		if maxScale != 0 {
			inv := float32(-32) / maxScale
			for j := 0; j < 16; j++ {
				l := int8(rNearest(float32(inv * scales[j]))) // C: int → int8_t
				q := max(-32, min(31, int(l))) + 32
				if j < 8 {
					sc[j] = byte(q & 15)
				} else {
					sc[j-8] |= byte(q&15) << 4
				}
				sc[8+j%4] |= byte(q>>4) << (2 * (j / 4))
			}
			dh = rF16(1 / inv)
		}
		d0 := rF32(dh[:])
		for j := 0; j < 16; j++ {
			d := float32(d0 * float32(rQ3Scale(sc, j)-32))
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = int8(max(-4, min(3, rNearest(xb[16*j+ii]/d))) + 4)
			}
		}
		hmask := make([]byte, 32)
		for j := 0; j < 256; j++ {
			if L[j] >= 4 {
				hmask[j%32] |= 1 << (j / 32)
				L[j] -= 4
			}
		}
		out = append(out, hmask...)
		for half := 0; half < 2; half++ {
			for l := 0; l < 32; l++ {
				var b byte
				for k := 0; k < 4; k++ {
					b |= byte(L[128*half+32*k+l]) << (2 * k)
				}
				out = append(out, b)
			}
		}
		out = append(out, sc...)
		out = append(out, dh[0], dh[1])
	}
	return out
}

func rRowQ5_K(x []float32) []byte {
	var out []byte
	for i := 0; i < len(x); i += 256 {
		xb := x[i : i+256]
		L, scales, mins, maxScale, maxMin, is, im := rK8Search(xb, 31, -0.5, 15)
		// the 6-bit (scale, min) pairs: 0–3 whole in bytes 0–3 / 4–7; 4–7 as
		// nibbles in bytes 8–11 with their top two bits in bits 7:6 of bytes
		// 0–3 (scale) and 4–7 (min)
		sc := make([]byte, 12)
		ls, lm := make([]uint8, 8), make([]uint8, 8)
		for j := 0; j < 8; j++ {
			ls[j] = min(63, uint8(rNearest(float32(is*scales[j]))))
			lm[j] = min(63, uint8(rNearest(float32(im*mins[j]))))
		}
		for j := 0; j < 4; j++ {
			sc[j] = ls[j] | (ls[j+4]>>4)<<6
			sc[j+4] = lm[j] | (lm[j+4]>>4)<<6
			sc[j+8] = ls[j+4]&15 | (lm[j+4]&15)<<4
		}
		dh, mh := rF16(maxScale/63), rF16(maxMin/63)
		d0, m0 := rF32(dh[:]), rF32(mh[:])
		for j := 0; j < 8; j++ {
			// read back from the bytes, as the reference does
			s, m := sc[j%4]&63, sc[j%4+4]&63
			if j >= 4 {
				s = sc[j+4]&15 | sc[j-4]>>6<<4
				m = sc[j+4]>>4 | sc[j]>>6<<4
			}
			d := float32(d0 * float32(s))
			if d == 0 {
				continue
			}
			dm := float32(m0 * float32(m))
			for ii := 0; ii < 32; ii++ {
				L[32*j+ii] = uint8(max(0, min(31, rNearest(float32(xb[32*j+ii]+dm)/d))))
			}
		}
		out = append(out, dh[0], dh[1], mh[0], mh[1])
		out = append(out, sc...)
		qh := make([]byte, 32)
		qs := make([]byte, 128)
		for v := 0; v < 256; v++ {
			chunk, r := v/64, v%64 // r < 32: low nibble, else high nibble of qs[32·chunk + r%32]
			bit := 2*chunk + r/32
			qh[r%32] |= (L[v] >> 4) << bit
			qs[32*chunk+r%32] |= (L[v] & 15) << (4 * (r / 32))
		}
		out = append(out, qh...)
		out = append(out, qs...)
	}
	return out
}

// rDequantK decodes the types of this file value by value and defers the
// others to rDequant.
func rDequantK(b []byte, t GGUFType, n int) []float32 {
	y := make([]float32, 0, n)
	switch t {
	case GGUFQ2_K:
		for ; len(b) > 0; b = b[84:] {
			d, dmin := rF32(b[80:]), rF32(b[82:])
			for v := 0; v < 256; v++ {
				s := b[v/16]
				half, r := v/128, v%128
				q := b[16+32*half+r%32] >> (2 * (r / 32)) & 3
				dl, ml := float32(d*float32(s&15)), float32(dmin*float32(s>>4))
				y = append(y, float32(dl*float32(q))-ml)
			}
		}
	case GGUFQ3_K:
		for ; len(b) > 0; b = b[110:] {
			d := rF32(b[108:])
			for v := 0; v < 256; v++ {
				half, r := v/128, v%128
				q := int(b[32+32*half+r%32]>>(2*(r/32))) & 3
				if b[v%32]>>(v/32)&1 == 0 {
					q -= 4
				}
				dl := float32(d * float32(rQ3Scale(b[96:108], v/16)-32))
				y = append(y, float32(dl*float32(q)))
			}
		}
	case GGUFQ5_K:
		for ; len(b) > 0; b = b[176:] {
			d, dmin := rF32(b), rF32(b[2:])
			sc := b[4:16]
			for v := 0; v < 256; v++ {
				j := v / 32
				var s, m uint8
				if j < 4 {
					s, m = sc[j]&63, sc[j+4]&63
				} else {
					s = sc[j+4]&15 | sc[j-4]>>6<<4
					m = sc[j+4]>>4 | sc[j]>>6<<4
				}
				chunk, r := v/64, v%64
				q := b[48+32*chunk+r%32] >> (4 * (r / 32)) & 15
				q |= (b[16+r%32] >> (2*chunk + r/32) & 1) << 4
				ds, dm := float32(d*float32(s)), float32(dmin*float32(m))
				y = append(y, float32(ds*float32(q))-dm)
			}
		}
	default:
		return rDequant(b, t, n)
	}
	return y
}

// rQuantRowK quantizes a row with this file's transcriptions or
// rQuantRow's.
func rQuantRowK(x []float32, t GGUFType) []byte {
	switch t {
	case GGUFQ2_K:
		return rRowQ2_K(x)
	case GGUFQ3_K:
		return rRowQ3_K(x)
	case GGUFQ5_K:
		return rRowQ5_K(x)
	}
	return rQuantRow(x, t)
}
