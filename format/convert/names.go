package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
)

// Components of a diffusers pipeline a LoRA module may belong to ("" is a
// plain model: an LLM, an encoder, ...).
const (
	CompNone        = ""
	CompUNet        = "unet"
	CompTextEncoder = "text_encoder"
	CompTextEnc2    = "text_encoder_2"
	CompTransformer = "transformer"
)

var componentOrder = []string{CompUNet, CompTextEncoder, CompTextEnc2, CompTransformer}

var (
	unetPathRe = regexp.MustCompile(`^(down_blocks|up_blocks|mid_block|conv_in|conv_out|time_embedding|add_embedding|conv_norm_out)(\.|$)`)
	ditPathRe  = regexp.MustCompile(`^(single_transformer_blocks|transformer_blocks|x_embedder|context_embedder|time_text_embed|norm_out|proj_out)(\.|$)`)
)

// splitComponent splits a module name into its pipeline component and the
// path inside it. An explicit prefix (unet., text_encoder., ...) wins;
// otherwise SD UNet paths give "unet", CLIP text_model.* "text_encoder",
// DiT block paths "transformer", anything else "".
func splitComponent(name string) (comp, path string) {
	for _, c := range []string{CompTextEnc2, CompTextEncoder, CompUNet, CompTransformer} {
		rest, ok := strings.CutPrefix(name, c+".")
		if !ok {
			continue
		}
		// "transformer." is also GPT-2/BLOOM's trunk: a component only when
		// a DiT path follows.
		if c == CompTransformer && !ditPathRe.MatchString(rest) {
			break
		}
		return c, rest
	}
	switch {
	case unetPathRe.MatchString(name):
		return CompUNet, name
	case strings.HasPrefix(name, "text_model."):
		return CompTextEncoder, name
	case ditPathRe.MatchString(name):
		return CompTransformer, name
	}
	return CompNone, name
}

// vocabulary: module-path segments that contain underscores (or must not
// be split) in the supported model families. A kohya name is decoded by
// splitting at "_" and regrouping parts into these tokens or integers.
var vocabulary = strings.Fields(`
down_blocks up_blocks mid_block attentions resnets transformer_blocks attn1 attn2 to_q to_k to_v to_out
ff net proj proj_in proj_out norm norm1 norm2 norm3 conv1 conv2 conv_shortcut time_emb_proj downsamplers upsamplers
conv conv_in conv_out conv_norm_out time_embedding linear_1 linear_2 add_embedding
single_transformer_blocks proj_mlp norm1_context linear attn add_q_proj add_k_proj add_v_proj to_add_out ff_context
x_embedder context_embedder norm_out norm_q norm_k time_text_embed timestep_embedder text_embedder guidance_embedder
text_model encoder decoder layers self_attn q_proj k_proj v_proj out_proj o_proj mlp fc1 fc2 embeddings token_embedding position_embedding
final_layer_norm layer_norm1 layer_norm2 text_projection
model embed_tokens lm_head gate_proj up_proj down_proj qkv_proj gate_up_proj dense language_model
transformer h c_attn c_proj c_fc wte wpe
self_attention query_key_value dense_h_to_4h dense_4h_to_h word_embeddings
gpt_neox attention embed_in embed_out
shared block layer SelfAttention EncDecAttention DenseReluDense wi wo wi_0 wi_1 q k v o
bert roberta distilbert vit encoder_attn query key value self output intermediate pooler classifier score
q_lin k_lin v_lin out_lin ffn lin1 lin2 pre_classifier
input_blocks middle_block output_blocks in_layers out_layers emb_layers skip_connection op time_embed label_emb out
visual blocks merger patch_embed ln_q vision_tower vision_model multi_modal_projector
img_in txt_in final_layer time_in in_layer out_layer vector_in guidance_in
single_blocks double_blocks linear1 linear2 modulation lin img_attn txt_attn img_mlp txt_mlp img_mod txt_mod qkv
`)

