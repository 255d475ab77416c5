package inspect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

// baseModel is the header-only view of a base model: module path → its
// weight tensor (and the other tensors by full name).
type baseModel struct {
	tensors map[string]TensorSummary // by tensor name
	modules []string                 // paths of tensors named <path>.weight, sorted
	quant   bool
}

func loadBase(path string) (*baseModel, []string, error) {
	l, err := resolveLayout(path)
	if err != nil {
		return nil, nil, err
	}
	if l.kind == "gguf" {
		return nil, nil, fmt.Errorf("inspect: %s: a GGUF base model is not supported by check (safetensors file, sharded checkpoint or index)", path)
	}
	hs := readHeaders(l)
	var warns []string
	for _, e := range hs.errs {
		// only headers are needed: a header-only (truncated) base is fine
		if errors.Is(e, safetensors.ErrMetadataIncompleteBuffer) {
			warns = append(warns, "base data section ignored (header-only check): "+e.Error())
			continue
		}
		return nil, nil, e
	}
	if len(hs.tensors) == 0 {
		return nil, nil, asInput(fmt.Errorf("inspect: %s: the base model has no tensors", path))
	}
	b := &baseModel{tensors: map[string]TensorSummary{}}
	for _, t := range hs.tensors {
		b.tensors[t.Name] = t
		if strings.HasSuffix(t.Name, ".weight") {
			b.modules = append(b.modules, strings.TrimSuffix(t.Name, ".weight"))
		}
		if strings.HasSuffix(t.Name, ".SCB") || strings.HasSuffix(t.Name, ".weight_scale") || strings.Contains(t.Name, ".quant_state.") {
			b.quant = true
		}
	}
	sort.Strings(b.modules)
	return b, warns, nil
}

// kohyaPrefixes are the module-name prefixes of kohya sd-scripts files.
var kohyaPrefixes = []string{"lora_unet_", "lora_te1_", "lora_te2_", "lora_te_", "lora_transformer_"}

