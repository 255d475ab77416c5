package adapter

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

// TestLycorisGenerated loads generated PEFT LoHa / LoKr / VeRA directories
// (internal/testgen, which re-implements PEFT's shape choices) and checks
// every module's kind, rank, alpha, scale, features and kernel against the
// generator's truth, that Validate is clean, and that Delta equals the
// generator's float64 RefDelta within float32 tolerance:
// |got − want| ≤ 1e-6·(1 + |want|) + 1e-6·max|want|.
func TestLycorisGenerated(t *testing.T) {
	base := t.TempDir()
	lin := testgen.LycoModule{Name: "model.layers.0.self_attn.q_proj", In: 12, Out: 10}
	wide := testgen.LycoModule{Name: "model.layers.0.mlp.up_proj", In: 8, Out: 24, Rank: 3, Alpha: 5}
	prime := testgen.LycoModule{Name: "model.layers.1.self_attn.o_proj", In: 7, Out: 6}
	conv := testgen.LycoModule{Name: "unet.conv_in", In: 6, Out: 4, Kernel: []int{3, 3}}
	conv1 := testgen.LycoModule{Name: "unet.proj_1x1", In: 4, Out: 6, Kernel: []int{1, 1}}
	cases := []struct {
		name  string
		write func(dir string) (*testgen.LycoResult, error)
		forms []string // every form that must occur
	}{
		{"loha", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoHa(d, testgen.Lyco{Seed: 11, R: 2, Alpha: 3, Modules: []testgen.LycoModule{lin, wide, prime, conv, conv1}})
		}, []string{"plain"}},
		{"loha-cp", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoHa(d, testgen.Lyco{Seed: 12, R: 3, Alpha: 6, EffectiveConv: true, Modules: []testgen.LycoModule{conv, conv1, lin}})
		}, []string{"cp", "plain"}},
		{"lokr-small-r", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: 13, R: 1, Alpha: 2, Modules: []testgen.LycoModule{lin, prime, conv}})
		}, []string{"w1+w2ab"}},
		{"lokr-whole", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: 14, R: 8, Alpha: 4, Modules: []testgen.LycoModule{lin, conv, {Name: "x.k_proj", In: 12, Out: 10, Rank: 6, Alpha: 9}}})
		}, []string{"w1+w2"}},
		{"lokr-decompose-both", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: 15, R: 1, Alpha: 3, DecomposeBoth: true, Modules: []testgen.LycoModule{lin, {Name: "big", In: 64, Out: 36}}})
		}, []string{"w1ab+w2ab"}},
		{"lokr-cp", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: 16, R: 1, Alpha: 2, EffectiveConv: true, DecomposeBoth: true,
				Modules: []testgen.LycoModule{{Name: "unet.down.conv", In: 16, Out: 36, Kernel: []int{3, 2}}, conv}})
		}, []string{"w1ab+cp", "w1+cp"}},
		{"loha-bf16", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoHa(d, testgen.Lyco{Seed: 20, R: 2, Alpha: 4, EffectiveConv: true, DType: safetensors.BF16, Modules: []testgen.LycoModule{conv, lin}})
		}, []string{"cp", "plain"}},
		{"lokr-f16", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: 21, R: 1, Alpha: 2, EffectiveConv: true, DType: safetensors.F16, Modules: []testgen.LycoModule{conv, lin}})
		}, []string{"w1+cp", "w1+w2ab"}},
		{"lokr-factor", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: 17, R: 2, Alpha: 2, DecomposeFactor: 4, Modules: []testgen.LycoModule{{Name: "q", In: 32, Out: 16}}})
		}, []string{"w1+w2ab"}},
		{"vera-one", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteVeRA(d, testgen.VeRA{Seed: 18, R: 4, Modules: []testgen.LycoModule{{Name: "m.q", In: 9, Out: 5}}})
		}, []string{"vera"}},
		{"vera-many", func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteVeRA(d, testgen.VeRA{Seed: 19, R: 3, FanInFanOut: true, Modules: []testgen.LycoModule{{Name: "h.0.c_attn", In: 8, Out: 24}, {Name: "h.0.c_proj", In: 8, Out: 8}, {Name: "h.0.c_fc", In: 8, Out: 32}}})
		}, []string{"vera"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := c.write(filepath.Join(base, c.name))
			if err != nil {
				t.Fatal(err)
			}
			a := mustLoad(t, res.Dir)
			if len(a.Modules) != len(res.Modules) {
				t.Fatalf("%d modules, generator wrote %d", len(a.Modules), len(res.Modules))
			}
			seen := map[string]bool{}
			for _, m := range a.Modules {
				tr := res.Modules[m.Name]
				if tr == nil {
					t.Fatalf("unexpected module %q", m.Name)
				}
				seen[tr.Form] = true
				checkTruth(t, a, m, tr)
			}
			for _, f := range c.forms {
				if !seen[f] {
					t.Errorf("form %s not generated (have %v)", f, seen)
				}
			}
			rep, err := a.Validate()
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Clean() {
				t.Errorf("Validate not clean: %+v", rep.Findings)
			}
		})
	}
}

