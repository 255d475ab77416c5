package quant

// Row-level transcriptions of ggml-quants.c quantize_row_*_ref and
// dequantize_row_*, written independently of gguf_*.go: fp16 through
// github.com/x448/float16 (RNE), rounding helpers re-derived here, every
// float32 product rounded explicitly (no FMA), blocks as byte offsets.

import (
	"encoding/binary"
	"math"

	"github.com/x448/float16"
)

func rF16(v float32) [2]byte {
	h := uint16(float16.Fromfloat32(v))
	return [2]byte{byte(h), byte(h >> 8)}
}

func rF32(b []byte) float32 { return float16.Frombits(binary.LittleEndian.Uint16(b)).Float32() }

// rNearest is nearest_int written with math.RoundToEven (equal to the
// 1.5·2^23 trick for |v| < 2^22).
func rNearest(v float32) int { return int(math.RoundToEven(float64(v))) }

func rRowQ8_0(x []float32) []byte {
	var out []byte
	for i := 0; i < len(x); i += 32 {
		var amax float32
		for j := 0; j < 32; j++ {
			amax = float32(math.Max(float64(amax), math.Abs(float64(x[i+j]))))
		}
		d := amax / 127
		id := float32(0)
		if d != 0 {
			id = 1 / d
		}
		h := rF16(d)
		out = append(out, h[0], h[1])
		for j := 0; j < 32; j++ {
			v := float32(x[i+j] * id)
			var r float64
			if v >= 0 {
				r = math.Floor(float64(v) + 0.5)
			} else {
				r = -math.Floor(-float64(v) + 0.5)
			}
			// roundf on a float32 v: v+0.5 must not round up in float64 (exact here)
			out = append(out, byte(int8(r)))
		}
	}
	return out
}

func rRowQx_0(x []float32, bits int) []byte {
	var out []byte
	half := float32(int(1) << (bits - 1)) // 8 or 16
	top := int(1)<<bits - 1
	for i := 0; i < len(x); i += 32 {
		var amax, mx float32
		for j := 0; j < 32; j++ {
			if a := float32(math.Abs(float64(x[i+j]))); amax < a {
				amax, mx = a, x[i+j]
			}
		}
		d := mx / -half
		id := float32(0)
		if d != 0 {
			id = 1 / d
		}
		h := rF16(d)
		out = append(out, h[0], h[1])
		qs := make([]byte, 16)
		var qh uint32
		for j := 0; j < 16; j++ {
			a := int(math.Trunc(float64(float32(float32(x[i+j]*id) + half + 0.5))))
			b := int(math.Trunc(float64(float32(float32(x[i+16+j]*id) + half + 0.5))))
			a, b = min(top, a), min(top, b)
			qs[j] = byte(a&15) | byte(b&15)<<4
			qh |= uint32(a>>4&1) << j
			qh |= uint32(b>>4&1) << (16 + j)
		}
		if bits == 5 {
			out = binary.LittleEndian.AppendUint32(out, qh)
		}
		out = append(out, qs...)
	}
	return out
}

func rRowQx_1(x []float32, bits int) []byte {
	var out []byte
	levels := float32(int(1)<<bits - 1)
	for i := 0; i < len(x); i += 32 {
		lo, hi := float32(math.MaxFloat32), float32(-math.MaxFloat32)
		for j := 0; j < 32; j++ {
			lo = float32(math.Min(float64(lo), float64(x[i+j])))
			hi = float32(math.Max(float64(hi), float64(x[i+j])))
		}
		d := (hi - lo) / levels
		id := float32(0)
		if d != 0 {
			id = 1 / d
		}
		h, m := rF16(d), rF16(lo)
		out = append(out, h[0], h[1], m[0], m[1])
		qs := make([]byte, 16)
		var qh uint32
		for j := 0; j < 16; j++ {
			a := int(math.Trunc(float64(float32(float32((x[i+j]-lo)*id) + 0.5))))
			b := int(math.Trunc(float64(float32(float32((x[i+16+j]-lo)*id) + 0.5))))
			if bits == 4 {
				a, b = min(15, a), min(15, b)
			}
			qs[j] = byte(a&15) | byte(b&15)<<4
			qh |= uint32(a>>4&1) << j
			qh |= uint32(b>>4&1) << (16 + j)
		}
		if bits == 5 {
			out = binary.LittleEndian.AppendUint32(out, qh)
		}
		out = append(out, qs...)
	}
	return out
}

