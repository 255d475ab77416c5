package kernels

import (
	"math"
)

// This file holds the pure-Go twins of every kernel. They are always
// compiled, so one test binary compares each fast path with its twin. The
// exported functions call them on non-amd64 builds, under -tags noasm, and
// for the tails the assembly leaves.

// axpyGeneric is: for i, v := range x { y[i] += float32(alpha * v) }
//
// The explicit conversion keeps the compiler from fusing the multiply and
// the add (Go may fuse on arm64), so every platform rounds twice, as the
// assembly does.
func axpyGeneric(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += float32(alpha * v)
	}
}

// scaleGeneric is: for i := range x { x[i] *= alpha }
func scaleGeneric(alpha float32, x []float32) {
	for i := range x {
		x[i] *= alpha
	}
}

// scaleToGeneric is: for i, v := range x { dst[i] = alpha * v }
func scaleToGeneric(dst []float32, alpha float32, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = alpha * v
	}
}

// addGeneric is: for i, v := range x { dst[i] += v }
func addGeneric(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] += v
	}
}

// subGeneric is: for i, v := range x { dst[i] -= v }
func subGeneric(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] -= v
	}
}

// negGeneric is: for i := range x { x[i] = -x[i] } (sign-bit flip: -0 ↔ +0, NaN sign flipped)
func negGeneric(x []float32) {
	for i := range x {
		x[i] = -x[i]
	}
}

// mulGeneric is: for i, v := range x { dst[i] *= v }
func mulGeneric(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] *= v
	}
}

// absMaxGeneric is: m := 0; for _, v := range x { if |v| > m { m = |v| } } (NaN compares false, so it is ignored)
func absMaxGeneric(x []float32) float32 {
	var m float32
	for _, v := range x {
		a := math.Float32frombits(math.Float32bits(v) &^ (1 << 31))
		if a > m {
			m = a
		}
	}
	return m
}

// lanes is the number of float64 partial sums of the reductions. The
// assembly keeps the same 16 lanes (4 YMM or 2 ZMM registers of float64), so
// both paths add the same numbers in the same order.
const lanes = 16

// reduceLanes folds the 16 partial sums as s[j] += s[j+w] for w = 8, 4, 2, 1
// and returns s[0], the order the assembly uses.
func reduceLanes(s *[lanes]float64) float64 {
	for w := lanes / 2; w >= 1; w /= 2 {
		for j := 0; j < w; j++ {
			s[j] += s[j+w]
		}
	}
	return s[0]
}

// dotLanesGeneric is the reduction body for n a multiple of 16:
//
//	for i := range x { s[i%16] += float64(x[i]) * float64(y[i]) }; return reduceLanes(&s)
//
// The float64 product of two float32 values is exact, so a fused
// multiply-add in the assembly gives the same sum.
func dotLanesGeneric(x, y []float32) float64 {
	var s [lanes]float64
	y = y[:len(x)]
	for i := 0; i+lanes <= len(x); i += lanes {
		xs, ys := x[i:i+lanes], y[i:i+lanes]
		for j := range lanes {
			s[j] += float64(xs[j]) * float64(ys[j])
		}
	}
	return reduceLanes(&s)
}

// sumSquaresLanesGeneric is dotLanesGeneric(x, x).
func sumSquaresLanesGeneric(x []float32) float64 {
	var s [lanes]float64
	for i := 0; i+lanes <= len(x); i += lanes {
		xs := x[i : i+lanes]
		for j := range lanes {
			v := float64(xs[j])
			s[j] += v * v
		}
	}
	return reduceLanes(&s)
}

// f16ToF32Generic is: for i, h := range src { dst[i] = f16 h widened exactly; NaN gets the quiet bit }
func f16ToF32Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = math.Float32frombits(f16BitsToF32Bits(h))
	}
}

