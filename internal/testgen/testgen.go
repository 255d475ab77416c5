// Package testgen writes seeded synthetic adapters for tests: real PEFT
// adapter directories (adapter_config.json + adapter_model.safetensors)
// for LoRA (any shapes, ranks, alphas, rsLoRA, rank_pattern/alpha_pattern,
// DoRA, lora_bias, conv, embedding), KaSA, AdaLoRA and IA3, plus bare
// diffusers/kohya/MLX-style files. Every generator returns the values it
// wrote so tests can compute reference results independently (float64).
//
// The writer here is deliberately independent of format/adapter: it
// builds keys and config JSON itself, so tests of the adapter model are
// not tests of the code against itself. It uses only the canonical
// safetensors writer.
package testgen

//go:generate go run ./cmd/gentestdata -o ../../testdata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/adaptool/adaptool/format/safetensors"
)

// Module describes one synthetic module.
type Module struct {
	Name      string // module path without base_model.model.
	In, Out   int
	Rank      int   // 0: the spec's R
	Kernel    []int // conv kernel dims (A (r,in,k…), B (out,r,1…))
	Embedding bool  // lora_embedding_A (r,in=num_embeddings), lora_embedding_B (out=dim,r)
}

// KV is one ordered key/value pair of a pattern dict.
type KV struct {
	Key   string
	Value float64
}

// LoRA describes a synthetic PEFT LoRA adapter.
type LoRA struct {
	Seed         uint64
	Modules      []Module
	R            int     // global r (default 8)
	Alpha        float64 // lora_alpha (default 16)
	RSLoRA       bool
	RankPattern  []KV // written in this order
	AlphaPattern []KV
	DoRA         bool // add lora_magnitude_vector (Out) per module
	KaSA         bool // add lora_diag (r) per module (config stays plain LORA)
	LoRABias     bool // add lora_B.bias (Out)
	FanInFanOut  bool
	DType        safetensors.DType // zero value (Bool) means F32
	NoPrefix     bool              // omit base_model.model.
	AdapterName  string            // insert this adapter name in ModuleDict position (e.g. "default")
	NoConfig     bool              // do not write adapter_config.json
	// Full adds whole tensors (modules_to_save) name → shape.
	Full map[string][]int
	// Extra config keys (unknown keys, task_type, ...), written verbatim.
	Extra map[string]any
	// ZeroB makes every B zero (an untrained adapter).
	ZeroB bool
}

// Factors are the values written for one module (PEFT orientation).
type Factors struct {
	Rank, In, Out int
	Kernel        []int
	A, B          []float32 // A r×(in·∏k), B out×r (row-major)
	Magnitude     []float32
	Diag          []float32
	E             []float32 // AdaLoRA
	Bias          []float32
	IA3           []float32
}

// Result is what a generator wrote.
type Result struct {
	Dir     string
	Config  []byte              // adapter_config.json bytes ("" when none)
	Modules map[string]*Factors // by module name
	Full    map[string][]float32
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// fill returns n uniform values in [-scale, scale), rounded to the dtype so
// the returned values equal what a reader gets back.
func fill(r *rand.Rand, n int, scale float64, dt safetensors.DType) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((r.Float64()*2 - 1) * scale)
	}
	return roundTo(v, dt)
}

func roundTo(v []float32, dt safetensors.DType) []float32 {
	if dt == safetensors.F32 {
		return v
	}
	buf := make([]byte, len(v)*dt.Bits()/8)
	if err := safetensors.FromFloat32(buf, v, dt); err != nil {
		panic(err)
	}
	out := make([]float32, len(v))
	if err := safetensors.ToFloat32(out, buf, dt); err != nil {
		panic(err)
	}
	return out
}

type tensorList struct {
	dt      safetensors.DType
	tensors []safetensors.Tensor
}