var vocabSet = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range vocabulary {
		m[w] = true
	}
	return m
}()

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// decodeUnderscored turns a kohya-style path (dots replaced by "_") back into
// a dotted path using the vocabulary. It returns ok=false when no parse
// exists or two different parses with the fewest segments exist.
func decodeUnderscored(s string) (string, bool) {
	parts := strings.Split(s, "_")
	n := len(parts)
	const inf = 1 << 30
	best := make([]int, n+1)  // fewest segments for parts[i:]
	count := make([]int, n+1) // number of optimal parses (capped at 2)
	next := make([]int, n+1)
	for i := range best {
		best[i] = inf
	}
	best[n], count[n] = 0, 1
	for i := n - 1; i >= 0; i-- {
		for j := i + 1; j <= n; j++ {
			tok := strings.Join(parts[i:j], "_")
			if !vocabSet[tok] && !(j == i+1 && isDigits(tok)) {
				continue
			}
			if best[j] == inf {
				continue
			}
			switch c := best[j] + 1; {
			case c < best[i]:
				best[i], count[i], next[i] = c, count[j], j
			case c == best[i]:
				count[i] = min(2, count[i]+count[j])
			}
		}
	}
	if best[0] == inf || count[0] != 1 {
		return "", false
	}
	var segs []string
	for i := 0; i < n; i = next[i] {
		segs = append(segs, strings.Join(parts[i:next[i]], "_"))
	}
	return strings.Join(segs, "."), true
}

// Base is what --base-config provides: a base model's config.json (head
// counts, tied embeddings, layer count, architecture) and/or the exact
// module names of the base (from a weight index or a safetensors header),
// which resolve kohya names the vocabulary cannot.
type Base struct {
	Path   string
	Config map[string]any
	Names  map[string]bool // module paths (weight names without .weight/.bias)
}

// LoadBase reads a base description: a config.json (transformers or
// diffusers), a model.safetensors.index.json (its weight_map gives module
// names) or a .safetensors file (its header gives module names).
func LoadBase(path string) (*Base, error) {
	b := &Base{Path: path}
	addName := func(w string) {
		w = strings.TrimSuffix(strings.TrimSuffix(w, ".weight"), ".bias")
		if b.Names == nil {
			b.Names = map[string]bool{}
		}
		b.Names[w] = true
	}
	if strings.HasSuffix(path, ".safetensors") {
		h, err := safetensors.OpenHeader(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBaseConfig, path, err)
		}
		for _, t := range h.Tensors {
			addName(t.Name)
		}
		return b, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBaseConfig, err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBaseConfig, path, err)
	}
	if wm, ok := m["weight_map"].(map[string]any); ok {
		for w := range wm {
			addName(w)
		}
		return b, nil
	}
	b.Config = m
	if tc, ok := m["text_config"].(map[string]any); ok { // multimodal wrappers
		for k, v := range tc {
			if _, dup := m[k]; !dup {
				m[k] = v
			}
		}
	}
	return b, nil
}

// Int returns the first integer config field among keys.
func (b *Base) Int(keys ...string) (int, bool) {
	if b == nil {
		return 0, false
	}
	for _, k := range keys {
		if v, ok := b.Config[k].(float64); ok && v == float64(int(v)) {
			return int(v), true
		}
	}
	return 0, false
}

// Bool returns a boolean config field.
func (b *Base) Bool(key string) (val, ok bool) {
	if b == nil {
		return false, false
	}
	v, ok := b.Config[key].(bool)
	return v, ok
}

// kohyaPrefix returns the kohya module prefix of a component. sdxl selects
// lora_te1_ for the first text encoder.
func kohyaPrefix(comp string, sdxl bool) string {
	switch comp {
	case CompUNet, CompTransformer:
		return "lora_unet_"
	case CompTextEncoder:
		if sdxl {
			return "lora_te1_"
		}
		return "lora_te_"
	case CompTextEnc2:
		return "lora_te2_"
	}
	return "lycoris_"
}

// kohyaName returns the kohya module name for a component path.
func kohyaName(comp, path string, sdxl bool) (string, error) {
	if comp == CompTransformer {
		p, ok := fluxToBFL(path)
		if !ok {
			return "", fmt.Errorf("no kohya (sd-scripts Flux) name for transformer module %q", path)
		}
		path = p
	}
	if comp == CompUNet && sdxl {
		p, ok := diffusersToSGM(path)
		if !ok {
			return "", fmt.Errorf("no kohya SDXL (SGM) name for UNet module %q", path)
		}
		path = p
	}
	return kohyaPrefix(comp, sdxl) + strings.ReplaceAll(path, ".", "_"), nil
}

