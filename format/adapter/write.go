package adapter

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/atomicfile"
)

// OutModule is one module to write. Factors are in PEFT orientation (A
// Rank×(In·∏Kernel), B Out×Rank, float32 row-major); Scale is the full
// factor applied to B·A (written as lora_alpha = Scale·Rank with
// use_rslora=false, so PEFT reproduces it exactly).
type OutModule struct {
	Name string // module path without base_model.model.
	// Kind is KindLoRA (default when empty), KindLoRAEmbedding,
	// KindLoRAConv, KindDoRA, KindKaSA or KindFull.
	Kind    Kind
	Rank    int
	In, Out int
	Kernel  []int // conv kernel dims
	Scale   float64
	// Alpha is the source module's alpha, if any. It is written as
	// lora_alpha when Alpha/Rank == Scale exactly; otherwise (and when 0)
	// an alpha is derived from Scale.
	Alpha     float64
	A, B      []float32
	Diag      []float32 // KaSA diagonal (Rank); written as lora_diag
	Magnitude []float32 // DoRA magnitude (Out)
	Bias      []float32 // lora_B.bias (Out)
	// Full holds whole tensors of a KindFull module by key suffix
	// ("weight", "bias", "token_adapter.trainable_tokens_delta"; "" for a
	// tensor named exactly Name); they are written at <name>.<suffix> and
	// the module is listed in modules_to_save.
	Full map[string]FullTensor
}

// FullTensor is a whole tensor of a modules_to_save / passthrough module.
type FullTensor struct {
	Shape []int
	Data  []float32
}

// Output is what WritePEFT writes.
type Output struct {
	Modules []OutModule
	// Config is the source config whose keys are preserved (unknown keys
	// included); nil writes a minimal LoraConfig. MLX configs are not
	// preserved (they are training arguments, not a PEFT config).
	Config *Config
	// DType of the written tensors (default F32; F16/BF16 round to nearest even).
	DType safetensors.DType
	// Metadata is added to the file's __metadata__ ("format":"pt" is always set).
	Metadata map[string]string
	// TargetModules overrides target_modules; by default it lists the full
	// names of the written low-rank modules (exact matches only).
	TargetModules []string
	// FanInFanOut is written as fan_in_fan_out (GPT-2 Conv1D bases).
	FanInFanOut bool
	// BaseModel overrides base_model_name_or_path when not empty.
	BaseModel string
	// TaskType overrides task_type when not empty.
	TaskType string
}

// alphaForScale returns the lora_alpha WritePEFT writes for a module whose
// effective scale is scale at rank r, such that PEFT's float64 division
// alpha/r gives back scale. The module's own alpha is kept when it does (so
// an input with lora_alpha 1 is not rewritten as 0.9999999999999999); else
// scale·r, or a float next to it, whichever divides back exactly; when no
// float does (the quotients of neighbouring alphas can step over scale),
// the closest quotient wins, at most one unit in the last place away.
func alphaForScale(scale float64, r int, alpha float64) float64 {
	fr := float64(r)
	if alpha/fr == scale {
		return alpha
	}
	best := scale * fr
	if best/fr == scale || math.IsInf(best, 0) || math.IsNaN(best) {
		return best
	}
	dist := func(a float64) float64 { return math.Abs(a/fr - scale) }
	down, up := best, best
	for range 4 {
		down, up = math.Nextafter(down, math.Inf(-1)), math.Nextafter(up, math.Inf(1))
		for _, a := range [2]float64{down, up} {
			if a/fr == scale {
				return a
			}
			if dist(a) < dist(best) {
				best = a
			}
		}
	}
	return best
}

// PatternKey returns the rank_pattern/alpha_pattern key WritePEFT uses for
// a module: "^" + the regexp-quoted full path, which PEFT ≥ 0.15's
// (.*\.)?(KEY)$ test matches for that module and no other.
func PatternKey(module string) string { return "^" + regexp.QuoteMeta(module) }

// mostCommon returns the most frequent value (ties: the smallest).
func mostCommon[T int | float64](vals []T) T {
	count := map[T]int{}
	for _, v := range vals {
		count[v]++
	}
	var best T
	bestN := -1
	for v, n := range count {
		if n > bestN || (n == bestN && v < best) {
			best, bestN = v, n
		}
	}
	return best
}

// dtype returns the output dtype; the zero value (Bool) means F32.
func (o *Output) dtype() safetensors.DType {
	if o.DType == safetensors.Bool {
		return safetensors.F32
	}
	return o.DType
}

