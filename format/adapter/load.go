package adapter

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
)

// File names Load looks for in a directory, in order.
const (
	ConfigFile        = "adapter_config.json"
	PEFTWeightsFile   = "adapter_model.safetensors"
	PEFTPickleFile    = "adapter_model.bin"
	MLXWeightsFile    = "adapters.safetensors"
	DiffusersLoRAFile = "pytorch_lora_weights.safetensors"
)

// LoadOption configures Load.
type LoadOption func(*loadOptions)

type loadOptions struct {
	adapterNames []string
	mode         PatternMode
	config       *Config
	alpha        float64
	hasAlpha     bool
	safeOpts     []safetensors.Option
	noConfig     bool
	file         *safetensors.File
	moduleFunc   func(m *Module, i, n int) bool
	compact      bool // leave Module.Tensors nil (Validate's own Load; see roles.go)
}

// WithAdapterName adds an adapter name to strip from PEFT keys in ModuleDict
// / ParameterDict position ("default" is always stripped). Only exact
// segments are removed.
func WithAdapterName(name string) LoadOption {
	return func(o *loadOptions) { o.adapterNames = append(o.adapterNames, name) }
}

// WithPatternMode selects PEFT ≥ 0.15 (default) or pre-0.15 resolution of
// rank_pattern/alpha_pattern.
func WithPatternMode(m PatternMode) LoadOption { return func(o *loadOptions) { o.mode = m } }

// WithConfig uses c instead of any config found next to the weights.
func WithConfig(c *Config) LoadOption { return func(o *loadOptions) { o.config = c } }

// WithAlpha supplies alpha for modules whose alpha the input does not fix
// (PEFT weights without a config, diffusers files without metadata). Those
// modules then get AlphaKnown=true with this alpha, and a warning records
// that it came from the caller.
func WithAlpha(alpha float64) LoadOption {
	return func(o *loadOptions) { o.alpha, o.hasAlpha = alpha, true }
}

// WithSafetensorsOptions passes options to safetensors.Open.
func WithSafetensorsOptions(opts ...safetensors.Option) LoadOption {
	return func(o *loadOptions) { o.safeOpts = append(o.safeOpts, opts...) }
}

// WithFile makes Load use f, a safetensors file the caller has already
// opened, instead of opening and parsing the weights file again, when f is
// that file (f.Name() and the weights path Load resolves clean to the same
// path); otherwise f is ignored. The caller keeps ownership of f:
// Adapter.Close does not close it, and f must stay open while the Adapter
// is used. WithSafetensorsOptions does not apply to f.
func WithFile(f *safetensors.File) LoadOption { return func(o *loadOptions) { o.file = f } }

// WithModuleFunc makes Load hand the modules to fn, the i-th of n (in name
// order) in the i-th call, once everything Load resolves is known
// (Adapter.Warnings included), instead of keeping them in Adapter.Modules,
// which Load then leaves empty (and the Adapter methods that look modules
// up find none). fn reports whether it keeps m: the Tensors map of a module
// it does not keep is reset to nil and reused for the next module, so a
// caller that turns modules into something smaller never holds every
// module's map at once, nor has one built for each: a Go map takes ~600
// bytes however few roles it holds, ~190 MB for a header of 300,000
// modules.
func WithModuleFunc(fn func(m *Module, i, n int) (keep bool)) LoadOption {
	return func(o *loadOptions) { o.moduleFunc = fn }
}

// withCompact leaves each module's Tensors nil, its tensors in the
// roleTable the package reads through Module.tensor (roles.go): for
// Validate, whose adapter never leaves the package.
func withCompact() LoadOption { return func(o *loadOptions) { o.compact = true } }