// fromKohya decodes a kohya module name into (component, path). base names,
// when given, are matched first.
func fromKohya(name string, base *Base) (comp, path string, err error) {
	prefixes := []struct{ p, comp string }{
		{"lora_unet_", CompUNet}, {"lora_te1_", CompTextEncoder}, {"lora_te2_", CompTextEnc2},
		{"lora_te_", CompTextEncoder}, {"lora_transformer_", CompTransformer}, {"lycoris_", CompNone},
	}
	for _, p := range prefixes {
		if !strings.HasPrefix(name, p.p) {
			continue
		}
		rest := strings.TrimPrefix(name, p.p)
		if base != nil && base.Names != nil {
			if m := base.kohyaIndex(); m[rest] != "" {
				return p.comp, m[rest], nil
			}
		}
		dotted, ok := decodeUnderscored(rest)
		if !ok {
			return "", "", fmt.Errorf("kohya name %q: cannot split %q into module path segments (give --base-config with the base weight names)", name, rest)
		}
		comp = p.comp
		if comp == CompUNet && isSGMPath(dotted) {
			d, ok := sgmToDiffusers(dotted)
			if !ok {
				return "", "", fmt.Errorf("kohya SDXL name %q has no diffusers UNet equivalent", name)
			}
			return CompUNet, d, nil
		}
		if comp == CompUNet && isBFLPath(dotted) {
			if d, ok := bflToFlux(dotted); ok {
				return CompTransformer, d, nil
			}
			if parts, _ := splitFused(dotted); parts != nil {
				return CompTransformer, dotted, nil // fused: split by collect
			}
			return "", "", fmt.Errorf("kohya Flux name %q has no diffusers equivalent", name)
		}
		return comp, dotted, nil
	}
	return "", "", fmt.Errorf("kohya name %q has no known prefix (lora_unet_, lora_te_, lora_te1_, lora_te2_, lora_transformer_, lycoris_)", name)
}

func (b *Base) kohyaIndex() map[string]string {
	m := make(map[string]string, len(b.Names))
	for n := range b.Names {
		m[strings.ReplaceAll(n, ".", "_")] = n
	}
	return m
}

