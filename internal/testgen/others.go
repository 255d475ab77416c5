package testgen

import (
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/safetensors"
)

// AdaLoRA describes a synthetic AdaLoRA adapter (keys lora_A, lora_E,
// lora_B without .weight; E (k,1)).
type AdaLoRA struct {
	Seed    uint64
	Modules []Module // Rank = kept rank k (0: InitR)
	InitR   int      // default 12
	Alpha   float64  // lora_alpha (default 32)
}

// WriteAdaLoRA writes a PEFT AdaLoRA directory.
func WriteAdaLoRA(dir string, s AdaLoRA) (*Result, error) {
	if s.InitR == 0 {
		s.InitR = 12
	}
	if s.Alpha == 0 {
		s.Alpha = 32
	}
	rng := newRand(s.Seed)
	res := &Result{Dir: dir, Modules: map[string]*Factors{}}
	tl := &tensorList{dt: safetensors.F32}
	var targets []string
	for _, m := range s.Modules {
		k := m.Rank
		if k == 0 {
			k = s.InitR
		}
		f := &Factors{Rank: k, In: m.In, Out: m.Out}
		f.A = fill(rng, k*m.In, 0.5, safetensors.F32)
		f.E = fill(rng, k, 1, safetensors.F32)
		f.B = fill(rng, m.Out*k, 0.5, safetensors.F32)
		p := "base_model.model." + m.Name
		tl.add(p+".lora_A", []int{k, m.In}, f.A)
		tl.add(p+".lora_B", []int{m.Out, k}, f.B)
		tl.add(p+".lora_E", []int{k, 1}, f.E)
		res.Modules[m.Name] = f
		targets = append(targets, m.Name)
	}
	cfg := object{
		{"peft_type", "ADALORA"}, {"r", 16}, {"init_r", s.InitR}, {"target_r", 8}, {"lora_alpha", s.Alpha},
		{"rank_pattern", nil}, {"target_modules", uniqueStrings(targets)}, {"use_rslora", false}, {"use_dora", false},
	}
	return res, writeDir(dir, "adapter_model.safetensors", tl, nil, cfg, res)
}

// IA3Module is one IA3 vector: Feedforward vectors are (1,In), others (Out,1).
type IA3Module struct {
	Name        string
	In, Out     int
	Feedforward bool
}

// WriteIA3 writes a PEFT IA3 directory.
func WriteIA3(dir string, seed uint64, mods []IA3Module, fanInFanOut bool) (*Result, error) {
	rng := newRand(seed)
	res := &Result{Dir: dir, Modules: map[string]*Factors{}}
	tl := &tensorList{dt: safetensors.F32}
	var targets, ff []string
	for _, m := range mods {
		f := &Factors{In: m.In, Out: m.Out}
		p := "base_model.model." + m.Name + ".ia3_l"
		if m.Feedforward {
			f.IA3 = fill(rng, m.In, 1, safetensors.F32)
			tl.add(p, []int{1, m.In}, f.IA3)
			ff = append(ff, m.Name)
		} else {
			f.IA3 = fill(rng, m.Out, 1, safetensors.F32)
			tl.add(p, []int{m.Out, 1}, f.IA3)
		}
		res.Modules[m.Name] = f
		targets = append(targets, m.Name)
	}
	if ff == nil {
		ff = []string{}
	}
	cfg := object{
		{"peft_type", "IA3"}, {"target_modules", uniqueStrings(targets)}, {"feedforward_modules", ff},
		{"fan_in_fan_out", fanInFanOut}, {"init_ia3_weights", true},
	}
	return res, writeDir(dir, "adapter_model.safetensors", tl, nil, cfg, res)
}

// Dialect selects the key layout of WriteDialect.
type Dialect int

// Dialects of WriteDialect.
const (
	Kohya           Dialect = iota // lora_unet_<name with _>.lora_down/lora_up.weight + .alpha
	MLX                            // <name>.lora_a (in,r) / .lora_b (r,out), adapters.safetensors + MLX config
	Diffusers                      // <name>.lora_A/B.weight without prefix, pytorch_lora_weights.safetensors
	DiffusersLegacy                // <attn>.processor.to_q_lora.down/up.weight
)

