package adapter

import "strings"

// nameHints maps a substring of a base-model name to an architecture.
var nameHints = []struct{ sub, arch string }{
	{"qwen2.5-vl", "qwen2_5_vl"}, {"qwen2_5_vl", "qwen2_5_vl"}, {"qwen2-vl", "qwen2_vl"},
	{"qwen", "qwen2"}, {"gemma", "gemma"}, {"llama", "llama"}, {"mistral", "mistral"},
	{"mixtral", "mixtral"}, {"phi", "phi"}, {"falcon", "falcon"}, {"gpt-neox", "gpt_neox"},
	{"pythia", "gpt_neox"}, {"gpt2", "gpt2"}, {"bloom", "bloom"}, {"opt-", "opt"},
	{"flan-t5", "t5"}, {"t5", "t5"}, {"distilbert", "distilbert"}, {"roberta", "roberta"},
	{"bert", "bert"}, {"vit", "vit"}, {"flux", "flux"},
}

// guessArchitecture returns a best-effort architecture name from module
// names and, for decoder stacks that share a layout (llama, gemma, qwen2,
// mistral), from the config's base model name. "" when nothing matches.
func guessArchitecture(mods []*Module, cfg *Config, meta map[string]string) string {
	// The patterns below hold no digit, so a name contains one exactly when
	// its digit-free shape (digit runs → '#') does: the shapes of a
	// many-layer, many-expert adapter are few.
	shapes := nameShapes(mods)
	has := func(subs ...string) bool {
		for _, n := range shapes {
			ok := true
			for _, s := range subs {
				if !strings.Contains(n, s) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	hint := ""
	if cfg != nil {
		hint = strings.ToLower(cfg.BaseModelNameOrPath)
		if cfg.IsMLX() {
			var m string
			if raw, ok := cfg.Raw["model"]; ok {
				m = strings.Trim(string(raw), `"`)
			}
			hint = strings.ToLower(m)
		}
	}
	if a := meta["modelspec.architecture"]; a != "" {
		hint += " " + strings.ToLower(a)
	}
	fromHint := func(def string) string {
		for _, h := range nameHints {
			if strings.Contains(hint, h.sub) {
				return h.arch
			}
		}
		return def
	}
	switch {
	case has("single_transformer_blocks") || (has("transformer_blocks") && has("transformer.")) || has("double_blocks"):
		return "flux"
	case has("down_blocks") || has("up_blocks") || has("mid_block") || has("lora_unet_"):
		return "unet"
	case has("text_model.encoder.layers") || has("lora_te"):
		return "clip-text"
	case has("transformer.h.", "query_key_value"):
		return "bloom"
	case has("transformer.h.", "c_attn") || has("transformer.h.", "c_proj") || has("transformer.h.", "c_fc"):
		return "gpt2"
	case has("gpt_neox."):
		return "gpt_neox"
	case has("SelfAttention") || has("EncDecAttention") || has("DenseReluDense"):
		return "t5"
	case has("distilbert."):
		return "distilbert"
	case has("roberta."):
		return "roberta"
	case has("bert."):
		return "bert"
	case has("vit."):
		return "vit"
	case has("model.decoder.layers", "_proj"):
		return "opt"
	case has("language_model.layers"):
		return fromHint("qwen2_vl")
	case has("layers.", "self_attn") || has("layers.", "mlp."):
		return fromHint("llama")
	case len(mods) == 1 && mods[0].Kind == KindPrompt || len(mods) == 1 && mods[0].Kind == KindPrefix:
		return fromHint("")
	}
	return fromHint("")
}

// nameShapes returns the distinct shapes of the module names, in first-seen
// order: each run of ASCII digits replaced by one '#'. A string without
// digits or '#' is a substring of a name exactly when it is a substring of
// the name's shape.
func nameShapes(mods []*Module) []string {
	seen := map[string]bool{}
	var out []string
	var buf []byte
	for _, m := range mods {
		buf = appendShape(buf[:0], m.Name)
		if !seen[string(buf)] {
			k := string(buf)
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// appendShape appends name to dst with each run of ASCII digits replaced by
// one '#'.
func appendShape(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= '0' && c <= '9' {
			if i == 0 || name[i-1] < '0' || name[i-1] > '9' {
				dst = append(dst, '#')
			}
			continue
		}
		dst = append(dst, c)
	}
	return dst
}
