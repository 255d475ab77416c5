package convert

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

// Options configure a conversion.
type Options struct {
	// Base is the optional --base-config (see LoadBase); it resolves kohya
	// names, and gives head counts, tied embeddings and layer counts.
	Base *Base
	// DryRun plans the conversion (names, shapes, scales) without writing.
	DryRun bool
}

// Mapping is one module of a conversion plan.
type Mapping struct {
	From  string  `json:"from"`  // source module name
	To    string  `json:"to"`    // target module name
	Kind  string  `json:"kind"`  // adapter.Kind
	Rank  int     `json:"rank"`  // rank written
	Scale float64 `json:"scale"` // source scale s (ΔW = s·B·A)
	Note  string  `json:"note,omitempty"`
}

// Result describes a finished (or, with DryRun, planned) conversion.
type Result struct {
	From     string    `json:"from"` // source dialect
	To       string    `json:"to"`   // target dialect
	Output   string    `json:"output"`
	Files    []string  `json:"files,omitempty"`
	Modules  []Mapping `json:"modules"`
	Tensors  int       `json:"tensors"`
	Alpha    *float64  `json:"gguf_alpha,omitempty"`
	Baked    bool      `json:"scale_baked,omitempty"`
	DryRun   bool      `json:"dry_run,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

func (r *Result) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// module is one low-rank module in dialect-neutral form.
type module struct {
	comp, path string
	src        *adapter.Module
	f          *adapter.Factors // nil until load
	dtype      safetensors.DType
	part       *part  // rows of a fused source module (Flux linear1/qkv), nil otherwise
	fusedFrom  string // for a fused module: the source modules it joins
}

func (m *module) keys() []string {
	var k []string
	for _, t := range m.src.Tensors {
		k = append(k, t.Name)
	}
	sort.Strings(k)
	return k
}

// collect decodes every module name of a into (component, path), keeping
// the module kinds in allowed. Everything else is returned as unmapped
// source tensor names with the reason.
func collect(a *adapter.Adapter, base *Base, allowed ...adapter.Kind) ([]*module, []string) {
	var mods []*module
	var unmapped []string
	ok := map[adapter.Kind]bool{}
	for _, k := range allowed {
		ok[k] = true
	}
	for _, t := range a.Unknown {
		unmapped = append(unmapped, t+" (unrecognised tensor)")
	}
	for _, m := range a.Modules {
		if !ok[m.Kind] {
			mm := &module{src: m}
			for _, k := range mm.keys() {
				unmapped = append(unmapped, fmt.Sprintf("%s (%s module %q cannot be represented)", k, m.Kind, m.Name))
			}
			continue
		}
		var comp, path string
		if a.Dialect == adapter.DialectKohya {
			var err error
			comp, path, err = fromKohya(m.Name, base)
			if err != nil {
				mm := &module{src: m}
				for _, k := range mm.keys() {
					unmapped = append(unmapped, fmt.Sprintf("%s (%v)", k, err))
				}
				continue
			}
		} else {
			comp, path = splitComponent(m.Name)
		}
		dt := safetensors.F32
		if t, has := m.Tensors[adapter.RoleA]; has && (t.DType == safetensors.F16 || t.DType == safetensors.BF16 || t.DType == safetensors.F32) {
			dt = t.DType
		}
		if comp == CompTransformer {
			if parts, spec := splitFused(path); parts != nil {
				if isLyco(m.Kind) || m.Kind == adapter.KindDoRA {
					mm := &module{src: m}
					for _, k := range mm.keys() {
						unmapped = append(unmapped, fmt.Sprintf("%s (fused Flux module %q: a %s module cannot be split into its q/k/v/mlp parts)", k, m.Name, m.Kind))
					}
					continue
				}
				for i, p := range parts {
					mods = append(mods, &module{comp: comp, path: p, src: m, dtype: dt, part: &part{index: i, of: len(parts), weight: spec.weight}})
				}
				continue
			}
		}
		mods = append(mods, &module{comp: comp, path: path, src: m, dtype: dt})
	}
	sort.SliceStable(mods, func(i, j int) bool {
		if mods[i].comp != mods[j].comp {
			return mods[i].comp < mods[j].comp
		}
		return mods[i].path < mods[j].path
	})
	sort.Strings(unmapped)
	return mods, unmapped
}

func unmappedErr(a *adapter.Adapter, to string, keys []string) error {
	// One line (the CLI prints each error on one stderr line), the first
	// few keys named.
	const max = 8
	list := keys
	more := ""
	if len(list) > max {
		more = fmt.Sprintf("; … and %d more", len(list)-max)
		list = list[:max]
	}
	return fmt.Errorf("%w: %s → %s: %d source tensors have no %s representation: %s%s",
		ErrUnmapped, a.WeightsPath, to, len(keys), to, strings.Join(list, "; "), more)
}

// checkDuplicates fails when two source modules land on the same target name.
func checkDuplicates(names map[string][]string, to string) error {
	var dups []string
	for _, n := range sortedKeys(names) {
		if len(names[n]) > 1 {
			dups = append(dups, fmt.Sprintf("%s ← %s", n, strings.Join(names[n], ", ")))
		}
	}
	if len(dups) > 0 {
		return fmt.Errorf("%w: several source modules map to the same %s name: %s", ErrUnmapped, to, strings.Join(dups, "; "))
	}
	return nil
}

func (m *module) load(a *adapter.Adapter) error {
	if m.f != nil || isLyco(m.src.Kind) {
		return nil // LoHa/LoKr tensors are copied verbatim when written
	}
	if err := doraAxisOK(a, m.src); err != nil {
		return err
	}
	if t := m.src.Tensors[adapter.RoleA]; m.src.Kind == adapter.KindDoRA && strings.HasSuffix(t.Name, "lora_embedding_A") {
		return fmt.Errorf("%w: %s: tensor %q: DoRA on an embedding layer (module %q) is not converted: its magnitude and (B·A)ᵀ frame have no kohya form, and Factors models DoRA as a Linear", ErrRefused, a.WeightsPath, t.Name, m.src.Name)
	}
	f, err := a.Factors(m.src)
	if err != nil {
		return err
	}
	if f.Experts > 0 {
		return fmt.Errorf("%w: %s: module %q is an MLX SwitchLinear (MoE) LoRA; only MLX holds that layout", ErrRefused, a.WeightsPath, m.src.Name)
	}
	if m.part != nil {
		if f, err = slicePart(f, m.part); err != nil {
			return fmt.Errorf("%w: %s: module %q: %v", ErrRefused, a.WeightsPath, m.src.Name, err)
		}
	}
	m.f = f
	return nil
}

// encode converts float32 values to the module's dtype bytes.
func encode(v []float32, dt safetensors.DType) ([]byte, error) {
	out := make([]byte, len(v)*dt.Bits()/8)
	if err := safetensors.FromFloat32(out, v, dt); err != nil {
		return nil, err
	}
	return out, nil
}

func transpose(x []float32, rows, cols int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = x[i*cols+j]
		}
	}
	return out
}

// alphaFor returns an alpha with alpha/r == scale exactly in float64,
// trying hint, scale·r and its float64 neighbours; f32 restricts the search to
// float32-representable values (kohya .alpha tensors). ok is false when no
// candidate reproduces scale exactly (then the closest is returned).
func alphaFor(scale float64, r int, hint float64, f32 bool) (float64, bool) {
	rf := float64(r)
	c := scale * rf
	cands := []float64{hint, c, math.Nextafter(c, math.Inf(1)), math.Nextafter(c, math.Inf(-1))}
	if f32 {
		c32 := float32(c)
		cands = []float64{float64(float32(hint)), float64(c32),
			float64(math.Nextafter32(c32, float32(math.Inf(1)))), float64(math.Nextafter32(c32, float32(math.Inf(-1))))}
	}
	for _, a := range cands {
		if a/rf == scale {
			return a, true
		}
	}
	return cands[1], false
}

// kohyaAlpha refuses (ErrRefused) a kohya/LyCORIS scalar F32 .alpha that
// float32 cannot hold (scale·r beyond its range): written, it would be
// +Inf and ΔW = Inf in every loader. The message names the module, the
// .alpha tensor of kohya module kn and the rule.
func kohyaAlpha(a *adapter.Adapter, src *adapter.Module, kn string, r int, alpha float64) error {
	if a32 := float32(alpha); math.IsInf(float64(a32), 0) || a32 != a32 {
		return fmt.Errorf("%w: %s: module %q: tensor %s.alpha: scale %v at r=%d needs alpha %v, which a float32 kohya .alpha cannot hold",
			ErrRefused, a.WeightsPath, src.Name, kn, src.Scale, r, src.Scale*float64(r))
	}
	return nil
}

// finiteLimit is the largest float32 magnitude that rounds to a finite
// value of dt (F16 below 65520, BF16 below 0x7f7f8000; F8 saturates and
// every other float type holds all of float32).
func finiteLimit(dt safetensors.DType) float32 {
	switch dt {
	case safetensors.F16:
		return 65519.996
	case safetensors.BF16:
		return math.Float32frombits(0x7f7f7fff)
	}
	return math.MaxFloat32
}

// factorsFinite reports whether the factors read from the source hold no
// NaN or ±Inf (those are converted as they are, with warnNonFinite's
// warning, and not taken for an overflow of a computed value).
func factorsFinite(f *adapter.Factors) bool {
	for _, x := range [][]float32{f.A, f.B, f.E, f.Diag} {
		for _, y := range x {
			if y-y != 0 {
				return false
			}
		}
	}
	return true
}

// provenance returns the source metadata (minus keys the target writer
// regenerates) plus adaptool's record under "adaptool.convert".
func provenance(a *adapter.Adapter, to string, drop ...string) map[string]string {
	md := map[string]string{}
	for k, v := range a.Metadata {
		md[k] = v
	}
	for _, k := range drop {
		delete(md, k)
	}
	// hashes of the source bytes are wrong for the converted file
	for _, k := range []string{"sshs_model_hash", "sshs_legacy_hash", "modelspec.hash_sha256"} {
		delete(md, k)
	}
	rec, _ := json.Marshal(map[string]any{
		"tool": "adaptool", "op": "convert", "from": string(a.Dialect), "to": to,
		"source": filepath.Base(a.WeightsPath), "producer": a.Producer,
	})
	md["adaptool.convert"] = string(rec)
	for k, v := range inputRecord(a.WeightsPath, string(a.Dialect), to) {
		md[k] = v
	}
	return md
}

// mostCommon returns the most frequent value (ties: the smallest).
func mostCommon[T int | float64](vals []T) T {
	count := map[T]int{}
	for _, v := range vals {
		count[v]++
	}
	var best T
	n := -1
	for v, c := range count {
		if c > n || (c == n && v < best) {
			best, n = v, c
		}
	}
	return best
}

// warnNonFinite adds one warning listing the modules whose factors hold NaN
// or ±Inf (they are converted as they are).
func warnNonFinite(res *Result, mods []*module) {
	var bad []string
	for _, m := range mods {
		if m.f == nil {
			continue
		}
		n := 0
		for _, v := range [][]float32{m.f.A, m.f.B} {
			for _, x := range v {
				if x != x || x > math.MaxFloat32 || x < -math.MaxFloat32 {
					n++
				}
			}
		}
		if n > 0 {
			bad = append(bad, fmt.Sprintf("%s (%d)", m.src.Name, n))
		}
	}
	if len(bad) > 0 {
		more := ""
		if len(bad) > 8 {
			more = fmt.Sprintf(" and %d more", len(bad)-8)
			bad = bad[:8]
		}
		res.warn("non-finite values (NaN/Inf) in the factors of %s%s: converted as they are; the adapter is unusable", strings.Join(bad, ", "), more)
	}
}
