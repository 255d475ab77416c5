// Package adapter is adaptool's in-memory model of a parameter-efficient
// fine-tuning adapter.
//
// [Load] opens a PEFT adapter directory (adapter_config.json +
// adapter_model.safetensors), an MLX-LM adapter directory
// (adapters.safetensors + training config), a diffusers LoRA
// (pytorch_lora_weights.safetensors) or a bare .safetensors file in any of
// the dialects PEFT, diffusers (modern and the 2023 attention-processor
// format), kohya sd-scripts, MLX-LM and ai-toolkit. The result is one
// [Adapter] whose [Module] entries carry a [Kind], a rank read from the
// tensor shapes, and an alpha and scale resolved exactly as PEFT resolves
// them (alpha/r, rsLoRA alpha/√r, rank_pattern/alpha_pattern regular
// expressions, AdaLoRA, LoHa/LoKr, MLX scale, kohya .alpha tensors).
//
// When alpha cannot be known — a PEFT file without adapter_config.json, a
// diffusers file without lora_adapter_metadata — the module is marked
// AlphaKnown=false, alpha = r is assumed (scale 1 for plain LoRA), and a
// warning is added to [Adapter.Warnings]. Nothing is guessed silently.
//
// [Adapter.Factors] returns a module's LoRA factors as float32 in PEFT
// orientation (A r×in, B out×r) whatever the dialect. [WritePEFT] writes a
// PEFT directory that PEFT loads, with adapter_config.json serialised byte
// for byte as PEFT does (sorted keys, indent 2, no trailing newline) and
// per-module ranks and alphas expressed as anchored rank_pattern and
// alpha_pattern keys. [Validate] runs every format and adapter check and
// returns findings naming the file, the tensor and the rule.
//
// The on-disk formats and the rules implemented here are described in
// SPEC.md §3.
package adapter
