package quant

import "math"

// refFP8Value decodes an FP8 code by its definition (float64).
func refFP8Value(c uint8, f FP8Format) float64 {
	sign := 1.0
	if c&0x80 != 0 {
		sign = -1
	}
	var ebits, mbits, bias int
	if f == E4M3 {
		ebits, mbits, bias = 4, 3, 7
	} else {
		ebits, mbits, bias = 5, 2, 15
	}
	e := int(c>>mbits) & (1<<ebits - 1)
	m := int(c) & (1<<mbits - 1)
	if f == E4M3 && e == 15 && m == 7 {
		return math.NaN()
	}
	if f == E5M2 && e == 31 {
		if m == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	if e == 0 {
		return sign * float64(m) * math.Pow(2, float64(1-bias-mbits))
	}
	return sign * (1 + float64(m)/float64(int(1)<<mbits)) * math.Pow(2, float64(e-bias))
}

// refEncodeFP8 is clamp to ±max then round-to-nearest-even by brute force
// over all finite codes (the even code wins a tie).
func refEncodeFP8(v float32, f FP8Format) uint8 {
	if v != v {
		if math.Signbit(float64(v)) {
			return 0xff
		}
		return 0x7f
	}
	mx := 448.0
	if f == E5M2 {
		mx = 57344
	}
	x := math.Max(-mx, math.Min(mx, float64(v)))
	var sign uint8
	if math.Signbit(x) {
		sign = 0x80
		x = -x
	}
	best, bc := math.Inf(1), uint8(0)
	for c := 0; c < 0x80; c++ {
		cv := refFP8Value(uint8(c), f)
		if math.IsNaN(cv) || math.IsInf(cv, 0) {
			continue
		}
		d := math.Abs(cv - x)
		if d < best || (d == best && c%2 == 0) {
			best, bc = d, uint8(c)
		}
	}
	return bc | sign
}
