package gguf

import (
	"fmt"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

// plainDTypes maps the unblocked ggml float and integer types to the
// safetensors dtype with the same little-endian layout, so that their
// conversions go through the ops/kernels paths of safetensors.ToFloat32 and
// FromFloat32.
var plainDTypes = map[GGMLType]safetensors.DType{
	F32: safetensors.F32, F16: safetensors.F16, BF16: safetensors.BF16, F64: safetensors.F64,
	I8: safetensors.I8, I16: safetensors.I16, I32: safetensors.I32,
}

// Decode converts n elements of raw tensor data of type t to float32.
// Supported: F32, F16, BF16, F64, I8, I16, I32 (exactly as
// safetensors.ToFloat32 converts the same dtypes) and the block types of
// package quant (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K).
func Decode(raw []byte, t GGMLType, n int64) ([]float32, error) {
	tr, ok := typeTraits[t]
	if !ok {
		return nil, ruleErr(ErrTensorInfo, "unknown ggml type %d", uint32(t))
	}
	if n < 0 || n%tr.block != 0 || int64(len(raw)) != n/tr.block*tr.size {
		return nil, ruleErr(ErrFormat, "%d bytes do not hold %d %s elements", len(raw), n, t)
	}
	out := make([]float32, n)
	if dt, ok := plainDTypes[t]; ok {
		if err := safetensors.ToFloat32(out, raw, dt); err != nil {
			return nil, err
		}
		return out, nil
	}
	qt := quant.GGUFType(t)
	if qt.BlockSize() == 0 {
		return nil, fmt.Errorf("%w: decoding %s to float32", ErrUnsupported, t)
	}
	if err := quant.DequantizeGGUF(out, raw, qt); err != nil {
		return nil, err
	}
	return out, nil
}

// Encode converts float32 values (row-major; the row length must be a
// multiple of the block size, which the caller checks through the dims) to
// type t. Supported: F32, F16, BF16 (round to nearest even, NaN stays NaN:
// safetensors.FromFloat32) and Q8_0 (ggml's quantize_row_q8_0_ref:
// quant.QuantizeGGUF).
func Encode(src []float32, t GGMLType) ([]byte, error) {
	switch t {
	case F32, F16, BF16:
		dt := plainDTypes[t]
		out := make([]byte, len(src)*dt.Bits()/8)
		if err := safetensors.FromFloat32(out, src, dt); err != nil {
			return nil, err
		}
		return out, nil
	case Q8_0:
		if len(src)%32 != 0 {
			return nil, fmt.Errorf("%w: %d values are not a whole number of Q8_0 blocks of 32", ErrTensorInfo, len(src))
		}
		out := make([]byte, len(src)/32*34)
		if err := quant.QuantizeGGUF(out, src, quant.GGUFQ8_0); err != nil {
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: encoding float32 as %s", ErrUnsupported, t)
}
