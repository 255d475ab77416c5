package convert

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

// GGUFOptions configure ToGGUF.
type GGUFOptions struct {
	// Arch is the llama.cpp architecture: llama, mistral (written as
	// "llama", as llama.cpp's converter does), qwen2, gemma, gemma2, gemma3,
	// phi3, gpt2, bloom, gptneox.
	Arch string
	// OutType is f32 (default), f16, bf16 or q8_0. With q8_0, tensors whose
	// row length is not a multiple of 32 (lora_b rows are the rank) fall back
	// to f16, as convert_lora_to_gguf.py does.
	OutType string
	// Base is the base model's config.json (needed for Llama/Mistral q/k
	// permutation and BLOOM/GPT-NeoX QKV reordering: head counts; and to
	// know whether embeddings are tied).
	Base   *Base
	DryRun bool
}

type ggufRule struct {
	re   *regexp.Regexp
	tmpl string // llama.cpp base tensor name without ".weight"
	op   string // "q", "k" (Llama permutation), "qkv" (BLOOM/GPT-NeoX reorder), "embd"
}

type ggufArch struct {
	gguf       string // general.architecture
	permute    bool   // Llama q/k row permutation
	reorderQKV bool
	tied       bool // default tie_word_embeddings of the family
	rules      []ggufRule
}

func r(re, tmpl, op string) ggufRule { return ggufRule{regexp.MustCompile(re), tmpl, op} }

var llamaRules = []ggufRule{
	r(`^model\.embed_tokens$`, "token_embd", "embd"),
	r(`^lm_head$`, "output", ""),
	r(`^model\.layers\.(\d+)\.self_attn\.q_proj$`, "blk.$1.attn_q", "q"),
	r(`^model\.layers\.(\d+)\.self_attn\.k_proj$`, "blk.$1.attn_k", "k"),
	r(`^model\.layers\.(\d+)\.self_attn\.v_proj$`, "blk.$1.attn_v", ""),
	r(`^model\.layers\.(\d+)\.self_attn\.o_proj$`, "blk.$1.attn_output", ""),
	r(`^model\.layers\.(\d+)\.self_attn\.qkv_proj$`, "blk.$1.attn_qkv", ""),
	r(`^model\.layers\.(\d+)\.mlp\.gate_proj$`, "blk.$1.ffn_gate", ""),
	r(`^model\.layers\.(\d+)\.mlp\.up_proj$`, "blk.$1.ffn_up", ""),
	r(`^model\.layers\.(\d+)\.mlp\.down_proj$`, "blk.$1.ffn_down", ""),
	r(`^model\.layers\.(\d+)\.mlp\.gate_up_proj$`, "blk.$1.ffn_up", ""),
}

