package testgen

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/safetensors"
)

// This file writes PEFT LoHa, LoKr and VeRA directories with the tensor
// names and shapes peft's tuners/{loha,lokr,vera}/layer.py create (the
// shape choices — LoKr's factorization() and use_w1/use_w2 rules, LoHa's
// use_effective_conv2d — are re-implemented here from PEFT's code, not
// taken from format/adapter), and returns the truth plus a float64
// reference ΔW built from the formulas of adapter-formats.md §5.

// LycoModule is one synthetic LoHa/LoKr/VeRA module: a Linear (Kernel nil)
// or a Conv2d (Kernel (kh, kw)) base layer of the given in/out.
type LycoModule struct {
	Name    string
	In, Out int
	Kernel  []int
	Rank    int     // 0: the spec's R; otherwise written to rank_pattern under the full name
	Alpha   float64 // 0: the spec's Alpha; otherwise written to alpha_pattern under the full name
}

// Lyco describes a synthetic PEFT LoHa or LoKr adapter.
type Lyco struct {
	Seed    uint64
	Modules []LycoModule
	R       int     // global r (default 8)
	Alpha   float64 // global alpha (default 16)
	// EffectiveConv sets use_effective_conv2d: conv layers with a kernel
	// other than 1×1 get the CP form (LoHa hada_t1/t2; LoKr lokr_t2 when
	// w2 is decomposed).
	EffectiveConv bool
	// LoKr only: decompose_both (w1 as lokr_w1_a·lokr_w1_b when r is
	// small) and decompose_factor (default -1).
	DecomposeBoth   bool
	DecomposeFactor int
	DType           safetensors.DType // zero value means F32
}

// Truth is what a LoHa/LoKr/VeRA generator wrote for one module.
type Truth struct {
	Kind          string // "loha", "lokr", "vera"
	Form          string // e.g. "plain", "cp", "w1+w2", "w1ab+w2ab", "w1+cp", "w1ab+w2" (LoKr: w1 form + w2 form)
	Rank          int    // the r PEFT used for this module
	Alpha, Scale  float64
	In, Out       int
	Kernel        []int // the base layer's kernel (nil for linear)
	KernelVisible bool  // the tensor shapes separate the kernel (CP forms, 4-D lokr_w2); else only in·∏k is visible
	InVisible     bool  // VeRA: in is recoverable from the file (single module); always true for LoHa/LoKr
	// Tensors maps each written key to its shape; Values maps the role
	// (hada_w1_a, lokr_t2, vera_lambda_b, vera_A, ...) to its values.
	Tensors map[string][]int
	Values  map[string][]float32
	// kron/VeRA dims
	outL, outK, inM, inN int
}

// LycoResult is what WriteLoHa/WriteLoKr/WriteVeRA wrote.
type LycoResult struct {
	Dir     string
	Config  []byte
	Modules map[string]*Truth
}

// Factorization is peft's lokr factorization(dimension, factor): two
// numbers m ≤ n with m·n = dimension, m the divisor nearest √dimension (or
// factor when it divides dimension).
func Factorization(dimension, factor int) (int, int) {
	if factor > 0 && dimension%factor == 0 {
		return factor, dimension / factor
	}
	if factor == -1 {
		factor = dimension
	}
	m, n := 1, dimension
	length := m + n
	for m < n {
		newM := m + 1
		for dimension%newM != 0 {
			newM++
		}
		newN := dimension / newM
		if newM+newN > length || newM > factor {
			break
		}
		m, n = newM, newN
	}
	if m > n {
		m, n = n, m
	}
	return m, n
}

func (s *Lyco) defaults() {
	if s.R == 0 {
		s.R = 8
	}
	if s.Alpha == 0 {
		s.Alpha = 16
	}
	if s.DecomposeFactor == 0 {
		s.DecomposeFactor = -1
	}
	s.DType = dtypeOr(s.DType)
}

func is1x1(k []int) bool { return len(k) == 2 && k[0] == 1 && k[1] == 1 }

type lycoWriter struct {
	tl    *tensorList
	rng   *randSource
	truth *Truth
	p     string
}

