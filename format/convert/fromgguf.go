package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/atomicfile"
)

// hfTemplate turns a rule's HF regexp into the canonical module name
// template ("model.layers.$1.self_attn.q_proj"); optional prefixes are
// written out (transformer., gpt_neox.).
func hfTemplate(re *regexp.Regexp) string {
	s := strings.TrimSuffix(strings.TrimPrefix(re.String(), "^"), "$")
	s = regexp.MustCompile(`\(\?:([^)]*)\)\?`).ReplaceAllString(s, "$1")
	s = strings.ReplaceAll(s, `(\d+)`, "$1")
	return strings.ReplaceAll(s, `\.`, ".")
}

// ggufRuleFor finds the rule whose llama.cpp template produces base.
func ggufRuleFor(arch ggufArch, archKey, base string) (*ggufRule, string, bool) {
	rules := arch.rules
	if archKey == "phi3" { // phi3's fused up is gate_up_proj
		rules = append([]ggufRule{r(`^model\.layers\.(\d+)\.mlp\.gate_up_proj$`, "blk.$1.ffn_up", "")}, rules...)
	}
	for i := range rules {
		t := regexp.QuoteMeta(rules[i].tmpl)
		t = strings.Replace(t, `\$1`, `(\d+)`, 1)
		re := regexp.MustCompile("^" + t + "$")
		if m := re.FindStringSubmatch(base); m != nil {
			hf := hfTemplate(rules[i].re)
			if len(m) > 1 {
				hf = strings.Replace(hf, "$1", m[1], 1)
			}
			return &rules[i], hf, true
		}
	}
	return nil, "", false
}