// rQKX2 transcribes make_qkx2_quants.
func rQKX2(n, nmax int, x, weights []float32, L []uint8, rmin, rdelta float32, nstep int) (float32, float32) {
	Laux := make([]uint8, n)
	mn, mx := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		sumW = sumW + weights[i]
		sumX = sumX + float32(weights[i]*x[i])
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		for i := 0; i < n; i++ {
			L[i] = 0
		}
		return 0, -mn
	}
	iscale := float32(nmax) / (mx - mn)
	scale := 1 / iscale
	best := float32(0)
	for i := 0; i < n; i++ {
		l := rNearest(float32(iscale * (x[i] - mn)))
		l = max(0, min(nmax, l))
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(L[i]))+mn) - x[i]
		best = best + float32(weights[i]*float32(diff*diff))
	}
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rmin+float32(rdelta*float32(is))) + float32(nmax)) / (mx - mn)
		var sl, sl2, sxl float32
		for i := 0; i < n; i++ {
			l := max(0, min(nmax, rNearest(float32(iscale*(x[i]-mn)))))
			Laux[i] = uint8(l)
			w := weights[i]
			sl = sl + float32(w*float32(l))
			sl2 = sl2 + float32(float32(w*float32(l))*float32(l))
			sxl = sxl + float32(float32(w*float32(l))*x[i])
		}
		D := float32(sumW*sl2) - float32(sl*sl)
		if D > 0 {
			ts := (float32(sumW*sxl) - float32(sumX*sl)) / D
			tm := (float32(sl2*sumX) - float32(sl*sxl)) / D
			if tm > 0 {
				tm = 0
				ts = sxl / sl2
			}
			var cur float32
			for i := 0; i < n; i++ {
				diff := float32(float32(ts*float32(Laux[i]))+tm) - x[i]
				cur = cur + float32(weights[i]*float32(diff*diff))
			}
			if cur < best {
				copy(L, Laux)
				best, scale, mn = cur, ts, tm
			}
		}
	}
	return scale, -mn
}