// Bare describes a LoRA written in a non-PEFT dialect.
type Bare struct {
	Seed    uint64
	Dialect Dialect
	Modules []Module
	R       int
	// Alpha: kohya .alpha tensors (0 = omit); MLX scale goes in Scale.
	Alpha float64
	Scale float64 // MLX lora_parameters.scale
	// Metadata for the file (e.g. lora_adapter_metadata for Diffusers).
	Metadata map[string]string
}

// KohyaName maps a dotted module path to its kohya name (lora_unet_ +
// dots replaced by underscores).
func KohyaName(module string) string {
	b := []byte(module)
	for i := range b {
		if b[i] == '.' {
			b[i] = '_'
		}
	}
	return "lora_unet_" + string(b)
}

// WriteDialect writes a LoRA in one of the non-PEFT dialects into dir. The
// returned factors are in PEFT orientation, keyed by the module name Load
// reports (kohya: KohyaName; legacy: the mapped diffusers name).
func WriteDialect(dir string, s Bare) (*Result, error) {
	if s.R == 0 {
		s.R = 4
	}
	rng := newRand(s.Seed)
	res := &Result{Dir: dir, Modules: map[string]*Factors{}}
	tl := &tensorList{dt: safetensors.F32}
	file := "lora.safetensors"
	for _, m := range s.Modules {
		r := m.Rank
		if r == 0 {
			r = s.R
		}
		ink := m.In * prod(m.Kernel)
		f := &Factors{Rank: r, In: m.In, Out: m.Out, Kernel: m.Kernel}
		f.A = fill(rng, r*ink, 0.5, safetensors.F32)
		f.B = fill(rng, m.Out*r, 0.5, safetensors.F32)
		aShape := append([]int{r, m.In}, m.Kernel...)
		bShape := []int{m.Out, r}
		for range m.Kernel {
			bShape = append(bShape, 1)
		}
		name := m.Name
		switch s.Dialect {
		case Kohya:
			name = KohyaName(m.Name)
			tl.add(name+".lora_down.weight", aShape, f.A)
			tl.add(name+".lora_up.weight", bShape, f.B)
			if s.Alpha != 0 {
				tl.add(name+".alpha", []int{}, []float32{float32(s.Alpha)})
			}
		case MLX:
			file = "adapters.safetensors"
			tl.add(name+".lora_a", []int{m.In, r}, transpose(f.A, r, m.In))
			tl.add(name+".lora_b", []int{r, m.Out}, transpose(f.B, m.Out, r))
		case Diffusers:
			file = "pytorch_lora_weights.safetensors"
			tl.add(name+".lora_A.weight", aShape, f.A)
			tl.add(name+".lora_B.weight", bShape, f.B)
		case DiffusersLegacy:
			// m.Name must end in .to_q/.to_k/.to_v/.to_out.0
			file = "pytorch_lora_weights.safetensors"
			base, proj := splitLegacy(m.Name)
			tl.add(base+".processor."+proj+"_lora.down.weight", aShape, f.A)
			tl.add(base+".processor."+proj+"_lora.up.weight", bShape, f.B)
		}
		res.Modules[name] = f
	}
	var cfg object
	if s.Dialect == MLX {
		cfg = object{{"num_layers", 2}, {"lora_parameters", object{{"rank", s.R}, {"scale", s.Scale}, {"dropout", 0.0}}}, {"model", "synthetic/mlx"}}
	}
	return res, writeDir(dir, file, tl, s.Metadata, cfg, res)
}

func splitLegacy(name string) (base, proj string) {
	if len(name) > 9 && name[len(name)-9:] == ".to_out.0" {
		return name[:len(name)-9], "to_out"
	}
	i := lastDot(name)
	return name[:i], name[i+1:]
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

func writeDir(dir, file string, tl *tensorList, meta map[string]string, cfg object, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	m := map[string]string{"format": "pt"}
	for k, v := range meta {
		m[k] = v
	}
	if err := safetensors.WriteFile(filepath.Join(dir, file), tl.tensors, m); err != nil {
		return err
	}
	if cfg == nil {
		return nil
	}
	b, err := cfg.marshal()
	if err != nil {
		return err
	}
	res.Config = b
	return os.WriteFile(filepath.Join(dir, "adapter_config.json"), b, 0o644)
}