type randSource struct {
	fill func(n int, scale float64) []float32
}

func (w *lycoWriter) add(role string, shape []int, scale float64) []float32 {
	v := w.rng.fill(prod(shape), scale)
	w.tl.add(w.p+"."+role, shape, v)
	w.truth.Tensors[w.p+"."+role] = append([]int(nil), shape...)
	w.truth.Values[role] = v
	return v
}

func newTruth(kind string, m LycoModule, r int, alpha float64) *Truth {
	return &Truth{Kind: kind, Rank: r, Alpha: alpha, Scale: alpha / float64(r), In: m.In, Out: m.Out,
		Kernel: append([]int(nil), m.Kernel...), InVisible: true, Tensors: map[string][]int{}, Values: map[string][]float32{}}
}

// lycoConfig writes the common LoHa/LoKr config keys.
func lycoConfig(peftType string, s Lyco, targets []string, rp, ap []KV) object {
	return object{
		{"peft_type", peftType}, {"r", s.R}, {"alpha", s.Alpha}, {"rank_dropout", 0.0}, {"module_dropout", 0.0},
		{"use_effective_conv2d", s.EffectiveConv}, {"target_modules", uniqueStrings(targets)}, {"exclude_modules", nil},
		{"init_weights", true}, {"layers_to_transform", nil}, {"layers_pattern", nil},
		{"rank_pattern", kvObject(rp)}, {"alpha_pattern", kvObject(ap)}, {"modules_to_save", nil},
		{"inference_mode", true}, {"task_type", nil}, {"base_model_name_or_path", "synthetic/testgen"},
	}
}

func (s *Lyco) rankAlpha(m LycoModule, rp, ap *[]KV) (int, float64) {
	r, alpha := s.R, s.Alpha
	if m.Rank != 0 {
		r = m.Rank
		*rp = append(*rp, KV{m.Name, float64(r)})
	}
	if m.Alpha != 0 {
		alpha = m.Alpha
		*ap = append(*ap, KV{m.Name, alpha})
	}
	return r, alpha
}

func checkLyco(m LycoModule) error {
	if m.In <= 0 || m.Out <= 0 || (len(m.Kernel) != 0 && len(m.Kernel) != 2) {
		return fmt.Errorf("testgen: module %s: in %d out %d kernel %v (want positive dims, Linear or Conv2d)", m.Name, m.In, m.Out, m.Kernel)
	}
	return nil
}

// WriteLoHa writes a PEFT LoHa directory: per module hada_w1_a/b and
// hada_w2_a/b — (out,r)/(r,in) for Linear, (out,r)/(r,in·kh·kw) for a conv
// without effective decomposition — or, with EffectiveConv on a conv whose
// kernel is not 1×1, hada_t1/t2 (r,r,kh,kw) with hada_w*_a (r,out) and
// hada_w*_b (r,in).
func WriteLoHa(dir string, s Lyco) (*LycoResult, error) {
	s.defaults()
	rng := newRand(s.Seed)
	src := &randSource{fill: func(n int, sc float64) []float32 { return fill(rng, n, sc, s.DType) }}
	res := &LycoResult{Dir: dir, Modules: map[string]*Truth{}}
	tl := &tensorList{dt: s.DType}
	var targets []string
	var rp, ap []KV
	for _, m := range s.Modules {
		if err := checkLyco(m); err != nil {
			return nil, err
		}
		r, alpha := s.rankAlpha(m, &rp, &ap)
		t := newTruth("loha", m, r, alpha)
		w := &lycoWriter{tl: tl, rng: src, truth: t, p: "base_model.model." + m.Name}
		k := prod(m.Kernel)
		if len(m.Kernel) == 2 && s.EffectiveConv && !is1x1(m.Kernel) {
			t.Form, t.KernelVisible = "cp", true
			for _, i := range []string{"1", "2"} {
				w.add("hada_t"+i, []int{r, r, m.Kernel[0], m.Kernel[1]}, 0.5)
				w.add("hada_w"+i+"_a", []int{r, m.Out}, 0.5)
				w.add("hada_w"+i+"_b", []int{r, m.In}, 0.5)
			}
		} else {
			t.Form = "plain"
			for _, i := range []string{"1", "2"} {
				w.add("hada_w"+i+"_a", []int{m.Out, r}, 0.5)
				w.add("hada_w"+i+"_b", []int{r, m.In * k}, 0.5)
			}
		}
		res.Modules[m.Name] = t
		targets = append(targets, m.Name)
	}
	cfg := lycoConfig("LOHA", s, targets, rp, ap)
	return res, writeLyco(dir, tl, cfg, res)
}

