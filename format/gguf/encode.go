package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/adaptool/adaptool/quant"
)

// Decode converts n elements of raw tensor data of type t to float32.
// Supported: F32, F16, BF16, F64, I8, I16, I32, Q8_0, and the block types
// of package quant (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K).
func Decode(raw []byte, t GGMLType, n int64) ([]float32, error) {
	tr, ok := typeTraits[t]
	if !ok {
		return nil, ruleErr(ErrTensorInfo, "unknown ggml type %d", uint32(t))
	}
	if n < 0 || n%tr.block != 0 || int64(len(raw)) != n/tr.block*tr.size {
		return nil, ruleErr(ErrFormat, "%d bytes do not hold %d %s elements", len(raw), n, t)
	}
	out := make([]float32, n)
	le := binary.LittleEndian
	switch t {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToF32(le.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(le.Uint16(raw[2*i:])) << 16)
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	case I8:
		for i := range out {
			out[i] = float32(int8(raw[i]))
		}
	case I16:
		for i := range out {
			out[i] = float32(int16(le.Uint16(raw[2*i:])))
		}
	case I32:
		for i := range out {
			out[i] = float32(int32(le.Uint32(raw[4*i:])))
		}
	case Q8_0:
		for b := int64(0); b < n/32; b++ {
			blk := raw[b*34 : b*34+34]
			d := F16ToF32(le.Uint16(blk))
			for j := 0; j < 32; j++ {
				out[b*32+int64(j)] = float32(int8(blk[2+j])) * d
			}
		}
	default:
		qt := quant.GGUFType(t)
		if qt.BlockSize() == 0 {
			return nil, fmt.Errorf("%w: decoding %s to float32", ErrUnsupported, t)
		}
		// the other block types through quant's ggml dequantizers
		if err := quant.DequantizeGGUF(out, raw, qt); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Encode converts float32 values (row-major; the row length must be a
// multiple of the block size, which the caller checks through the dims) to
// type t. Supported: F32, F16, BF16 (round to nearest even, NaN stays NaN) and
// Q8_0 (ggml's quantize_row_q8_0_ref: d = absmax/127, q = roundf(x·(1/d)),
// halves away from zero, d stored as F16).
func Encode(src []float32, t GGMLType) ([]byte, error) {
	le := binary.LittleEndian
	switch t {
	case F32:
		out := make([]byte, 4*len(src))
		for i, v := range src {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out, nil
	case F16:
		out := make([]byte, 2*len(src))
		for i, v := range src {
			le.PutUint16(out[2*i:], F32ToF16(v))
		}
		return out, nil
	case BF16:
		out := make([]byte, 2*len(src))
		for i, v := range src {
			le.PutUint16(out[2*i:], F32ToBF16(v))
		}
		return out, nil
	case Q8_0:
		if len(src)%32 != 0 {
			return nil, fmt.Errorf("%w: %d values are not a whole number of Q8_0 blocks of 32", ErrTensorInfo, len(src))
		}
		out := make([]byte, len(src)/32*34)
		for b := 0; b < len(src)/32; b++ {
			x := src[b*32 : b*32+32]
			blk := out[b*34 : b*34+34]
			var amax float32
			for _, v := range x {
				if a := float32(math.Abs(float64(v))); a > amax {
					amax = a
				}
			}
			d := amax / 127
			var id float32
			if d != 0 {
				id = 1 / d
			}
			le.PutUint16(blk, F32ToF16(d))
			for j, v := range x {
				blk[2+j] = byte(int8(roundAway(v * id)))
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: encoding float32 as %s", ErrUnsupported, t)
}

// roundAway is C's roundf: nearest integer, halves away from zero.
func roundAway(x float32) float32 { return float32(math.Round(float64(x))) }

// F16ToF32 converts IEEE half-precision bits to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// subnormal: mant · 2^-24
	f := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// F32ToF16 converts a float32 to IEEE half-precision bits, rounding to
// nearest even; overflow gives ±Inf, NaN stays a quiet NaN.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 31 {
		return sign | 0x7c00
	}
	if e <= 0 {
		if exp == 0 { // float32 subnormal or zero: far below f16's range
			return sign
		}
		shift := uint(14 - e)
		if shift > 24 {
			return sign
		}
		m := mant | 0x800000
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++
	}
	return sign | uint16(r)
}

// F32ToBF16 converts a float32 to bfloat16 bits, rounding to nearest even;
// NaN stays a quiet NaN.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
