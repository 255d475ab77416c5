package quant

import (
	"fmt"

	"github.com/adaptool/adaptool/ops/kernels"
)

// FP8Format is an 8-bit float encoding.
type FP8Format uint8

// The FP8 formats written by this package.
const (
	E4M3 FP8Format = iota // E4M3FN (safetensors F8_E4M3): bias 7, max ±448, no Inf
	E5M2                  // E5M2 (F8_E5M2): bias 15, max ±57344, Inf
)

// String returns "e4m3" or "e5m2".
func (f FP8Format) String() string {
	if f == E5M2 {
		return "e5m2"
	}
	return "e4m3"
}

// Max returns the largest finite magnitude: 448 (E4M3FN) or 57344 (E5M2).
func (f FP8Format) Max() float32 {
	if f == E5M2 {
		return 57344
	}
	return 448
}

// float32Eps is torch.finfo(torch.float32).eps, the scale used for an
// all-zero group (compressed-tensors replaces a zero scale by it).
const float32Eps = 1.1920928955078125e-07

// EncodeFP8 converts src to FP8 codes: each value is clamped to
// [−Max, Max] and rounded to nearest, ties to even (kernels.F32ToF8E4M3 /
// F32ToF8E5M2). NaN gives the NaN code with its sign.
func EncodeFP8(dst []uint8, src []float32, f FP8Format) {
	if len(dst) != len(src) {
		panic("quant: EncodeFP8 length mismatch")
	}
	m := f.Max()
	const chunk = 4096
	var buf [chunk]float32
	for lo := 0; lo < len(src); lo += chunk {
		hi := min(lo+chunk, len(src))
		b := buf[:hi-lo]
		for i, v := range src[lo:hi] {
			// Explicit clamp: the reference cast (PyTorch) is non-saturating.
			if v > m {
				v = m
			} else if v < -m {
				v = -m
			}
			b[i] = v
		}
		encodeFP8Raw(dst[lo:hi], b, f)
	}
}

func encodeFP8Raw(dst []uint8, src []float32, f FP8Format) {
	if f == E5M2 {
		kernels.F32ToF8E5M2(dst, src)
	} else {
		kernels.F32ToF8E4M3(dst, src)
	}
}

// DecodeFP8 converts FP8 codes to float32 (exact).
func DecodeFP8(dst []float32, src []uint8, f FP8Format) {
	if f == E5M2 {
		kernels.F8E5M2ToF32(dst, src)
	} else {
		kernels.F8E4M3ToF32(dst, src)
	}
}

// QuantizeFP8 quantizes a rows×cols row-major matrix to FP8 codes in dst
// with float32 scales in scale (len = product of g.ScaleShape), as
// compressed-tensors / vLLM do: per scale group, scale = amax/Max (an
// all-zero group gets float32 eps), then q = RNE(clamp(x/scale, −Max, Max)).
// Dequantize with W = q·scale. Per-group granularity is not an FP8 layout
// and is refused.
func QuantizeFP8(dst []uint8, scale []float32, src []float32, rows, cols int, f FP8Format, g Granularity) error {
	if g.Kind == PerGroup {
		return fmt.Errorf("%w: FP8 supports tensor, channel and block granularity, not %s", ErrScheme, g)
	}
	if err := checkMatrix("fp8", len(dst), len(src), len(scale), rows, cols, g); err != nil {
		return err
	}
	m := f.Max()
	// Scales first (per tile absmax, kernels.AbsMax), then the rows are
	// encoded in parallel for large tensors.
	g.forTiles(rows, cols, func(si, r0, r1, c0, c1 int) {
		var am float32
		if g.Kind == PerTensor {
			am = kernels.AbsMax(src)
		} else {
			for r := r0; r < r1; r++ {
				am = max(am, kernels.AbsMax(src[r*cols+c0:r*cols+c1]))
			}
		}
		s := am / m
		if s == 0 {
			s = float32Eps
		}
		scale[si] = s
	})
	forRows(rows, cols, func(r0, r1 int) {
		tmp := make([]float32, min(cols, 4096))
		for r := r0; r < r1; r++ {
			g.forRowSegments(r, rows, cols, func(si, c0, c1 int) {
				s := scale[si]
				for lo := c0; lo < c1; lo += len(tmp) {
					hi := min(lo+len(tmp), c1)
					t := tmp[:hi-lo]
					for i, v := range src[r*cols+lo : r*cols+hi] {
						t[i] = min(max(v/s, -m), m)
					}
					encodeFP8Raw(dst[r*cols+lo:r*cols+hi], t, f)
				}
			})
		}
	})
	return nil
}

// DequantizeFP8 reverses QuantizeFP8: dst = decode(q)·scale in float32.
func DequantizeFP8(dst []float32, src []uint8, scale []float32, rows, cols int, f FP8Format, g Granularity) error {
	if g.Kind == PerGroup {
		return fmt.Errorf("%w: FP8 supports tensor, channel and block granularity, not %s", ErrScheme, g)
	}
	if err := checkMatrix("fp8", len(src), len(dst), len(scale), rows, cols, g); err != nil {
		return err
	}
	g.forTiles(rows, cols, func(si, r0, r1, c0, c1 int) {
		for r := r0; r < r1; r++ {
			out := dst[r*cols+c0 : r*cols+c1]
			DecodeFP8(out, src[r*cols+c0:r*cols+c1], f)
			kernels.Scale(scale[si], out)
		}
	})
	return nil
}

// checkMatrix validates the slice lengths of a rows×cols scale-based
// quantization.
func checkMatrix(scheme string, nq, nx, ns, rows, cols int, g Granularity) error {
	if rows < 0 || cols < 0 || (cols != 0 && rows > (1<<62)/cols) {
		return fmt.Errorf("%w: %s: bad shape %d×%d", ErrLength, scheme, rows, cols)
	}
	want, err := g.numScales(rows, cols)
	if err != nil {
		return fmt.Errorf("%s: %w", scheme, err)
	}
	if nq != rows*cols || nx != rows*cols || ns != want {
		return fmt.Errorf("%w: %s %s of %d×%d needs %d values and %d scales, got %d/%d values and %d scales",
			ErrLength, scheme, g, rows, cols, rows*cols, want, nx, nq, ns)
	}
	return nil
}