// f16BitsToF32Bits widens one binary16 value exactly (subnormals included);
// a NaN keeps its sign and payload (shifted left 13) with the quiet bit set,
// as VCVTPH2PS does.
func f16BitsToF32Bits(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	e := uint32(h>>10) & 0x1f
	m := uint32(h & 0x3ff)
	switch {
	case e == 0x1f && m == 0:
		return sign | 0x7f800000
	case e == 0x1f:
		return sign | 0x7fc00000 | m<<13
	case e != 0:
		return sign | (e+112)<<23 | m<<13
	case m == 0:
		return sign
	}
	// Subnormal: m·2⁻²⁴, exact in float32.
	return sign | math.Float32bits(float32(m)*(1.0/(1<<24)))
}

// f32ToF16Generic is: for i, v := range src { dst[i] = v rounded to binary16, ties to even }
func f32ToF16Generic(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = f32BitsToF16Bits(math.Float32bits(v))
	}
}

// f32BitsToF16Bits rounds one float32 to binary16 with round-to-nearest-even.
// Values at or above 65520 in magnitude (and ±Inf) become ±Inf, as IEEE
// rounding and VCVTPS2PH do. A NaN keeps its sign and the top 10 payload bits
// with the quiet bit set (VCVTPS2PH's rule).
func f32BitsToF16Bits(u uint32) uint16 {
	sign := uint16(u>>16) & 0x8000
	a := u & 0x7fffffff
	switch {
	case a > 0x7f800000:
		return sign | 0x7e00 | uint16(a>>13)&0x3ff
	case a >= 0x477ff000: // 65520 rounds to Inf
		return sign | 0x7c00
	case a >= 0x38800000: // 2⁻¹⁴, the smallest normal
		r := a + 0xfff + (a>>13)&1
		return sign | uint16((r>>13)-(112<<10))
	}
	// Subnormal or zero: RNE(|v|·2²⁴) is the code.
	return sign | uint16(rneScaled(a, 126))
}

// rneScaled returns RNE(m·2^(e-p)) for the float32 bit pattern a = e<<23|frac
// of a non-negative value m·2^(e-150) (m with its implicit bit), that is
// RNE(value·2^(150-p)). Callers pass p = 126 (binary16 subnormals, value·2²⁴),
// 141 (E4M3, value·2⁹) or 134 (E5M2, value·2¹⁶), for values below the
// target's smallest normal, so the shift p-e is at least 1.
func rneScaled(a uint32, p uint32) uint32 {
	e := a >> 23
	if e == 0 {
		return 0 // a float32 subnormal is far below half the smallest target subnormal
	}
	m := a&0x7fffff | 0x800000
	if e >= p {
		return m << (e - p) // not reached for the ranges callers use
	}
	shift := p - e
	if shift > 25 {
		return 0
	}
	q := m >> shift
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return q
}

// bf16ToF32Generic is: for i, h := range src { dst[i] = math.Float32frombits(uint32(h) << 16) }
func bf16ToF32Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// f32ToBF16Generic is: for i, v := range src { dst[i] = top 16 bits of v rounded to nearest even; NaN → top bits | 0x0040 }
func f32ToBF16Generic(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = f32BitsToBF16Bits(math.Float32bits(v))
	}
}

