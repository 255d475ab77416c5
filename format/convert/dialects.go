package convert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/atomicfile"
)

// Target dialect names accepted by Convert.
const (
	ToPEFTName      = "peft"
	ToDiffusersName = "diffusers"
	ToKohyaName     = "kohya"
	ToMLXName       = "mlx"
	ToGGUFName      = "gguf"
)

// Convert dispatches to ToPEFT, ToDiffusers, ToKohya or ToMLX by name. GGUF
// export needs its own options: use ToGGUF.
func Convert(a *adapter.Adapter, to, out string, o Options) (*Result, error) {
	switch to {
	case ToPEFTName:
		return ToPEFT(a, out, o)
	case ToDiffusersName:
		return ToDiffusers(a, out, o)
	case ToKohyaName:
		return ToKohya(a, out, o)
	case ToMLXName:
		return ToMLX(a, out, o)
	}
	return nil, fmt.Errorf("%w: unknown target dialect %q (peft, diffusers, kohya, mlx, gguf)", ErrOptions, to)
}

var linearKinds = []adapter.Kind{adapter.KindLoRA, adapter.KindLoRAConv, adapter.KindLoRAEmbedding}

// peftKinds are the module kinds ToPEFT writes (one method per output).
var peftKinds = append(append([]adapter.Kind(nil), linearKinds...), adapter.KindDoRA, adapter.KindLoHa, adapter.KindLoKr)

// kohyaKinds are the module kinds ToKohya writes.
var kohyaKinds = []adapter.Kind{adapter.KindLoRA, adapter.KindLoRAConv, adapter.KindDoRA, adapter.KindLoHa, adapter.KindLoKr}

// factorTensors returns A and B as safetensors tensors in PEFT layout
// (A (r,in[,k…]), B (out,r[,1…]); embeddings A (r,num), B (dim,r)).
func factorTensors(m *module, aName, bName string) ([]safetensors.Tensor, error) {
	f := m.f
	aShape := append([]int{f.Rank, f.In}, f.Kernel...)
	bShape := []int{f.Out, f.Rank}
	for range f.Kernel {
		bShape = append(bShape, 1)
	}
	ab, err := encode(f.A, m.dtype)
	if err != nil {
		return nil, err
	}
	bb, err := encode(f.B, m.dtype)
	if err != nil {
		return nil, err
	}
	return []safetensors.Tensor{
		{Name: aName, DType: m.dtype, Shape: aShape, Data: ab},
		{Name: bName, DType: m.dtype, Shape: bShape, Data: bb},
	}, nil
}

// loraConfig builds the weight-relevant PEFT LoraConfig fields so that every
// module's scale is reproduced exactly: r and lora_alpha are the most common
// rank and alpha, and modules that differ get anchored rank_pattern /
// alpha_pattern entries (regexp-quoted module paths).
func loraConfig(mods []*module, res *Result) map[string]any {
	var ranks []int
	var alphas []float64
	alpha := make([]float64, len(mods))
	for i, m := range mods {
		a, exact := alphaFor(m.src.Scale, m.f.Rank, m.src.Alpha, false)
		if !exact {
			res.warn("module %q: no lora_alpha reproduces scale %v exactly at r=%d; alpha %v used (≤1 ulp)", m.src.Name, m.src.Scale, m.f.Rank, a)
		}
		alpha[i] = a
		ranks = append(ranks, m.f.Rank)
		alphas = append(alphas, a)
	}
	r0, a0 := mostCommon(ranks), mostCommon(alphas)
	rp, ap := newOrdered(), newOrdered()
	targets := map[string]bool{}
	fanIn := false
	for i, m := range mods {
		key := adapter.PatternKey(m.path) // the team's anchored key, as adapter.WritePEFT writes it
		if m.f.Rank != r0 {
			rp.set(key, m.f.Rank)
		}
		if alpha[i] != a0 {
			ap.set(key, jsonNumber(alpha[i]))
		}
		targets[m.path] = true
		fanIn = fanIn || m.f.FanInFanOut
	}
	return map[string]any{
		"peft_type": "LORA", "r": r0, "lora_alpha": jsonNumber(a0),
		"rank_pattern": rp, "alpha_pattern": ap, "use_rslora": false, "use_dora": false,
		"target_modules": sortedKeys(targets), "fan_in_fan_out": fanIn, "inference_mode": true,
		"bias": "none", "lora_dropout": 0.0, "init_lora_weights": true, "modules_to_save": nil,
	}
}