var ggufArches = map[string]ggufArch{
	"llama":   {gguf: "llama", permute: true, rules: llamaRules},
	"mistral": {gguf: "llama", permute: true, rules: llamaRules},
	"qwen2":   {gguf: "qwen2", rules: llamaRules},
	"gemma":   {gguf: "gemma", tied: true, rules: llamaRules},
	"gemma2":  {gguf: "gemma2", tied: true, rules: llamaRules},
	"gemma3":  {gguf: "gemma3", tied: true, rules: llamaRules},
	"phi3":    {gguf: "phi3", rules: llamaRules},
	"gpt2": {gguf: "gpt2", tied: true, rules: []ggufRule{
		r(`^(?:transformer\.)?wte$`, "token_embd", "embd"),
		r(`^(?:transformer\.)?wpe$`, "position_embd", "refuse"),
		r(`^lm_head$`, "output", ""),
		r(`^(?:transformer\.)?h\.(\d+)\.attn\.c_attn$`, "blk.$1.attn_qkv", ""),
		r(`^(?:transformer\.)?h\.(\d+)\.attn\.c_proj$`, "blk.$1.attn_output", ""),
		r(`^(?:transformer\.)?h\.(\d+)\.mlp\.c_fc$`, "blk.$1.ffn_up", ""),
		r(`^(?:transformer\.)?h\.(\d+)\.mlp\.c_proj$`, "blk.$1.ffn_down", ""),
	}},
	"bloom": {gguf: "bloom", reorderQKV: true, tied: true, rules: []ggufRule{
		r(`^(?:transformer\.)?word_embeddings$`, "token_embd", "embd"),
		r(`^lm_head$`, "output", ""),
		r(`^(?:transformer\.)?h\.(\d+)\.self_attention\.query_key_value$`, "blk.$1.attn_qkv", "qkv"),
		r(`^(?:transformer\.)?h\.(\d+)\.self_attention\.dense$`, "blk.$1.attn_output", ""),
		r(`^(?:transformer\.)?h\.(\d+)\.mlp\.dense_h_to_4h$`, "blk.$1.ffn_up", ""),
		r(`^(?:transformer\.)?h\.(\d+)\.mlp\.dense_4h_to_h$`, "blk.$1.ffn_down", ""),
	}},
	"gptneox": {gguf: "gptneox", reorderQKV: true, rules: []ggufRule{
		r(`^(?:gpt_neox\.)?embed_in$`, "token_embd", "embd"),
		r(`^embed_out$`, "output", ""),
		r(`^(?:gpt_neox\.)?layers\.(\d+)\.attention\.query_key_value$`, "blk.$1.attn_qkv", "qkv"),
		r(`^(?:gpt_neox\.)?layers\.(\d+)\.attention\.dense$`, "blk.$1.attn_output", ""),
		r(`^(?:gpt_neox\.)?layers\.(\d+)\.mlp\.dense_h_to_4h$`, "blk.$1.ffn_up", ""),
		r(`^(?:gpt_neox\.)?layers\.(\d+)\.mlp\.dense_4h_to_h$`, "blk.$1.ffn_down", ""),
	}},
}

// GGUFArchitectures lists the --arch values ToGGUF accepts.
func GGUFArchitectures() []string { return sortedKeys(ggufArches) }

// llama.cpp LlamaFileType values for general.file_type.
var fileTypes = map[string]struct {
	t  gguf.GGMLType
	ft uint32
}{"f32": {gguf.F32, 0}, "f16": {gguf.F16, 1}, "q8_0": {gguf.Q8_0, 7}, "bf16": {gguf.BF16, 32}}

type ggufModule struct {
	m     *module
	base  string // llama.cpp base tensor name (without .weight)
	op    string
	a, b  []float32 // A (r×in), B (out×r) after E/diag folding
	r, in int
	out   int
	scale float64
}

// ToGGUF writes a llama.cpp GGUF LoRA adapter to out (see the package doc
// and SPEC.md §8 for every rule).
func ToGGUF(a *adapter.Adapter, out string, o GGUFOptions) (*Result, error) {
	arch, ok := ggufArches[strings.ToLower(strings.ReplaceAll(o.Arch, "_", ""))]
	if !ok {
		return nil, fmt.Errorf("%w: --arch %q is not one of %s", ErrOptions, o.Arch, strings.Join(GGUFArchitectures(), ", "))
	}
	if o.OutType == "" {
		o.OutType = "f32"
	}
	ft, ok := fileTypes[strings.ToLower(o.OutType)]
	if !ok {
		return nil, fmt.Errorf("%w: --outtype %q is not f32, f16, bf16 or q8_0", ErrOptions, o.OutType)
	}
	res := &Result{From: string(a.Dialect), To: ToGGUFName, Output: out, DryRun: o.DryRun}
	gms, bad, err := ggufModules(a, o, arch, res, false)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, unmappedErr(a, "gguf ("+arch.gguf+")", bad)
	}
	return writeGGUF(a, out, o, arch, ft, res, gms)
}