// locate finds the weights file and the config file for path.
func locate(path string) (weights, config string, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", "", err
	}
	if !st.IsDir() {
		if strings.HasSuffix(strings.ToLower(path), ".bin") || strings.HasSuffix(strings.ToLower(path), ".pt") || strings.HasSuffix(strings.ToLower(path), ".pth") {
			return "", "", fmt.Errorf("%s: %w: pickled PyTorch weights are never unpickled; convert them to safetensors first", path, ErrUnsupported)
		}
		base := filepath.Base(path)
		if base == PEFTWeightsFile || base == MLXWeightsFile {
			c := filepath.Join(filepath.Dir(path), ConfigFile)
			if _, err := os.Stat(c); err == nil {
				config = c
			}
		}
		return path, config, nil
	}
	c := filepath.Join(path, ConfigFile)
	if _, err := os.Stat(c); err == nil {
		config = c
	}
	for _, n := range []string{PEFTWeightsFile, MLXWeightsFile, DiffusersLoRAFile} {
		p := filepath.Join(path, n)
		if _, err := os.Stat(p); err == nil {
			return p, config, nil
		}
	}
	if _, err := os.Stat(filepath.Join(path, PEFTPickleFile)); err == nil {
		return "", "", fmt.Errorf("%s: %w: pickled PyTorch weights are never unpickled; convert them to safetensors first", filepath.Join(path, PEFTPickleFile), ErrUnsupported)
	}
	matches, _ := filepath.Glob(filepath.Join(path, "*.safetensors"))
	if len(matches) == 1 {
		return matches[0], config, nil
	}
	if len(matches) > 1 {
		return "", "", fmt.Errorf("%s: %w: %d .safetensors files and none named %s, %s or %s", path, ErrNoAdapter, len(matches), PEFTWeightsFile, MLXWeightsFile, DiffusersLoRAFile)
	}
	return "", "", fmt.Errorf("%s: %w", path, ErrNoAdapter)
}

