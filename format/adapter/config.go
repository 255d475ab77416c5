package adapter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Pattern is one entry of a rank_pattern or alpha_pattern dict: a regular
// expression key and its value, in the order the keys appear in the JSON
// file (PEFT tests the keys in insertion order and the first hit wins).
type Pattern struct {
	Key   string
	Value float64
}

// MaskPattern is one entry of an AdaLoRA rank_pattern: the path of a lora_E
// parameter and its rank mask.
type MaskPattern struct {
	Key  string
	Mask []bool
}

// TargetSpec is a target_modules, exclude_modules or feedforward_modules
// value: absent/null, a list of names, a regular expression string (Python
// re.fullmatch), or the special string "all-linear".
type TargetSpec struct {
	Set       bool     // the key is present and not null
	List      []string // list form (duplicates kept as written)
	Regex     string   // string form
	IsRegex   bool     // the value was a JSON string
	AllLinear bool     // the string "all-linear"
}

// MLXParams are the LoRA fields of an MLX-LM training config.
type MLXParams struct {
	Rank         int
	Scale        float64 // used directly as the LoRA scale
	Alpha        float64 // present in some configs; ignored by mlx-lm
	HasScale     bool
	Dropout      float64
	Keys         []string
	NumLayers    int // num_layers, or the older lora_layers
	FineTuneType string
}

// Config is an adapter configuration: a PEFT adapter_config.json, the PEFT
// LoraConfig JSON a diffusers file carries in lora_adapter_metadata, or an
// MLX-LM training config (then MLX is set and PeftType is empty).
//
// The typed fields hold everything that affects weights; Raw keeps every
// key of the source verbatim, unknown keys included, so a rewrite can
// preserve them.
type Config struct {
	PeftType            string
	TaskType            string
	BaseModelNameOrPath string
	PeftVersion         string

	R            int     // default 8
	LoraAlpha    float64 // default 8 (LoRA, AdaLoRA)
	Alpha        float64 // LoHa/LoKr "alpha" (default 8)
	UseRSLoRA    bool
	UseDoRA      bool
	FanInFanOut  bool
	RankPattern  []Pattern // nil when absent, null or {}
	AlphaPattern []Pattern
	// AdaLoRAMask is an AdaLoRA rank_pattern (lora_E path → kept-rank mask).
	AdaLoRAMask []MaskPattern

	TargetModules     TargetSpec
	ExcludeModules    TargetSpec
	LayersToTransform []int
	LayersPattern     []string
	ModulesToSave     []string
	Bias              string // "none", "all", "lora_only"
	LoraBias          bool
	// InitLoraWeights is the init_lora_weights value as text: "true",
	// "false", "gaussian", "pissa", "olora", ...
	InitLoraWeights string

	// AdaLoRA
	InitR, TargetR int
	// IA3
	FeedforwardModules TargetSpec
	// VeRA
	ProjectionPRNGKey int64
	SaveProjection    bool
	DInitial          float64
	// Prompt learning
	NumVirtualTokens         int
	TokenDim                 int
	NumTransformerSubmodules int
	NumLayers                int
	NumAttentionHeads        int
	PrefixProjection         bool
	EncoderHiddenSize        int

	// MLX is set for an MLX-LM training config.
	MLX *MLXParams

	// Raw holds every top-level key of the source verbatim.
	Raw map[string]json.RawMessage
}

