package inspect

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
	"gonum.org/v1/gonum/mat"
)

// refModule is the dense float64 reference for one module: ΔW built entry
// by entry in the base weight's own frame (embedding (num,dim) = (B·A)ᵀ·s,
// conv (out, in·k…)), then a full dense SVD.
type refModule struct {
	fro, normA, normB float64
	sv                []float64
}

func denseRef(f *testgen.Factors, scale float64, embedding bool) refModule {
	ink := len(f.A) / f.Rank
	rows, cols := f.Out, ink
	if embedding {
		rows, cols = ink, f.Out
	}
	d := mat.NewDense(rows, cols, nil)
	for o := 0; o < f.Out; o++ {
		for i := 0; i < ink; i++ {
			var s float64
			for k := 0; k < f.Rank; k++ {
				c := float64(f.B[o*f.Rank+k])
				if f.Diag != nil {
					c *= float64(f.Diag[k])
				}
				if f.E != nil {
					c *= float64(f.E[k])
				}
				s += c * float64(f.A[k*ink+i])
			}
			if embedding {
				d.Set(i, o, scale*s)
			} else {
				d.Set(o, i, scale*s)
			}
		}
	}
	var r refModule
	r.fro = mat.Norm(d, 2)
	var svd mat.SVD
	svd.Factorize(d, mat.SVDNone)
	r.sv = svd.Values(nil)
	for k := 0; k < f.Rank; k++ {
		dk := 1.0
		if f.Diag != nil {
			dk = float64(f.Diag[k])
		}
		if f.E != nil {
			dk = float64(f.E[k])
		}
		for i := 0; i < ink; i++ {
			v := dk * float64(f.A[k*ink+i])
			r.normA += v * v
		}
	}
	for _, v := range f.B {
		r.normB += float64(v) * float64(v)
	}
	r.normA, r.normB = math.Sqrt(r.normA), math.Sqrt(r.normB)
	return r
}

func checkModule(t *testing.T, m ModuleSummary, ref refModule) {
	t.Helper()
	if m.ModuleStats == nil {
		t.Fatalf("%s: no stats", m.Name)
	}
	const tol = 1e-6
	if math.Abs(m.DeltaFroNorm-ref.fro) > tol*ref.fro {
		t.Errorf("%s: ‖ΔW‖ %g, dense %g", m.Name, m.DeltaFroNorm, ref.fro)
	}
	if math.Abs(m.NormA-ref.normA) > tol*ref.normA || math.Abs(m.NormB-ref.normB) > tol*ref.normB {
		t.Errorf("%s: ‖A‖ %g/%g ‖B‖ %g/%g", m.Name, m.NormA, ref.normA, m.NormB, ref.normB)
	}
	if want := min(len(ref.sv), m.Rank); len(m.SingularValues) != want {
		t.Fatalf("%s: %d singular values, want %d", m.Name, len(m.SingularValues), want)
	}
	for i, s := range m.SingularValues {
		if math.Abs(s-ref.sv[i]) > tol*ref.sv[0] {
			t.Errorf("%s: σ%d %g, dense %g", m.Name, i, s, ref.sv[i])
		}
	}
	sv := ref.sv[:len(m.SingularValues)]
	var sum, h float64
	for _, s := range sv {
		sum += s
	}
	for _, s := range sv {
		if p := s / sum; p > 0 {
			h -= p * math.Log(p)
		}
	}
	if er := math.Exp(h); math.Abs(m.EffectiveRank-er) > 1e-6*er {
		t.Errorf("%s: effective rank %g, dense %g", m.Name, m.EffectiveRank, er)
	}
	if sr := ref.fro * ref.fro / (ref.sv[0] * ref.sv[0]); math.Abs(m.StableRank-sr) > 1e-6*sr {
		t.Errorf("%s: stable rank %g, dense %g", m.Name, m.StableRank, sr)
	}
	var e2 float64
	for _, s := range ref.sv {
		e2 += s * s
	}
	for _, c := range []struct {
		frac float64
		got  int
	}{{0.9, m.Rank90}, {0.99, m.Rank99}} {
		acc, k := 0.0, 0
		for acc < c.frac*e2*(1-1e-12) {
			acc += ref.sv[k] * ref.sv[k]
			k++
		}
		if k != c.got {
			t.Errorf("%s: rank for %g energy %d, dense %d", m.Name, c.frac, c.got, k)
		}
	}
}

func byName(s *Summary) map[string]ModuleSummary {
	out := map[string]ModuleSummary{}
	for _, m := range s.Modules {
		out[m.Name] = m
	}
	return out
}