func checkTruth(t *testing.T, a *Adapter, m *Module, tr *testgen.Truth) {
	t.Helper()
	cols := tr.In
	for _, k := range tr.Kernel {
		cols *= k
	}
	kernel := fmt.Sprint(m.Kernel)
	switch {
	case tr.KernelVisible:
		if kernel != fmt.Sprint(tr.Kernel) || m.InFeatures != tr.In {
			t.Errorf("%s (%s): in %d kernel %v, want %d %v", m.Name, tr.Form, m.InFeatures, m.Kernel, tr.In, tr.Kernel)
		}
	default: // the shapes hold in·∏k only
		if m.Kernel != nil || m.InFeatures != cols && (tr.InVisible || m.InFeatures != 0) {
			t.Errorf("%s (%s): in %d kernel %v, want in·∏k = %d and no kernel", m.Name, tr.Form, m.InFeatures, m.Kernel, cols)
		}
	}
	if !tr.InVisible && m.InFeatures != 0 {
		t.Errorf("%s: VeRA in %d guessed; the file does not record it", m.Name, m.InFeatures)
	}
	if string(m.Kind) != tr.Kind || m.Rank != tr.Rank || m.Alpha != tr.Alpha || m.Scale != tr.Scale || !m.AlphaKnown || m.OutFeatures != tr.Out {
		t.Errorf("%s (%s): kind %s rank %d alpha %g scale %g known %v out %d; want %s %d %g %g true %d",
			m.Name, tr.Form, m.Kind, m.Rank, m.Alpha, m.Scale, m.AlphaKnown, m.OutFeatures, tr.Kind, tr.Rank, tr.Alpha, tr.Scale, tr.Out)
	}
	if !tr.InVisible {
		if _, err := a.Delta(m); !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "base weight") {
			t.Errorf("%s: Delta without in_features: %v", m.Name, err)
		}
		m.InFeatures = tr.In // what a caller with the base weight does
	}
	d, err := a.Delta(m)
	if err != nil {
		t.Fatalf("%s: Delta: %v", m.Name, err)
	}
	want := tr.RefDelta()
	if len(d.W) != len(want) || d.Out != tr.Out || d.Cols() != cols {
		t.Fatalf("%s: Delta %d values %d×%d, want %d×%d", m.Name, len(d.W), d.Out, d.Cols(), tr.Out, cols)
	}
	maxAbs := 0.0
	for _, w := range want {
		maxAbs = math.Max(maxAbs, math.Abs(w))
	}
	if maxAbs == 0 {
		t.Fatalf("%s: reference delta is all zero", m.Name)
	}
	for i, w := range want {
		if diff := math.Abs(float64(d.W[i]) - w); diff > 1e-6*(1+math.Abs(w))+1e-6*maxAbs {
			t.Fatalf("%s (%s): ΔW[%d] = %g, want %g (diff %g)", m.Name, tr.Form, i, d.W[i], w, diff)
		}
	}
	// Delta64 keeps the float64 accumulation: equal to the reference up to
	// float64 rounding of the (float32-exact) inputs' products.
	d64, v64, err := a.Delta64(m)
	if err != nil || d64.Out != d.Out || d64.Cols() != cols || len(v64) != len(want) {
		t.Fatalf("%s: Delta64 %v %v (%d values)", m.Name, d64, err, len(v64))
	}
	for i, w := range want {
		if diff := math.Abs(v64[i] - w); diff > 1e-12*(math.Abs(w)+maxAbs) {
			t.Fatalf("%s (%s): Delta64[%d] = %.17g, want %.17g", m.Name, tr.Form, i, v64[i], w)
		}
	}
	if err := a.CheckDelta(m); err != nil {
		t.Errorf("%s: CheckDelta: %v", m.Name, err)
	}
	// The transposed frame has the same number of values: CheckDelta and
	// Delta refuse it (PEFT would reshape a LoKr kron silently).
	if tr.Out != cols && len(m.Kernel) == 0 {
		mt := *m
		mt.OutFeatures, mt.InFeatures = cols, tr.Out
		if err := a.CheckDelta(&mt); !errors.Is(err, ErrShape) {
			t.Errorf("%s (%s): CheckDelta on the transposed %d×%d frame: %v, want ErrShape", m.Name, tr.Form, cols, tr.Out, err)
		}
		if _, err := a.Delta(&mt); !errors.Is(err, ErrShape) {
			t.Errorf("%s (%s): Delta on the transposed frame: %v, want ErrShape", m.Name, tr.Form, err)
		}
	}
}