// ggufModules maps the LoRA modules of a to llama.cpp tensor names and
// loads their factors in llama.cpp's frame (q/k rows permuted, fused QKV
// reordered, AdaLoRA E / KaSA diag folded into B; scales not applied). It
// returns the modules that cannot be mapped in bad ("module (reason)"), and
// an error for everything else. Unless partial, nothing is loaded when bad
// is not empty.
func ggufModules(a *adapter.Adapter, o GGUFOptions, arch ggufArch, res *Result, partial bool) ([]*ggufModule, []string, error) {
	res.Warnings = append(res.Warnings, a.Warnings...)
	mods, unmapped := collect(a, o.Base, adapter.KindLoRA, adapter.KindLoRAEmbedding, adapter.KindAdaLoRA, adapter.KindKaSA)
	if len(unmapped) > 0 {
		return nil, nil, fmt.Errorf("%w: %s: a GGUF LoRA adapter holds only lora_a/lora_b pairs; llama.cpp's convert_lora_to_gguf.py refuses full tensors "+
			"(modules_to_save, resized embeddings, biases) and other adapter types:\n  %s",
			ErrRefused, a.WeightsPath, strings.Join(unmapped, "\n  "))
	}
	if len(mods) == 0 {
		return nil, nil, fmt.Errorf("%w: %s holds no LoRA modules", ErrRefused, a.WeightsPath)
	}
	mods, err := dropRank0(a, mods, res)
	if err != nil {
		return nil, nil, err
	}
	tied, tiedKnown := o.Base.Bool("tie_word_embeddings")
	if !tiedKnown {
		tied = arch.tied
	}
	var gms []*ggufModule
	names := map[string][]string{}
	var bad []string
	for _, m := range mods {
		if m.comp != CompNone {
			bad = append(bad, fmt.Sprintf("%s (a %s module: llama.cpp adapters are for language models)", m.src.Name, m.comp))
			continue
		}
		path := m.path
		for _, p := range [][2]string{{"model.language_model.", "model."}, {"language_model.", ""}, {"base_model.model.", ""}} {
			if strings.HasPrefix(path, p[0]) {
				path = p[1] + strings.TrimPrefix(path, p[0])
				break
			}
		}
		var rule *ggufRule
		for i := range arch.rules {
			if arch.rules[i].re.MatchString(path) {
				rule = &arch.rules[i]
				break
			}
		}
		switch {
		case rule == nil:
			bad = append(bad, fmt.Sprintf("%s (no llama.cpp %s tensor for module %q)", m.src.Name, arch.gguf, path))
			continue
		case rule.op == "refuse":
			bad = append(bad, fmt.Sprintf("%s (llama.cpp applies no LoRA to %s)", m.src.Name, rule.re.ReplaceAllString(path, rule.tmpl)))
			continue
		case rule.tmpl == "output" && tied:
			return nil, nil, fmt.Errorf("%w: %s: module %q targets lm_head, but the base ties it to the token embeddings (tie_word_embeddings); "+
				"llama.cpp has no separate output tensor and refuses it (convert_lora_to_gguf.py, llama.cpp #9065)", ErrRefused, a.WeightsPath, m.src.Name)
		case (m.src.Kind == adapter.KindLoRAEmbedding) != (rule.op == "embd"):
			bad = append(bad, fmt.Sprintf("%s (%s module on %s: llama.cpp LoRA embeddings exist only for token_embd)", m.src.Name, m.src.Kind, rule.tmpl))
			continue
		}
		if !tiedKnown && rule.tmpl == "output" {
			res.warn("module %q → output: whether the base ties lm_head to the embeddings is unknown (give --base-config); llama.cpp rejects the adapter if it does", m.src.Name)
		}
		base := rule.re.ReplaceAllString(path, rule.tmpl)
		names[base] = append(names[base], m.src.Name)
		gms = append(gms, &ggufModule{m: m, base: base, op: rule.op})
	}
	if len(bad) > 0 && !partial {
		return nil, bad, nil
	}
	if err := checkDuplicates(names, "gguf"); err != nil {
		return nil, nil, err
	}
	// head counts
	nHead, hasHead := o.Base.Int("num_attention_heads", "n_head")
	nKV, hasKV := o.Base.Int("num_key_value_heads", "n_head_kv")
	if !hasKV {
		nKV = nHead
	}
	for _, g := range gms {
		if err := g.m.load(a); err != nil {
			return nil, nil, err
		}
		f := g.m.f
		g.r, g.in, g.out, g.scale = f.Rank, f.InK(), f.Out, f.Scale
		g.a = f.A
		g.b = append([]float32(nil), f.B...)
		if len(f.Kernel) > 0 {
			return nil, nil, fmt.Errorf("%w: %s: conv module %q", ErrRefused, a.WeightsPath, g.m.src.Name)
		}
		for _, d := range [][]float32{f.E, f.Diag} { // B·diag(d)·A: fold d into B's columns
			if d != nil {
				for i := 0; i < g.out; i++ {
					for k := 0; k < g.r; k++ {
						g.b[i*g.r+k] *= d[k]
					}
				}
			}
		}
		if f.E != nil || f.Diag != nil {
			res.warn("module %q: %s singular values folded into lora_b", g.m.src.Name, g.m.src.Kind)
		}
		switch {
		case g.op == "q" || g.op == "k":
			if !arch.permute {
				break
			}
			if !hasHead {
				return nil, nil, fmt.Errorf("%w: %s: %s q/k rows are permuted for llama.cpp's rope layout and need the head counts: give --base-config config.json (num_attention_heads, num_key_value_heads)", ErrOptions, a.WeightsPath, o.Arch)
			}
			h := nHead
			if g.op == "k" {
				h = nKV
			}
			if err := permuteRows(g.b, g.out, g.r, h); err != nil {
				return nil, nil, fmt.Errorf("%w: %s: module %q: %v", ErrRefused, a.WeightsPath, g.m.src.Name, err)
			}
		case g.op == "qkv" && arch.reorderQKV:
			if !hasHead {
				return nil, nil, fmt.Errorf("%w: %s: %s fused query_key_value rows are reordered for llama.cpp and need the head count: give --base-config config.json", ErrOptions, a.WeightsPath, o.Arch)
			}
			if err := reorderQKV(g.b, g.out, g.r, nHead); err != nil {
				return nil, nil, fmt.Errorf("%w: %s: module %q: %v", ErrRefused, a.WeightsPath, g.m.src.Name, err)
			}
		}
	}
	var loaded []*module
	for _, g := range gms {
		loaded = append(loaded, g.m)
	}
	warnNonFinite(res, loaded)
	return gms, bad, nil
}

