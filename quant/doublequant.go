package quant

import (
	"fmt"
	"math"
	"sort"

	"github.com/adaptool/adaptool/ops/kernels"
)

// NestedBlockSize is the block size bitsandbytes uses to quantize the absmax
// statistics in double quantization (compress_statistics=True).
const NestedBlockSize = 256

// DynamicMap is bitsandbytes' signed 8-bit "dynamic" code
// (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)), the
// code book of double quantization: for i = 0…6, the 2^i midpoints of
// linspace(0.1, 1, 2^i+1) scaled by ±10^(i−6), plus 0 and 1, sorted. It is
// computed with float32 arithmetic as torch does it; min −0.99296875, max 1.
var DynamicMap = newDynamicMap()

func newDynamicMap() [256]float32 {
	var data []float64
	for i := 0; i < 7; i++ {
		b := linspace32(0.1, 1, 1<<i+1)
		scale := float32(math.Pow(10, float64(i-6)))
		if i == 6 {
			scale = 1
		}
		for k := 0; k+1 < len(b); k++ {
			mean := (b[k] + b[k+1]) / 2
			data = append(data, float64(scale*mean), float64(-scale*mean))
		}
	}
	data = append(data, 0, 1)
	sort.Float64s(data)
	var m [256]float32
	for i, v := range data {
		m[i] = float32(v)
	}
	return m
}

// linspace32 is torch.linspace(start, end, steps, dtype=float32) on the CPU
// scalar path: step = (end−start)/(steps−1) in float32; the first half is
// start + step·i, the second half end − step·(steps−1−i).
func linspace32(start, end float32, steps int) []float32 {
	out := make([]float32, steps)
	if steps == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float32(steps-1)
	half := steps / 2
	for i := range out {
		if i < half {
			out[i] = start + float32(step*float32(i))
		} else {
			out[i] = end - float32(step*float32(steps-1-i))
		}
	}
	return out
}

// dynamicIndex returns the 8-bit code of x (already scaled to [-1, 1]) by
// bitsandbytes' dQuantize<0> (kernels.cu), transcribed: a 7-step binary
// search from pivot 127 with strict x > code[pivot], then the nearer of the
// bracketing codes by the float32 midpoint (upper+val)·0.5 or
// (lower+val)·0.5.
func dynamicIndex(code *[256]float32, x float32) uint8 {
	pivot, upperPivot, lowerPivot := 127, 255, 0
	lower, upper := float32(-1), float32(1)
	val := code[pivot]
	for i := 64; i > 0; i >>= 1 {
		if x > val {
			lowerPivot, lower = pivot, val
			pivot += i
		} else {
			upperPivot, upper = pivot, val
			pivot -= i
		}
		val = code[pivot]
	}
	if upperPivot == 255 {
		upper = code[upperPivot]
	}
	if lowerPivot == 0 {
		lower = code[lowerPivot]
	}
	if x > val {
		if x > (upper+val)*0.5 {
			return uint8(upperPivot)
		}
		return uint8(pivot)
	}
	if x < (lower+val)*0.5 {
		return uint8(lowerPivot)
	}
	return uint8(pivot)
}

// QuantizeBlockwise8 quantizes src to 8-bit codes of code (an ascending
// 256-entry code book such as DynamicMap) with per-block absmax, as
// bitsandbytes quantize_blockwise: absmax per block of blockSize elements,
// x·(1/absmax) in float32 (divisor clamped to ≥ 1e-38), then dynamicIndex.
func QuantizeBlockwise8(dst []uint8, absmax []float32, src []float32, code *[256]float32, blockSize int) error {
	n := len(src)
	if blockSize < 1 {
		return fmt.Errorf("%w: %d", ErrBlockSize, blockSize)
	}
	if len(dst) != n || len(absmax) != NumBlocks(n, blockSize) {
		return fmt.Errorf("%w: 8-bit blockwise of %d values needs %d codes and %d absmax, got %d and %d",
			ErrLength, n, n, NumBlocks(n, blockSize), len(dst), len(absmax))
	}
	for b := range absmax {
		lo := b * blockSize
		hi := min(lo+blockSize, n)
		am := kernels.AbsMax(src[lo:hi])
		absmax[b] = am
		inv := 1 / max(am, absmaxFloor)
		for i := lo; i < hi; i++ {
			dst[i] = dynamicIndex(code, src[i]*inv)
		}
	}
	return nil
}

// DequantizeBlockwise8 reverses QuantizeBlockwise8:
// dst[i] = code[q_i]·absmax[i/blockSize] in float32.
func DequantizeBlockwise8(dst []float32, src []uint8, absmax []float32, code *[256]float32, blockSize int) error {
	n := len(dst)
	if blockSize < 1 {
		return fmt.Errorf("%w: %d", ErrBlockSize, blockSize)
	}
	if len(src) != n || len(absmax) != NumBlocks(n, blockSize) {
		return fmt.Errorf("%w: 8-bit blockwise of %d values needs %d codes and %d absmax, got %d and %d",
			ErrLength, n, n, NumBlocks(n, blockSize), len(src), len(absmax))
	}
	for i := range dst {
		dst[i] = code[src[i]] * absmax[i/blockSize]
	}
	return nil
}

// DoubleQuant is the double-quantized form of a 4-bit tensor's absmax
// statistics (bitsandbytes compress_statistics=True).
type DoubleQuant struct {
	Q      []uint8   // one 8-bit code per 4-bit block: the "absmax" tensor (U8)
	Absmax []float32 // one float32 per NestedBlockSize codes: "nested_absmax"
	Offset float32   // the mean that was subtracted: quant_state "nested_offset"
}

// DoubleQuantize quantizes absmax as bitsandbytes does with
// compress_statistics=True: offset = mean(absmax); then absmax − offset
// (float32) is quantized blockwise with NestedBlockSize and DynamicMap.
//
// The mean is summed in float64 and rounded to float32 once; torch's float32
// reduction may differ from it in the last bit. The offset is stored with the
// tensor, so dequantization is exact either way.
func DoubleQuantize(absmax []float32) DoubleQuant {
	var sum float64
	for _, v := range absmax {
		sum += float64(v)
	}
	var off float32
	if len(absmax) > 0 {
		off = float32(sum / float64(len(absmax)))
	}
	centered := make([]float32, len(absmax))
	for i, v := range absmax {
		centered[i] = v - off
	}
	d := DoubleQuant{
		Q:      make([]uint8, len(absmax)),
		Absmax: make([]float32, NumBlocks(len(absmax), NestedBlockSize)),
		Offset: off,
	}
	// Sizes are consistent by construction, so this cannot fail.
	_ = QuantizeBlockwise8(d.Q, d.Absmax, centered, &DynamicMap, NestedBlockSize)
	return d
}

// Dequantize writes the reconstructed absmax values, code[q]·nested_absmax +
// offset in float32 with code = DynamicMap, into dst (len(d.Q)).
func (d DoubleQuant) Dequantize(dst []float32) error {
	return DequantizeNested(dst, d.Q, d.Absmax, &DynamicMap, NestedBlockSize, d.Offset)
}

// DequantizeNested reconstructs double-quantized absmax values as
// bitsandbytes dequantize_4bit does: dequantize_blockwise(q, nested) and then
// + offset, each step in float32.
func DequantizeNested(dst []float32, q []uint8, nestedAbsmax []float32, code *[256]float32, blockSize int, offset float32) error {
	if err := DequantizeBlockwise8(dst, q, nestedAbsmax, code, blockSize); err != nil {
		return err
	}
	for i := range dst {
		dst[i] += offset
	}
	return nil
}