// Load opens an adapter: a directory holding adapter_config.json +
// adapter_model.safetensors (PEFT), adapters.safetensors (MLX-LM) or
// pytorch_lora_weights.safetensors (diffusers), or a bare .safetensors file
// of any dialect. For a file named adapter_model.safetensors or
// adapters.safetensors, an adapter_config.json beside it is used.
// adapter_model.bin is reported as ErrUnsupported and never unpickled.
//
// Only the header is parsed eagerly (the file is memory-mapped); kohya
// .alpha scalars are the only tensor data read. Format errors wrap the
// format/safetensors sentinels; a bad config wraps ErrConfig. Close the
// Adapter when done.
func Load(path string, opts ...LoadOption) (*Adapter, error) {
	o := loadOptions{}
	for _, f := range opts {
		f(&o)
	}
	weights, cfgPath, err := locate(path)
	if err != nil {
		return nil, err
	}
	a := &Adapter{Path: path, WeightsPath: weights}
	if o.config != nil {
		a.Config, a.ConfigSource = o.config, "option"
	} else if cfgPath != "" && !o.noConfig {
		c, err := LoadConfig(cfgPath)
		if err != nil {
			return nil, err
		}
		a.Config, a.ConfigPath, a.ConfigSource = c, cfgPath, ConfigFile
	}
	if f := o.file; f != nil && filepath.Clean(f.Name()) == filepath.Clean(weights) {
		a.File, a.borrowed = f, true
		if err := a.build(&o); err != nil {
			return nil, err
		}
		return a, nil
	}
	f, err := safetensors.Open(weights, o.safeOpts...)
	if err != nil {
		return nil, err
	}
	a.File = f
	if err := a.build(&o); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

// FromFile builds an Adapter over an already open safetensors file with an
// optional config (nil for none). On success the Adapter takes ownership of
// f (Adapter.Close closes it); on error f is left open.
func FromFile(f *safetensors.File, cfg *Config, opts ...LoadOption) (*Adapter, error) {
	o := loadOptions{}
	for _, fn := range opts {
		fn(&o)
	}
	a := &Adapter{Path: f.Name(), WeightsPath: f.Name(), File: f, Config: cfg}
	if cfg != nil {
		a.ConfigSource = "option"
	}
	if err := a.build(&o); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Adapter) build(o *loadOptions) error {
	f := a.File
	a.Metadata = f.Metadata
	if a.Config != nil && a.Config.PeftType != "" && !a.Config.IsMLX() {
		a.PeftType = strings.ToUpper(a.Config.PeftType)
	}
	if a.Config == nil {
		if md := a.Metadata["lora_adapter_metadata"]; md != "" {
			cfgs, err := parseDiffusersMetadata([]byte(md))
			switch {
			case err != nil:
				a.warn("lora_adapter_metadata in %s is not a usable LoraConfig (%v); ignored", a.WeightsPath, err)
			case cfgs[""] != nil:
				a.Config, a.ConfigSource = cfgs[""], "lora_adapter_metadata"
			default:
				a.ComponentConfigs, a.ConfigSource = cfgs, "lora_adapter_metadata"
				if len(cfgs) == 1 {
					for _, c := range cfgs {
						a.Config = c
					}
				}
			}
		}
	}
	for comp, c := range a.ComponentConfigs {
		if err := c.CheckPatterns(); err != nil {
			return fmt.Errorf("%s (component %s): %w", a.configName(), comp, err)
		}
	}
	if a.Config != nil {
		if err := a.Config.CheckPatterns(); err != nil {
			return fmt.Errorf("%s: %w", a.configName(), err)
		}
	}
	refs, err := a.tensorRefs()
	if err != nil {
		return err
	}
	var cl *classification
	if refs == nil {
		cl = classifyOf(a.File.Tensors, func(t *safetensors.TensorInfo) TensorRef { return refOf(*t) }, a.Metadata, a.Config, a.PeftType != "", o.adapterNames)
	} else {
		cl = classify(refs, a.Metadata, a.Config, a.PeftType != "", o.adapterNames)
	}
	if cl.err != nil {
		return fmt.Errorf("%s: %w", a.WeightsPath, cl.err)
	}
	a.Dialect, a.Producer, a.Modules, a.Unknown = cl.dialect, cl.producer, cl.modules, cl.unknown
	if len(cl.shared) > 0 {
		a.Shared = cl.shared
	}
	a.Warnings = append(a.Warnings, cl.warnings...)
	a.Architecture = guessArchitecture(a.Modules, a.Config, a.Metadata)
	if err := a.resolveScales(o); err != nil {
		return err
	}
	if a.Config != nil && a.Config.MutatesBase() {
		a.warn("init_lora_weights=%q mutates the base model at init: the saved delta is relative to a modified base unless it was converted", a.Config.InitLoraWeights)
	}
	if a.Dialect == DialectMLX && a.Config != nil && a.Config.IsMLX() && a.Config.MLX.NumLayers > 0 {
		if n := countLayers(a.Modules); n != a.Config.MLX.NumLayers {
			a.warn("MLX config says %d adapted layers but the tensors cover %d; the tensors are trusted", a.Config.MLX.NumLayers, n)
		}
	}
	if a.Config != nil && a.Config.IsMLX() && a.Config.MLX.HasScale && a.Config.MLX.Alpha != 0 {
		a.warn("MLX lora_parameters.alpha=%g is ignored by mlx-lm; scale %g is used", a.Config.MLX.Alpha, a.Config.MLX.Scale)
	}
	switch {
	case o.moduleFunc != nil:
		mods := a.Modules
		a.Modules = nil
		var spare map[string]TensorRef // the map of a module fn did not keep
		for i, m := range mods {
			mods[i] = nil // fn's to keep or drop
			if spare != nil && m.compact() {
				clear(spare)
				m.fill(spare)
				spare = nil
			}
			m.materialize()
			if !o.moduleFunc(m, i, len(mods)) {
				spare, m.Tensors = m.Tensors, nil
			}
		}
	case !o.compact:
		for _, m := range a.Modules {
			m.materialize()
		}
	}
	return nil
}

func (a *Adapter) configName() string {
	if a.ConfigPath != "" {
		return a.ConfigPath
	}
	if a.ConfigSource == "lora_adapter_metadata" {
		return a.WeightsPath + " (lora_adapter_metadata)"
	}
	return "config"
}

func (a *Adapter) warn(format string, args ...any) {
	a.Warnings = append(a.Warnings, fmt.Sprintf(format, args...))
}

// countLayers counts distinct "layers.N" indices among module names (the
// segment after the first "layers", "h", "block", "blocks" or "layer"
// segment that has one).
func countLayers(mods []*Module) int {
	seen := map[string]bool{}
	for _, m := range mods {
		rest := m.Name
		for {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				break // the last segment has no successor
			}
			seg, next := rest[:i], rest[i+1:]
			if seg == "layers" || seg == "h" || seg == "block" || seg == "blocks" || seg == "layer" {
				if j := strings.IndexByte(next, '.'); j >= 0 {
					next = next[:j]
				}
				seen[next] = true
				break
			}
			rest = next
		}
	}
	return len(seen)
}

// configFor returns the config that governs m: the component's config of a
// diffusers pipeline file whose lora_adapter_metadata is per component
// ("unet.r", "text_encoder.r", ...), else Adapter.Config.
func (a *Adapter) configFor(m *Module) *Config {
	if a.ComponentConfigs == nil {
		return a.Config
	}
	if i := strings.IndexByte(m.Name, '.'); i > 0 {
		if c, ok := a.ComponentConfigs[m.Name[:i]]; ok {
			return c
		}
	}
	return a.Config
}