// LoadConfig reads and parses a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a PEFT adapter config, a diffusers
// lora_adapter_metadata string or an MLX-LM training config. Missing fields
// get PEFT's defaults; null is treated as absent. A field of the wrong JSON
// type is an error wrapping ErrConfig that names the field.
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: config is not a JSON object", ErrConfig)
	}
	c := &Config{
		R: 8, LoraAlpha: 8, Alpha: 8, Bias: "none", InitLoraWeights: "true",
		InitR: 12, TargetR: 8, SaveProjection: true, DInitial: 0.1,
		Raw: raw,
	}
	p := parser{raw: raw}
	p.str("peft_type", &c.PeftType)
	p.str("task_type", &c.TaskType)
	p.str("base_model_name_or_path", &c.BaseModelNameOrPath)
	p.str("peft_version", &c.PeftVersion)
	p.integer("r", &c.R)
	p.float("lora_alpha", &c.LoraAlpha)
	p.float("alpha", &c.Alpha)
	p.boolean("use_rslora", &c.UseRSLoRA)
	p.boolean("use_dora", &c.UseDoRA)
	p.boolean("fan_in_fan_out", &c.FanInFanOut)
	if strings.EqualFold(c.PeftType, "ADALORA") {
		c.AdaLoRAMask = p.masks("rank_pattern")
	} else {
		c.RankPattern = p.patterns("rank_pattern")
	}
	c.AlphaPattern = p.patterns("alpha_pattern")
	c.TargetModules = p.target("target_modules")
	c.ExcludeModules = p.target("exclude_modules")
	c.FeedforwardModules = p.target("feedforward_modules")
	c.LayersToTransform = p.intOrList("layers_to_transform")
	c.LayersPattern = p.strOrList("layers_pattern")
	c.ModulesToSave = p.strOrList("modules_to_save")
	p.str("bias", &c.Bias)
	p.boolean("lora_bias", &c.LoraBias)
	p.initWeights(&c.InitLoraWeights)
	p.integer("init_r", &c.InitR)
	p.integer("target_r", &c.TargetR)
	p.int64("projection_prng_key", &c.ProjectionPRNGKey)
	p.boolean("save_projection", &c.SaveProjection)
	p.float("d_initial", &c.DInitial)
	p.integer("num_virtual_tokens", &c.NumVirtualTokens)
	p.integer("token_dim", &c.TokenDim)
	p.integer("num_transformer_submodules", &c.NumTransformerSubmodules)
	p.integer("num_layers", &c.NumLayers)
	p.integer("num_attention_heads", &c.NumAttentionHeads)
	p.boolean("prefix_projection", &c.PrefixProjection)
	p.integer("encoder_hidden_size", &c.EncoderHiddenSize)
	if _, ok := raw["lora_parameters"]; ok && c.PeftType == "" {
		c.MLX = p.mlx()
	}
	if p.err != nil {
		return nil, p.err
	}
	if _, ok := raw["r"]; ok && c.R <= 0 {
		// PEFT's configs reject r ≤ 0 in __post_init__; a scale α/r from
		// it would be negative, infinite or 0.
		return nil, fmt.Errorf("%w: field \"r\" = %d is not a positive integer", ErrConfig, c.R)
	}
	for _, pat := range c.RankPattern {
		if pat.Value != math.Trunc(pat.Value) || pat.Value < 0 {
			return nil, fmt.Errorf("%w: rank_pattern[%q] = %v is not a non-negative integer", ErrConfig, pat.Key, pat.Value)
		}
	}
	return c, nil
}

// IsMLX reports whether c is an MLX-LM training config.
func (c *Config) IsMLX() bool { return c != nil && c.MLX != nil }

// MutatesBase reports whether init_lora_weights names an initialisation that
// modifies the base weights at init (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA):
// the saved delta is then relative to a mutated base.
func (c *Config) MutatesBase() bool {
	s := strings.ToLower(c.InitLoraWeights)
	for _, p := range []string{"pissa", "olora", "corda", "loftq", "lora_ga"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// parser reads typed fields out of the raw map, remembering the first error.
type parser struct {
	raw map[string]json.RawMessage
	err error
}

func (p *parser) get(key string) (any, bool) {
	v, ok := p.raw[key]
	if !ok || p.err != nil {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		p.fail(key, "invalid JSON value")
		return nil, false
	}
	if x == nil {
		return nil, false
	}
	return x, true
}

func (p *parser) fail(key, msg string) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: field %q: %s", ErrConfig, key, msg)
	}
}

func (p *parser) str(key string, dst *string) {
	if x, ok := p.get(key); ok {
		s, isStr := x.(string)
		if !isStr {
			p.fail(key, "want a string")
			return
		}
		*dst = s
	}
}

func (p *parser) boolean(key string, dst *bool) {
	if x, ok := p.get(key); ok {
		b, isBool := x.(bool)
		if !isBool {
			p.fail(key, "want true or false")
			return
		}
		*dst = b
	}
}

func number(x any) (float64, bool) {
	n, ok := x.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	return f, err == nil
}

func (p *parser) float(key string, dst *float64) {
	if x, ok := p.get(key); ok {
		f, isNum := number(x)
		if !isNum {
			p.fail(key, "want a number")
			return
		}
		*dst = f
	}
}

func (p *parser) integer(key string, dst *int) {
	if x, ok := p.get(key); ok {
		f, isNum := number(x)
		if !isNum || f != math.Trunc(f) || math.Abs(f) > 1<<40 {
			p.fail(key, "want an integer")
			return
		}
		*dst = int(f)
	}
}