// WritePEFT writes out as a PEFT LoRA adapter directory: dir is created if
// needed; adapter_model.safetensors is written through the canonical
// atomic writer with keys base_model.model.<name>.lora_A.weight /
// lora_B.weight (lora_embedding_A/B for embeddings, lora_magnitude_vector
// for DoRA, lora_B.bias, lora_diag for KaSA, <name>.weight/.bias for full
// modules); adapter_config.json is written atomically, byte for byte as
// PEFT serialises it (json.dumps(indent=2, sort_keys=True), no trailing
// newline) with peft_type LORA, r and lora_alpha set to the most common
// rank and alpha, rank_pattern / alpha_pattern holding PatternKey(name)
// entries for modules that differ, use_rslora false, use_dora, lora_bias,
// init_lora_weights true (zero B init, so modules PEFT targets but the
// file lacks stay no-ops), and every other key of out.Config preserved.
func WritePEFT(dir string, out *Output) error {
	if out == nil || len(out.Modules) == 0 {
		return fmt.Errorf("%w: no modules", ErrInvalidOutput)
	}
	dt := out.dtype()
	if !dt.IsFloat() {
		return fmt.Errorf("%w: dtype %s is not a float type", ErrInvalidOutput, dt)
	}
	var tensors []safetensors.Tensor
	var ranks []int
	var alphas []float64
	var targets, toSave []string
	anyDoRA, anyBias, allDoRA := false, false, true
	seen := map[string]bool{}
	add := func(name string, shape []int, data []float32) error {
		if seen[name] {
			return fmt.Errorf("%w: duplicate tensor %q", ErrInvalidOutput, name)
		}
		seen[name] = true
		n := 1
		for _, d := range shape {
			n *= d
		}
		if n != len(data) {
			return fmt.Errorf("%w: tensor %q: shape %v needs %d values, have %d", ErrInvalidOutput, name, shape, n, len(data))
		}
		buf := make([]byte, n*dt.Bits()/8)
		if err := safetensors.FromFloat32(buf, data, dt); err != nil {
			return fmt.Errorf("%w: tensor %q: %v", ErrInvalidOutput, name, err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: name, DType: dt, Shape: append([]int(nil), shape...), Data: buf})
		return nil
	}
	type lowRank struct {
		name  string
		rank  int
		alpha float64
	}
	var lrs []lowRank
	for i := range out.Modules {
		m := &out.Modules[i]
		p := "base_model.model." + m.Name
		kind := m.Kind
		if kind == "" {
			kind = KindLoRA
		}
		if m.Name == "" {
			return fmt.Errorf("%w: module %d has no name", ErrInvalidOutput, i)
		}
		if kind == KindFull {
			if len(m.Full) == 0 {
				return fmt.Errorf("%w: full module %q has no tensors", ErrInvalidOutput, m.Name)
			}
			roles := make([]string, 0, len(m.Full))
			for r := range m.Full {
				roles = append(roles, r)
			}
			sort.Strings(roles)
			for _, r := range roles {
				name := p + "." + r
				if r == "" {
					name = p
				}
				if err := add(name, m.Full[r].Shape, m.Full[r].Data); err != nil {
					return err
				}
			}
			toSave = append(toSave, m.Name)
			continue
		}
		if m.Rank <= 0 || m.In <= 0 || m.Out <= 0 {
			return fmt.Errorf("%w: module %q: rank %d, in %d, out %d", ErrInvalidOutput, m.Name, m.Rank, m.In, m.Out)
		}
		if math.IsNaN(m.Scale) || math.IsInf(m.Scale, 0) {
			return fmt.Errorf("%w: module %q: scale %v", ErrInvalidOutput, m.Name, m.Scale)
		}
		ink := m.In
		for _, k := range m.Kernel {
			ink *= k
		}
		aName, bName := p+".lora_A.weight", p+".lora_B.weight"
		aShape, bShape := []int{m.Rank, m.In}, []int{m.Out, m.Rank}
		switch kind {
		case KindLoRAEmbedding:
			aName, bName = p+".lora_embedding_A", p+".lora_embedding_B"
		case KindLoRAConv:
			if len(m.Kernel) == 0 {
				return fmt.Errorf("%w: conv module %q without kernel dims", ErrInvalidOutput, m.Name)
			}
			aShape = append([]int{m.Rank, m.In}, m.Kernel...)
			bShape = []int{m.Out, m.Rank}
			for range m.Kernel {
				bShape = append(bShape, 1)
			}
		case KindLoRA, KindDoRA, KindKaSA:
			if len(m.Kernel) > 0 {
				aShape = append([]int{m.Rank, m.In}, m.Kernel...)
				bShape = []int{m.Out, m.Rank}
				for range m.Kernel {
					bShape = append(bShape, 1)
				}
			}
		default:
			return fmt.Errorf("%w: module %q: kind %q cannot be written as PEFT LoRA", ErrInvalidOutput, m.Name, kind)
		}
		if len(m.A) != m.Rank*ink || len(m.B) != m.Out*m.Rank {
			return fmt.Errorf("%w: module %q: A has %d values (want %d), B has %d (want %d)", ErrInvalidOutput, m.Name, len(m.A), m.Rank*ink, len(m.B), m.Out*m.Rank)
		}
		if err := add(aName, aShape, m.A); err != nil {
			return err
		}
		if err := add(bName, bShape, m.B); err != nil {
			return err
		}
		if kind == KindKaSA || m.Diag != nil {
			if len(m.Diag) != m.Rank {
				return fmt.Errorf("%w: module %q: lora_diag has %d values, want %d", ErrInvalidOutput, m.Name, len(m.Diag), m.Rank)
			}
			if err := add(p+".lora_diag", []int{m.Rank}, m.Diag); err != nil {
				return err
			}
		}
		if m.Magnitude != nil || kind == KindDoRA {
			if len(m.Magnitude) != m.Out {
				return fmt.Errorf("%w: module %q: magnitude has %d values, want %d", ErrInvalidOutput, m.Name, len(m.Magnitude), m.Out)
			}
			shape := []int{m.Out}
			if len(m.Kernel) > 0 {
				shape = []int{1, m.Out}
				for range m.Kernel {
					shape = append(shape, 1)
				}
			}
			if err := add(p+".lora_magnitude_vector", shape, m.Magnitude); err != nil {
				return err
			}
			anyDoRA = true
		} else {
			allDoRA = false
		}
		if m.Bias != nil {
			if err := add(p+".lora_B.bias", []int{m.Out}, m.Bias); err != nil {
				return err
			}
			anyBias = true
		}
		alpha := alphaForScale(m.Scale, m.Rank, m.Alpha)
		lrs = append(lrs, lowRank{m.Name, m.Rank, alpha})
		ranks = append(ranks, m.Rank)
		alphas = append(alphas, alpha)
		targets = append(targets, m.Name)
	}
	if anyDoRA && !allDoRA {
		return fmt.Errorf("%w: some modules have DoRA magnitudes and others do not; PEFT's use_dora applies to all", ErrInvalidOutput)
	}
	// Config.
	cfg := map[string]any{}
	if out.Config != nil && !out.Config.IsMLX() {
		for k, v := range out.Config.Raw {
			cfg[k] = v
		}
	}
	r, alpha := 8, 8.0
	if len(ranks) > 0 {
		r = mostCommon(ranks)
		alpha = mostCommon(alphas)
	}
	rankPat, alphaPat := map[string]any{}, map[string]any{}
	for _, l := range lrs {
		if l.rank != r {
			rankPat[PatternKey(l.name)] = l.rank
		}
		if l.alpha != alpha {
			alphaPat[PatternKey(l.name)] = pyNumber(l.alpha)
		}
	}
	if out.TargetModules != nil {
		targets = out.TargetModules
	}
	sort.Strings(targets)
	setDefault := func(k string, v any) {
		if _, ok := cfg[k]; !ok {
			cfg[k] = v
		}
	}
	cfg["peft_type"] = "LORA"
	cfg["r"] = r
	cfg["lora_alpha"] = pyNumber(alpha)
	cfg["rank_pattern"] = rankPat
	cfg["alpha_pattern"] = alphaPat
	cfg["use_rslora"] = false
	cfg["use_dora"] = anyDoRA
	cfg["lora_bias"] = anyBias
	cfg["fan_in_fan_out"] = out.FanInFanOut
	cfg["inference_mode"] = true
	cfg["init_lora_weights"] = true
	cfg["target_modules"] = targets
	cfg["exclude_modules"] = nil
	cfg["layers_to_transform"] = nil
	cfg["layers_pattern"] = nil
	if len(toSave) > 0 {
		sort.Strings(toSave)
		cfg["modules_to_save"] = toSave
	} else {
		cfg["modules_to_save"] = nil
	}
	setDefault("bias", "none")
	setDefault("lora_dropout", json.Number("0.0"))
	setDefault("task_type", nil)
	setDefault("base_model_name_or_path", nil)
	if out.BaseModel != "" {
		cfg["base_model_name_or_path"] = out.BaseModel
	}
	if out.TaskType != "" {
		cfg["task_type"] = out.TaskType
	}
	cfgBytes, err := MarshalPython(cfg)
	if err != nil {
		return fmt.Errorf("%w: adapter_config.json: %v", ErrInvalidOutput, err)
	}
	meta := map[string]string{"format": "pt"}
	for k, v := range out.Metadata {
		meta[k] = v
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := safetensors.WriteFile(filepath.Join(dir, PEFTWeightsFile), tensors, meta); err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(dir, ConfigFile), cfgBytes)
}

