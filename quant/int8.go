package quant

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/ops/kernels"
)

// int8DequantFactor is bitsandbytes' 1/127 constant of int8 dequantization
// (7.874015718698502e-3 in functional.py), rounded to float32.
const int8DequantFactor = float32(7.874015718698502e-3)

// QuantizeInt8Rows quantizes a rows×cols row-major matrix with LLM.int8
// row-wise absmax (bitsandbytes int8_vectorwise_quant, Linear8bitLt): per
// row SCB = max|x|; q = RNE(x·(127/SCB)) with 127/SCB in float32; a zero row
// gives q = 0. dst is the "weight" tensor (I8), scb the "SCB" tensor (F32,
// len rows).
func QuantizeInt8Rows(dst []int8, scb []float32, src []float32, rows, cols int) error {
	if err := checkMatrix("int8", len(dst), len(src), len(scb), rows, cols, Granularity{Kind: PerChannel}); err != nil {
		return err
	}
	forRows(rows, cols, func(r0, r1 int) {
		tmp := make([]float32, cols)
		for r := r0; r < r1; r++ {
			row := src[r*cols : (r+1)*cols]
			am := kernels.AbsMax(row)
			scb[r] = am
			out := dst[r*cols : (r+1)*cols]
			if am == 0 {
				clear(out)
				continue
			}
			kernels.ScaleTo(tmp, 127/am, row)
			for i, v := range tmp {
				out[i] = int8(nearestInt(min(max(v, -127), 127)))
			}
		}
	})
	return nil
}

// DequantizeInt8Rows reverses QuantizeInt8Rows as bitsandbytes
// int8_vectorwise_dequant: x = q·(SCB·(1/127)) in float32.
func DequantizeInt8Rows(dst []float32, src []int8, scb []float32, rows, cols int) error {
	if err := checkMatrix("int8", len(src), len(dst), len(scb), rows, cols, Granularity{Kind: PerChannel}); err != nil {
		return err
	}
	for r := 0; r < rows; r++ {
		out := dst[r*cols : (r+1)*cols]
		for i, q := range src[r*cols : (r+1)*cols] {
			out[i] = float32(q)
		}
		kernels.Scale(scb[r]*int8DequantFactor, out)
	}
	return nil
}

// Int8 ranges of compressed-tensors int8 quantization.
const (
	int8Min = -128
	int8Max = 127
)

// QuantizeInt8Groups quantizes a rows×cols matrix to int8 as
// compressed-tensors does (format "int-quantized", strategy channel or
// group), with float32 scales of g.ScaleShape:
//
//   - symmetric (zero == nil): scale = max|x|/127.5 over the group (a zero
//     scale becomes float32 eps); q = RNE(clamp(x/scale, −128, 127));
//   - asymmetric (zero != nil, same length as scale): lo = min(min x, 0),
//     hi = max(max x, 0), scale = (hi−lo)/255 (zero → eps),
//     zp = RNE(clamp(−128 − lo/scale, −128, 127)), q = RNE(clamp(x/scale + zp, −128, 127)).
//
// Dequantize with (q − zp)·scale. g must be PerChannel, PerGroup or
// PerTensor.
func QuantizeInt8Groups(dst []int8, scale []float32, zero []int8, src []float32, rows, cols int, g Granularity) error {
	if g.Kind == PerBlock {
		return fmt.Errorf("%w: int8 supports tensor, channel and group granularity, not %s", ErrScheme, g)
	}
	if err := checkMatrix("int8", len(dst), len(src), len(scale), rows, cols, g); err != nil {
		return err
	}
	if zero != nil && len(zero) != len(scale) {
		return fmt.Errorf("%w: int8: %d zero points for %d scales", ErrLength, len(zero), len(scale))
	}
	g.forTiles(rows, cols, func(si, r0, r1, c0, c1 int) {
		var s float32
		var zp float32
		if zero == nil {
			var am float32
			for r := r0; r < r1; r++ {
				am = max(am, kernels.AbsMax(src[r*cols+c0:r*cols+c1]))
			}
			s = am / 127.5
		} else {
			var lo, hi float32
			for r := r0; r < r1; r++ {
				for _, v := range src[r*cols+c0 : r*cols+c1] {
					lo = min(lo, v)
					hi = max(hi, v)
				}
			}
			s = (hi - lo) / 255
			if s == 0 {
				s = float32Eps
			}
			zp = float32(math.RoundToEven(float64(min(max(int8Min-lo/s, int8Min), int8Max))))
			zero[si] = int8(zp)
		}
		if s == 0 {
			s = float32Eps
		}
		scale[si] = s
		for r := r0; r < r1; r++ {
			out := dst[r*cols+c0 : r*cols+c1]
			for i, v := range src[r*cols+c0 : r*cols+c1] {
				t := v / s
				if zero != nil {
					t += zp
				}
				out[i] = int8(nearestInt(min(max(t, int8Min), int8Max)))
			}
		}
	})
	return nil
}

// DequantizeInt8Groups reverses QuantizeInt8Groups: x = (q − zp)·scale in
// float32 (zp = 0 when zero is nil).
func DequantizeInt8Groups(dst []float32, src []int8, scale []float32, zero []int8, rows, cols int, g Granularity) error {
	if g.Kind == PerBlock {
		return fmt.Errorf("%w: int8 supports tensor, channel and group granularity, not %s", ErrScheme, g)
	}
	if err := checkMatrix("int8", len(src), len(dst), len(scale), rows, cols, g); err != nil {
		return err
	}
	if zero != nil && len(zero) != len(scale) {
		return fmt.Errorf("%w: int8: %d zero points for %d scales", ErrLength, len(zero), len(scale))
	}
	g.forTiles(rows, cols, func(si, r0, r1, c0, c1 int) {
		var zp float32
		if zero != nil {
			zp = float32(zero[si])
		}
		for r := r0; r < r1; r++ {
			out := dst[r*cols+c0 : r*cols+c1]
			for i, q := range src[r*cols+c0 : r*cols+c1] {
				out[i] = float32(q) - zp
			}
			kernels.Scale(scale[si], out)
		}
	})
	return nil
}