func (p *parser) int64(key string, dst *int64) {
	if x, ok := p.get(key); ok {
		n, isNum := x.(json.Number)
		if !isNum {
			p.fail(key, "want an integer")
			return
		}
		v, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			p.fail(key, "want a 64-bit integer")
			return
		}
		*dst = v
	}
}

func (p *parser) strOrList(key string) []string {
	x, ok := p.get(key)
	if !ok {
		return nil
	}
	switch v := x.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, isStr := e.(string)
			if !isStr {
				p.fail(key, "want a list of strings")
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	p.fail(key, "want a string or a list of strings")
	return nil
}

func (p *parser) intOrList(key string) []int {
	x, ok := p.get(key)
	if !ok {
		return nil
	}
	conv := func(e any) (int, bool) {
		f, isNum := number(e)
		if !isNum || f != math.Trunc(f) || math.Abs(f) > 1<<40 {
			return 0, false
		}
		return int(f), true
	}
	if v, isList := x.([]any); isList {
		out := make([]int, 0, len(v))
		for _, e := range v {
			n, ok := conv(e)
			if !ok {
				p.fail(key, "want a list of integers")
				return nil
			}
			out = append(out, n)
		}
		return out
	}
	n, isInt := conv(x)
	if !isInt {
		p.fail(key, "want an integer or a list of integers")
		return nil
	}
	return []int{n}
}

func (p *parser) target(key string) TargetSpec {
	x, ok := p.get(key)
	if !ok {
		return TargetSpec{}
	}
	switch v := x.(type) {
	case string:
		return TargetSpec{Set: true, Regex: v, IsRegex: true, AllLinear: strings.EqualFold(v, "all-linear")}
	case []any:
		t := TargetSpec{Set: true, List: make([]string, 0, len(v))}
		for _, e := range v {
			s, isStr := e.(string)
			if !isStr {
				p.fail(key, "want a list of strings")
				return TargetSpec{}
			}
			t.List = append(t.List, s)
		}
		return t
	}
	p.fail(key, "want a string or a list of strings")
	return TargetSpec{}
}

func (p *parser) initWeights(dst *string) {
	if x, ok := p.get("init_lora_weights"); ok {
		switch v := x.(type) {
		case bool:
			*dst = strconv.FormatBool(v)
		case string:
			*dst = v
		default:
			p.fail("init_lora_weights", "want a boolean or a string")
		}
	}
}

// orderedObject decodes a JSON object keeping key order. It returns
// ok=false for null or absence.
func (p *parser) orderedObject(key string) (keys []string, vals []json.RawMessage, ok bool) {
	v, present := p.raw[key]
	if !present || p.err != nil {
		return nil, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		p.fail(key, "invalid JSON value")
		return nil, nil, false
	}
	if tok == nil {
		return nil, nil, false
	}
	if d, isDelim := tok.(json.Delim); !isDelim || d != '{' {
		p.fail(key, "want an object")
		return nil, nil, false
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			p.fail(key, "invalid JSON object")
			return nil, nil, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			p.fail(key, "invalid JSON object")
			return nil, nil, false
		}
		keys = append(keys, kt.(string))
		vals = append(vals, raw)
	}
	return keys, vals, true
}

func (p *parser) patterns(key string) []Pattern {
	keys, vals, ok := p.orderedObject(key)
	if !ok {
		return nil
	}
	out := make([]Pattern, 0, len(keys))
	for i, k := range keys {
		f, err := strconv.ParseFloat(strings.TrimSpace(string(vals[i])), 64)
		if err != nil {
			p.fail(key, fmt.Sprintf("value of %q is not a number", k))
			return nil
		}
		out = append(out, Pattern{Key: k, Value: f})
	}
	return out
}

func (p *parser) masks(key string) []MaskPattern {
	keys, vals, ok := p.orderedObject(key)
	if !ok {
		return nil
	}
	out := make([]MaskPattern, 0, len(keys))
	for i, k := range keys {
		var m []bool
		if err := json.Unmarshal(vals[i], &m); err != nil {
			p.fail(key, fmt.Sprintf("value of %q is not a list of booleans", k))
			return nil
		}
		out = append(out, MaskPattern{Key: k, Mask: m})
	}
	return out
}

