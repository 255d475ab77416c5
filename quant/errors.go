package quant

import "errors"

// Sentinel errors. Functions wrap them with %w and context (tensor, sizes),
// so test them with errors.Is.
var (
	// ErrBlockSize reports a block size outside the scheme's valid set.
	ErrBlockSize = errors.New("quant: invalid block size")
	// ErrLength reports slices whose lengths do not fit the requested
	// quantization (data, packed bytes, scales, shape).
	ErrLength = errors.New("quant: length mismatch")
	// ErrScheme reports an unknown scheme, granularity or GGUF type.
	ErrScheme = errors.New("quant: unknown scheme")
	// ErrNonFinite reports NaN or ±Inf in data that is to be quantized.
	ErrNonFinite = errors.New("quant: non-finite value")
	// ErrLayout reports a quantized tensor set whose keys, dtypes, shapes or
	// quant_state do not agree with each other.
	ErrLayout = errors.New("quant: inconsistent quantized layout")
	// ErrNothing reports a well-formed input the operation does not apply
	// to: QuantizeFile finds no tensor to quantize, DequantizeFile no
	// quantized tensor. It is a refusal (CLI exit 4), not a bad input; the
	// message says why nothing qualifies.
	ErrNothing = errors.New("quant: nothing to do")
)