// WriteLoKr writes a PEFT LoKr directory, choosing each module's form as
// peft's LoKrLayer.update_layer does: out = out_l·out_k and in = in_m·in_n
// by Factorization(·, DecomposeFactor); w1 is whole lokr_w1 (out_l, in_m)
// unless DecomposeBoth and r < max(out_l, in_m)/2 (then lokr_w1_a (out_l,
// r), lokr_w1_b (r, in_m)); w2 is whole lokr_w2 (out_k, in_n[, kh, kw])
// unless r < max(out_k, in_n)/2, then lokr_w2_a (out_k, r), lokr_w2_b (r,
// in_n[·kh·kw]), or with EffectiveConv on a non-1×1 conv the CP form
// lokr_t2 (r, r, kh, kw), lokr_w2_a (r, out_k), lokr_w2_b (r, in_n).
func WriteLoKr(dir string, s Lyco) (*LycoResult, error) {
	s.defaults()
	rng := newRand(s.Seed)
	src := &randSource{fill: func(n int, sc float64) []float32 { return fill(rng, n, sc, s.DType) }}
	res := &LycoResult{Dir: dir, Modules: map[string]*Truth{}}
	tl := &tensorList{dt: s.DType}
	var targets []string
	var rp, ap []KV
	for _, m := range s.Modules {
		if err := checkLyco(m); err != nil {
			return nil, err
		}
		r, alpha := s.rankAlpha(m, &rp, &ap)
		t := newTruth("lokr", m, r, alpha)
		w := &lycoWriter{tl: tl, rng: src, truth: t, p: "base_model.model." + m.Name}
		t.inM, t.inN = Factorization(m.In, s.DecomposeFactor)
		t.outL, t.outK = Factorization(m.Out, s.DecomposeFactor)
		conv := len(m.Kernel) == 2
		useW1 := !(s.DecomposeBoth && 2*r < max(t.outL, t.inM))
		useW2 := !(2*r < max(t.outK, t.inN))
		effective := conv && s.EffectiveConv && !is1x1(m.Kernel)
		if useW1 {
			w.add("lokr_w1", []int{t.outL, t.inM}, 0.5)
			t.Form = "w1"
		} else {
			w.add("lokr_w1_a", []int{t.outL, r}, 0.5)
			w.add("lokr_w1_b", []int{r, t.inM}, 0.5)
			t.Form = "w1ab"
		}
		switch {
		case useW2:
			w.add("lokr_w2", append([]int{t.outK, t.inN}, m.Kernel...), 0.5)
			t.Form += "+w2"
			t.KernelVisible = conv
		case effective:
			w.add("lokr_t2", []int{r, r, m.Kernel[0], m.Kernel[1]}, 0.5)
			w.add("lokr_w2_a", []int{r, t.outK}, 0.5)
			w.add("lokr_w2_b", []int{r, t.inN}, 0.5)
			t.Form += "+cp"
			t.KernelVisible = true
		default:
			w.add("lokr_w2_a", []int{t.outK, r}, 0.5)
			w.add("lokr_w2_b", []int{r, t.inN * prod(m.Kernel)}, 0.5)
			t.Form += "+w2ab"
		}
		res.Modules[m.Name] = t
		targets = append(targets, m.Name)
	}
	cfg := lycoConfig("LOKR", s, targets, rp, ap)
	cfg = append(cfg, kv{"decompose_both", s.DecomposeBoth}, kv{"decompose_factor", s.DecomposeFactor}, kv{"rank_dropout_scale", false})
	return res, writeLyco(dir, tl, cfg, res)
}