// writeGGUF writes (or, with o.DryRun, plans) the GGUF LoRA file of the
// mapped modules gms.
func writeGGUF(a *adapter.Adapter, out string, o GGUFOptions, arch ggufArch, ft struct {
	t  gguf.GGMLType
	ft uint32
}, res *Result, gms []*ggufModule) (*Result, error) {
	// one alpha per file: alpha/r_i must equal every module's scale
	alpha, huge := ggufAlpha(gms)
	if alpha == 0 {
		res.Baked = true
		for _, g := range gms {
			for i := range g.b {
				g.b[i] = float32(float64(g.b[i]) * g.scale)
			}
		}
		why := "module scales differ (rank_pattern, alpha_pattern or rsLoRA) and GGUF holds one alpha per file"
		if huge != nil {
			why = fmt.Sprintf("module %q: scale %v at r=%d needs alpha %v, which the float32 adapter.lora.alpha cannot hold", huge.m.src.Name, huge.scale, huge.r, huge.scale*float64(huge.r))
		}
		res.warn("%s: each module's scale was multiplied into its lora_b and adapter.lora.alpha = 0, so llama.cpp applies the user scale only (--lora-scaled S multiplies every module by S)", why)
	}
	res.Alpha = &alpha
	// tensors
	var tensors []gguf.Tensor
	fallback := 0
	var g *ggufModule // the module being added (for ggufRange)
	add := func(name string, dims []uint64, v []float32) error {
		typ := ft.t
		if typ == gguf.Q8_0 && dims[0]%32 != 0 {
			typ = gguf.F16
			fallback++
		}
		if err := ggufRange(a, g, name, v, typ, res.Baked); err != nil {
			return err
		}
		var data []byte
		var err error
		if typ == gguf.Q8_0 {
			// quant's Q8_0 is byte-identical to ggml's quantize_row_q8_0_ref
			data = make([]byte, len(v)/32*34)
			err = quant.QuantizeGGUF(data, v, quant.GGUFQ8_0)
		} else {
			data, err = gguf.Encode(v, typ)
		}
		if err != nil {
			return err
		}
		tensors = append(tensors, gguf.Tensor{Name: name, Type: typ, Dims: dims, Data: data})
		return nil
	}
	for _, gm := range gms {
		g = gm
		name := g.base + ".weight"
		var err error
		if g.op == "embd" {
			// token_embd: A flipped (ne [r, n_vocab]), B as is (ne [r, n_embd])
			err = add(name+".lora_a", []uint64{uint64(g.r), uint64(g.in)}, transpose(g.a, g.r, g.in))
		} else {
			err = add(name+".lora_a", []uint64{uint64(g.in), uint64(g.r)}, g.a)
		}
		if err == nil {
			err = add(name+".lora_b", []uint64{uint64(g.r), uint64(g.out)}, g.b)
		}
		if errors.Is(err, ErrRefused) { // ggufRange names the file and module
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%s: module %q: %w", a.WeightsPath, g.m.src.Name, err)
		}
		note := ""
		switch {
		case g.op == "embd":
			note = "token_embd: lora_a flipped"
		case (g.op == "q" || g.op == "k") && arch.permute:
			note = "rows of B permuted (Llama rope layout)"
		case g.op == "qkv" && arch.reorderQKV:
			note = "rows of B reordered per head → q|k|v"
		}
		res.Modules = append(res.Modules, Mapping{From: g.m.src.Name, To: name, Kind: string(g.m.src.Kind), Rank: g.r, Scale: g.scale, Note: note})
	}
	if fallback > 0 {
		res.warn("q8_0: %d tensors whose row length is not a multiple of 32 were written as f16 (as convert_lora_to_gguf.py does)", fallback)
	}
	rec, _ := json.Marshal(map[string]any{"tool": "adaptool", "op": "convert", "from": string(a.Dialect), "to": "gguf", "source": a.WeightsPath, "baked_scales": res.Baked})
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String(arch.gguf)},
		{Key: "general.type", Value: gguf.String("adapter")},
		{Key: "adapter.type", Value: gguf.String("lora")},
		{Key: "adapter.lora.alpha", Value: gguf.Float32(float32(alpha))},
		{Key: "general.file_type", Value: gguf.Uint32(ft.ft)},
		{Key: "general.quantization_version", Value: gguf.Uint32(2)},
		{Key: "adaptool.convert", Value: gguf.String(string(rec))},
	}
	prov := inputRecord(a.WeightsPath, string(a.Dialect), "gguf")
	for _, k := range []string{metaOperation, metaParams, metaInputs} {
		kv = append(kv, gguf.KV{Key: k, Value: gguf.String(prov[k])})
	}
	if len(a.Metadata) > 0 {
		md, _ := json.Marshal(a.Metadata)
		kv = append(kv, gguf.KV{Key: "adaptool.source_metadata", Value: gguf.String(string(md))})
	}
	res.Tensors, res.Files = len(tensors), []string{out}
	if o.DryRun {
		return res, nil
	}
	return res, gguf.WriteFile(out, kv, tensors)
}

