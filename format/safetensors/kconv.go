package safetensors

import "math"

// Scalar float conversions used until ops/kernels provides them.

func f16ToF32(dst []float32, src []uint16) {
	for i, h := range src[:len(dst)] {
		dst[i] = math.Float32frombits(f16bits(h))
	}
}

func f16bits(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return sign | 0x7f800000 | man<<13
	case exp == 0:
		if man == 0 {
			return sign
		}
		e := uint32(127 - 14)
		for man&0x400 == 0 {
			man <<= 1
			e--
		}
		return sign | e<<23 | (man&0x3ff)<<13
	}
	return sign | (exp-15+127)<<23 | man<<13
}

func f32ToF16(dst []uint16, src []float32) {
	for i, f := range src[:len(dst)] {
		dst[i] = f16from(f)
	}
}

func f16from(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 31 {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint(14 - e)
		h := man >> shift
		rem := man & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++
	}
	return sign | uint16(h)
}

func bf16ToF32(dst []float32, src []uint16) {
	for i, h := range src[:len(dst)] {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

func f32ToBF16(dst []uint16, src []float32) {
	for i, f := range src[:len(dst)] {
		b := math.Float32bits(f)
		if b&0x7fffffff > 0x7f800000 {
			dst[i] = uint16(b>>16) | 0x40
			continue
		}
		dst[i] = uint16((b + 0x7fff + (b>>16)&1) >> 16)
	}
}

// f8 formats: mantissa bits, minimum normal exponent, largest finite code.
type f8format struct {
	mbits   int
	emin    int
	maxCode uint8
	nan     uint8
	inf     bool
}

var (
	fmtE4M3 = f8format{mbits: 3, emin: -6, maxCode: 0x7e, nan: 0x7f}
	fmtE5M2 = f8format{mbits: 2, emin: -14, maxCode: 0x7b, nan: 0x7e, inf: true}
)

func (f f8format) decode(c uint8) float32 {
	sign := float32(1)
	if c&0x80 != 0 {
		sign = -1
	}
	c &= 0x7f
	ebits := 7 - f.mbits
	e := int(c >> f.mbits)
	m := int(c) & (1<<f.mbits - 1)
	if f.inf {
		if e == 1<<ebits-1 {
			if m == 0 {
				return sign * float32(math.Inf(1))
			}
			return float32(math.NaN())
		}
	} else if c == 0x7f {
		return float32(math.NaN())
	}
	if e == 0 {
		return sign * float32(math.Ldexp(float64(m), f.emin-f.mbits))
	}
	return sign * float32(math.Ldexp(float64(1<<f.mbits+m), e-1+f.emin-f.mbits))
}

func (f f8format) encode(x float32) uint8 {
	var sign uint8
	if math.Signbit(float64(x)) {
		sign = 0x80
	}
	a := math.Abs(float64(x))
	if a != a {
		return sign | f.nan
	}
	maxv := float64(f.decode(f.maxCode))
	if a >= maxv {
		return sign | f.maxCode
	}
	if a == 0 {
		return sign
	}
	_, e := math.Frexp(a)
	E := max(e-1, f.emin)
	q := math.RoundToEven(math.Ldexp(a, f.mbits-E))
	if q >= float64(int(1)<<(f.mbits+1)) {
		E++
		q /= 2
	}
	if q < float64(int(1)<<f.mbits) {
		return sign | uint8(q)
	}
	return sign | uint8(E-f.emin+1)<<f.mbits | (uint8(q) - 1<<f.mbits)
}

func f8e4m3ToF32(dst []float32, src []uint8) {
	for i, c := range src[:len(dst)] {
		dst[i] = fmtE4M3.decode(c)
	}
}

func f32ToF8E4M3(dst []uint8, src []float32) {
	for i, f := range src[:len(dst)] {
		dst[i] = fmtE4M3.encode(f)
	}
}

func f8e5m2ToF32(dst []float32, src []uint8) {
	for i, c := range src[:len(dst)] {
		dst[i] = fmtE5M2.decode(c)
	}
}

func f32ToF8E5M2(dst []uint8, src []float32) {
	for i, f := range src[:len(dst)] {
		dst[i] = fmtE5M2.encode(f)
	}
}