// VeRA describes a synthetic PEFT VeRA adapter (Linear modules only).
type VeRA struct {
	Seed        uint64
	Modules     []LycoModule // Rank/Alpha/Kernel ignored
	R           int          // default 8
	FanInFanOut bool
	// NoProjection writes save_projection=false and omits the shared
	// base_model.vera_A/vera_B.
	NoProjection bool
}

// WriteVeRA writes a PEFT VeRA directory: shared base_model.vera_A (r,
// max_in) and base_model.vera_B (max_out, r) sized by the largest in and
// out over the modules (peft VeraModel._find_dim), and per module
// vera_lambda_b (out,) and vera_lambda_d (r,).
func WriteVeRA(dir string, s VeRA) (*LycoResult, error) {
	if s.R == 0 {
		s.R = 8
	}
	rng := newRand(s.Seed)
	src := &randSource{fill: func(n int, sc float64) []float32 { return fill(rng, n, sc, safetensors.F32) }}
	res := &LycoResult{Dir: dir, Modules: map[string]*Truth{}}
	tl := &tensorList{dt: safetensors.F32}
	maxIn, maxOut := 0, 0
	for _, m := range s.Modules {
		if err := checkLyco(m); err != nil || len(m.Kernel) != 0 {
			return nil, fmt.Errorf("testgen: VeRA module %s: Linear with positive in/out wanted", m.Name)
		}
		maxIn, maxOut = max(maxIn, m.In), max(maxOut, m.Out)
	}
	var va, vb []float32
	if !s.NoProjection {
		va = fill(rng, s.R*maxIn, 0.5, safetensors.F32)
		vb = fill(rng, maxOut*s.R, 0.5, safetensors.F32)
		tl.add("base_model.vera_A", []int{s.R, maxIn}, va)
		tl.add("base_model.vera_B", []int{maxOut, s.R}, vb)
	}
	var targets []string
	for _, m := range s.Modules {
		t := &Truth{Kind: "vera", Form: "vera", Rank: s.R, Scale: 1, In: m.In, Out: m.Out, InVisible: len(s.Modules) == 1,
			Tensors: map[string][]int{}, Values: map[string][]float32{"vera_A": va, "vera_B": vb}, inM: maxIn, outL: maxOut}
		if !s.NoProjection {
			t.Tensors["base_model.vera_A"] = []int{s.R, maxIn}
			t.Tensors["base_model.vera_B"] = []int{maxOut, s.R}
		}
		w := &lycoWriter{tl: tl, rng: src, truth: t, p: "base_model.model." + m.Name}
		w.add("vera_lambda_b", []int{m.Out}, 1)
		w.add("vera_lambda_d", []int{s.R}, 1)
		res.Modules[m.Name] = t
		targets = append(targets, m.Name)
	}
	cfg := object{
		{"peft_type", "VERA"}, {"r", s.R}, {"target_modules", uniqueStrings(targets)}, {"projection_prng_key", 0},
		{"save_projection", !s.NoProjection}, {"vera_dropout", 0.0}, {"d_initial", 0.1}, {"fan_in_fan_out", s.FanInFanOut},
		{"bias", "none"}, {"modules_to_save", nil}, {"init_weights", true}, {"layers_to_transform", nil}, {"layers_pattern", nil},
		{"inference_mode", true}, {"task_type", nil}, {"base_model_name_or_path", "synthetic/testgen"},
	}
	return res, writeLyco(dir, tl, cfg, res)
}

func writeLyco(dir string, tl *tensorList, cfg object, res *LycoResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), tl.tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	b, err := cfg.marshal()
	if err != nil {
		return err
	}
	res.Config = b
	return os.WriteFile(filepath.Join(dir, "adapter_config.json"), b, 0o644)
}