// rK8Search is the first half of quantize_row_q4_K_ref and _q5_K_ref:
// per 32-value sub-block, weights rms + |x| and make_qkx2_quants(32,
// nmax, rmin, 0.1, nstep); then the maxima and the inverse 6-bit steps.
func rK8Search(xb []float32, nmax int, rmin float32, nstep int) (L []uint8, scales, mins [8]float32, maxScale, maxMin, is, im float32) {
	L = make([]uint8, 256)
	for j := 0; j < 8; j++ {
		var s2 float32
		for l := 0; l < 32; l++ {
			s2 = s2 + float32(xb[32*j+l]*xb[32*j+l])
		}
		av := float32(math.Sqrt(float64(s2 / 32)))
		w := make([]float32, 32)
		for l := range w {
			w[l] = av + float32(math.Abs(float64(xb[32*j+l])))
		}
		scales[j], mins[j] = rQKX2(32, nmax, xb[32*j:32*j+32], w, L[32*j:32*j+32], rmin, 0.1, nstep)
		if scales[j] > maxScale { // not max(): a NaN is skipped, as in C
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	if maxScale > 0 {
		is = 63 / maxScale
	}
	if maxMin > 0 {
		im = 63 / maxMin
	}
	return L, scales, mins, maxScale, maxMin, is, im
}

func rRowQ4_K(x []float32) []byte {
	var out []byte
	for i := 0; i < len(x); i += 256 {
		xb := x[i : i+256]
		L, scales, mins, maxScale, maxMin, is, im := rK8Search(xb, 15, -1, 20)
		sc := make([]byte, 12)
		for j := 0; j < 8; j++ {
			ls := uint8(rNearest(float32(is * scales[j])))
			lm := uint8(rNearest(float32(im * mins[j])))
			ls, lm = min(63, ls), min(63, lm)
			if j < 4 {
				sc[j], sc[j+4] = ls, lm
			} else {
				sc[j+4] = ls&0xF | (lm&0xF)<<4
				sc[j-4] |= (ls >> 4) << 6
				sc[j] |= (lm >> 4) << 6
			}
		}
		dh, mh := rF16(maxScale/63), rF16(maxMin/63)
		d0, m0 := rF32(dh[:]), rF32(mh[:])
		for j := 0; j < 8; j++ {
			var s, m uint8
			if j < 4 {
				s, m = sc[j]&63, sc[j+4]&63
			} else {
				s = sc[j+4]&0xF | (sc[j-4]>>6)<<4
				m = sc[j+4]>>4 | (sc[j]>>6)<<4
			}
			d := float32(d0 * float32(s))
			if d == 0 {
				continue
			}
			dm := float32(m0 * float32(m))
			for ii := 0; ii < 32; ii++ {
				L[32*j+ii] = uint8(max(0, min(15, rNearest((xb[32*j+ii]+dm)/d))))
			}
		}
		out = append(out, dh[0], dh[1], mh[0], mh[1])
		out = append(out, sc...)
		for j := 0; j < 256; j += 64 {
			for l := 0; l < 32; l++ {
				out = append(out, L[j+l]|L[j+l+32]<<4)
			}
		}
	}
	return out
}

// rQX transcribes make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL).
func rQX(n, nmax int, x []float32, L []int8) float32 {
	var mx, amax float32
	for i := 0; i < n; i++ {
		ax := float32(math.Abs(float64(x[i])))
		if ax > amax {
			amax, mx = ax, x[i]
		}
	}
	if amax < 1e-15 {
		for i := 0; i < n; i++ {
			L[i] = 0
		}
		return 0
	}
	iscale := float32(-nmax) / mx
	var sumlx, suml2 float32
	for i := 0; i < n; i++ {
		l := max(-nmax, min(nmax-1, rNearest(float32(iscale*x[i]))))
		L[i] = int8(l + nmax)
		w := float32(x[i] * x[i])
		sumlx = sumlx + float32(float32(w*x[i])*float32(l))
		suml2 = suml2 + float32(float32(w*float32(l))*float32(l))
	}
	scale := float32(0)
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(float32(0.1)*float32(is))) / mx
		sumlx, suml2 = 0, 0
		for i := 0; i < n; i++ {
			l := max(-nmax, min(nmax-1, rNearest(float32(iscale*x[i]))))
			w := float32(x[i] * x[i])
			sumlx = sumlx + float32(float32(w*x[i])*float32(l))
			suml2 = suml2 + float32(float32(w*float32(l))*float32(l))
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i := 0; i < n; i++ {
				L[i] = int8(nmax + max(-nmax, min(nmax-1, rNearest(float32(iscale*x[i])))))
			}
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

func rRowQ6_K(x []float32) []byte {
	var out []byte
	for i := 0; i < len(x); i += 256 {
		xb := x[i : i+256]
		L := make([]int8, 256)
		var scales [16]float32
		var maxScale, maxAbs float32
		for ib := 0; ib < 16; ib++ {
			scales[ib] = rQX(16, 32, xb[16*ib:], L[16*ib:])
			if a := float32(math.Abs(float64(scales[ib]))); a > maxAbs {
				maxAbs, maxScale = a, scales[ib]
			}
		}
		blk := make([]byte, 210)
		if maxAbs < 1e-15 {
			out = append(out, blk...)
			continue
		}
		iscale := -128 / maxScale
		dh := rF16(1 / iscale)
		blk[208], blk[209] = dh[0], dh[1]
		for ib := 0; ib < 16; ib++ {
			blk[192+ib] = byte(int8(min(127, rNearest(float32(iscale*scales[ib])))))
		}
		d0 := rF32(dh[:])
		for j := 0; j < 16; j++ {
			d := float32(d0 * float32(int8(blk[192+j])))
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = int8(max(-32, min(31, rNearest(xb[16*j+ii]/d))) + 32)
			}
		}
		for j := 0; j < 256; j += 128 {
			ql := blk[j/2:]
			qh := blk[128+j/4:]
			for l := 0; l < 32; l++ {
				ql[l] = byte(L[j+l])&15 | (byte(L[j+l+64])&15)<<4
				ql[l+32] = byte(L[j+l+32])&15 | (byte(L[j+l+96])&15)<<4
				qh[l] = byte(L[j+l])>>4 | byte(L[j+l+32])>>4<<2 | byte(L[j+l+64])>>4<<4 | byte(L[j+l+96])>>4<<6
			}
		}
		out = append(out, blk...)
	}
	return out
}

// rDequant decodes any of the types by the layout table of the notes.
func rDequant(b []byte, t GGUFType, n int) []float32 {
	y := make([]float32, 0, n)
	switch t {
	case GGUFQ8_0:
		for ; len(b) > 0; b = b[34:] {
			d := rF32(b)
			for j := 0; j < 32; j++ {
				y = append(y, float32(int8(b[2+j]))*d)
			}
		}
	case GGUFQ4_0, GGUFQ5_0, GGUFQ4_1, GGUFQ5_1:
		ts := t.TypeSize()
		for ; len(b) > 0; b = b[ts:] {
			d := rF32(b)
			var m float32
			off := 2
			if t == GGUFQ4_1 || t == GGUFQ5_1 {
				m = rF32(b[2:])
				off = 4
			}
			var qh uint32
			if t == GGUFQ5_0 || t == GGUFQ5_1 {
				qh = binary.LittleEndian.Uint32(b[off:])
				off += 4
			}
			qs := b[off : off+16]
			var q [32]int
			for j := 0; j < 16; j++ {
				q[j] = int(qs[j]&15) | int(qh>>j&1)<<4
				q[j+16] = int(qs[j]>>4) | int(qh>>(j+16)&1)<<4
			}
			for j := 0; j < 32; j++ {
				switch t {
				case GGUFQ4_0:
					y = append(y, float32(q[j]-8)*d)
				case GGUFQ5_0:
					y = append(y, float32(q[j]-16)*d)
				default:
					y = append(y, float32(float32(q[j])*d)+m)
				}
			}
		}
	case GGUFQ4_K:
		for ; len(b) > 0; b = b[144:] {
			d, dmin := rF32(b), rF32(b[2:])
			sc := b[4:16]
			qs := b[16:144]
			for j := 0; j < 8; j++ {
				var s, m uint8
				if j < 4 {
					s, m = sc[j]&63, sc[j+4]&63
				} else {
					s = sc[j+4]&0xF | (sc[j-4]>>6)<<4
					m = sc[j+4]>>4 | (sc[j]>>6)<<4
				}
				ds, dm := float32(d*float32(s)), float32(dmin*float32(m))
				chunk := qs[(j/2)*32 : (j/2)*32+32]
				for l := 0; l < 32; l++ {
					q := chunk[l] & 15
					if j%2 == 1 {
						q = chunk[l] >> 4
					}
					y = append(y, float32(ds*float32(q))-dm)
				}
			}
		}
	case GGUFQ6_K:
		for ; len(b) > 0; b = b[210:] {
			d := rF32(b[208:])
			for i := 0; i < 256; i++ {
				half, r := i/128, i%128
				l := r % 32
				grp := r / 32 // 0..3: ql low(l), ql low(l+32), ql high(l), ql high(l+32)
				qlb := b[half*64+l+(grp%2)*32]
				lo := qlb & 15
				if grp >= 2 {
					lo = qlb >> 4
				}
				hi := b[128+half*32+l] >> (2 * grp) & 3
				q := int(lo|hi<<4) - 32
				sc := int8(b[192+half*8+grp*2+l/16])
				y = append(y, float32(d*float32(sc))*float32(q))
			}
		}
	}
	return y
}

func rQuantRow(x []float32, t GGUFType) []byte {
	switch t {
	case GGUFQ8_0:
		return rRowQ8_0(x)
	case GGUFQ4_0:
		return rRowQx_0(x, 4)
	case GGUFQ5_0:
		return rRowQx_0(x, 5)
	case GGUFQ4_1:
		return rRowQx_1(x, 4)
	case GGUFQ5_1:
		return rRowQx_1(x, 5)
	case GGUFQ4_K:
		return rRowQ4_K(x)
	case GGUFQ6_K:
		return rRowQ6_K(x)
	}
	return nil
}