// f32BitsToBF16Bits rounds one float32 to bfloat16 (RNE; overflow to ±Inf as
// IEEE rounding gives; a NaN keeps sign and top payload bits and gets the
// quiet bit 0x0040).
func f32BitsToBF16Bits(u uint32) uint16 {
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x0040
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// f8E4M3ToF32Generic is: for i, c := range src { dst[i] = e4m3Table[c] }
func f8E4M3ToF32Generic(dst []float32, src []uint8) {
	dst = dst[:len(src)]
	for i, c := range src {
		dst[i] = e4m3Table[c]
	}
}

// f8E5M2ToF32Generic is: for i, c := range src { dst[i] = e5m2Table[c] }
func f8E5M2ToF32Generic(dst []float32, src []uint8) {
	dst = dst[:len(src)]
	for i, c := range src {
		dst[i] = e5m2Table[c]
	}
}

var e4m3Table, e5m2Table = func() (a, b [256]float32) {
	for c := range 256 {
		a[c] = math.Float32frombits(e4m3BitsToF32Bits(uint8(c)))
		b[c] = math.Float32frombits(e5m2BitsToF32Bits(uint8(c)))
	}
	return
}()

// e4m3BitsToF32Bits decodes one F8 E4M3FN code: bias 7, no infinities,
// S.1111.111 is NaN (decoded as sign|0x7fc00000), subnormals m·2⁻⁹.
func e4m3BitsToF32Bits(c uint8) uint32 {
	sign := uint32(c&0x80) << 24
	e := uint32(c>>3) & 0xf
	m := uint32(c & 7)
	switch {
	case e == 0xf && m == 7:
		return sign | 0x7fc00000
	case e != 0:
		return sign | (e+120)<<23 | m<<20
	}
	return sign | math.Float32bits(float32(m)*(1.0/(1<<9)))
}

// e5m2BitsToF32Bits decodes one F8 E5M2 code, which is the top byte of a
// binary16 value: bias 15, ±Inf at 0x7c/0xfc, NaN above (quiet bit set on
// widening, as for f16).
func e5m2BitsToF32Bits(c uint8) uint32 {
	return f16BitsToF32Bits(uint16(c) << 8)
}

// f32ToF8E4M3Generic is: for i, v := range src { dst[i] = RNE of clamp(v, -448, 448) to E4M3FN; NaN → sign|0x7f }
func f32ToF8E4M3Generic(dst []uint8, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = f32BitsToE4M3(math.Float32bits(v))
	}
}

// f32BitsToE4M3 rounds one float32 to F8 E4M3FN: RNE; magnitudes at or above
// 448, ±Inf included, saturate to ±448 (0x7e/0xfe) as writers clamp before
// casting (quantization.md §4); NaN becomes 0x7f with the sign kept.
func f32BitsToE4M3(u uint32) uint8 {
	sign := uint8(u>>24) & 0x80
	a := u & 0x7fffffff
	switch {
	case a > 0x7f800000:
		return sign | 0x7f
	case a >= 0x43e00000: // 448
		return sign | 0x7e
	case a >= 0x3c800000: // 2⁻⁶, the smallest normal
		r := a + 0x7ffff + (a>>20)&1
		return sign | uint8((r>>20)-(120<<3))
	}
	// Subnormal: RNE(|v|·2⁹); 8 is the smallest normal 0x08, which is right.
	return sign | uint8(rneScaled(a, 141))
}

// f32ToF8E5M2Generic is: for i, v := range src { dst[i] = RNE of v to E5M2, finite overflow → ±57344, ±Inf kept, NaN → sign|0x7f }
func f32ToF8E5M2Generic(dst []uint8, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = f32BitsToE5M2(math.Float32bits(v))
	}
}

// f32BitsToE5M2 rounds one float32 to F8 E5M2: RNE; finite magnitudes that
// would round to Inf (≥ 61440) saturate to ±57344 (0x7b/0xfb); ±Inf stays
// ±Inf (0x7c/0xfc); NaN becomes 0x7f with the sign kept.
func f32BitsToE5M2(u uint32) uint8 {
	sign := uint8(u>>24) & 0x80
	a := u & 0x7fffffff
	switch {
	case a > 0x7f800000:
		return sign | 0x7f
	case a == 0x7f800000:
		return sign | 0x7c
	case a >= 0x47700000: // 61440 would round to Inf
		return sign | 0x7b
	case a >= 0x38800000: // 2⁻¹⁴, the smallest normal
		r := a + 0xfffff + (a>>21)&1
		return sign | uint8((r>>21)-(112<<2))
	}
	// Subnormal: RNE(|v|·2¹⁶).
	return sign | uint8(rneScaled(a, 134))
}