// Output converts a loaded adapter into an Output that WritePEFT writes as
// plain PEFT LoRA: every low-rank module's factors in PEFT orientation with
// its resolved scale (AdaLoRA E folded into A, KaSA kept as lora_diag),
// full modules passed through, the source config's keys preserved.
// Modules of other kinds (IA3, LoHa, LoKr, VeRA, prompt, incomplete) are
// an error naming the module. When some module's alpha was unknown, the
// output metadata records it under MetaAlphaAssumed.
func (a *Adapter) Output() (*Output, error) {
	out := &Output{Config: a.Config}
	assumed := 0
	for _, m := range a.Modules {
		if m.IsLowRank() && !m.AlphaKnown {
			assumed++
		}
		switch {
		case m.IsLowRank():
			f, err := a.Factors(m)
			if err != nil {
				return nil, err
			}
			om := OutModule{Name: m.Name, Kind: m.Kind, Rank: f.Rank, In: f.In, Out: f.Out, Kernel: f.Kernel,
				Scale: f.Scale, A: f.A, B: f.B, Diag: f.Diag, Magnitude: f.Magnitude, Bias: f.Bias}
			if m.AlphaKnown {
				om.Alpha = m.Alpha
			}
			if f.Experts > 0 {
				return nil, fmt.Errorf("%w: module %q: MLX SwitchLinear (experts) has no PEFT LoRA layout", ErrInvalidOutput, m.Name)
			}
			if f.E != nil { // AdaLoRA: A' = diag(E)·A
				ink := f.InK()
				na := make([]float32, len(f.A))
				for k := 0; k < f.Rank; k++ {
					for i := 0; i < ink; i++ {
						na[k*ink+i] = f.A[k*ink+i] * f.E[k]
					}
				}
				om.A, om.Kind = na, KindLoRA
			}
			switch om.Kind {
			case KindAdaLoRA:
				om.Kind = KindLoRA
			case KindLoRA:
				if len(om.Kernel) > 0 {
					om.Kind = KindLoRAConv
				}
			}
			if m.FanInFanOut {
				out.FanInFanOut = true
			}
			out.Modules = append(out.Modules, om)
		case m.Kind == KindFull:
			om := OutModule{Name: m.Name, Kind: KindFull, Full: map[string]FullTensor{}}
			for role, t := range m.Tensors {
				v, err := a.float32(t)
				if err != nil {
					return nil, err
				}
				// keep the tensor's own suffix (weight, bias,
				// token_adapter.trainable_tokens_delta, ...): passthrough
				suffix := role
				key := strings.TrimPrefix(t.Name, "base_model.model.")
				if key == m.Name {
					suffix = ""
				} else if rest, ok := strings.CutPrefix(key, m.Name+"."); ok {
					suffix = rest
				}
				om.Full[suffix] = FullTensor{Shape: t.Shape, Data: v}
			}
			out.Modules = append(out.Modules, om)
		default:
			return nil, fmt.Errorf("%w: module %q: kind %s cannot be written as PEFT LoRA", ErrInvalidOutput, m.Name, m.Kind)
		}
	}
	if assumed > 0 {
		// The written config states an alpha; record that it was assumed.
		out.Metadata = map[string]string{MetaAlphaAssumed: fmt.Sprintf("alpha unknown in %s for %d modules; alpha = r (scale 1) was assumed", a.WeightsPath, assumed)}
	}
	return out, nil
}

// MetaAlphaAssumed is the __metadata__ key Output sets when the source's
// alpha was unknown and alpha = r was assumed for the written scales.
const MetaAlphaAssumed = "adaptool.alpha_assumed"