// ggufAlpha returns the one alpha with alpha/r_i = s_i for every module
// (within float32 precision, which is what llama.cpp computes in), or 0
// when the scales cannot share one alpha; huge is then the first module
// whose alpha (scale·r) float32 cannot hold, if any.
func ggufAlpha(gms []*ggufModule) (alpha float64, huge *ggufModule) {
	for _, g := range gms {
		if a := float32(g.scale * float64(g.r)); math.IsInf(float64(a), 0) {
			return 0, g
		}
	}
	a0, _ := alphaFor(gms[0].scale, gms[0].r, gms[0].m.src.Alpha, true)
	if a0 == 0 || math.IsNaN(a0) || math.IsInf(a0, 0) {
		return 0, nil
	}
	for _, g := range gms {
		want := g.scale
		got := a0 / float64(g.r)
		if math.Abs(got-want) > 1e-7*math.Abs(want) {
			return 0, nil
		}
	}
	return a0, nil
}

// ggufRange refuses (ErrRefused, naming the module, the tensor, the value
// and the rule) a value of tensor name that the GGUF type typ cannot hold
// and would write as ±Inf: beyond float32 (a scale multiplied into
// lora_b), F16 above 65504, BF16 beyond float32, a Q8_0 block whose f16
// scale amax/127 overflows. A module whose source factors already hold
// NaN/Inf is converted as it is (warnNonFinite says so).
func ggufRange(a *adapter.Adapter, g *ggufModule, name string, v []float32, typ gguf.GGMLType, baked bool) error {
	if !factorsFinite(g.m.f) {
		return nil
	}
	limit, rule := float32(math.MaxFloat32), "float32"
	switch typ {
	case gguf.F16:
		limit, rule = finiteLimit(safetensors.F16), "F16 (at most 65504; use --outtype f32 or bf16)"
	case gguf.BF16:
		limit, rule = finiteLimit(safetensors.BF16), "BF16"
	case gguf.Q8_0:
		limit, rule = 65519.996*127, "Q8_0 (a block's f16 scale amax/127 must stay below 65504; use --outtype f32 or bf16)"
	}
	for i, x := range v {
		if x <= limit && x >= -limit {
			continue
		}
		why := ""
		switch {
		case strings.HasSuffix(name, ".lora_b") && baked:
			why = fmt.Sprintf(" (the module's scale %v multiplied into lora_b, since GGUF holds one alpha per file)", g.scale)
		case strings.HasSuffix(name, ".lora_b") && (g.m.f.E != nil || g.m.f.Diag != nil):
			why = " (singular values folded into lora_b)"
		}
		return fmt.Errorf("%w: %s: module %q: tensor %s: value %v at index %d%s is beyond the range of %s, and would be written as Inf",
			ErrRefused, a.WeightsPath, g.m.src.Name, name, x, i, why, rule)
	}
	return nil
}

