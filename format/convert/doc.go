// Package convert converts LoRA adapters between key dialects — PEFT,
// diffusers (modern; the 2023 attention-processor format is read), kohya
// sd-scripts / LyCORIS and MLX-LM — and exports llama.cpp GGUF LoRA adapters.
//
// Conversions between safetensors dialects are lossless: factors are read in
// PEFT orientation through [adapter.Adapter.Factors], transposed or reshaped
// as the target needs and written back in the source dtype (a float32 round
// trip is exact for F16, BF16 and F32), and every module's scale is carried
// exactly (PEFT: lora_alpha/r with rank_pattern/alpha_pattern; diffusers:
// lora_adapter_metadata; kohya: a per-module .alpha tensor; MLX: one
// lora_parameters.scale, ranks zero-padded to one rank). Every source key
// either maps to the target or the conversion fails with [ErrUnmapped]
// listing the keys — nothing is skipped silently.
//
// Between PEFT and kohya/LyCORIS, LoHa and LoKr modules (tensors copied
// byte for byte; each module's scale carried under the target's rules) and
// DoRA modules (magnitude bytes copied: PEFT lora_magnitude_vector ↔
// LyCORIS wd_on_out dora_scale (out,1[,1…])) convert too; what the target
// cannot express exactly is refused with [ErrRefused] naming the tensor.
//
// [ToGGUF] writes a GGUF v3 LoRA adapter as llama.cpp's
// convert_lora_to_gguf.py does: llama.cpp tensor names, ggml dimension order,
// Llama's q/k row permutation and the BLOOM/GPT-NeoX fused-QKV row reorder
// applied to B, token_embd flipped, one file-wide adapter.lora.alpha — and
// when module scales cannot share one alpha, each module's scale baked into
// its B with alpha = 0 (a warning says so).
//
// The rules are described in SPEC.md §8.
package convert