// find maps an adapter module name to a base module path: exact match, then
// a unique suffix match in either direction (PEFT task-model prefixes such
// as "model." or diffusers component prefixes such as "unet."), then, for
// kohya names, the base path with dots replaced by underscores.
func (b *baseModel) find(name string) (string, error) {
	if _, ok := b.tensors[name+".weight"]; ok {
		return name, nil
	}
	var cands []string
	for _, p := range b.modules {
		if strings.HasSuffix(p, "."+name) || strings.HasSuffix(name, "."+p) {
			cands = append(cands, p)
		}
	}
	if len(cands) == 0 {
		for _, pre := range kohyaPrefixes {
			if rest, ok := strings.CutPrefix(name, pre); ok {
				for _, p := range b.modules {
					u := strings.ReplaceAll(p, ".", "_")
					if u == rest || strings.HasSuffix(u, "_"+rest) || strings.HasSuffix(rest, "_"+u) {
						cands = append(cands, p)
					}
				}
				break
			}
		}
	}
	switch len(cands) {
	case 0:
		return "", nil
	case 1:
		return cands[0], nil
	}
	// prefer the shortest difference in length (the closest prefix)
	sort.Slice(cands, func(i, j int) bool { return absInt(len(cands[i])-len(name)) < absInt(len(cands[j])-len(name)) })
	if absInt(len(cands[0])-len(name)) == absInt(len(cands[1])-len(name)) {
		return "", fmt.Errorf("ambiguous: matches base modules %s", strings.Join(cands, ", "))
	}
	return cands[0], nil
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// expectedWeightShape is the base weight shape the module implies, or nil
// when the module says nothing about it.
func expectedWeightShape(m *adapter.Module) []int {
	in, out := m.InFeatures, m.OutFeatures
	switch {
	case m.Kind == adapter.KindLoRAEmbedding:
		return []int{in, out} // (num_embeddings, embedding_dim)
	case len(m.Kernel) > 0:
		return append([]int{out, in}, m.Kernel...)
	case m.IsLowRank():
		if m.FanInFanOut {
			return []int{in, out}
		}
		return []int{out, in}
	}
	return nil
}

// Check tests whether an adapter fits a base model, reading only the base's
// headers: every adapter module exists in the base, shapes agree (taking
// fan_in_fan_out, embeddings and conv kernels into account), the dtypes are
// reported, and every target_modules entry is matched against the base's
// modules. Problems make OK false (the CLI exits 1). A GGUF LoRA adapter is
// checked through its PEFT conversion (Hugging Face names); the base's
// config.json, when present next to it, gives the head counts.
func Check(adapterPath, basePath string) (*CheckResult, error) {
	base, warns, err := loadBase(basePath)
	if err != nil {
		return nil, err
	}
	a, closeA, err := loadAdapter(adapterPath, baseConfigOf(basePath))
	if err != nil {
		return nil, err
	}
	defer closeA()
	r := &CheckResult{Adapter: adapterPath, Base: basePath, BaseTensors: len(base.tensors), Modules: []CheckModule{},
		TargetMatches: []TargetMatch{}, Problems: []Problem{}, Warnings: append(warns, a.Warnings...)}
	if base.quant {
		r.Warnings = append(r.Warnings, "the base holds quantized tensors: packed shapes are not compared")
	}
	for _, m := range a.Modules {
		cm := CheckModule{Name: m.Name, Kind: string(m.Kind), Status: "ok"}
		for _, role := range sortedRoles(m) {
			cm.AdapterDType = m.Tensors[role].DType.String()
			break
		}
		if m.Kind == adapter.KindPrompt || m.Kind == adapter.KindPrefix || m.Kind == adapter.KindIncomplete {
			cm.Status = "unchecked"
			r.Modules = append(r.Modules, cm)
			continue
		}
		path, ferr := base.find(m.Name)
		if ferr != nil {
			cm.Status = "missing"
			r.Problems = append(r.Problems, Problem{Module: m.Name, Rule: "module-ambiguous", Detail: ferr.Error()})
			r.Modules = append(r.Modules, cm)
			continue
		}
		if path == "" {
			cm.Status = "missing"
			r.Problems = append(r.Problems, Problem{Module: m.Name, Rule: "module-missing",
				Detail: fmt.Sprintf("no tensor %s.weight (or a prefix/suffix variant) in the base", m.Name)})
			r.Modules = append(r.Modules, cm)
			continue
		}
		bt := base.tensors[path+".weight"]
		cm.BaseTensor, cm.BaseShape, cm.BaseDType = bt.Name, bt.Shape, bt.DType
		r.checkModule(&cm, m, base, path)
		r.Modules = append(r.Modules, cm)
	}
	if a.Config != nil {
		tm, err := matchTargets(a.Config.TargetModules, base.modules, "base")
		if err != nil {
			cfg := a.ConfigPath
			if cfg == "" {
				cfg = "adapter config"
			}
			return nil, asInput(fmt.Errorf("%s: target_modules: %w", cfg, err))
		}
		for _, t := range tm {
			r.TargetMatches = append(r.TargetMatches, t)
			if t.Matches == 0 {
				r.Problems = append(r.Problems, Problem{Module: "target_modules", Rule: "target-unmatched",
					Detail: fmt.Sprintf("entry %q matches no module of the base", t.Entry)})
			}
		}
	}
	r.OK = len(r.Problems) == 0
	return r, nil
}

func (r *CheckResult) checkModule(cm *CheckModule, m *adapter.Module, base *baseModel, path string) {
	bt := base.tensors[path+".weight"]
	quantized := bt.DType == "U8" || bt.DType == "I8" && base.quant
	mismatch := func(tensor, format string, args ...any) {
		cm.Status = "shape-mismatch"
		r.Problems = append(r.Problems, Problem{Module: m.Name, Tensor: tensor, Rule: "shape-mismatch", Detail: fmt.Sprintf(format, args...)})
	}
	switch {
	case m.IsLowRank():
		want := expectedWeightShape(m)
		cm.DeltaShape = want
		if quantized {
			cm.Status = "unchecked"
			return
		}
		if !slices.Equal(want, bt.Shape) {
			hint := ""
			if len(want) == 2 && slices.Equal([]int{want[1], want[0]}, bt.Shape) {
				hint = " (transposed: fan_in_fan_out is wrong for this base)"
			}
			mismatch(bt.Name, "adapter delta is %v but base weight %s is %v%s", want, bt.Name, bt.Shape, hint)
		}
		if t, ok := m.Tensors[adapter.RoleMagnitude]; ok {
			n := 1
			for _, d := range t.Shape {
				n *= d
			}
			if n != m.OutFeatures {
				mismatch(t.Name, "DoRA magnitude has %d elements, want out_features %d", n, m.OutFeatures)
			}
		}
	case m.Kind == adapter.KindIA3:
		t := m.Tensors[adapter.RoleIA3]
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if len(bt.Shape) < 2 || quantized {
			cm.Status = "unchecked"
			return
		}
		out, in := bt.Shape[0], bt.Shape[1]
		if m.FanInFanOut {
			out, in = in, out
		}
		want := out
		if m.Feedforward {
			want = in
		}
		cm.DeltaShape = bt.Shape
		if n != want {
			mismatch(t.Name, "IA3 vector has %d elements, the base weight %s %v needs %d (%s)", n, bt.Name, bt.Shape, want, map[bool]string{true: "in_features, feed-forward", false: "out_features"}[m.Feedforward])
		}
	case m.Kind == adapter.KindFull:
		for _, role := range sortedRoles(m) {
			t := m.Tensors[role]
			bn := path + "." + t.Name[strings.LastIndex(t.Name, ".")+1:]
			b, ok := base.tensors[bn]
			if !ok {
				r.Problems = append(r.Problems, Problem{Module: m.Name, Tensor: t.Name, Rule: "tensor-missing", Detail: fmt.Sprintf("replacement tensor has no base counterpart %s", bn)})
				cm.Status = "missing"
				continue
			}
			if !slices.Equal(t.Shape, b.Shape) {
				mismatch(t.Name, "replacement tensor is %v but base %s is %v", t.Shape, bn, b.Shape)
			}
		}
	default:
		cm.Status = "unchecked"
	}
}

func sortedRoles(m *adapter.Module) []string {
	roles := make([]string, 0, len(m.Tensors))
	for r := range m.Tensors {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return roles
}

// baseConfigOf returns the config.json of a base model (in the directory,
// or next to the file or index), or "" when there is none.
func baseConfigOf(basePath string) string {
	dir := basePath
	if st, err := os.Stat(basePath); err != nil || !st.IsDir() {
		dir = filepath.Dir(basePath)
	}
	c := filepath.Join(dir, "config.json")
	if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
		return c
	}
	return ""
}