// jsonNumber renders a float64 as a JSON number that parses back exactly
// (integers without a fraction, as Python writes them).
type jsonNumber float64

func (j jsonNumber) MarshalJSON() ([]byte, error) {
	f := float64(j)
	if f == float64(int64(f)) && f < 1e15 && f > -1e15 {
		return []byte(strconv.FormatInt(int64(f), 10)), nil
	}
	return []byte(strconv.FormatFloat(f, 'g', -1, 64)), nil
}

// ordered is a JSON object that keeps insertion order (pattern dicts are
// order-sensitive in PEFT: the first match wins).
type ordered struct {
	keys []string
	vals map[string]any
}

func newOrdered() *ordered { return &ordered{vals: map[string]any{}} }

func (o *ordered) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func (o *ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(o.vals[k])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshalConfig writes JSON as PEFT does: sorted keys, indent 2.
func marshalConfig(v map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// peftFactorTensors returns a module's factors under PEFT's key names
// (base_model.model.<path>.lora_A.weight / lora_B.weight, or
// lora_embedding_A / lora_embedding_B for an embedding).
func peftFactorTensors(m *module) ([]safetensors.Tensor, error) {
	p := "base_model.model." + m.path
	aName, bName := p+".lora_A.weight", p+".lora_B.weight"
	if m.f.Embedding {
		aName, bName = p+".lora_embedding_A", p+".lora_embedding_B"
	}
	return factorTensors(m, aName, bName)
}

// prepare collects and loads the modules for a safetensors target.
func prepare(a *adapter.Adapter, to string, o Options, kinds []adapter.Kind) ([]*module, *Result, error) {
	res := &Result{From: string(a.Dialect), To: to, DryRun: o.DryRun}
	res.Warnings = append(res.Warnings, a.Warnings...)
	mods, unmapped := collect(a, o.Base, kinds...)
	if len(unmapped) > 0 {
		return nil, nil, unmappedErr(a, to, unmapped)
	}
	if len(mods) == 0 {
		return nil, nil, fmt.Errorf("%w: %s holds no LoRA modules to convert", ErrRefused, a.WeightsPath)
	}
	mods, err := dropRank0(a, mods, res)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range mods {
		if err := m.load(a); err != nil {
			return nil, nil, err
		}
	}
	warnNonFinite(res, mods)
	return mods, res, nil
}

func byComponent(mods []*module) map[string][]*module {
	g := map[string][]*module{}
	for _, m := range mods {
		g[m.comp] = append(g[m.comp], m)
	}
	return g
}

// ToPEFT writes a PEFT adapter directory (adapter_config.json +
// adapter_model.safetensors) under dir. A multi-component diffusers/kohya
// adapter (UNet + text encoders) becomes one PEFT directory per component,
// dir/<component>/, since a PEFT adapter belongs to one model.
//
// Each directory holds one PEFT method: LoRA (with use_dora and
// lora_magnitude_vector when every module is DoRA), LoHa or LoKr (tensors
// copied verbatim, per-module r/alpha reproducing the kohya/LyCORIS scale;
// see lycoPEFT). Mixtures of methods, DoRA magnitudes over input columns
// (LyCORIS (1,in) dora_scale) and LoHa/LoKr with dora_scale are refused
// (ErrRefused).
func ToPEFT(a *adapter.Adapter, dir string, o Options) (*Result, error) {
	mods, res, err := prepare(a, ToPEFTName, o, peftKinds)
	if err != nil {
		return nil, err
	}
	res.Output = dir
	groups := byComponent(mods)
	for _, comp := range append([]string{CompNone}, componentOrder...) {
		g := groups[comp]
		if len(g) == 0 {
			continue
		}
		sub := dir
		if len(groups) > 1 {
			sub = filepath.Join(dir, comp)
		}
		method, err := groupMethod(a, g)
		if err != nil {
			return nil, err
		}
		var tensors []safetensors.Tensor
		var cfg map[string]any
		if method == "LOHA" || method == "LOKR" {
			if tensors, cfg, err = lycoPEFT(a, method, g, res); err != nil {
				return nil, err
			}
		} else {
			for _, m := range g {
				ts, err := peftFactorTensors(m)
				if err != nil {
					return nil, err
				}
				if m.src.Kind == adapter.KindDoRA {
					mt, err := magnitudeTensor(a, m.src, "base_model.model."+m.path+".lora_magnitude_vector", peftDoRAShape(m.f))
					if err != nil {
						return nil, err
					}
					ts = append(ts, mt)
				}
				tensors = append(tensors, ts...)
				res.Modules = append(res.Modules, Mapping{From: m.src.Name, To: m.path, Kind: string(m.src.Kind), Rank: m.f.Rank, Scale: m.src.Scale})
			}
			cfg = loraConfig(g, res)
			cfg["use_dora"] = method == "DORA"
		}
		if a.Config != nil && !a.Config.IsMLX() && a.Config.Raw != nil {
			// keep every key of the source config, then put the exact
			// weight-relevant fields over it
			merged := map[string]any{}
			for k, v := range a.Config.Raw {
				merged[k] = json.RawMessage(v)
			}
			for k, v := range cfg {
				merged[k] = v
			}
			cfg = merged
		}
		if _, ok := cfg["base_model_name_or_path"]; !ok {
			cfg["base_model_name_or_path"] = nil
			if a.Config != nil && a.Config.IsMLX() {
				if m, ok := a.Config.Raw["model"]; ok {
					cfg["base_model_name_or_path"] = json.RawMessage(m)
					cfg["task_type"] = "CAUSAL_LM"
				}
			}
		}
		cj, err := marshalConfig(cfg)
		if err != nil {
			return nil, err
		}
		res.Tensors += len(tensors)
		res.Files = append(res.Files, filepath.Join(sub, "adapter_config.json"), filepath.Join(sub, "adapter_model.safetensors"))
		if o.DryRun {
			continue
		}
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, err
		}
		if err := safetensors.WriteFile(filepath.Join(sub, "adapter_model.safetensors"), tensors, provenance(a, ToPEFTName, "lora_adapter_metadata")); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteBytes(filepath.Join(sub, "adapter_config.json"), cj); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// ToDiffusers writes a modern diffusers LoRA file with the LoraConfig in
// __metadata__["lora_adapter_metadata"] (diffusers ≥ 0.34), in one of the two
// layouts diffusers itself writes:
//
//   - model level (ModelMixin.save_lora_adapter): one component whose source
//     names carry no component prefix (a PEFT UNet, a prefix-less diffusers
//     file) → keys <path>.lora_A.weight / lora_B.weight and a plain LoraConfig;
//   - pipeline level (save_lora_weights): several components, or component
//     prefixes in the source (kohya, ai-toolkit) → keys
//     <component>.<path>.lora_A.weight and the per-component LoraConfig fields
//     packed as "<component>.<field>", plus the plain fields covering every
//     module (read by adaptool and loaders that ignore the packing).
//
// Either way r, lora_alpha, rank_pattern and alpha_pattern reproduce every
// module's scale exactly. out is a file path; a directory gets
// pytorch_lora_weights.safetensors inside.
func ToDiffusers(a *adapter.Adapter, out string, o Options) (*Result, error) {
	mods, res, err := prepare(a, ToDiffusersName, o, []adapter.Kind{adapter.KindLoRA, adapter.KindLoRAConv})
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		out = filepath.Join(out, "pytorch_lora_weights.safetensors")
	}
	res.Output = out
	groups := byComponent(mods)
	pipeline := len(groups) > 1
	for _, m := range mods {
		if m.comp != CompNone && (a.Dialect == adapter.DialectKohya || strings.HasPrefix(m.src.Name, m.comp+".") || m.part != nil) {
			pipeline = true
		}
	}
	var tensors []safetensors.Tensor
	for _, m := range mods {
		name := m.path
		if pipeline && m.comp != CompNone {
			name = m.comp + "." + m.path
		}
		ts, err := factorTensors(m, name+".lora_A.weight", name+".lora_B.weight")
		if err != nil {
			return nil, err
		}
		tensors = append(tensors, ts...)
		res.Modules = append(res.Modules, Mapping{From: m.src.Name, To: name, Kind: string(m.src.Kind), Rank: m.f.Rank, Scale: m.src.Scale})
	}
	cfg := loraConfig(mods, res)
	if pipeline {
		for _, comp := range componentOrder {
			if g := groups[comp]; len(g) > 0 {
				for k, v := range loraConfig(g, &Result{}) {
					cfg[comp+"."+k] = v
				}
			}
		}
	}
	cj, err := marshalConfig(cfg)
	if err != nil {
		return nil, err
	}
	md := provenance(a, ToDiffusersName, "lora_adapter_metadata")
	md["lora_adapter_metadata"] = string(cj)
	res.Tensors, res.Files = len(tensors), []string{out}
	if o.DryRun {
		return res, nil
	}
	return res, safetensors.WriteFile(out, tensors, md)
}

// ToKohya writes a kohya sd-scripts LoRA file: lora_unet_ / lora_te_ /
// lora_te1_ / lora_te2_ module names (LyCORIS-style lycoris_ for plain
// models), .lora_down.weight (r,in[,k…]), .lora_up.weight (out,r[,1…]) and
// a scalar F32 .alpha per module with alpha/r equal to the module's scale.
// Flux transformer modules use the sd-scripts (BFL) names where they map one
// to one. LoRA embeddings have no kohya form and are refused.
//
// LoHa and LoKr modules are written with LyCORIS' keys (hada_*, lokr_*,
// the same tensors as PEFT's, copied verbatim) and an .alpha that
// reproduces the scale under LyCORIS' rules — a LoKr whose w1 and w2 are
// both whole has scale 1 there, so when its PEFT scale is not 1 its
// lokr_w2 is written as the exact product of an identity and itself (a
// warning says so). DoRA modules add the magnitude as .dora_scale
// (out,1[,1…]), LyCORIS' wd_on_out layout (the output-row norm PEFT uses).
// Such files get ss_network_module "lycoris.kohya".
func ToKohya(a *adapter.Adapter, out string, o Options) (*Result, error) {
	mods, res, err := prepare(a, ToKohyaName, o, kohyaKinds)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		out = filepath.Join(out, "lora.safetensors")
	}
	res.Output = out
	sdxl := len(byComponent(mods)[CompTextEnc2]) > 0 || o.Base.isSDXL()
	if sdxl {
		res.warn("SDXL: UNet modules use kohya's SGM names (input_blocks/middle_block/output_blocks) and text encoders lora_te1_/lora_te2_")
	}
	var tensors []safetensors.Tensor
	names := map[string][]string{}
	var unmapped []string
	var ranks []int
	var alphas []float64
	mods = unfusable(mods, &unmapped)
	mods, err = fuseFlux(mods, &unmapped)
	if err != nil {
		return nil, err
	}
	lyco, dora := map[adapter.Kind]bool{}, false
	for _, m := range mods {
		kn, err := kohyaName(m.comp, m.path, sdxl)
		if m.comp == "bfl" {
			kn, err = "lora_unet_"+strings.ReplaceAll(m.path, ".", "_"), nil
		}
		if err != nil {
			for _, k := range m.keys() {
				unmapped = append(unmapped, fmt.Sprintf("%s (%v)", k, err))
			}
			continue
		}
		names[kn] = append(names[kn], m.src.Name)
		if isLyco(m.src.Kind) {
			ts, alpha, r, err := kohyaLyco(a, m, kn, res)
			if err != nil {
				return nil, err
			}
			tensors = append(tensors, ts...)
			ranks, alphas = append(ranks, r), append(alphas, alpha)
			lyco[m.src.Kind] = true
			res.Modules = append(res.Modules, Mapping{From: m.src.Name, To: kn, Kind: string(m.src.Kind), Rank: r, Scale: m.src.Scale})
			continue
		}
		ts, err := factorTensors(m, kn+".lora_down.weight", kn+".lora_up.weight")
		if err != nil {
			return nil, err
		}
		if m.src.Kind == adapter.KindDoRA {
			mt, err := magnitudeTensor(a, m.src, kn+".dora_scale", kohyaDoRAShape(m.f))
			if err != nil {
				return nil, err
			}
			ts = append(ts, mt)
			dora = true
		}
		alpha, exact := alphaFor(m.src.Scale, m.f.Rank, m.src.Alpha, true)
		if err := kohyaAlpha(a, m.src, kn, m.f.Rank, alpha); err != nil {
			return nil, err
		}
		if !exact {
			res.warn("module %q: scale %v is not alpha/r for any float32 alpha at r=%d; alpha %v changes it by ≤1 ulp", m.src.Name, m.src.Scale, m.f.Rank, alpha)
		}
		ab, _ := encode([]float32{float32(alpha)}, safetensors.F32)
		tensors = append(tensors, ts...)
		tensors = append(tensors, safetensors.Tensor{Name: kn + ".alpha", DType: safetensors.F32, Shape: []int{}, Data: ab})
		ranks, alphas = append(ranks, m.f.Rank), append(alphas, alpha)
		from := m.src.Name
		if m.fusedFrom != "" {
			from = m.fusedFrom
		}
		res.Modules = append(res.Modules, Mapping{From: from, To: kn, Kind: string(m.src.Kind), Rank: m.f.Rank, Scale: m.src.Scale})
	}
	if len(unmapped) > 0 {
		return nil, unmappedErr(a, ToKohyaName, unmapped)
	}
	if err := checkDuplicates(names, ToKohyaName); err != nil {
		return nil, err
	}
	md := provenance(a, ToKohyaName, "lora_adapter_metadata")
	md["ss_network_module"] = "networks.lora"
	if len(lyco) > 0 || dora {
		md["ss_network_module"] = "lycoris.kohya"
		args := map[string]string{"algo": "locon"}
		for k := range lyco {
			args["algo"] = string(k)
		}
		if len(lyco) > 1 {
			args["algo"] = "mixed"
		}
		if dora {
			args["dora_wd"], args["wd_on_out"] = "True", "True"
			res.warn("DoRA: magnitudes written as dora_scale (out,1[,1…]), LyCORIS' wd_on_out layout, which like PEFT divides each output row of W+ΔW by its norm (LyCORIS adds float eps to the norm; ComfyUI's output-axis branch divides by the norm of the base W alone)")
		}
		aj, _ := json.Marshal(args)
		md["ss_network_args"] = string(aj)
	}
	md["ss_network_dim"] = strconv.Itoa(mostCommon(ranks))
	md["ss_network_alpha"] = strconv.FormatFloat(mostCommon(alphas), 'g', -1, 64)
	if !allSame(ranks) || !allSame(alphas) {
		md["ss_network_alpha"] = "Dynamic"
		md["ss_network_dim"] = "Dynamic"
	}
	res.Tensors, res.Files = len(tensors), []string{out}
	if o.DryRun {
		return res, nil
	}
	return res, safetensors.WriteFile(out, tensors, md)
}

func allSame[T comparable](v []T) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return true
}

