// Package quant implements the weight quantization schemes that adapters and
// merged weights are deployed with, bit-compatible with the tools that
// produce and consume them:
//
//   - bitsandbytes 4-bit NF4 and FP4 with per-block absmax (block sizes 32…4096,
//     default 64), first element in the high nibble, and optional double
//     quantization of the absmax (blocks of 256 against the 8-bit dynamic map,
//     mean offset) — see [QuantizeNF4], [QuantizeFP4], [DoubleQuantize];
//   - int8: LLM.int8 row-wise absmax (weight I8 + SCB F32) and compressed-tensors
//     per-channel / per-group int8, symmetric or with a zero point — see
//     [QuantizeInt8Rows], [QuantizeInt8Groups];
//   - FP8 E4M3FN and E5M2 with per-tensor, per-channel or 128×128 block scales,
//     clamped to the finite range before round-to-nearest-even — see [QuantizeFP8];
//   - GGUF blocks Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K, byte-identical to
//     ggml's quantize_row_*_ref — see [QuantizeGGUF], [DequantizeGGUF].
//
// The algorithms work on in-memory slices and never do I/O; layout.go maps
// them to safetensors key names and dtypes, and file.go streams whole files.
// Elementwise loops for which ops/kernels has a kernel (absmax, scaling,
// float conversions) go through ops/kernels; the scheme-specific hot loops
// (code lookup and nibble packing) live here and are documented where they
// are defined.
//
// Rounding and tie rules follow the reference implementations exactly and
// are spelled out in SPEC.md §7.
package quant