func hasWarning(s *Summary, parts ...string) bool {
	for _, w := range s.Warnings {
		ok := true
		for _, p := range parts {
			if !strings.Contains(w, p) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestModuleStatsLoRA(t *testing.T) {
	mods := []testgen.Module{
		{Name: "model.layers.0.self_attn.q_proj", In: 24, Out: 16},
		{Name: "model.layers.1.self_attn.q_proj", In: 24, Out: 16},
		{Name: "model.layers.0.tiny", In: 2, Out: 3},                      // rank 4 > width 2
		{Name: "model.layers.1.conv", In: 4, Out: 6, Kernel: []int{3, 3}}, // conv 3×3
		{Name: "model.embed_tokens", In: 50, Out: 12, Embedding: true},
	}
	for _, c := range []struct {
		name string
		spec testgen.LoRA
	}{
		{"lora", testgen.LoRA{Seed: 1, R: 4, Alpha: 8}},
		{"rslora", testgen.LoRA{Seed: 2, R: 4, Alpha: 8, RSLoRA: true}},
		{"kasa", testgen.LoRA{Seed: 3, R: 4, Alpha: 8, KaSA: true}},
		{"dora bf16", testgen.LoRA{Seed: 4, R: 4, Alpha: 8, DoRA: true, DType: safetensors.BF16}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec
			spec.Modules = mods
			if c.name == "dora bf16" {
				spec.Modules = mods[:3] // DoRA on linear layers
			}
			dir := filepath.Join(t.TempDir(), "a")
			res, err := testgen.WriteLoRA(dir, spec)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Summarize(dir, Options{Stats: true})
			if err != nil {
				t.Fatal(err)
			}
			got := byName(s)
			scale := spec.Alpha / float64(spec.R)
			if spec.RSLoRA {
				scale = spec.Alpha / math.Sqrt(float64(spec.R))
			}
			var total float64
			for _, m := range spec.Modules {
				gm, ok := got[m.Name]
				if !ok {
					t.Fatalf("module %s missing", m.Name)
				}
				if gm.Scale != scale || gm.Rank != spec.R {
					t.Errorf("%s: scale %g rank %d, want %g %d", m.Name, gm.Scale, gm.Rank, scale, spec.R)
				}
				ref := denseRef(res.Modules[m.Name], scale, m.Embedding)
				checkModule(t, gm, ref)
				total += ref.fro * ref.fro
			}
			if math.Abs(s.Totals.DeltaFroNorm-math.Sqrt(total)) > 1e-6*math.Sqrt(total) {
				t.Errorf("total ‖ΔW‖ %g, dense %g", s.Totals.DeltaFroNorm, math.Sqrt(total))
			}
			if !hasWarning(s, "model.layers.0.tiny", "rank 4 exceeds") {
				t.Errorf("rank > width not warned: %v", s.Warnings)
			}
			if c.name == "kasa" && !hasClass(s, ClassSVDForm) || c.name == "dora bf16" && !hasClass(s, ClassRescaled) || !hasClass(s, ClassLowRank) {
				t.Errorf("classification %v", s.Classification)
			}
			if len(s.Layers) != 2 || s.ModuleTypes["q_proj"] != 2 {
				t.Errorf("layers %v types %v", s.Layers, s.ModuleTypes)
			}
		})
	}
}

func hasClass(s *Summary, c string) bool {
	for _, x := range s.Classification {
		if x.Class == c {
			return true
		}
	}
	return false
}

func TestModuleStatsAdaLoRA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a")
	spec := testgen.AdaLoRA{Seed: 5, InitR: 12, Alpha: 32, Modules: []testgen.Module{{Name: "bert.encoder.layer.0.attention.self.query", In: 20, Out: 20, Rank: 12}}}
	res, err := testgen.WriteAdaLoRA(dir, spec)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(dir, Options{Stats: true})
	if err != nil {
		t.Fatal(err)
	}
	m := byName(s)[spec.Modules[0].Name]
	scale := 32 / (12 + 1e-5)
	if math.Abs(m.Scale-scale) > 1e-12 {
		t.Errorf("scale %g, want %g", m.Scale, scale)
	}
	checkModule(t, m, denseRef(res.Modules[spec.Modules[0].Name], scale, false))
}

func TestModuleWarnings(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a")
	_, err := testgen.WriteLoRA(dir, testgen.LoRA{Seed: 9, R: 4, Alpha: 1024, ZeroB: true,
		Modules: []testgen.Module{{Name: "model.layers.0.q_proj", In: 8, Out: 8}},
		Extra:   map[string]any{"target_modules": []string{"q_proj", "k_proj"}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(dir, Options{Stats: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{"model.layers.0.q_proj", "all zero"},
		{"scale 256", "outside the usual range"},
		{`"k_proj"`, "matches no module"},
	} {
		if !hasWarning(s, want...) {
			t.Errorf("no warning with %q in %v", want, s.Warnings)
		}
	}
	m := s.Modules[0]
	if m.DeltaFroNorm != 0 || len(m.SingularValues) != 4 || m.SingularValues[0] != 0 || m.EffectiveRank != 0 {
		t.Errorf("zero delta stats %+v", m.ModuleStats)
	}
}

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func TestModuleNaNWarning(t *testing.T) {
	dir := t.TempDir()
	nan := float32(math.NaN())
	err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), []safetensors.Tensor{
		{Name: "base_model.model.l.0.q.lora_A.weight", DType: safetensors.F32, Shape: []int{1, 2}, Data: f32bytes(1, nan)},
		{Name: "base_model.model.l.0.q.lora_B.weight", DType: safetensors.F32, Shape: []int{2, 1}, Data: f32bytes(1, float32(math.Inf(1)))},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(dir, Options{Stats: true})
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(s, "lora_A", "NaN or Inf") || !hasWarning(s, "lora_B", "NaN or Inf") {
		t.Errorf("warnings %v", s.Warnings)
	}
	for _, ts := range s.Tensors {
		if ts.Stats == nil || ts.Stats.NaN+ts.Stats.Inf != 1 {
			t.Errorf("tensor %s stats %+v", ts.Name, ts.Stats)
		}
	}
}