// TestLoKrWholeScale pins bug 1: a LoKr module with only whole factors has
// no rank in its shapes, and PEFT still scales it by alpha/r of the config
// (rank_pattern/alpha_pattern included); kohya/LyCORIS files use scale 1;
// without any config alpha is unknown.
func TestLoKrWholeScale(t *testing.T) {
	base := t.TempDir()
	dir := writeRaw(t, filepath.Join(base, "peft"), PEFTWeightsFile,
		`{"peft_type":"LOKR","r":4,"alpha":6,"rank_pattern":{"v":12},"alpha_pattern":{"v":3},"target_modules":["q","v"]}`, nil,
		zt("base_model.model.m.q.lokr_w1", 2, 3), zt("base_model.model.m.q.lokr_w2", 5, 4),
		zt("base_model.model.m.v.lokr_w1", 2, 3), zt("base_model.model.m.v.lokr_w2", 5, 4))
	a := mustLoad(t, dir)
	for _, w := range []struct {
		name         string
		rank         int
		alpha, scale float64
	}{{"m.q", 4, 6, 1.5}, {"m.v", 12, 3, 0.25}} {
		m := a.Module(w.name)
		if m.Rank != w.rank || m.ConfigRank != w.rank || m.Alpha != w.alpha || m.Scale != w.scale || !m.AlphaKnown || m.InFeatures != 12 || m.OutFeatures != 10 {
			t.Errorf("%s: %+v, want rank %d alpha %g scale %g", w.name, m, w.rank, w.alpha, w.scale)
		}
	}
	if len(a.Warnings) != 0 {
		t.Errorf("warnings %v", a.Warnings)
	}
	// kohya/LyCORIS full-matrix LoKr: alpha forced to lora_dim → scale 1
	dir = writeRaw(t, filepath.Join(base, "kohya"), "lora.safetensors", "", nil,
		zt("lora_unet_mid_block_attn.lokr_w1", 2, 2), zt("lora_unet_mid_block_attn.lokr_w2", 3, 3), zt("lora_unet_mid_block_attn.alpha"))
	k := mustLoad(t, dir)
	if m := k.Modules[0]; m.Kind != KindLoKr || m.Scale != 1 || !m.AlphaKnown || m.InFeatures != 6 || m.OutFeatures != 6 {
		t.Errorf("kohya whole LoKr: %+v", m)
	}
	// no config: alpha unknown, warned
	dir = writeRaw(t, filepath.Join(base, "bare"), PEFTWeightsFile, "", nil,
		zt("base_model.model.m.q.lokr_w1", 2, 3), zt("base_model.model.m.q.lokr_w2", 5, 4))
	b := mustLoad(t, dir)
	if m := b.Modules[0]; m.AlphaKnown || m.Scale != 1 || len(b.Warnings) == 0 {
		t.Errorf("config-less whole LoKr: %+v, warnings %v", m, b.Warnings)
	}
}