// RefDelta returns the reference ΔW in float64, Out × In·∏Kernel
// row-major (the base weight's (out, in, kh, kw) layout flattened), from the
// formulas of adapter-formats.md §5 computed elementwise:
//
//	LoHa plain: ΔW[o,j] = s·(Σ_k w1a[o,k]·w1b[k,j])·(Σ_k w2a[o,k]·w2b[k,j])
//	LoHa CP:    ΔW[o,n,q] = s·Π_{i=1,2} Σ_{a,b} t_i[a,b,q]·wia[a,o]·wib[b,n]
//	LoKr:       ΔW[l·out_k+k, m·in_n+n, q] = s·W1[l,m]·W2[k,n,q]
//	VeRA:       ΔW[o,i] = λb[o]·Σ_k B[o,k]·λd[k]·A[k,i]
//
// with s = α/r. The transpose for fan_in_fan_out is not applied.
func (t *Truth) RefDelta() []float64 {
	k := prod(t.Kernel)
	cols := t.In * k
	d := make([]float64, t.Out*cols)
	v := t.Values
	switch t.Kind {
	case "loha":
		for o := 0; o < t.Out; o++ {
			for n := 0; n < t.In; n++ {
				for q := 0; q < k; q++ {
					d[o*cols+n*k+q] = t.Scale * t.hada("1", o, n, q, k) * t.hada("2", o, n, q, k)
				}
			}
		}
	case "lokr":
		for l := 0; l < t.outL; l++ {
			for m := 0; m < t.inM; m++ {
				w1 := t.lokrW1(l, m)
				for kk := 0; kk < t.outK; kk++ {
					for n := 0; n < t.inN; n++ {
						for q := 0; q < k; q++ {
							row, col := l*t.outK+kk, m*t.inN+n
							d[row*cols+col*k+q] = t.Scale * w1 * t.lokrW2(kk, n, q, k)
						}
					}
				}
			}
		}
	case "vera":
		r, maxIn := t.Rank, t.inM
		for o := 0; o < t.Out; o++ {
			for i := 0; i < t.In; i++ {
				sum := 0.0
				for j := 0; j < r; j++ {
					sum += float64(v["vera_B"][o*r+j]) * float64(v["vera_lambda_d"][j]) * float64(v["vera_A"][j*maxIn+i])
				}
				d[o*cols+i] = float64(v["vera_lambda_b"][o]) * sum * t.Scale
			}
		}
	}
	return d
}

// hada returns factor i of a LoHa module at (o, n, q).
func (t *Truth) hada(i string, o, n, q, k int) float64 {
	v, r := t.Values, t.Rank
	wa, wb := v["hada_w"+i+"_a"], v["hada_w"+i+"_b"]
	sum := 0.0
	if core, ok := v["hada_t"+i]; ok {
		for a := 0; a < r; a++ {
			for b := 0; b < r; b++ {
				sum += float64(core[(a*r+b)*k+q]) * float64(wa[a*t.Out+o]) * float64(wb[b*t.In+n])
			}
		}
		return sum
	}
	cols := t.In * k
	for j := 0; j < r; j++ {
		sum += float64(wa[o*r+j]) * float64(wb[j*cols+n*k+q])
	}
	return sum
}

func (t *Truth) lokrW1(l, m int) float64 {
	v := t.Values
	if w, ok := v["lokr_w1"]; ok {
		return float64(w[l*t.inM+m])
	}
	sum := 0.0
	for j := 0; j < t.Rank; j++ {
		sum += float64(v["lokr_w1_a"][l*t.Rank+j]) * float64(v["lokr_w1_b"][j*t.inM+m])
	}
	return sum
}

func (t *Truth) lokrW2(kk, n, q, k int) float64 {
	v, r := t.Values, t.Rank
	if w, ok := v["lokr_w2"]; ok {
		return float64(w[(kk*t.inN+n)*k+q])
	}
	sum := 0.0
	if core, ok := v["lokr_t2"]; ok { // t2 (r,r,k), w2_a (r,out_k), w2_b (r,in_n)
		for a := 0; a < r; a++ {
			for b := 0; b < r; b++ {
				sum += float64(core[(a*r+b)*k+q]) * float64(v["lokr_w2_a"][a*t.outK+kk]) * float64(v["lokr_w2_b"][b*t.inN+n])
			}
		}
		return sum
	}
	cols := t.inN * k
	for j := 0; j < r; j++ {
		sum += float64(v["lokr_w2_a"][kk*r+j]) * float64(v["lokr_w2_b"][j*cols+n*k+q])
	}
	return sum
}
