package adapter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/ops/kernels"
)

// Severity of a validation finding.
type Severity string

// Severities, from worst to mildest. Validate's caller treats error and
// warning findings as problems (exit 1 in the CLI); info findings are
// facts worth knowing that do not make the adapter wrong.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
	SeverityInfo    Severity = "info"
)

// Finding is one validation result.
type Finding struct {
	Severity Severity `json:"severity"`
	File     string   `json:"file"`
	Tensor   string   `json:"tensor,omitempty"`
	Module   string   `json:"module,omitempty"`
	Rule     string   `json:"rule"`
	Message  string   `json:"message"`
}

// Report is the result of Validate.
type Report struct {
	Path     string    `json:"path"`
	File     string    `json:"file"`
	Dialect  Dialect   `json:"dialect"`
	PeftType string    `json:"peft_type"`
	Tensors  int       `json:"tensors"`
	Modules  int       `json:"modules"`
	Findings []Finding `json:"findings"`
}

// Count returns the number of findings of severity s.
func (r *Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// Clean reports whether there is no error or warning finding.
func (r *Report) Clean() bool { return r.Count(SeverityError)+r.Count(SeverityWarning) == 0 }

// The validation rule identifiers.
const (
	RuleConfigInvalid      = "config-invalid"
	RuleMissingA           = "missing-lora-a"
	RuleMissingB           = "missing-lora-b"
	RuleRankMismatch       = "rank-mismatch"
	RuleRankPattern        = "rank-pattern-mismatch"
	RuleAdaLoRARank        = "adalora-rank"
	RuleDoRAMissing        = "dora-missing-magnitude"
	RuleDoRAUnexpected     = "dora-unexpected-magnitude"
	RuleLoRABiasMissing    = "lora-bias-missing"
	RuleLoRABiasUnexpected = "lora-bias-unexpected"
	RuleShape              = "shape"
	RuleTargetNoTensors    = "target-without-tensors"
	RuleNotTargeted        = "module-not-targeted"
	RuleModulesToSave      = "modules-to-save-missing"
	RuleBiasNoTensors      = "bias-config-without-tensors"
	RuleNonFinite          = "nonfinite"
	RuleZeroB              = "zero-lora-b"
	RuleAlphaUnknown       = "alpha-unknown"
	RulePeftTypeMismatch   = "peft-type-mismatch"
	RuleWrapper            = "lora-on-modules-to-save-wrapper"
	RuleUnknownTensor      = "unknown-tensor"
	RuleOtherMethod        = "method-not-computed"
	RuleRankExceedsWidth   = "rank-exceeds-width"
	RuleVeRAProjection     = "vera-missing-projection"
	RuleInitMutatesBase    = "init-mutates-base"
	RuleMLXLayers          = "mlx-num-layers"
	RuleDType              = "non-float-dtype"
	RuleQuantized          = "quantized"
	RuleIA3Feedforward     = "ia3-feedforward-mismatch"
	RulePatternUnused      = "pattern-unused"
)

// Validate runs every format and adapter check on path (what Load
// accepts). It returns an error only when the input cannot be read at all:
// a missing file, a pickled .bin, or a safetensors format error (the
// format/safetensors sentinels, e.g. ErrHeaderTooSmall,
// ErrMetadataIncompleteBuffer). Everything else is a Finding naming the
// file, the tensor and the rule. Tensor data is scanned for NaN/Inf in
// bounded chunks. A GGUF adapter file is checked as llama.cpp would load it.
func Validate(path string, opts ...LoadOption) (*Report, error) {
	if gguf.IsGGUF(path) {
		return validateGGUF(path)
	}
	rep := &Report{Path: path}
	opts = append(slices.Clip(opts), withCompact())
	a, err := Load(path, opts...)
	if err != nil && errors.Is(err, ErrConfig) {
		// The weights may still be readable: validate them without the config.
		msg := err.Error()
		a, err = Load(path, append(opts, withoutConfig())...)
		if err == nil {
			rep.add(Finding{Severity: SeverityError, File: a.ConfigPathOr(path), Rule: RuleConfigInvalid, Message: msg})
		}
	}
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.validate(rep)
}

// Validate runs the adapter and data checks of the package-level Validate
// on an already loaded adapter. It returns an error only when tensor data
// cannot be read.
func (a *Adapter) Validate() (*Report, error) {
	return a.validate(&Report{Path: a.Path})
}

func (a *Adapter) validate(rep *Report) (*Report, error) {
	rep.File, rep.Dialect, rep.PeftType = a.WeightsPath, a.Dialect, a.PeftType
	rep.Tensors, rep.Modules = len(a.File.Tensors), len(a.Modules)
	v := validator{a: a, rep: rep}
	v.modules()
	v.config()
	if err := v.data(); err != nil {
		return nil, err
	}
	v.flush()
	return rep, nil
}

// flush moves the findings into rep.Findings, after those already there,
// ordered by severity (errors, warnings, infos) and otherwise as found: what
// a stable sort by severity gives, in one exactly sized array.
func (v *validator) flush() {
	all := v.rep.Findings
	var counts [3]int
	for _, f := range all {
		counts[sevRank(f.Severity)]++
	}
	for _, c := range v.chunks {
		for _, f := range c {
			counts[sevRank(f.Severity)]++
		}
	}
	out := make([]Finding, counts[0]+counts[1]+counts[2])
	next := [3]int{0, counts[0], counts[0] + counts[1]}
	put := func(f Finding) {
		r := sevRank(f.Severity)
		out[next[r]] = f
		next[r]++
	}
	for _, f := range all {
		put(f)
	}
	for i, c := range v.chunks {
		for _, f := range c {
			put(f)
		}
		v.chunks[i] = nil
	}
	v.chunks = nil
	if len(out) == 0 {
		out = all // nil stays nil
	}
	v.rep.Findings = out
}

func sevRank(s Severity) int {
	switch s {
	case SeverityError:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}

// ConfigPathOr returns the config path, or def when there is none.
func (a *Adapter) ConfigPathOr(def string) string {
	if a.ConfigPath != "" {
		return a.ConfigPath
	}
	return def
}

func withoutConfig() LoadOption {
	return func(o *loadOptions) { o.noConfig = true }
}

func (r *Report) add(f Finding) { r.Findings = append(r.Findings, f) }

type validator struct {
	a   *Adapter
	rep *Report
	buf []byte // the one scan buffer of this Validate call (see scanFloats)
	// chunks collect the findings (flush moves them to rep): a header of
	// 300,000 modules can give as many findings, which appending to one
	// slice would copy over and over.
	chunks [][]Finding
}

// findingsChunk is the number of findings in each of validator.chunks.
const findingsChunk = 4096

func (v *validator) add(f Finding) {
	if n := len(v.chunks); n == 0 || len(v.chunks[n-1]) == cap(v.chunks[n-1]) {
		v.chunks = append(v.chunks, make([]Finding, 0, findingsChunk))
	}
	c := &v.chunks[len(v.chunks)-1]
	*c = append(*c, f)
}

// message is fmt.Sprintf(format, args...), without the copy when there is
// nothing to format.
func message(format string, args []any) string {
	if len(args) == 0 && strings.IndexByte(format, '%') < 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

func (v *validator) find(sev Severity, m *Module, tensor, rule, format string, args ...any) {
	f := Finding{Severity: sev, File: v.a.WeightsPath, Tensor: tensor, Rule: rule, Message: message(format, args)}
	if m != nil {
		f.Module = m.Name
	}
	v.add(f)
}

func (v *validator) cfgFind(sev Severity, rule, format string, args ...any) {
	v.add(Finding{Severity: sev, File: v.a.ConfigPathOr(v.a.WeightsPath), Rule: rule, Message: message(format, args)})
}

// modules checks each module's tensors against each other.
func (v *validator) modules() {
	a := v.a
	var unknownAlpha []string
	for _, m := range a.Modules {
		ta, hasA := m.tensor(RoleA)
		tb, hasB := m.tensor(RoleB)
		switch {
		case m.Kind == KindIncomplete && hasA:
			v.find(SeverityError, m, ta.Name, RuleMissingB, "module %q has lora_A %v but no lora_B: it is not a usable adapter", m.Name, ta.Shape)
		case m.Kind == KindIncomplete && hasB:
			v.find(SeverityError, m, tb.Name, RuleMissingA, "module %q has lora_B %v but no lora_A", m.Name, tb.Shape)
		}
		if m.IsLowRank() {
			v.lowRank(m, ta, tb)
		}
		if m.Kind == KindLoHa || m.Kind == KindLoKr || m.Kind == KindVeRA {
			v.lycoris(m)
		}
		if needsScale(m.Kind) && !m.AlphaKnown && m.Kind != KindIncomplete {
			unknownAlpha = append(unknownAlpha, m.Name)
		}
		if m.Kind == KindVeRA && (a.Shared["vera_A"].Name == "" || a.Shared["vera_B"].Name == "") {
			v.find(SeverityError, m, m.tensorRef("vera_lambda_b").Name, RuleVeRAProjection, "VeRA module %q but the file has no shared base_model.vera_A/vera_B (save_projection=false): the projections come from torch's PRNG and cannot be reproduced", m.Name)
		}
		if m.Kind == KindDiff {
			d, hasD := m.tensor(RoleDiff)
			b, hasB := m.tensor(RoleDiffBias)
			switch {
			case hasB && len(b.Shape) != 1:
				v.find(SeverityError, m, b.Name, RuleShape, "diff_b has shape %v; want a vector", b.Shape)
			case hasD && hasB && (len(d.Shape) == 0 || d.Shape[0] != b.Shape[0]):
				v.find(SeverityError, m, b.Name, RuleShape, "diff_b has %d elements, the diff %v has %d rows", b.Shape[0], d.Shape, dim(d.Shape, 0))
			}
		}
		if m.Kind == KindIA3 {
			l := m.tensorRef(RoleIA3)
			if len(l.Shape) != 2 && len(l.Shape) != 4 || (len(l.Shape) == 2 && l.Shape[0] != 1 && l.Shape[1] != 1) {
				v.find(SeverityError, m, l.Name, RuleShape, "ia3_l has shape %v; want (out,1), (1,in) or (1,C,1,1)", l.Shape)
			}
		}
		for role, t := range m.tensors() {
			if d, ok := a.Quantized[t.Name]; ok {
				v.find(SeverityInfo, m, t.Name, RuleQuantized, "quantized (%s, %s layout; logical shape %v): values not checked; run adaptool dequantize to check or use them", d.Scheme, d.Layout, t.Shape)
				continue
			}
			if !t.DType.IsFloat() && role != RoleAlpha {
				v.find(SeverityWarning, m, t.Name, RuleDType, "tensor has dtype %s; adapter weights are float", t.DType)
			}
		}
	}
	if len(unknownAlpha) > 0 {
		v.find(SeverityWarning, nil, "", RuleAlphaUnknown, "alpha of %d modules cannot be known from the input (%s); scale assumes alpha = r", len(unknownAlpha), strings.Join(firstN(unknownAlpha, 3), ", "))
	}
	for _, m := range a.Modules {
		if strings.HasSuffix(m.Name, ".modules_to_save") && m.Wrapped {
			parent := strings.TrimSuffix(m.Name, ".modules_to_save")
			v.find(SeverityWarning, m, m.tensorRef(RoleA).Name, RuleWrapper, "LoRA was applied to the ModulesToSaveWrapper of %q (keys %s.lora_*, .modules_to_save.lora_*, .original_module.lora_*): which copy a merge should modify is ambiguous", parent, parent)
		}
	}
	for _, n := range a.Unknown {
		v.find(SeverityInfo, nil, n, RuleUnknownTensor, "tensor role not recognised; kept as a passthrough tensor")
	}
	other := map[Kind][]*Module{}
	for _, m := range a.Modules {
		if !m.Kind.Supported() {
			other[m.Kind] = append(other[m.Kind], m)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(other)) {
		ms := other[k]
		v.find(SeverityWarning, ms[0], anyTensor(ms[0]), RuleOtherMethod, "%d module(s) use PEFT method %s, which adaptool recognises but computes no ΔW for: inspect, validate, convert --dtype and pack/unpack work on them; merge, scale, apply and the other transforms refuse them", len(ms), k)
	}
	if a.Dialect == DialectMLX && a.Config.IsMLX() && a.Config.MLX.NumLayers > 0 {
		if n := countLayers(a.Modules); n != a.Config.MLX.NumLayers {
			v.cfgFind(SeverityInfo, RuleMLXLayers, "config says %d adapted layers, tensors cover %d; the tensors are used", a.Config.MLX.NumLayers, n)
		}
	}
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string(nil), s[:n]...), fmt.Sprintf("… %d more", len(s)-n))
}

// lowRank checks A/B/E/diag/magnitude/bias shapes of one module.
func (v *validator) lowRank(m *Module, ta, tb TensorRef) {
	// rank of B
	var rb, outB int
	switch {
	case m.Transposed && m.Experts > 0:
		rb, outB = dim(tb.Shape, 2), dim(tb.Shape, 1)
	case m.Transposed:
		rb, outB = dim(tb.Shape, 0), dim(tb.Shape, 1)
	default:
		rb, outB = dim(tb.Shape, 1), dim(tb.Shape, 0)
		if len(ta.Shape) < 2 || len(tb.Shape) < 2 {
			v.find(SeverityError, m, ta.Name, RuleShape, "lora_A %v / lora_B %v must have at least 2 dims", ta.Shape, tb.Shape)
			return
		}
		if product(tb.Shape[2:]) != 1 {
			v.find(SeverityError, m, tb.Name, RuleShape, "conv lora_B %v must be (out, r, 1, …)", tb.Shape)
		}
	}
	if rb != m.Rank {
		v.find(SeverityError, m, tb.Name, RuleRankMismatch, "lora_B %v has rank %d but lora_A %v has rank %d", tb.Shape, rb, ta.Shape, m.Rank)
	}
	_ = outB
	vec := func(role string, want int, what string) {
		t, ok := m.tensor(role)
		if !ok {
			return
		}
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != want {
			v.find(SeverityError, m, t.Name, RuleShape, "%s %v has %d elements, want %d", what, t.Shape, n, want)
		}
	}
	vec(RoleE, m.Rank, "lora_E")
	vec(RoleDiag, m.Rank, "lora_diag")
	vec(RoleMagnitude, m.OutFeatures, "magnitude")
	vec(RoleLoRABias, m.OutFeatures, "lora_B.bias")
	if m.Kind != KindLoRAConv && m.InFeatures > 0 && m.OutFeatures > 0 && m.Rank > min(m.InFeatures, m.OutFeatures) {
		v.find(SeverityInfo, m, ta.Name, RuleRankExceedsWidth, "rank %d exceeds min(in=%d, out=%d): rank(ΔW) ≤ %d", m.Rank, m.InFeatures, m.OutFeatures, min(m.InFeatures, m.OutFeatures))
	}
	cfg := v.a.configFor(m)
	if cfg == nil || cfg.IsMLX() || v.a.ConfigSource == "" {
		return
	}
	if m.Kind == KindAdaLoRA {
		if m.Rank > cfg.InitR {
			v.find(SeverityError, m, ta.Name, RuleAdaLoRARank, "AdaLoRA rank %d from shapes exceeds init_r=%d", m.Rank, cfg.InitR)
		}
		for _, mp := range cfg.AdaLoRAMask {
			if mp.Key == m.Name+".lora_E" || strings.HasSuffix(mp.Key, "."+m.Name+".lora_E") {
				kept := 0
				for _, b := range mp.Mask {
					if b {
						kept++
					}
				}
				if kept != m.Rank {
					v.find(SeverityError, m, m.tensorRef(RoleE).Name, RuleAdaLoRARank, "rank_pattern mask keeps %d ranks but the tensors have rank %d", kept, m.Rank)
				}
			}
		}
		return
	}
	if m.ConfigRank > 0 && m.ConfigRank != m.Rank {
		src := fmt.Sprintf("r=%d", cfg.R)
		if i, _ := firstMatch(cfg.RankPattern, v.a.patternName(m), PatternsModern, "rank_pattern"); i >= 0 {
			src = fmt.Sprintf("rank_pattern[%q]=%d", cfg.RankPattern[i].Key, int(cfg.RankPattern[i].Value))
		}
		v.find(SeverityError, m, ta.Name, RuleRankPattern, "tensors have rank %d but the config gives %s for this module: PEFT would refuse to load it", m.Rank, src)
	}
	_, hasMag := m.tensor(RoleMagnitude)
	if cfg.UseDoRA && !hasMag {
		v.find(SeverityError, m, ta.Name, RuleDoRAMissing, "use_dora is true but module %q has no lora_magnitude_vector", m.Name)
	}
	if !cfg.UseDoRA && hasMag && v.a.Dialect == DialectPEFT {
		v.find(SeverityWarning, m, m.tensorRef(RoleMagnitude).Name, RuleDoRAUnexpected, "lora_magnitude_vector present but use_dora is false: PEFT would ignore it")
	}
	_, hasBias := m.tensor(RoleLoRABias)
	if cfg.LoraBias && !hasBias {
		v.find(SeverityWarning, m, tb.Name, RuleLoRABiasMissing, "lora_bias is true but module %q has no lora_B.bias", m.Name)
	}
	if !cfg.LoraBias && hasBias {
		v.find(SeverityWarning, m, m.tensorRef(RoleLoRABias).Name, RuleLoRABiasUnexpected, "lora_B.bias present but lora_bias is false: PEFT would not load it")
	}
}

// config checks the config against the set of modules.
func (v *validator) config() {
	a, cfg := v.a, v.a.Config
	if cfg == nil || cfg.IsMLX() {
		return
	}
	if cfg.MutatesBase() {
		v.cfgFind(SeverityWarning, RuleInitMutatesBase, "init_lora_weights=%q modifies the base at init: the delta is relative to a mutated base unless converted", cfg.InitLoraWeights)
	}
	pt := strings.ToUpper(cfg.PeftType)
	want := map[string][]Kind{
		"LORA":          {KindLoRA, KindLoRAEmbedding, KindLoRAConv, KindDoRA, KindKaSA},
		"ADALORA":       {KindAdaLoRA},
		"IA3":           {KindIA3},
		"LOHA":          {KindLoHa},
		"LOKR":          {KindLoKr},
		"VERA":          {KindVeRA},
		"PROMPT_TUNING": {KindPrompt}, "P_TUNING": {KindPrompt}, "PREFIX_TUNING": {KindPrefix}, "MULTITASK_PROMPT_TUNING": {KindPrompt},
	}
	for _, o := range otherMethods {
		want[strings.ToUpper(string(o.kind))] = []Kind{o.kind}
	}
	var adapted []*Module
	for _, m := range a.Modules {
		if m.Kind == KindFull || m.Kind == KindIncomplete {
			continue
		}
		adapted = append(adapted, m)
		if kinds, ok := want[pt]; ok && !containsKind(kinds, m.Kind) {
			v.find(SeverityError, m, anyTensor(m), RulePeftTypeMismatch, "module %q holds %s tensors but peft_type is %s", m.Name, m.Kind, cfg.PeftType)
		}
	}
	lowRankType := pt == "LORA" || pt == "ADALORA" || pt == "IA3" || pt == "LOHA" || pt == "LOKR" || pt == "VERA" || (pt == "" && a.ConfigSource == "lora_adapter_metadata")
	if lowRankType && cfg.TargetModules.Set && !cfg.TargetModules.AllLinear {
		if cfg.TargetModules.IsRegex {
			hit := false
			for _, m := range adapted {
				if ok, _ := cfg.TargetModules.Matches(a.patternName(m)); ok {
					hit = true
					break
				}
			}
			if !hit {
				v.cfgFind(SeverityWarning, RuleTargetNoTensors, "target_modules regex %q matches none of the %d adapted modules in the file", cfg.TargetModules.Regex, len(adapted))
			}
		} else {
			for _, e := range uniq(cfg.TargetModules.List) {
				spec := TargetSpec{Set: true, List: []string{e}}
				hit := false
				for _, m := range adapted {
					if ok, _ := spec.Matches(a.patternName(m)); ok {
						hit = true
						break
					}
				}
				if !hit {
					v.cfgFind(SeverityWarning, RuleTargetNoTensors, "target_modules entry %q matches no module with adapter tensors", e)
				}
			}
		}
		for _, m := range adapted {
			ok, err := cfg.Targets(a.patternName(m))
			if err == nil && !ok && !m.Wrapped {
				v.find(SeverityWarning, m, anyTensor(m), RuleNotTargeted, "module %q has adapter tensors but target_modules/exclude_modules/layers_to_transform do not select it: PEFT would not load them", m.Name)
			}
		}
	}
	if pt == "IA3" && cfg.FeedforwardModules.Set {
		for _, m := range adapted {
			if m.Kind != KindIA3 {
				continue
			}
			ff, err := cfg.FeedforwardModules.Matches(a.patternName(m))
			l := m.tensorRef(RoleIA3)
			if err == nil && len(l.Shape) == 2 && ff != m.Feedforward {
				v.find(SeverityError, m, l.Name, RuleIA3Feedforward, "ia3_l shape %v is %s but feedforward_modules says %s", l.Shape, ffWord(m.Feedforward), ffWord(ff))
			}
		}
	}
	for _, pats := range []struct {
		field string
		p     []Pattern
	}{{"rank_pattern", cfg.RankPattern}, {"alpha_pattern", cfg.AlphaPattern}} {
		for _, p := range pats.p {
			hit := false
			for _, m := range adapted {
				if ok, err := matchPattern(p.Key, a.patternName(m), PatternsModern, pats.field); err == nil && ok {
					hit = true
					break
				}
			}
			if !hit {
				v.cfgFind(SeverityInfo, RulePatternUnused, "%s key %q matches no adapted module of the file", pats.field, p.Key)
			}
		}
	}
	if len(cfg.ModulesToSave) > 0 {
		seen := map[string]bool{}
		for _, e := range cfg.ModulesToSave {
			if seen[e] {
				continue
			}
			seen[e] = true
			hit := false
			for _, m := range a.Modules {
				if m.Name == e || strings.HasSuffix(m.Name, "."+e) || strings.HasPrefix(m.Name, e+".") {
					hit = true
					break
				}
			}
			if !hit {
				v.cfgFind(SeverityInfo, RuleModulesToSave, "modules_to_save entry %q has no tensors in the file (PEFT adds classifier/score by default for SEQ_CLS; harmless when the model has no such module)", e)
			}
		}
	}
	if cfg.Bias == "all" || cfg.Bias == "lora_only" {
		n := 0
		for _, m := range a.Modules {
			if _, ok := m.tensor(RoleBias); ok && m.Kind != KindFull {
				n++
			}
		}
		if n == 0 {
			v.cfgFind(SeverityInfo, RuleBiasNoTensors, "bias=%q but no base bias tensors were saved next to the adapted modules", cfg.Bias)
		}
	}
}

func ffWord(ff bool) string {
	if ff {
		return "feed-forward (1,in)"
	}
	return "output scaling (out,1)"
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func containsKind(ks []Kind, k Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func anyTensor(m *Module) string {
	for _, r := range []string{RoleA, RoleIA3, RolePrompt, RoleWeight, RoleB} {
		if t, ok := m.tensor(r); ok {
			return t.Name
		}
	}
	// else the first name in order (Tensors' iteration order is random)
	first := ""
	for _, t := range m.tensors() {
		if first == "" || t.Name < first {
			first = t.Name
		}
	}
	return first
}

// data scans every float tensor for NaN/Inf and every lora_B for all-zero.
func (v *validator) data() error {
	a := v.a
	type tensorRole struct {
		m   *Module
		isB bool // once set, as the map of B tensors it replaces
	}
	// by position in a.File.Tensors (found through the header's index)
	roleOf := make([]tensorRole, len(a.File.Tensors))
	for _, m := range a.Modules {
		for role, t := range m.tensors() {
			i, ok := a.File.Index(t.Name)
			if !ok {
				continue
			}
			r := &roleOf[i]
			r.m = m
			r.isB = r.isB || role == RoleB
		}
	}
	for i, t := range a.File.Tensors {
		if !t.DType.IsFloat() {
			continue
		}
		if v.buf == nil {
			v.buf = make([]byte, scanBufSize)
		}
		var st floatStats
		if a.File.Mapped() {
			// the mapped bytes themselves, scanned in chunks of the same size
			raw, err := a.File.TensorData(t)
			if err != nil {
				return err
			}
			st = scanFloatBytes(raw, t.DType, v.buf)
		} else {
			sec, err := a.File.Section(t.Name)
			if err != nil {
				return err
			}
			if st, err = scanFloats(sec, t.DType, v.buf); err != nil {
				return fmt.Errorf("%s: tensor %q: %w", a.WeightsPath, t.Name, err)
			}
		}
		r := roleOf[i]
		m := r.m
		if st.nan+st.inf > 0 {
			v.find(SeverityError, m, t.Name, RuleNonFinite, "%d NaN and %d ±Inf values (first at element %d)", st.nan, st.inf, st.first)
		}
		if r.isB && st.nonzero == 0 && t.NumElements() > 0 {
			v.find(SeverityWarning, m, t.Name, RuleZeroB, "lora_B is all zero: the adapter was never trained (ΔW = 0)")
		}
	}
	return nil
}

type floatStats struct {
	nan, inf, nonzero int64
	first             int64
}

// scanBufSize is the size of the scan buffer: one per Validate call,
// whatever the number and size of the tensors.
const scanBufSize = 1 << 20

// scanFloats counts NaN, ±Inf and non-zero values of a little-endian float
// tensor read in chunks of buf (nil: a scanBufSize buffer of its own), so
// memory stays bounded for any tensor size and, with one buf reused, for any
// tensor count. F32, F16, BF16 and F64 use tight bit-mask loops; the other
// float encodings go through classifyFloat.
func scanFloats(r io.Reader, dt safetensors.DType, buf []byte) (floatStats, error) {
	st := floatStats{first: -1}
	size := dt.Bits() / 8
	if size == 0 {
		return st, nil
	}
	if len(buf) < size {
		buf = make([]byte, scanBufSize)
	}
	buf = buf[:len(buf)/size*size]
	var idx int64
	for {
		n, err := io.ReadFull(r, buf)
		n -= n % size
		st.chunk(buf[:n], dt, size, idx)
		idx += int64(n / size)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
	}
}

// scanFloatBytes is scanFloats over bytes already in memory (a mapped
// tensor): the same chunks, each scanned in place when it is aligned for
// its dtype, else from a copy in buf.
func scanFloatBytes(data []byte, dt safetensors.DType, buf []byte) floatStats {
	st := floatStats{first: -1}
	size := dt.Bits() / 8
	if size == 0 {
		return st
	}
	if len(buf) < size {
		buf = make([]byte, scanBufSize)
	}
	step := len(buf) / size * size
	data = data[:len(data)/size*size]
	var idx int64
	for len(data) > 0 {
		chunk := data[:min(step, len(data))]
		data = data[len(chunk):]
		if len(chunk) >= smallScan*size && uintptr(unsafe.Pointer(&chunk[0]))%uintptr(size) != 0 {
			chunk = buf[:copy(buf, chunk)]
		}
		st.chunk(chunk, dt, size, idx)
		idx += int64(len(chunk) / size)
	}
	return st
}

// smallScan is the element count below which a chunk is classified value
// by value: the kernels' setup costs more than the loop (a header of
// 600,000 one-element tensors).
const smallScan = 64

// chunk adds the counts of one chunk of n/size values whose first is
// element idx of the tensor.
func (st *floatStats) chunk(chunk []byte, dt safetensors.DType, size int, idx int64) {
	n := len(chunk)
	if n >= smallScan*size {
		if ks, ok := chunkStats(chunk, dt); ok {
			st.nonzero += ks.N - ks.Zeros
			if ks.NaN+ks.Inf > 0 {
				st.nan += ks.NaN
				st.inf += ks.Inf
				if st.first < 0 { // rare: find where, element by element
					for i := 0; i < n; i += size {
						if nan, inf, _ := classifyFloat(chunk[i:i+size], dt); nan || inf {
							st.first = idx + int64(i/size)
							break
						}
					}
				}
			}
			return
		}
	}
	for i := 0; i < n; i += size {
		nan, inf, nz := classifyFloat(chunk[i:i+size], dt)
		st.record(idx+int64(i/size), nan, inf)
		if nz {
			st.nonzero++
		}
	}
}

func (st *floatStats) record(i int64, nan, inf bool) {
	if !nan && !inf {
		return
	}
	if st.first < 0 {
		st.first = i
	}
	if nan {
		st.nan++
	} else {
		st.inf++
	}
}

// chunkStats runs the ops/kernels statistics kernel of dt over a chunk of
// stored values (counts of zeros, NaN and ±Inf in the stored encoding);
// ok is false for encodings without a kernel and for misaligned chunks.
func chunkStats(chunk []byte, dt safetensors.DType) (kernels.Stats, bool) {
	switch dt {
	case safetensors.F32:
		if v, ok := safetensors.AsFloat32(chunk); ok {
			return kernels.StatsF32(v), true
		}
	case safetensors.F16, safetensors.BF16:
		if v, ok := safetensors.AsUint16(chunk); ok {
			if dt == safetensors.F16 {
				return kernels.StatsF16(v), true
			}
			return kernels.StatsBF16(v), true
		}
	case safetensors.F8E4M3:
		return kernels.StatsF8E4M3(chunk), true
	case safetensors.F8E5M2:
		return kernels.StatsF8E5M2(chunk), true
	case safetensors.F64:
		if len(chunk) > 0 && uintptr(unsafe.Pointer(&chunk[0]))%8 == 0 {
			return kernels.StatsF64(unsafe.Slice((*float64)(unsafe.Pointer(&chunk[0])), len(chunk)/8)), true
		}
	}
	return kernels.Stats{}, false
}

// classifyFloat reports NaN, Inf and non-zero for one encoded value.
func classifyFloat(b []byte, dt safetensors.DType) (nan, inf, nonzero bool) {
	switch dt {
	case safetensors.F32:
		u := binary.LittleEndian.Uint32(b)
		exp, man := u>>23&0xff, u&0x7fffff
		return exp == 0xff && man != 0, exp == 0xff && man == 0, u&0x7fffffff != 0
	case safetensors.F64:
		f := math.Float64frombits(binary.LittleEndian.Uint64(b))
		return math.IsNaN(f), math.IsInf(f, 0), f != 0
	case safetensors.F16:
		u := binary.LittleEndian.Uint16(b)
		exp, man := u>>10&0x1f, u&0x3ff
		return exp == 0x1f && man != 0, exp == 0x1f && man == 0, u&0x7fff != 0
	case safetensors.BF16:
		u := binary.LittleEndian.Uint16(b)
		exp, man := u>>7&0xff, u&0x7f
		return exp == 0xff && man != 0, exp == 0xff && man == 0, u&0x7fff != 0
	case safetensors.F8E4M3:
		u := b[0]
		return u&0x7f == 0x7f, false, u&0x7f != 0
	case safetensors.F8E5M2:
		u := b[0]
		exp, man := u>>2&0x1f, u&0x3
		return exp == 0x1f && man != 0, exp == 0x1f && man == 0, u&0x7f != 0
	}
	// other float encodings (F8 FNUZ variants, F6, F4, F8E8M0): only zero-ness
	for _, x := range b {
		if x != 0 {
			return false, false, true
		}
	}
	return false, false, false
}