// permuteRows applies llama.cpp's LlamaModel.permute to the rows of
// B (out×r): within each of nHead heads, the rows are reshaped (2, d/2) and
// transposed, i.e. new row h·d + 2i + j = old row h·d + j·d/2 + i.
func permuteRows(b []float32, out, r, nHead int) error {
	return moveHeadRows(b, out, r, nHead, false)
}

// unpermuteRows inverts permuteRows.
func unpermuteRows(b []float32, out, r, nHead int) error {
	return moveHeadRows(b, out, r, nHead, true)
}

// moveHeadRows moves row h·d + j·d/2 + i of b to row h·d + 2i + j (or back,
// with inverse), for every head h, i < d/2 and j < 2.
func moveHeadRows(b []float32, out, r, nHead int, inverse bool) error {
	if nHead <= 0 || out%(2*nHead) != 0 {
		return fmt.Errorf("%d rows are not %d heads of an even head dimension", out, nHead)
	}
	d := out / nHead
	half := d / 2
	src := append([]float32(nil), b...)
	for h := 0; h < nHead; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				to, from := h*d+2*i+j, h*d+j*half+i
				if inverse {
					to, from = from, to
				}
				copy(b[to*r:(to+1)*r], src[from*r:(from+1)*r])
			}
		}
	}
	return nil
}

// reorderQKV maps BLOOM/GPT-NeoX fused rows (head, {q,k,v}, d) to
// llama.cpp's (q|k|v, head, d): new row t·H·d + h·d + i = old row h·3d + t·d + i.
func reorderQKV(b []float32, out, r, nHead int) error { return permuteQKV(b, out, r, nHead, false) }

// unreorderQKV inverts reorderQKV.
func unreorderQKV(b []float32, out, r, nHead int) error { return permuteQKV(b, out, r, nHead, true) }

// permuteQKV moves the rows (r values each) of a fused QKV factor between
// the per-head layout (head, {q,k,v}, d) and llama.cpp's (q|k|v, head, d);
// inverse goes back.
func permuteQKV(b []float32, out, r, nHead int, inverse bool) error {
	if nHead <= 0 || out%(3*nHead) != 0 {
		return fmt.Errorf("%d fused rows are not 3 × %d heads", out, nHead)
	}
	d := out / (3 * nHead)
	src := append([]float32(nil), b...)
	for h := 0; h < nHead; h++ {
		for t := 0; t < 3; t++ {
			for i := 0; i < d; i++ {
				llama, perHead := t*nHead*d+h*d+i, h*3*d+t*d+i
				to, from := llama, perHead
				if inverse {
					to, from = perHead, llama
				}
				copy(b[to*r:(to+1)*r], src[from*r:(from+1)*r])
			}
		}
	}
	return nil
}