// parseDiffusersMetadata parses a lora_adapter_metadata string: either one
// LoraConfig (key "" of the result) or, as diffusers' pipeline
// save_lora_weights writes it, the configs of several components flattened
// with a component prefix ("unet.r": 4, "text_encoder.lora_alpha": 8, ...).
func parseDiffusersMetadata(data []byte) (map[string]*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrConfig)
	}
	for _, k := range []string{"r", "lora_alpha", "peft_type", "target_modules", "rank_pattern"} {
		if _, ok := raw[k]; ok {
			c, err := ParseConfig(data)
			if err != nil {
				return nil, err
			}
			return map[string]*Config{"": c}, nil
		}
	}
	groups := map[string]map[string]json.RawMessage{}
	for k, v := range raw {
		comp, field, ok := strings.Cut(k, ".")
		if !ok || comp == "" || field == "" {
			return nil, fmt.Errorf("%w: key %q is neither a LoraConfig field nor component-prefixed", ErrConfig, k)
		}
		if groups[comp] == nil {
			groups[comp] = map[string]json.RawMessage{}
		}
		groups[comp][field] = v
	}
	out := map[string]*Config{}
	for comp, g := range groups {
		b, err := json.Marshal(g)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		c, err := ParseConfig(b)
		if err != nil {
			return nil, fmt.Errorf("component %s: %w", comp, err)
		}
		out[comp] = c
	}
	return out, nil
}

// patternName is the module path PEFT would match patterns against: the
// diffusers component prefix is not part of the component's module tree.
func (a *Adapter) patternName(m *Module) string {
	if a.Dialect == DialectDiffusers || a.Dialect == DialectDiffusersLegacy {
		for _, p := range componentPrefixes {
			if strings.HasPrefix(m.Name, p) {
				return strings.TrimPrefix(m.Name, p)
			}
		}
	}
	return m.Name
}

func needsScale(k Kind) bool {
	switch k {
	case KindLoRA, KindLoRAEmbedding, KindLoRAConv, KindDoRA, KindAdaLoRA, KindKaSA, KindLoHa, KindLoKr, KindIncomplete:
		return true
	}
	return false
}

// resolveScales fills Alpha, Scale, AlphaKnown, ConfigRank and FanInFanOut.
func (a *Adapter) resolveScales(o *loadOptions) error {
	unknown := 0 // modules whose alpha nothing fixes
	mlxNoScale := 0
	for _, m := range a.Modules {
		cfg := a.configFor(m)
		if !needsScale(m.Kind) {
			m.Scale, m.AlphaKnown = 1, true
			if cfg != nil && !cfg.IsMLX() && (m.Kind == KindIA3 || m.Kind == KindVeRA) {
				m.FanInFanOut = cfg.FanInFanOut
			}
			continue
		}
		if m.Kind == KindLoKr && m.Rank <= 0 {
			// Both factors whole: the shapes hold no rank.
			isUnknown, err := a.wholeLoKrScale(m, cfg, o)
			if err != nil {
				return err
			}
			if isUnknown {
				unknown++
			}
			continue
		}
		if m.Rank <= 0 {
			// Rank 0 (AdaLoRA prunes modules to it): ΔW = 0 whatever the
			// alpha, so there is nothing to know; no scale is defined.
			m.Scale, m.AlphaKnown = 0, m.Rank == 0 && m.IsLowRank()
			continue
		}
		if t, ok := m.tensor(RoleAlpha); ok {
			v, err := a.float32(t)
			if err != nil {
				return err
			}
			if len(v) != 1 {
				return fmt.Errorf("%s: tensor %q: %w: alpha must hold one value, has %d", a.WeightsPath, t.Name, ErrShape, len(v))
			}
			m.Alpha, m.AlphaKnown = float64(v[0]), true
			if m.Alpha == 0 {
				m.Alpha = float64(m.Rank) // kohya: missing/0 alpha means alpha = r
			}
			m.Scale = m.Alpha / float64(m.Rank)
			continue
		}
		switch {
		case a.Dialect == DialectKohya:
			m.Alpha, m.Scale, m.AlphaKnown = float64(m.Rank), 1, true
		case a.Dialect == DialectDiffusersLegacy:
			m.Alpha, m.Scale, m.AlphaKnown = float64(m.Rank), 1, true
		case cfg != nil && cfg.IsMLX():
			m.ConfigRank = cfg.MLX.Rank
			m.Scale, m.AlphaKnown = cfg.MLX.Scale, cfg.MLX.HasScale
			m.Alpha = cfg.MLX.Scale * float64(m.Rank)
			if !cfg.MLX.HasScale {
				mlxNoScale++
			}
		case cfg != nil:
			r, alpha, scale, err := cfg.ModuleScale(a.patternName(m), o.mode)
			if err != nil {
				return fmt.Errorf("%s: %w", a.configName(), err)
			}
			m.ConfigRank, m.Alpha, m.Scale, m.AlphaKnown = r, alpha, scale, true
			if m.Kind == KindAdaLoRA {
				m.Alpha = alpha
			}
			m.FanInFanOut = cfg.FanInFanOut
		case o.hasAlpha:
			m.Alpha, m.AlphaKnown = o.alpha, true
			m.Scale = m.Alpha / float64(m.Rank)
			unknown++
		default:
			m.Alpha, m.Scale, m.AlphaKnown = float64(m.Rank), 1, false
			unknown++
		}
		if cfg == nil && a.Architecture == "gpt2" {
			last := m.Name[strings.LastIndexByte(m.Name, '.')+1:]
			m.FanInFanOut = last == "c_attn" || last == "c_proj" || last == "c_fc"
		}
	}
	if mlxNoScale > 0 {
		a.warn("alpha unknown: the MLX config has no lora_parameters.scale; mlx-lm's LoRALinear default scale 20 is assumed for %d modules", mlxNoScale)
	}
	if unknown > 0 {
		why := "no adapter_config.json"
		switch a.Dialect {
		case DialectDiffusers:
			why = "diffusers file without lora_adapter_metadata or alpha tensors (diffusers loaders then use scale 1)"
		case DialectMLX:
			why = "MLX adapter without its training config"
		case DialectUnknown:
			why = "unknown adapter format without a config"
		}
		if o.hasAlpha {
			a.warn("alpha unknown (%s); alpha = %g supplied by the caller is used for %d modules", why, o.alpha, unknown)
		} else {
			a.warn("alpha unknown: %s; scale assumes alpha = r (scale 1) for %d modules — supply the real alpha", why, unknown)
		}
	}
	for _, m := range a.Modules {
		if m.ConfigRank > 0 && m.Rank > 0 && m.ConfigRank != m.Rank && m.Kind != KindAdaLoRA && (m.Kind != KindLoKr || lokrShapeRank(m)) && m.Kind != KindIncomplete && needsScale(m.Kind) {
			a.warn("module %q: rank %d from the tensor shapes differs from the config's r=%d (r/rank_pattern); the scale uses the config's r as PEFT does", m.Name, m.Rank, m.ConfigRank)
		}
	}
	// classify sorted the modules by name and nothing above renames them;
	// sort only if that ever changes
	if !slices.IsSortedFunc(a.Modules, func(x, y *Module) int { return strings.Compare(x.Name, y.Name) }) {
		sort.SliceStable(a.Modules, func(i, j int) bool { return a.Modules[i].Name < a.Modules[j].Name })
	}
	return nil
}