// TestLycorisDeltaErrors: bad shapes are ErrShape naming the tensor; kinds
// without an additive delta are ErrNotLowRank; VeRA without projections is
// refused.
func TestLycorisDeltaErrors(t *testing.T) {
	base := t.TempDir()
	for _, c := range []struct {
		name, cfg string
		tensors   []safetensors.Tensor
		want      error
		mention   string
		rule      string // Validate error rule expected ("" none of these)
	}{
		{"loha-rank", `{"peft_type":"LOHA","r":2,"alpha":2,"target_modules":["q"]}`,
			[]safetensors.Tensor{zt("base_model.model.q.hada_w1_a", 4, 2), zt("base_model.model.q.hada_w1_b", 3, 5), zt("base_model.model.q.hada_w2_a", 4, 2), zt("base_model.model.q.hada_w2_b", 2, 5)}, ErrShape, "hada_w1_b", RuleShape},
		{"loha-cp-core", `{"peft_type":"LOHA","r":2,"alpha":2,"target_modules":["q"]}`,
			[]safetensors.Tensor{zt("base_model.model.q.hada_t1", 3, 2, 3, 3), zt("base_model.model.q.hada_w1_a", 2, 4), zt("base_model.model.q.hada_w1_b", 2, 5), zt("base_model.model.q.hada_t2", 2, 2, 3, 3), zt("base_model.model.q.hada_w2_a", 2, 4), zt("base_model.model.q.hada_w2_b", 2, 5)}, ErrShape, "hada_t1", RuleShape},
		{"lokr-ab", `{"peft_type":"LOKR","r":2,"alpha":2,"target_modules":["q"]}`,
			[]safetensors.Tensor{zt("base_model.model.q.lokr_w1", 2, 2), zt("base_model.model.q.lokr_w2_a", 3, 2), zt("base_model.model.q.lokr_w2_b", 4, 3)}, ErrShape, "lokr_w2_b", RuleShape},
		{"vera-noproj", `{"peft_type":"VERA","r":2,"save_projection":false,"target_modules":["q"]}`,
			[]safetensors.Tensor{zt("base_model.model.q.vera_lambda_b", 4), zt("base_model.model.q.vera_lambda_d", 2)}, ErrShape, "base weight", RuleVeRAProjection},
		{"ia3", `{"peft_type":"IA3","target_modules":["q"],"feedforward_modules":[]}`,
			[]safetensors.Tensor{zt("base_model.model.q.ia3_l", 4, 1)}, ErrNotLowRank, "q", ""},
		{"loha-config-rank", `{"peft_type":"LOHA","r":4,"alpha":2,"target_modules":["q"]}`,
			[]safetensors.Tensor{zt("base_model.model.q.hada_w1_a", 4, 2), zt("base_model.model.q.hada_w1_b", 2, 5), zt("base_model.model.q.hada_w2_a", 4, 2), zt("base_model.model.q.hada_w2_b", 2, 5)}, nil, "", RuleRankPattern},
		{"vera-lambda-d", `{"peft_type":"VERA","r":2,"target_modules":["q"]}`,
			[]safetensors.Tensor{zt("base_model.vera_A", 2, 6), zt("base_model.vera_B", 4, 2), zt("base_model.model.q.vera_lambda_b", 4), zt("base_model.model.q.vera_lambda_d", 3)}, ErrShape, "vera_lambda_d", RuleShape},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeRaw(t, filepath.Join(base, c.name), PEFTWeightsFile, c.cfg, nil, c.tensors...)
			a := mustLoad(t, dir)
			_, err := a.Delta(a.Modules[0])
			switch {
			case c.want == nil && err != nil:
				t.Errorf("Delta: %v", err)
			case c.want != nil && (!errors.Is(err, c.want) || !strings.Contains(err.Error(), c.mention)):
				t.Errorf("Delta error %v, want %v mentioning %q", err, c.want, c.mention)
			}
			rep, err := a.Validate()
			if err != nil {
				t.Fatal(err)
			}
			var rules []string
			for _, f := range rep.Findings {
				if f.Severity == SeverityError {
					rules = append(rules, f.Rule)
					if f.Tensor == "" || f.Module != "q" {
						t.Errorf("finding without tensor/module: %+v", f)
					}
				}
			}
			if want := []string{c.rule}; c.rule == "" && len(rules) != 0 || c.rule != "" && fmt.Sprint(rules) != fmt.Sprint(want) {
				t.Errorf("Validate errors %v, want %q: %+v", rules, c.rule, rep.Findings)
			}
		})
	}
}

// TestKron checks kron against torch.kron results worked out by hand,
// including PEFT's 2-D ⊗ 3-D case (a whole Conv1d lokr_w2), where torch
// pads the 2-D operand to (1, a, b).
func TestKron(t *testing.T) {
	for _, c := range []struct {
		s1, s2    []int
		x, y      []float64
		wantShape []int
		want      []float64
	}{
		{[]int{2, 2}, []int{2, 2}, []float64{1, 2, 3, 4}, []float64{0, 5, 6, 7}, []int{4, 4},
			[]float64{0, 5, 0, 10, 6, 7, 12, 14, 0, 15, 0, 20, 18, 21, 24, 28}},
		{[]int{1, 2}, []int{2, 1, 2}, []float64{1, 2}, []float64{1, 10, 100, 1000}, []int{2, 1, 4},
			[]float64{1, 10, 2, 20, 100, 1000, 200, 2000}},
		{[]int{2, 1, 1, 1}, []int{1, 2, 1, 2}, []float64{1, -1}, []float64{1, 2, 3, 4}, []int{2, 2, 1, 2},
			[]float64{1, 2, 3, 4, -1, -2, -3, -4}},
	} {
		shape, got := kron(c.s1, c.x, c.s2, c.y)
		if fmt.Sprint(shape) != fmt.Sprint(c.wantShape) || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("kron(%v, %v) = %v %v, want %v %v", c.s1, c.s2, shape, got, c.wantShape, c.want)
		}
	}
}