// GGUFToPEFT converts a llama.cpp GGUF LoRA adapter (as written by ToGGUF
// or convert_lora_to_gguf.py) back to a PEFT directory: names mapped back
// to Hugging Face modules, the q/k permutation and QKV reorder undone
// (head counts from o.Base), token_embd unflipped, and each module's scale
// adapter.lora.alpha/r (1 when alpha is 0) written exactly through r,
// lora_alpha and rank_pattern/alpha_pattern. o.Arch overrides
// general.architecture.
func GGUFToPEFT(path, dir string, o Options, arch string) (*Result, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if t, _ := f.String("general.type"); t != "adapter" {
		return nil, fmt.Errorf("%w: %s: general.type is %q, not a GGUF adapter", ErrRefused, path, t)
	}
	if t, _ := f.String("adapter.type"); t != "lora" {
		return nil, fmt.Errorf("%w: %s: adapter.type is %q, only lora converts", ErrRefused, path, t)
	}
	// An architecture the caller gave is an option; the file's own
	// general.architecture is the input, which converts or is refused.
	bad := ErrOptions
	if arch == "" {
		arch, _ = f.String("general.architecture")
		bad = ErrRefused
	}
	archKey := strings.ToLower(strings.ReplaceAll(arch, "_", ""))
	ar, ok := ggufArches[archKey]
	if !ok {
		return nil, fmt.Errorf("%w: %s: architecture %q is not one of %s", bad, path, arch, strings.Join(GGUFArchitectures(), ", "))
	}
	alpha := 0.0
	if v, ok := f.Get("adapter.lora.alpha"); ok {
		alpha, _ = v.Float64()
	}
	res := &Result{From: "gguf", To: ToPEFTName, Output: dir, DryRun: o.DryRun, Alpha: &alpha}
	bases := map[string]bool{}
	var unmapped []string
	for _, t := range f.Tensors {
		b, isA := strings.CutSuffix(t.Name, ".weight.lora_a")
		b2, isB := strings.CutSuffix(t.Name, ".weight.lora_b")
		switch {
		case isA:
			bases[b] = true
		case isB:
			bases[b2] = true
		default:
			unmapped = append(unmapped, t.Name+" (not a .weight.lora_a/.lora_b tensor)")
		}
	}
	nHead, hasHead := o.Base.Int("num_attention_heads", "n_head")
	nKV, hasKV := o.Base.Int("num_key_value_heads", "n_head_kv")
	if !hasKV {
		nKV = nHead
	}
	var mods []*module
	for _, b := range sortedKeys(bases) {
		rule, hf, ok := ggufRuleFor(ar, archKey, b)
		if !ok {
			unmapped = append(unmapped, b+".weight.lora_a/b (no Hugging Face module for this llama.cpp tensor)")
			continue
		}
		ta, okA := f.Tensor(b + ".weight.lora_a")
		tb, okB := f.Tensor(b + ".weight.lora_b")
		if !okA || !okB || len(ta.Dims) != 2 || len(tb.Dims) != 2 {
			unmapped = append(unmapped, b+" (incomplete or not 2-D lora_a/lora_b pair)")
			continue
		}
		av, err := f.Float32(ta.Name)
		if err != nil {
			return nil, err
		}
		bv, err := f.Float32(tb.Name)
		if err != nil {
			return nil, err
		}
		r, out := int(tb.Dims[0]), int(tb.Dims[1])
		fac := &adapter.Factors{Rank: r, Out: out, B: bv}
		kind := adapter.KindLoRA
		if rule.op == "embd" { // lora_a ne [r, n_vocab]: torch (vocab, r) = Aᵀ
			if int(ta.Dims[0]) != r {
				return nil, fmt.Errorf("%w: %s: %s lora_a ne %v does not match rank %d", gguf.ErrTensorInfo, path, b, ta.Dims, r)
			}
			fac.In, fac.A, fac.Embedding = int(ta.Dims[1]), transpose(av, fac.In, r), true
			kind = adapter.KindLoRAEmbedding
		} else {
			if int(ta.Dims[1]) != r {
				return nil, fmt.Errorf("%w: %s: %s lora_a ne[1]=%d is not the rank %d of lora_b", gguf.ErrTensorInfo, path, b, ta.Dims[1], r)
			}
			fac.In, fac.A = int(ta.Dims[0]), av
		}
		switch {
		case (rule.op == "q" || rule.op == "k") && ar.permute:
			if !hasHead {
				return nil, fmt.Errorf("%w: %s: undoing the %s q/k permutation needs the head counts: give --base-config config.json", ErrOptions, path, arch)
			}
			h := nHead
			if rule.op == "k" {
				h = nKV
			}
			if err := unpermuteRows(fac.B, out, r, h); err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %v", ErrRefused, path, b, err)
			}
		case rule.op == "qkv" && ar.reorderQKV:
			if !hasHead {
				return nil, fmt.Errorf("%w: %s: undoing the %s QKV reorder needs the head count: give --base-config config.json", ErrOptions, path, arch)
			}
			if err := unreorderQKV(fac.B, out, r, nHead); err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %v", ErrRefused, path, b, err)
			}
		}
		scale := 1.0
		if alpha != 0 {
			scale = alpha / float64(r)
		}
		fac.Scale = scale
		fac.FanInFanOut = archKey == "gpt2" // GPT-2 Conv1D: PEFT's fan_in_fan_out
		dt := safetensors.F32
		switch tb.Type {
		case gguf.F16:
			dt = safetensors.F16
		case gguf.BF16:
			dt = safetensors.BF16
		}
		src := &adapter.Module{Name: b + ".weight", Kind: kind, Rank: r, Alpha: alpha, Scale: scale, InFeatures: fac.In, OutFeatures: out}
		if alpha == 0 {
			src.Alpha = float64(r)
		}
		mods = append(mods, &module{path: hf, src: src, f: fac, dtype: dt})
	}
	if len(unmapped) > 0 {
		sort.Strings(unmapped)
		n, more := len(unmapped), ""
		if n > 8 {
			more = fmt.Sprintf("; … and %d more", len(unmapped)-8)
			unmapped = unmapped[:8]
		}
		return nil, fmt.Errorf("%w: %s → peft: %d tensors have no PEFT representation: %s%s", ErrUnmapped, path, n, strings.Join(unmapped, "; "), more)
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%w: %s holds no LoRA pairs", ErrRefused, path)
	}
	if alpha == 0 {
		res.warn("adapter.lora.alpha = 0: llama.cpp applies the user scale only, so every module gets scale 1 (scales were baked into lora_b)")
	}
	warnNonFinite(res, mods)
	var tensors []safetensors.Tensor
	for _, m := range mods {
		ts, err := peftFactorTensors(m)
		if err != nil {
			return nil, err
		}
		tensors = append(tensors, ts...)
		res.Modules = append(res.Modules, Mapping{From: m.src.Name, To: m.path, Kind: string(m.src.Kind), Rank: m.f.Rank, Scale: m.f.Scale})
	}
	cfg := loraConfig(mods, res)
	cfg["task_type"] = "CAUSAL_LM"
	cfg["base_model_name_or_path"] = nil
	cj, err := marshalConfig(cfg)
	if err != nil {
		return nil, err
	}
	res.Tensors = len(tensors)
	res.Files = []string{filepath.Join(dir, "adapter_config.json"), filepath.Join(dir, "adapter_model.safetensors")}
	if o.DryRun {
		return res, nil
	}
	rec, _ := json.Marshal(map[string]any{"tool": "adaptool", "op": "convert", "from": "gguf", "to": "peft", "source": filepath.Base(path), "architecture": arch})
	md := inputRecord(path, "gguf", "peft")
	md["adaptool.convert"] = string(rec)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := safetensors.WriteFile(res.Files[1], tensors, md); err != nil {
		return nil, err
	}
	return res, atomicfile.WriteBytes(res.Files[0], cj)
}
