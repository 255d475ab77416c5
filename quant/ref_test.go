package quant

// Independent scalar reference implementations, transcribed from the
// reference algorithms (bitsandbytes kernels.cu / backends/default/ops.py,
// ggml-quants.c quantize_row_*_ref, compressed-tensors, vLLM) as described
// in shared/notes/quantization.md. They never call the fast paths of this
// package nor ops/kernels: absmax, conversions and rounding are written out
// here (fp16 via github.com/x448/float16 as an oracle).

import (
	"math"
)

// refAbsMax is max|x| as a plain loop (NaN ignored, as torch would not, but
// the tests do not feed NaN where it matters).
func refAbsMax(x []float32) float32 {
	var m float32
	for _, v := range x {
		a := float32(math.Abs(float64(v)))
		if a > m {
			m = a
		}
	}
	return m
}

// refNF4Tree is dQuantizeNF4 from bitsandbytes csrc/kernels.cu, literally.
func refNF4Tree(x float32) uint8 {
	if x > 0.03979014977812767 {
		if x > 0.3893125355243683 {
			if x > 0.6427869200706482 {
				if x > 0.8614784181118011 {
					return 0b1111
				}
				return 0b1110
			}
			if x > 0.5016634166240692 {
				return 0b1101
			}
			return 0b1100
		}
		if x > 0.2035212516784668 {
			if x > 0.2920137718319893 {
				return 0b1011
			}
			return 0b1010
		}
		if x > 0.1202552504837513 {
			return 0b1001
		}
		return 0b1000
	}
	if x > -0.33967943489551544 {
		if x > -0.13791173323988914 {
			if x > -0.045525018125772476 {
				return 0b0111
			}
			return 0b0110
		}
		if x > -0.23460740596055984 {
			return 0b0101
		}
		return 0b0100
	}
	if x > -0.6106329262256622 {
		if x > -0.4599952697753906 {
			return 0b0011
		}
		return 0b0010
	}
	if x > -0.8480964004993439 {
		return 0b0001
	}
	return 0b0000
}

// refNF4Literals are the kernel's thresholds in tree order, to compare the
// package's computed midpoints with.
var refNF4Literals = []float32{
	-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
	-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
	0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
	0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
}

// refFP4Tree is dQuantizeFP4 from bitsandbytes csrc/kernels.cu, literally.
func refFP4Tree(x float32) uint8 {
	var sign uint8
	if x < 0 {
		sign = 0b1000
	}
	x = float32(math.Abs(float64(x)))
	if x > float32(0.29166667) {
		if x > float32(0.583333) {
			if x > float32(0.8333333) {
				return 0b0011 + sign
			}
			return 0b0010 + sign
		}
		if x > float32(0.4166667) {
			return 0b101 + sign
		}
		return 0b100 + sign
	}
	if x > float32(0.0859375) {
		if x > float32(0.20833333) {
			return 0b0111 + sign
		}
		return 0b0110 + sign
	}
	if x > float32(0.00260417) {
		return 0b0001 + sign
	}
	return 0b0000 + sign
}

// refArgmin returns argmin_i |x − code[i]| with ties to the first index, as
// torch.argmin in bitsandbytes' default (CPU) backend.
func refArgmin(x float32, code []float32) uint8 {
	best, bi := float32(math.Inf(1)), 0
	for i, c := range code {
		d := float32(math.Abs(float64(x - c)))
		if d < best {
			best, bi = d, i
		}
	}
	return uint8(bi)
}

// refQuant4 is kQuantizeBlockwise for 4-bit types: absmax per block,
// reciprocal multiply, clamp, the code function, high nibble first.
func refQuant4(src []float32, bs int, code func(float32) uint8) ([]byte, []float32) {
	n := len(src)
	nb := (n + bs - 1) / bs
	absmax := make([]float32, nb)
	q := make([]uint8, n)
	for b := 0; b < nb; b++ {
		lo, hi := b*bs, (b+1)*bs
		if hi > n {
			hi = n
		}
		am := refAbsMax(src[lo:hi])
		absmax[b] = am
		d := am
		if d < 1e-38 {
			d = 1e-38
		}
		inv := 1 / d
		for i := lo; i < hi; i++ {
			s := src[i] * inv
			if s < -1 {
				s = -1
			}
			if s > 1 {
				s = 1
			}
			q[i] = code(s)
		}
	}
	packed := make([]byte, (n+1)/2)
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			packed[i/2] |= q[i] << 4
		} else {
			packed[i/2] |= q[i]
		}
	}
	return packed, absmax
}

// refDequant4 is code[q]·absmax per element.
func refDequant4(packed []byte, absmax []float32, code []float32, n, bs int) []float32 {
	out := make([]float32, n)
	for i := 0; i < n; i++ {
		c := packed[i/2] >> 4
		if i%2 == 1 {
			c = packed[i/2] & 15
		}
		out[i] = code[c] * absmax[i/bs]
	}
	return out
}

// refNF4FromDefinition regenerates the NF4 code from its definition in
// bitsandbytes create_normal_map(offset=0.9677083, use_extra_value=True):
// Φ⁻¹ at linspace(offset, 0.5, 9)[:-1] (positive) and −Φ⁻¹ at
// linspace(offset, 0.5, 8)[:-1] (negative), plus 0, sorted, divided by the
// maximum. The linspace points are rounded to float32 as torch does.
func refNF4FromDefinition() []float64 {
	offset := 1 - 0.5*(1.0/32+1.0/30)
	ppf := func(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }
	lin := func(a, b float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64(float32(a + (b-a)*float64(i)/float64(n-1)))
		}
		return out
	}
	var v []float64
	for _, p := range lin(offset, 0.5, 9)[:8] {
		v = append(v, ppf(p))
	}
	for _, p := range lin(offset, 0.5, 8)[:7] {
		v = append(v, -ppf(p))
	}
	v = append(v, 0)
	// sort (insertion: 16 values)
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	mx := v[len(v)-1]
	for i := range v {
		v[i] /= mx
	}
	return v
}

// refDynamicMapFloat64 is create_dynamic_map(signed=True) in float64.
func refDynamicMapFloat64() []float64 {
	var v []float64
	for i := 0; i < 7; i++ {
		n := 1<<i + 1
		for k := 0; k+1 < n; k++ {
			b0 := 0.1 + 0.9*float64(k)/float64(n-1)
			b1 := 0.1 + 0.9*float64(k+1)/float64(n-1)
			m := (b0 + b1) / 2 * math.Pow(10, float64(i-6))
			v = append(v, m, -m)
		}
	}
	v = append(v, 0, 1)
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	return v
}