var layerIdxRe = regexp.MustCompile(`(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.`)

// ToMLX writes an MLX-LM adapter directory: adapters.safetensors with
// <path>.lora_a (in,r) and .lora_b (r,out) (transposed relative to PEFT, no
// .weight) and adapter_config.json with lora_parameters {rank, scale,
// dropout, keys} and num_layers. MLX has one rank and one scale: ranks are
// zero-padded to the largest (exact), and modules whose scale differs from
// the most common one get scale_i/scale multiplied into lora_b (a warning
// says so). Conv LoRA, DoRA and pipeline components are refused.
func ToMLX(a *adapter.Adapter, dir string, o Options) (*Result, error) {
	mods, res, err := prepare(a, ToMLXName, o, []adapter.Kind{adapter.KindLoRA, adapter.KindLoRAEmbedding})
	if err != nil {
		return nil, err
	}
	res.Output = dir
	var unmapped []string
	var scales []float64
	R := 0
	for _, m := range mods {
		if m.comp != CompNone {
			for _, k := range m.keys() {
				unmapped = append(unmapped, fmt.Sprintf("%s (MLX-LM adapters are for language models, not the %s)", k, m.comp))
			}
		}
		scales = append(scales, m.src.Scale)
		R = max(R, m.f.Rank)
	}
	if len(unmapped) > 0 {
		return nil, unmappedErr(a, ToMLXName, unmapped)
	}
	s0 := mlxScale(scales)
	var tensors []safetensors.Tensor
	keys := map[string]bool{}
	minLayer, maxLayer := -1, -1
	for _, m := range mods {
		f := m.f
		// pad A (r,in) → (R,in) and B (out,r) → (out,R) with zeros
		ap := make([]float32, R*f.In)
		copy(ap, f.A)
		bp := make([]float32, f.Out*R)
		ratio := float32(1)
		note := ""
		if m.src.Scale != s0 {
			ratio = float32(m.src.Scale / s0)
			if r := float64(ratio); factorsFinite(f) && (math.IsInf(r, 0) || r != r || (r == 0 && m.src.Scale != 0)) {
				return nil, fmt.Errorf("%w: %s: module %q: tensor %s.lora_b: its scale %v is %v× MLX's single scale %v, a factor float32 cannot hold, so it cannot be multiplied into lora_b",
					ErrRefused, a.WeightsPath, m.src.Name, m.path, m.src.Scale, m.src.Scale/s0, s0)
			}
			note = fmt.Sprintf("scale %g baked into lora_b as ×%g (MLX has one scale %g)", m.src.Scale, ratio, s0)
			if frac, _ := math.Frexp(m.src.Scale / s0); frac != 0.5 {
				note += "; not a power of two: lora_b rounds to float32"
			}
			res.warn("module %q: %s", m.src.Name, note)
		}
		limit := finiteLimit(m.dtype)
		for i := 0; i < f.Out; i++ {
			for k := 0; k < f.Rank; k++ {
				x := f.B[i*f.Rank+k] * ratio
				if !(x <= limit && x >= -limit) && ratio != 1 && factorsFinite(f) {
					return nil, fmt.Errorf("%w: %s: module %q: tensor %s.lora_b: value %v at row %d, column %d (lora_b × %v, the module's scale %v over MLX's single scale %v) is beyond the range of %s and would be written as Inf",
						ErrRefused, a.WeightsPath, m.src.Name, m.path, x, k, i, ratio, m.src.Scale, s0, m.dtype)
				}
				bp[i*R+k] = x
			}
		}
		if f.Rank != R {
			note = strings.TrimPrefix(note+fmt.Sprintf("; rank %d zero-padded to %d", f.Rank, R), "; ")
		}
		la, err := encode(transpose(ap, R, f.In), m.dtype)
		if err != nil {
			return nil, err
		}
		lb, err := encode(transpose(bp, f.Out, R), m.dtype)
		if err != nil {
			return nil, err
		}
		tensors = append(tensors,
			safetensors.Tensor{Name: m.path + ".lora_a", DType: m.dtype, Shape: []int{f.In, R}, Data: la},
			safetensors.Tensor{Name: m.path + ".lora_b", DType: m.dtype, Shape: []int{R, f.Out}, Data: lb})
		res.Modules = append(res.Modules, Mapping{From: m.src.Name, To: m.path, Kind: string(m.src.Kind), Rank: R, Scale: m.src.Scale, Note: note})
		if loc := layerIdxRe.FindStringSubmatchIndex(m.path); loc != nil {
			n, _ := strconv.Atoi(m.path[loc[2]:loc[3]])
			if minLayer < 0 || n < minLayer {
				minLayer = n
			}
			maxLayer = max(maxLayer, n)
			keys[m.path[loc[1]:]] = true
		} else {
			keys[m.path] = true
		}
	}
	numLayers := 0
	if minLayer >= 0 {
		total := maxLayer + 1
		if n, ok := o.Base.Int("num_hidden_layers", "n_layer", "num_layers"); ok {
			total = n
		} else {
			res.warn("num_layers assumes the base has %d layers (the highest adapted index + 1); give --base-config for the real count", total)
		}
		numLayers = total - minLayer
	}
	cfg := map[string]any{}
	if a.Config != nil && a.Config.IsMLX() {
		for k, v := range a.Config.Raw {
			cfg[k] = json.RawMessage(v)
		}
	}
	lp := map[string]any{}
	if raw, ok := cfg["lora_parameters"].(json.RawMessage); ok {
		json.Unmarshal(raw, &lp)
	}
	lp["rank"], lp["scale"], lp["keys"] = R, jsonNumber(s0), sortedKeys(keys)
	if _, ok := lp["dropout"]; !ok {
		lp["dropout"] = 0.0
	}
	delete(lp, "alpha") // ignored by mlx-lm; scale is authoritative
	cfg["lora_parameters"] = lp
	if _, ok := cfg["model"]; !ok && a.Config != nil && a.Config.BaseModelNameOrPath != "" {
		cfg["model"] = a.Config.BaseModelNameOrPath
	}
	cfg["fine_tune_type"] = "lora"
	cfg["num_layers"] = numLayers
	delete(cfg, "lora_layers")
	cj, err := marshalConfig(cfg)
	if err != nil {
		return nil, err
	}
	res.Tensors = len(tensors)
	res.Files = []string{filepath.Join(dir, "adapters.safetensors"), filepath.Join(dir, "adapter_config.json")}
	if o.DryRun {
		return res, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := safetensors.WriteFile(res.Files[0], tensors, provenance(a, ToMLXName, "lora_adapter_metadata")); err != nil {
		return nil, err
	}
	return res, atomicfile.WriteBytes(res.Files[1], cj)
}

// mlxScale picks MLX's one scale: the candidate for which the most modules
// have a power-of-two ratio sᵢ/s (baking such a ratio into lora_b is exact),
// then the most common, then the smallest.
func mlxScale(scales []float64) float64 {
	count := map[float64]int{}
	for _, s := range scales {
		count[s]++
	}
	best, bestPow, bestN := 0.0, -1, -1
	for _, c := range sortedFloats(count) {
		pow := 0
		for _, s := range scales {
			if frac, _ := math.Frexp(s / c); frac == 0.5 {
				pow++
			}
		}
		if pow > bestPow || (pow == bestPow && count[c] > bestN) {
			best, bestPow, bestN = c, pow, count[c]
		}
	}
	return best
}

func sortedFloats(m map[float64]int) []float64 {
	var k []float64
	for f := range m {
		k = append(k, f)
	}
	sort.Float64s(k)
	return k
}