func (p *parser) mlx() *MLXParams {
	m := &MLXParams{Scale: 20}
	x, ok := p.get("lora_parameters")
	if ok {
		obj, isObj := x.(map[string]any)
		if !isObj {
			p.fail("lora_parameters", "want an object")
			return nil
		}
		sub := parser{raw: map[string]json.RawMessage{}}
		for k, v := range obj {
			b, _ := json.Marshal(v)
			sub.raw[k] = b
		}
		sub.integer("rank", &m.Rank)
		if _, has := obj["scale"]; has && obj["scale"] != nil {
			m.HasScale = true
		}
		sub.float("scale", &m.Scale)
		sub.float("alpha", &m.Alpha)
		sub.float("dropout", &m.Dropout)
		m.Keys = sub.strOrList("keys")
		if sub.err != nil {
			p.fail("lora_parameters", sub.err.Error())
			return nil
		}
	}
	p.integer("lora_layers", &m.NumLayers)
	p.integer("num_layers", &m.NumLayers)
	p.str("fine_tune_type", &m.FineTuneType)
	return m
}

// Matches reports whether module (a dotted path without base_model.model.)
// is selected by t the way PEFT's check_target_module_exists selects it: a
// list entry equal to the name or a suffix after a dot; a string by
// re.fullmatch. "all-linear" matches every module (which ones are linear is
// only known from the base model). An unset spec matches nothing. A regular
// expression that does not compile is an error naming it.
func (t TargetSpec) Matches(module string) (bool, error) {
	if !t.Set {
		return false, nil
	}
	if t.AllLinear {
		return true, nil
	}
	if t.IsRegex {
		re, err := compileCached(`^(?:` + t.Regex + `)$`)
		if err != nil {
			return false, fmt.Errorf("%w: target_modules regex %q does not compile in RE2: %v", ErrConfig, t.Regex, err)
		}
		return re.MatchString(module), nil
	}
	for _, e := range t.List {
		if module == e || strings.HasSuffix(module, "."+e) {
			return true, nil
		}
	}
	return false, nil
}

// Targets reports whether PEFT would create an adapter layer on module
// given target_modules, exclude_modules and layers_to_transform, following
// peft's check_target_module_exists: exclusions first; a string is a
// fullmatch; a list entry equal to the name matches outright; a suffix match
// is further filtered by layers_to_transform, whose layer index is taken
// from the last ".<layers_pattern>.<N>." of the name (any segment when
// layers_pattern is empty).
func (c *Config) Targets(module string) (bool, error) {
	if ex, err := c.ExcludeModules.Matches(module); err != nil || ex {
		return false, err
	}
	t := c.TargetModules
	if !t.Set || t.IsRegex || t.AllLinear {
		return t.Matches(module)
	}
	for _, e := range t.List {
		if module == e {
			return true, nil
		}
	}
	ok, err := t.Matches(module)
	if err != nil || !ok || len(c.LayersToTransform) == 0 {
		return ok, err
	}
	idx, found, err := layerIndex(module, c.LayersPattern)
	if err != nil || !found {
		return false, err
	}
	for _, l := range c.LayersToTransform {
		if l == idx {
			return true, nil
		}
	}
	return false, nil
}

// layerIndex extracts the layer number as PEFT does: re.match of
// `.*\.[^.]*\.(\d+)\.` without layers_pattern, else `.*\.{pattern}\.(\d+)\.`
// for each pattern in turn (greedy, so the last occurrence wins).
func layerIndex(module string, patterns []string) (int, bool, error) {
	srcs := []string{`^.*\.[^.]*\.(\d+)\.`}
	if len(patterns) > 0 {
		srcs = srcs[:0]
		for _, p := range patterns {
			srcs = append(srcs, `^.*\.`+p+`\.(\d+)\.`)
		}
	}
	for _, src := range srcs {
		re, err := compileCached(src)
		if err != nil {
			return 0, false, fmt.Errorf("%w: layers_pattern %q does not compile in RE2: %v", ErrConfig, src, err)
		}
		if m := re.FindStringSubmatch(module); m != nil {
			n, err := strconv.Atoi(m[1])
			if err != nil {
				return 0, false, nil
			}
			return n, true, nil
		}
	}
	return 0, false, nil
}

var (
	reMu    sync.Mutex
	reCache = struct {
		m map[string]*regexp.Regexp
	}{m: map[string]*regexp.Regexp{}}
)

// compileCached compiles a Go regexp, caching by source (bounded cache,
// safe for concurrent use).
func compileCached(src string) (*regexp.Regexp, error) {
	reMu.Lock()
	defer reMu.Unlock()
	if re, ok := reCache.m[src]; ok {
		return re, nil
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, err
	}
	if len(reCache.m) > 4096 {
		reCache.m = map[string]*regexp.Regexp{}
	}
	reCache.m[src] = re
	return re, nil
}