// Flux (diffusers FluxTransformer2DModel) ↔ sd-scripts / BFL names for the
// modules that map one to one. Fused BFL modules (linear1, img_attn_qkv,
// txt_attn_qkv) correspond to several diffusers modules and are refused.
var fluxPairs = []struct {
	diff, bfl   *regexp.Regexp
	diffT, bflT string
}{
	{regexp.MustCompile(`^single_transformer_blocks\.(\d+)\.proj_out$`), regexp.MustCompile(`^single_blocks\.(\d+)\.linear2$`), "single_transformer_blocks.$1.proj_out", "single_blocks.$1.linear2"},
	{regexp.MustCompile(`^single_transformer_blocks\.(\d+)\.norm\.linear$`), regexp.MustCompile(`^single_blocks\.(\d+)\.modulation\.lin$`), "single_transformer_blocks.$1.norm.linear", "single_blocks.$1.modulation.lin"},
	{regexp.MustCompile(`^transformer_blocks\.(\d+)\.attn\.to_out\.0$`), regexp.MustCompile(`^double_blocks\.(\d+)\.img_attn\.proj$`), "transformer_blocks.$1.attn.to_out.0", "double_blocks.$1.img_attn.proj"},
	{regexp.MustCompile(`^transformer_blocks\.(\d+)\.attn\.to_add_out$`), regexp.MustCompile(`^double_blocks\.(\d+)\.txt_attn\.proj$`), "transformer_blocks.$1.attn.to_add_out", "double_blocks.$1.txt_attn.proj"},
	{regexp.MustCompile(`^transformer_blocks\.(\d+)\.ff\.net\.0\.proj$`), regexp.MustCompile(`^double_blocks\.(\d+)\.img_mlp\.0$`), "transformer_blocks.$1.ff.net.0.proj", "double_blocks.$1.img_mlp.0"},
	{regexp.MustCompile(`^transformer_blocks\.(\d+)\.ff\.net\.2$`), regexp.MustCompile(`^double_blocks\.(\d+)\.img_mlp\.2$`), "transformer_blocks.$1.ff.net.2", "double_blocks.$1.img_mlp.2"},
	{regexp.MustCompile(`^transformer_blocks\.(\d+)\.ff_context\.net\.0\.proj$`), regexp.MustCompile(`^double_blocks\.(\d+)\.txt_mlp\.0$`), "transformer_blocks.$1.ff_context.net.0.proj", "double_blocks.$1.txt_mlp.0"},
	{regexp.MustCompile(`^transformer_blocks\.(\d+)\.ff_context\.net\.2$`), regexp.MustCompile(`^double_blocks\.(\d+)\.txt_mlp\.2$`), "transformer_blocks.$1.ff_context.net.2", "double_blocks.$1.txt_mlp.2"},
	{regexp.MustCompile(`^transformer_blocks\.(\d+)\.norm1\.linear$`), regexp.MustCompile(`^double_blocks\.(\d+)\.img_mod\.lin$`), "transformer_blocks.$1.norm1.linear", "double_blocks.$1.img_mod.lin"},
	{regexp.MustCompile(`^transformer_blocks\.(\d+)\.norm1_context\.linear$`), regexp.MustCompile(`^double_blocks\.(\d+)\.txt_mod\.lin$`), "transformer_blocks.$1.norm1_context.linear", "double_blocks.$1.txt_mod.lin"},
	{regexp.MustCompile(`^x_embedder$`), regexp.MustCompile(`^img_in$`), "x_embedder", "img_in"},
	{regexp.MustCompile(`^context_embedder$`), regexp.MustCompile(`^txt_in$`), "context_embedder", "txt_in"},
	{regexp.MustCompile(`^proj_out$`), regexp.MustCompile(`^final_layer\.linear$`), "proj_out", "final_layer.linear"},
	{regexp.MustCompile(`^time_text_embed\.timestep_embedder\.linear_1$`), regexp.MustCompile(`^time_in\.in_layer$`), "time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"},
	{regexp.MustCompile(`^time_text_embed\.timestep_embedder\.linear_2$`), regexp.MustCompile(`^time_in\.out_layer$`), "time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"},
	{regexp.MustCompile(`^time_text_embed\.text_embedder\.linear_1$`), regexp.MustCompile(`^vector_in\.in_layer$`), "time_text_embed.text_embedder.linear_1", "vector_in.in_layer"},
	{regexp.MustCompile(`^time_text_embed\.text_embedder\.linear_2$`), regexp.MustCompile(`^vector_in\.out_layer$`), "time_text_embed.text_embedder.linear_2", "vector_in.out_layer"},
	{regexp.MustCompile(`^time_text_embed\.guidance_embedder\.linear_1$`), regexp.MustCompile(`^guidance_in\.in_layer$`), "time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"},
	{regexp.MustCompile(`^time_text_embed\.guidance_embedder\.linear_2$`), regexp.MustCompile(`^guidance_in\.out_layer$`), "time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"},
}

func fluxToBFL(p string) (string, bool) {
	for _, f := range fluxPairs {
		if f.diff.MatchString(p) {
			return f.diff.ReplaceAllString(p, f.bflT), true
		}
	}
	return "", false
}

func bflToFlux(p string) (string, bool) {
	for _, f := range fluxPairs {
		if f.bfl.MatchString(p) {
			return f.bfl.ReplaceAllString(p, f.diffT), true
		}
	}
	return "", false
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// isSDXL reports whether the base config describes an SDXL UNet.
func (b *Base) isSDXL() bool {
	if b == nil {
		return false
	}
	if s, _ := b.Config["addition_embed_type"].(string); s == "text_time" {
		return true
	}
	n, ok := b.Int("cross_attention_dim")
	return ok && n == 2048
}

// isBFLPath reports whether a decoded kohya UNet path is a Flux (BFL) one.
func isBFLPath(p string) bool {
	for _, pre := range []string{"single_blocks.", "double_blocks.", "img_in", "txt_in", "final_layer.", "time_in.", "vector_in.", "guidance_in."} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}