// wholeLoKrScale resolves a LoKr module whose factors are both whole
// matrices (lokr_w1 and lokr_w2, no _a/_b), so no rank is in the shapes:
//   - PEFT config: PEFT still scales by alpha/r with r and alpha from the
//     config (r / rank_pattern, alpha / alpha_pattern); Rank is that r.
//   - kohya/LyCORIS .alpha tensor: LyCORIS forces alpha = lora_dim for a
//     full-matrix LoKr, i.e. scale 1; Alpha is the stored value, Rank 0.
//   - nothing: alpha unknown, scale 1 assumed (reported by the caller when
//     unknown is true).
func (a *Adapter) wholeLoKrScale(m *Module, cfg *Config, o *loadOptions) (unknown bool, err error) {
	if t, ok := m.tensor(RoleAlpha); ok {
		v, err := a.float32(t)
		if err != nil {
			return false, err
		}
		if len(v) != 1 {
			return false, fmt.Errorf("%s: tensor %q: %w: alpha must hold one value, has %d", a.WeightsPath, t.Name, ErrShape, len(v))
		}
		m.Alpha, m.Scale, m.AlphaKnown = float64(v[0]), 1, true
		return false, nil
	}
	if cfg != nil && !cfg.IsMLX() && a.Dialect != DialectKohya {
		r, alpha, scale, err := cfg.ModuleScale(a.patternName(m), o.mode)
		if err != nil {
			return false, fmt.Errorf("%s: %w", a.configName(), err)
		}
		m.Rank, m.ConfigRank, m.Alpha, m.Scale, m.AlphaKnown = r, r, alpha, scale, true
		m.FanInFanOut = cfg.FanInFanOut
		return false, nil
	}
	if a.Dialect == DialectKohya {
		m.Scale, m.AlphaKnown = 1, true // LyCORIS: full-matrix LoKr uses scale 1
		return false, nil
	}
	// Without a config neither r nor alpha is known (WithAlpha alone does
	// not give alpha/r either).
	m.Scale, m.AlphaKnown = 1, false
	return true, nil
}
