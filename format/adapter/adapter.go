package adapter

import (
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

// Adapter is one loaded adapter: its modules with resolved scales, its
// config and the open safetensors file holding the weights.
type Adapter struct {
	Path         string  // what Load was given
	WeightsPath  string  // the safetensors file
	ConfigPath   string  // the adapter_config.json read, "" when none
	Dialect      Dialect // key-naming convention
	PeftType     string  // peft_type of adapter_config.json ("LORA", "IA3", ...); "" when there is none
	Producer     string  // best guess of the writing software: "peft 0.18.1", "diffusers", "kohya-ss", "ai-toolkit", "mlx-lm", ...
	Architecture string  // best-effort base architecture guess from key names: "llama", "gpt2", "t5", "unet", "flux", ... ("" when unknown)
	// Config is the PEFT config, or the LoraConfig parsed from a diffusers
	// file's lora_adapter_metadata, or an MLX training config (Config.MLX);
	// nil when there is none. Config.Raw keeps every key verbatim.
	Config       *Config
	ConfigSource string // "adapter_config.json", "lora_adapter_metadata" or ""
	// ComponentConfigs holds per-component configs when a diffusers
	// pipeline file's lora_adapter_metadata is flattened with component
	// prefixes ("unet.r", "text_encoder.lora_alpha", ...); keyed by the
	// component ("unet"). Modules named "<component>.…" use their
	// component's config. nil otherwise.
	ComponentConfigs map[string]*Config
	Modules          []*Module            // sorted by Name
	Shared           map[string]TensorRef // adapter-wide tensors (VeRA vera_A / vera_B)
	Metadata         map[string]string    // the file's __metadata__ (nil when absent or null)
	Warnings         []string             // what could not be known or looks wrong, e.g. "alpha unknown: ..."
	// Unknown lists tensors whose role was not recognised; they are kept as
	// passthrough ("full") modules.
	Unknown []string
	// Quantized maps each quantized weight tensor (NF4/FP4 bitsandbytes,
	// LLM.int8, compressed-tensors int8, FP8: quant.Detect) to its
	// detection; nil when there is none. Their auxiliary tensors (absmax,
	// quant_map, quant_state, SCB, scales) belong to no module, their
	// TensorRef has the logical shape (from the quant_state for packed
	// 4-bit) and the stored dtype, and reading their values (Factors,
	// Delta) is ErrQuantized.
	Quantized map[string]quant.Detected
	// File is the open safetensors file; Close releases it (unless it was
	// lent with WithFile).
	File *safetensors.File

	borrowed bool // File came from WithFile: Close leaves it open
}

// Module is one adapted (or saved) module of the base model.
type Module struct {
	// Name is the module path without "base_model.model." (e.g.
	// "model.layers.0.self_attn.q_proj"). diffusers component prefixes
	// (unet., text_encoder., transformer.) are kept; kohya names are kept
	// as written (lora_unet_…), since mapping them back to dots is lossy.
	Name string
	Kind Kind
	// Rank is read from the shapes (r = lora_A rows; MLX lora_a columns;
	// LoHa hada_w1_a columns or hada_t1 rows; LoKr the r of its _a/_b or
	// lokr_t2 factors; VeRA vera_lambda_d length). A LoKr module with only
	// whole factors (lokr_w1, lokr_w2) has no rank in its shapes: Rank is
	// then the config's r / rank_pattern (0 without a PEFT config).
	Rank int
	// ConfigRank is the rank the config assigns to this module (r,
	// rank_pattern; init_r for AdaLoRA); 0 when there is no config.
	ConfigRank int
	Alpha      float64
	// Scale is the factor PEFT applies to B·A: alpha/r, alpha/√r (rsLoRA),
	// lora_alpha/(init_r+1e-5) (AdaLoRA), alpha/r (LoHa/LoKr), the MLX
	// scale, kohya alpha/r. 1 for IA3, VeRA, prompt and full modules.
	Scale float64
	// AlphaKnown is false when nothing in the input fixes alpha; then
	// alpha = r is assumed and the Adapter carries a warning.
	AlphaKnown bool
	// InFeatures and OutFeatures are the logical (in, out) of the base
	// layer: Linear in/out, conv in/out channels, embedding
	// num_embeddings/embedding_dim; LoKr in = in_m·in_n, out = out_l·out_k.
	// A LoHa/LoKr conv saved without use_effective_conv2d stores only
	// in·kh·kw: InFeatures is then that product and Kernel is nil. VeRA's in
	// is known only when one module is adapted (the shared vera_A holds the
	// largest in); otherwise 0 with an Adapter warning. 0 when the tensors
	// do not tell.
	InFeatures, OutFeatures int
	// Kernel holds conv kernel dims (nil for linear layers): LoRA A's
	// trailing dims, LoHa hada_t1's, LoKr lokr_t2's or a 4-D lokr_w2's.
	Kernel []int
	// FanInFanOut is true when the base weight is stored (in,out) (GPT-2
	// Conv1D): the merged delta must be transposed; adapter shapes are not.
	FanInFanOut bool
	// Transposed is true for MLX files (lora_a (in,r), lora_b (r,out)).
	Transposed bool
	// Experts is the expert count of an MLX SwitchLinear module (0 otherwise).
	Experts int
	// Feedforward is true for an IA3 vector that scales the input (1,in).
	Feedforward bool
	// Wrapped is true for modules involved in a LoRA-on-ModulesToSaveWrapper
	// layout (see Adapter.Warnings).
	Wrapped bool
	// Tensors maps a role (RoleA, RoleB, RoleE, RoleDiag, RoleMagnitude,
	// RoleLoRABias, RoleIA3, RoleWeight, RoleBias, RoleAlpha, hada_*, lokr_*,
	// vera_*, prompt_embeddings, ...) to its tensor.
	Tensors map[string]TensorRef

	// roles chains the tensors (entries first to last, 1-based) while
	// Tensors is nil (see roles.go).
	roles       *roleTable
	first, last int32
}

// IsLowRank reports whether the module has additive low-rank factors A and
// B (LoRA in any form, DoRA, AdaLoRA, KaSA).
func (m *Module) IsLowRank() bool {
	switch m.Kind {
	case KindLoRA, KindLoRAEmbedding, KindLoRAConv, KindDoRA, KindAdaLoRA, KindKaSA:
		return true
	}
	return false
}

// Close releases the safetensors file. A file lent with WithFile is left
// open for its owner to close.
func (a *Adapter) Close() error {
	if a == nil || a.File == nil {
		return nil
	}
	if a.borrowed {
		a.File = nil
		return nil
	}
	err := a.File.Close()
	a.File = nil
	return err
}

// Module returns the module with the given name, or nil.
func (a *Adapter) Module(name string) *Module {
	for _, m := range a.Modules {
		if m.Name == name {
			return m
		}
	}
	return nil
}
