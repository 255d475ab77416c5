package kernels

import (
	"math"
)

// Independent float64 references written from the format definitions; the
// kernels are checked against these, never against themselves.

// refFormat describes a small binary float: ebits exponent bits, mbits
// fraction bits, the exponent bias, and whether the all-ones exponent is
// IEEE Inf/NaN (false for E4M3FN, where only S.1111.111 is NaN).
type refFormat struct {
	name         string
	ebits, mbits int
	bias         int
	ieee         bool
}

var (
	refF16  = refFormat{"f16", 5, 10, 15, true}
	refBF16 = refFormat{"bf16", 8, 7, 127, true}
	refE4M3 = refFormat{"e4m3fn", 4, 3, 7, false}
	refE5M2 = refFormat{"e5m2", 5, 2, 15, true}
)

// decode returns the value of code c: (-1)^s·2^(e-bias)·(1+m/2^mbits) for
// normal e, (-1)^s·2^(1-bias)·m/2^mbits for e = 0.
func (f refFormat) decode(c uint32) float64 {
	sign := 1.0
	if c>>(f.ebits+f.mbits)&1 == 1 {
		sign = -1
	}
	e := int(c>>f.mbits) & (1<<f.ebits - 1)
	m := int(c) & (1<<f.mbits - 1)
	emax := 1<<f.ebits - 1
	if e == emax {
		if f.ieee {
			if m == 0 {
				return math.Copysign(math.Inf(1), sign)
			}
			return math.NaN()
		}
		if m == 1<<f.mbits-1 {
			return math.NaN()
		}
	}
	if e == 0 {
		return sign * math.Ldexp(float64(m), 1-f.bias-f.mbits)
	}
	return sign * math.Ldexp(1+float64(m)/float64(int(1)<<f.mbits), e-f.bias)
}

// maxFinite is the largest finite value of the format.
func (f refFormat) maxFinite() float64 {
	emax := 1<<f.ebits - 1
	if f.ieee {
		return math.Ldexp(2-math.Ldexp(1, -f.mbits), emax-1-f.bias)
	}
	return math.Ldexp(2-math.Ldexp(1, 1-f.mbits), emax-f.bias) // E4M3FN: 1.110 × 2^8
}

// round rounds a finite v to the format's precision with ties to even,
// ignoring the upper range: the quantum is 2^(max(ilogb v, emin) - mbits).
func (f refFormat) round(v float64) float64 {
	if v == 0 {
		return v
	}
	e := math.Ilogb(v)
	emin := 1 - f.bias
	if e < emin {
		e = emin
	}
	q := math.Ldexp(1, e-f.mbits)
	return math.RoundToEven(v/q) * q
}

// ieeeRound is IEEE RNE with overflow to ±Inf: results beyond the largest
// finite value (the tie at max+ulp/2 rounds to even, which is Inf) become Inf.
func (f refFormat) ieeeRound(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	r := f.round(v)
	if math.Abs(r) > f.maxFinite() {
		return math.Copysign(math.Inf(1), v)
	}
	return r
}

// satRound is RNE with saturation: anything beyond the largest finite value,
// after rounding, becomes ±max; ±Inf saturates too when sat Inf is true.
func (f refFormat) satRound(v float64, satInf bool) float64 {
	if math.IsNaN(v) {
		return v
	}
	if math.IsInf(v, 0) {
		if satInf {
			return math.Copysign(f.maxFinite(), v)
		}
		return v
	}
	r := f.round(v)
	if math.Abs(r) > f.maxFinite() {
		return math.Copysign(f.maxFinite(), v)
	}
	return r
}

// sameValue is value equality that also distinguishes −0 from +0 and
// treats two NaNs as equal.
func sameValue(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return a == b && math.Signbit(a) == math.Signbit(b)
}