func (l *tensorList) add(name string, shape []int, v []float32) {
	buf := make([]byte, len(v)*l.dt.Bits()/8)
	if err := safetensors.FromFloat32(buf, v, l.dt); err != nil {
		panic(err)
	}
	l.tensors = append(l.tensors, safetensors.Tensor{Name: name, DType: l.dt, Shape: shape, Data: buf})
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

func dtypeOr(dt safetensors.DType) safetensors.DType {
	if dt == safetensors.Bool {
		return safetensors.F32
	}
	return dt
}

// WriteLoRA writes a PEFT LoRA directory into dir (created if needed).
func WriteLoRA(dir string, s LoRA) (*Result, error) {
	if s.R == 0 {
		s.R = 8
	}
	if s.Alpha == 0 {
		s.Alpha = 16
	}
	dt := dtypeOr(s.DType)
	rng := newRand(s.Seed)
	res := &Result{Dir: dir, Modules: map[string]*Factors{}, Full: map[string][]float32{}}
	tl := &tensorList{dt: dt}
	prefix := "base_model.model."
	if s.NoPrefix {
		prefix = ""
	}
	ad := ""
	if s.AdapterName != "" {
		ad = "." + s.AdapterName
	}
	var targets []string
	for _, m := range s.Modules {
		r := m.Rank
		if r == 0 {
			r = s.R
		}
		ink := m.In * prod(m.Kernel)
		f := &Factors{Rank: r, In: m.In, Out: m.Out, Kernel: m.Kernel}
		f.A = fill(rng, r*ink, 0.5, dt)
		if s.ZeroB {
			f.B = make([]float32, m.Out*r)
		} else {
			f.B = fill(rng, m.Out*r, 0.5, dt)
		}
		p := prefix + m.Name
		switch {
		case m.Embedding:
			tl.add(p+".lora_embedding_A"+ad, []int{r, m.In}, f.A)
			tl.add(p+".lora_embedding_B"+ad, []int{m.Out, r}, f.B)
		default:
			aShape := append([]int{r, m.In}, m.Kernel...)
			bShape := []int{m.Out, r}
			for range m.Kernel {
				bShape = append(bShape, 1)
			}
			tl.add(p+".lora_A"+ad+".weight", aShape, f.A)
			tl.add(p+".lora_B"+ad+".weight", bShape, f.B)
		}
		if s.DoRA {
			f.Magnitude = fill(rng, m.Out, 2, dt)
			for i := range f.Magnitude {
				f.Magnitude[i] = float32(abs32(f.Magnitude[i]) + 0.5)
			}
			f.Magnitude = roundTo(f.Magnitude, dt)
			shape := []int{m.Out}
			if len(m.Kernel) > 0 {
				shape = []int{1, m.Out}
				for range m.Kernel {
					shape = append(shape, 1)
				}
			}
			tl.add(p+".lora_magnitude_vector", shape, f.Magnitude)
		}
		if s.KaSA {
			f.Diag = fill(rng, r, 1, dt)
			tl.add(p+".lora_diag", []int{r}, f.Diag)
		}
		if s.LoRABias {
			f.Bias = fill(rng, m.Out, 0.1, dt)
			tl.add(p+".lora_B"+ad+".bias", []int{m.Out}, f.Bias)
		}
		res.Modules[m.Name] = f
		targets = append(targets, m.Name)
	}
	var toSave []string
	for _, name := range sortedKeys(s.Full) {
		shape := s.Full[name]
		v := fill(rng, prod(shape), 0.3, dt)
		tl.add(prefix+name, shape, v)
		res.Full[name] = v
		toSave = append(toSave, name[:lastDot(name)])
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), tl.tensors, map[string]string{"format": "pt"}); err != nil {
		return nil, err
	}
	if s.NoConfig {
		return res, nil
	}
	cfg := object{
		{"peft_type", "LORA"}, {"r", s.R}, {"lora_alpha", s.Alpha}, {"use_rslora", s.RSLoRA},
		{"use_dora", s.DoRA}, {"lora_bias", s.LoRABias}, {"fan_in_fan_out", s.FanInFanOut},
		{"rank_pattern", kvObject(s.RankPattern)}, {"alpha_pattern", kvObject(s.AlphaPattern)},
		{"target_modules", uniqueStrings(targets)}, {"bias", "none"}, {"inference_mode", true},
		{"init_lora_weights", true}, {"lora_dropout", 0.0}, {"task_type", "CAUSAL_LM"},
		{"base_model_name_or_path", "synthetic/testgen"},
	}
	if toSave != nil {
		cfg = append(cfg, kv{"modules_to_save", uniqueStrings(toSave)})
	} else {
		cfg = append(cfg, kv{"modules_to_save", nil})
	}
	for _, k := range sortedKeys(s.Extra) {
		cfg.set(k, s.Extra[k])
	}
	b, err := cfg.marshal()
	if err != nil {
		return nil, err
	}
	res.Config = b
	return res, os.WriteFile(filepath.Join(dir, "adapter_config.json"), b, 0o644)
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return len(s)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func uniqueStrings(s []string) []string {
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

// kv / object build JSON objects with a chosen key order (rank_pattern
// order matters to PEFT).
type kv struct {
	k string
	v any
}

type object []kv

func (o *object) set(k string, v any) {
	for i := range *o {
		if (*o)[i].k == k {
			(*o)[i].v = v
			return
		}
	}
	*o = append(*o, kv{k, v})
}

func kvObject(p []KV) object {
	o := object{}
	for _, e := range p {
		o = append(o, kv{e.Key, e.Value})
	}
	return o
}

func (o object) MarshalJSON() ([]byte, error) { return o.marshal() }

func (o object) marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteString(", ")
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteString(": ")
		var v []byte
		var err error
		switch x := e.v.(type) {
		case float64:
			v = []byte(strconv.FormatFloat(x, 'g', -1, 64))
		default:
			v, err = json.Marshal(x)
		}
		if err != nil {
			return nil, fmt.Errorf("testgen: config key %q: %w", e.k, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// RefDelta returns the reference ΔW = scale·B·diag(E or Diag)·A in float64
// (Out × In·∏Kernel, row-major), computed naively from the written values,
// for tests that need an independent answer.
func (f *Factors) RefDelta(scale float64) []float64 {
	ink := f.In * prod(f.Kernel)
	d := make([]float64, f.Out*ink)
	for o := 0; o < f.Out; o++ {
		for k := 0; k < f.Rank; k++ {
			b := float64(f.B[o*f.Rank+k])
			if f.E != nil {
				b *= float64(f.E[k])
			}
			if f.Diag != nil {
				b *= float64(f.Diag[k])
			}
			for i := 0; i < ink; i++ {
				d[o*ink+i] += b * float64(f.A[k*ink+i])
			}
		}
		for i := 0; i < ink; i++ {
			d[o*ink+i] *= scale
		}
	}
	return d
}
