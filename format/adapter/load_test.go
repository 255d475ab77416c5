package adapter

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

// refDelta is an independent float64 ΔW = s·B·diag(mid)·A (out × in·k).
func refDelta(f *testgen.Factors, s float64, mid []float32) []float64 {
	ink := len(f.A) / f.Rank
	d := make([]float64, f.Out*ink)
	for o := 0; o < f.Out; o++ {
		for i := 0; i < ink; i++ {
			var acc float64
			for k := 0; k < f.Rank; k++ {
				m := 1.0
				if mid != nil {
					m = float64(mid[k])
				}
				acc += float64(f.B[o*f.Rank+k]) * m * float64(f.A[k*ink+i])
			}
			d[o*ink+i] = s * acc
		}
	}
	return d
}

// checkDelta compares a Factors' dense delta with the reference within a
// relative tolerance of 1e-6 of the largest entry (float32 output).
func checkDelta(t *testing.T, name string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: delta has %d entries, want %d", name, len(got), len(want))
	}
	var maxAbs float64
	for _, w := range want {
		maxAbs = math.Max(maxAbs, math.Abs(w))
	}
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > 1e-6*maxAbs+1e-30 {
			t.Fatalf("%s: delta[%d] = %g, want %g", name, i, got[i], want[i])
		}
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestLoadPEFTPatterns(t *testing.T) {
	dir := t.TempDir()
	mods := []testgen.Module{
		{Name: "model.layers.0.self_attn.q_proj", In: 24, Out: 24, Rank: 4},
		{Name: "model.layers.0.self_attn.v_proj", In: 24, Out: 8},
		{Name: "model.layers.1.self_attn.q_proj", In: 24, Out: 24, Rank: 2},
		{Name: "lm_head", In: 24, Out: 40, Rank: 6},
	}
	res, err := testgen.WriteLoRA(dir, testgen.LoRA{
		Seed: 1, Modules: mods, R: 8, Alpha: 16, RSLoRA: true,
		RankPattern:  []testgen.KV{{Key: `layers\.0\.self_attn\.q_proj`, Value: 4}, {Key: "q_proj", Value: 2}, {Key: "lm_head", Value: 6}},
		AlphaPattern: []testgen.KV{{Key: "v_proj", Value: 32}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := mustLoad(t, dir)
	if a.Dialect != DialectPEFT || a.PeftType != "LORA" || len(a.Modules) != 4 || len(a.Warnings) != 0 {
		t.Fatalf("dialect %s type %s modules %d warnings %v", a.Dialect, a.PeftType, len(a.Modules), a.Warnings)
	}
	// hand-resolved: rsLoRA alpha/sqrt(r)
	want := map[string]struct {
		r     int
		alpha float64
	}{
		"model.layers.0.self_attn.q_proj": {4, 16}, "model.layers.0.self_attn.v_proj": {8, 32},
		"model.layers.1.self_attn.q_proj": {2, 16}, "lm_head": {6, 16},
	}
	for _, m := range a.Modules {
		w := want[m.Name]
		s := w.alpha / math.Sqrt(float64(w.r))
		if m.Rank != w.r || m.ConfigRank != w.r || m.Alpha != w.alpha || m.Scale != s || !m.AlphaKnown || m.Kind != KindLoRA {
			t.Errorf("%s: r=%d cr=%d alpha=%g scale=%g known=%v kind=%s; want r=%d alpha=%g scale=%g", m.Name, m.Rank, m.ConfigRank, m.Alpha, m.Scale, m.AlphaKnown, m.Kind, w.r, w.alpha, s)
		}
		f, err := a.Factors(m)
		if err != nil {
			t.Fatal(err)
		}
		g := res.Modules[m.Name]
		if !equalF32(f.A, g.A) || !equalF32(f.B, g.B) || f.In != g.In || f.Out != g.Out {
			t.Errorf("%s: factors differ from what was written", m.Name)
		}
		checkDelta(t, m.Name, f.Delta(), refDelta(g, s, nil))
	}
}

func TestLoadKinds(t *testing.T) {
	base := t.TempDir()
	mods := []testgen.Module{
		{Name: "model.embed_tokens", In: 50, Out: 16, Embedding: true},
		{Name: "conv_in", In: 3, Out: 8, Kernel: []int{3, 3}},
		{Name: "model.layers.0.mlp.down_proj", In: 32, Out: 16},
	}
	for _, tc := range []struct {
		name  string
		spec  testgen.LoRA
		kinds []Kind // per module, sorted by name: conv_in, embed_tokens, down_proj
	}{
		{"plain", testgen.LoRA{Modules: mods}, []Kind{KindLoRAConv, KindLoRAEmbedding, KindLoRA}},
		{"dora", testgen.LoRA{Modules: mods, DoRA: true}, []Kind{KindDoRA, KindDoRA, KindDoRA}},
		{"kasa", testgen.LoRA{Modules: mods, KaSA: true}, []Kind{KindKaSA, KindKaSA, KindKaSA}},
		{"bias+adapter name", testgen.LoRA{Modules: mods, LoRABias: true, AdapterName: "default"}, []Kind{KindLoRAConv, KindLoRAEmbedding, KindLoRA}},
		{"bf16 no prefix", testgen.LoRA{Modules: mods, DType: safetensors.BF16, NoPrefix: true}, []Kind{KindLoRAConv, KindLoRAEmbedding, KindLoRA}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(base, strings.ReplaceAll(tc.name, " ", "_"))
			tc.spec.Seed, tc.spec.R, tc.spec.Alpha = 7, 4, 8
			res, err := testgen.WriteLoRA(dir, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			a := mustLoad(t, dir)
			if len(a.Modules) != 3 {
				t.Fatalf("%d modules: %v", len(a.Modules), a.Modules)
			}
			for i, m := range a.Modules {
				if m.Kind != tc.kinds[i] {
					t.Errorf("%s: kind %s, want %s", m.Name, m.Kind, tc.kinds[i])
				}
				g := res.Modules[m.Name]
				if m.Rank != 4 || m.InFeatures != g.In || m.OutFeatures != g.Out || m.Scale != 2 {
					t.Errorf("%s: r=%d in=%d out=%d scale=%g", m.Name, m.Rank, m.InFeatures, m.OutFeatures, m.Scale)
				}
				f, err := a.Factors(m)
				if err != nil {
					t.Fatal(err)
				}
				if !equalF32(f.A, g.A) || !equalF32(f.B, g.B) || !equalF32(f.Magnitude, g.Magnitude) || !equalF32(f.Diag, g.Diag) || !equalF32(f.Bias, g.Bias) {
					t.Errorf("%s: factors differ", m.Name)
				}
				checkDelta(t, m.Name, f.Delta(), refDelta(g, 2, g.Diag))
			}
		})
	}
}

func TestLoadAdaLoRAAndIA3(t *testing.T) {
	dir := t.TempDir()
	res, err := testgen.WriteAdaLoRA(filepath.Join(dir, "ada"), testgen.AdaLoRA{Seed: 3, Modules: []testgen.Module{{Name: "bert.encoder.layer.0.attention.self.query", In: 16, Out: 16, Rank: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Load(filepath.Join(dir, "ada"))
	if err != nil {
		t.Fatal(err)
	}
	m := a.Modules[0]
	initR, eps := 12.0, 1e-5
	s := 32 / (initR + eps)
	if m.Kind != KindAdaLoRA || m.Rank != 5 || m.ConfigRank != 12 || m.Scale != s || len(a.Warnings) != 0 {
		t.Errorf("adalora: kind %s r %d cr %d scale %.17g warnings %v", m.Kind, m.Rank, m.ConfigRank, m.Scale, a.Warnings)
	}
	f, err := a.Factors(m)
	if err != nil {
		t.Fatal(err)
	}
	g := res.Modules[m.Name]
	checkDelta(t, "adalora", f.Delta(), refDelta(g, s, g.E))
	a.Close()

	_, err = testgen.WriteIA3(filepath.Join(dir, "ia3"), 4, []testgen.IA3Module{
		{Name: "transformer.h.0.attn.c_attn", Out: 24}, {Name: "transformer.h.0.mlp.c_fc", In: 8, Feedforward: true},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	a, err = Load(filepath.Join(dir, "ia3"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.PeftType != "IA3" || len(a.Modules) != 2 {
		t.Fatalf("ia3: %s %d", a.PeftType, len(a.Modules))
	}
	att, fc := a.Modules[0], a.Modules[1]
	if att.Kind != KindIA3 || att.Feedforward || att.OutFeatures != 24 || !att.FanInFanOut || fc.Kind != KindIA3 || !fc.Feedforward || fc.InFeatures != 8 {
		t.Errorf("ia3 modules: %+v %+v", att, fc)
	}
	if _, err := a.Factors(att); !errors.Is(err, ErrNotLowRank) {
		t.Errorf("Factors(ia3) err = %v", err)
	}
}

func TestLoadDialects(t *testing.T) {
	base := t.TempDir()
	mods := []testgen.Module{
		{Name: "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", In: 12, Out: 12},
		{Name: "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", In: 12, Out: 12},
		{Name: "down_blocks.0.resnets.0.conv1", In: 4, Out: 6, Kernel: []int{3, 3}},
	}
	meta := `{"r": 4, "lora_alpha": 12, "peft_type": "LORA", "rank_pattern": {}, "alpha_pattern": {"to_q": 2}}`
	for _, tc := range []struct {
		name    string
		spec    testgen.Bare
		dialect Dialect
		scale   func(name string) float64
		known   bool
		warn    string
	}{
		{"kohya alpha", testgen.Bare{Dialect: testgen.Kohya, Alpha: 2}, DialectKohya, func(string) float64 { return 0.5 }, true, ""},
		{"kohya no alpha", testgen.Bare{Dialect: testgen.Kohya}, DialectKohya, func(string) float64 { return 1 }, true, ""},
		{"mlx", testgen.Bare{Dialect: testgen.MLX, Scale: 10}, DialectMLX, func(string) float64 { return 10 }, true, ""},
		{"diffusers metadata", testgen.Bare{Dialect: testgen.Diffusers, Metadata: map[string]string{"lora_adapter_metadata": meta}}, DialectDiffusers,
			func(n string) float64 {
				if strings.HasSuffix(n, "to_q") {
					return 0.5
				}
				return 3
			}, true, ""},
		{"diffusers bare", testgen.Bare{Dialect: testgen.Diffusers}, DialectDiffusers, func(string) float64 { return 1 }, false, "alpha unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(base, strings.ReplaceAll(tc.name, " ", "_"))
			tc.spec.Seed, tc.spec.R, tc.spec.Modules = 11, 4, mods
			if tc.spec.Dialect == testgen.MLX {
				tc.spec.Modules = []testgen.Module{{Name: "model.layers.0.self_attn.q_proj", In: 12, Out: 20}, {Name: "model.layers.1.self_attn.v_proj", In: 12, Out: 4}}
			}
			res, err := testgen.WriteDialect(dir, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			a := mustLoad(t, dir)
			if a.Dialect != tc.dialect || len(a.Modules) != len(res.Modules) {
				t.Fatalf("dialect %s (want %s), %d modules (want %d): %v", a.Dialect, tc.dialect, len(a.Modules), len(res.Modules), a.Unknown)
			}
			if tc.warn != "" && (len(a.Warnings) == 0 || !strings.Contains(a.Warnings[0], tc.warn)) {
				t.Errorf("warnings %v, want %q", a.Warnings, tc.warn)
			}
			if tc.warn == "" && len(a.Warnings) != 0 {
				t.Errorf("unexpected warnings %v", a.Warnings)
			}
			for _, m := range a.Modules {
				g := res.Modules[m.Name]
				if g == nil {
					t.Fatalf("module %q not generated", m.Name)
				}
				s := tc.scale(m.Name)
				if m.Scale != s || m.AlphaKnown != tc.known || m.Rank != 4 || m.InFeatures != g.In || m.OutFeatures != g.Out {
					t.Errorf("%s: scale %g known %v r %d in %d out %d; want scale %g", m.Name, m.Scale, m.AlphaKnown, m.Rank, m.InFeatures, m.OutFeatures, s)
				}
				f, err := a.Factors(m)
				if err != nil {
					t.Fatal(err)
				}
				if !equalF32(f.A, g.A) || !equalF32(f.B, g.B) {
					t.Errorf("%s: factors not in PEFT orientation", m.Name)
				}
				checkDelta(t, m.Name, f.Delta(), refDelta(g, s, nil))
			}
		})
	}
}

func TestLoadLegacyDiffusers(t *testing.T) {
	dir := t.TempDir()
	mods := []testgen.Module{
		{Name: "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", In: 16, Out: 8},
		{Name: "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0", In: 8, Out: 8},
	}
	res, err := testgen.WriteDialect(dir, testgen.Bare{Seed: 5, Dialect: testgen.DiffusersLegacy, Modules: mods})
	if err != nil {
		t.Fatal(err)
	}
	a := mustLoad(t, dir)
	if a.Dialect != DialectDiffusersLegacy || len(a.Modules) != 2 {
		t.Fatalf("%s %d", a.Dialect, len(a.Modules))
	}
	for _, m := range a.Modules {
		if res.Modules[m.Name] == nil || m.Scale != 1 || !m.AlphaKnown || m.Kind != KindLoRA {
			t.Errorf("%s: %+v", m.Name, m)
		}
	}
}

func TestLoadNoConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := testgen.WriteLoRA(dir, testgen.LoRA{Seed: 2, R: 16, NoConfig: true, Modules: []testgen.Module{{Name: "encoder.block.0.layer.0.SelfAttention.q", In: 32, Out: 32}}}); err != nil {
		t.Fatal(err)
	}
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Modules[0]
	if m.AlphaKnown || m.Alpha != 16 || m.Scale != 1 || len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "alpha unknown") {
		t.Errorf("no config: known=%v alpha=%g scale=%g warnings=%v", m.AlphaKnown, m.Alpha, m.Scale, a.Warnings)
	}
	a.Close()
	a, err = Load(dir, WithAlpha(32))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	m = a.Modules[0]
	if !m.AlphaKnown || m.Alpha != 32 || m.Scale != 2 || len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "supplied by the caller") {
		t.Errorf("WithAlpha: known=%v alpha=%g scale=%g warnings=%v", m.AlphaKnown, m.Alpha, m.Scale, a.Warnings)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "adapter_model.bin"), []byte("PK\x03\x04 not unpickled"), 0o644)
	badcfg := filepath.Join(dir, "badcfg")
	if _, err := testgen.WriteLoRA(badcfg, testgen.LoRA{Modules: []testgen.Module{{Name: "q", In: 2, Out: 2}}, Extra: map[string]any{"r": "eight"}}); err != nil {
		t.Fatal(err)
	}
	badpat := filepath.Join(dir, "badpat")
	if _, err := testgen.WriteLoRA(badpat, testgen.LoRA{Modules: []testgen.Module{{Name: "q", In: 2, Out: 2}}, RankPattern: []testgen.KV{{Key: "(?<=x)q", Value: 2}}}); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.safetensors")
	os.WriteFile(junk, []byte{0x0d, 0x0a}, 0o644)
	for _, tc := range []struct {
		path string
		want error
		text string
	}{
		{filepath.Join(dir, "missing"), os.ErrNotExist, ""},
		{empty, ErrNoAdapter, "empty"},
		{bin, ErrUnsupported, "adapter_model.bin"},
		{filepath.Join(bin, "adapter_model.bin"), ErrUnsupported, "never unpickled"},
		{badcfg, ErrConfig, `"r"`},
		{badpat, ErrConfig, "(?<=x)q"},
		{junk, safetensors.ErrHeaderTooSmall, "junk.safetensors"},
	} {
		_, err := Load(tc.path)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("Load(%s) = %v; want %v mentioning %q", tc.path, err, tc.want, tc.text)
		}
	}
}

func TestLoadIncompleteAndShapeErrors(t *testing.T) {
	dir := t.TempDir()
	tensors := []safetensors.Tensor{
		{Name: "w_a_000", DType: safetensors.F32, Shape: []int{4, 8}, Data: make([]byte, 128)},
		{Name: "base_model.model.x.lora_A.weight", DType: safetensors.F32, Shape: []int{4, 8}, Data: make([]byte, 128)},
		{Name: "base_model.model.x.lora_B.weight", DType: safetensors.F32, Shape: []int{8, 3}, Data: make([]byte, 96)},
	}
	p := filepath.Join(dir, "odd.safetensors")
	if err := safetensors.WriteFile(p, tensors, nil); err != nil {
		t.Fatal(err)
	}
	a := mustLoad(t, p)
	x := a.Module("x")
	if x == nil || x.Kind != KindLoRA {
		t.Fatalf("x = %+v", x)
	}
	if _, err := a.Factors(x); !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "lora_B") {
		t.Errorf("rank mismatch: Factors err = %v", err)
	}
	w := a.Module("w_a_000")
	if w == nil || w.Kind != KindFull {
		t.Errorf("w_a_000 in a PEFT file should be passthrough, got %+v", w)
	}
}

// mustLoad loads path (failing the test on error); the adapter is closed
// when the test ends.
func mustLoad(t testing.TB, path string, opts ...LoadOption) *Adapter {
	t.Helper()
	a, err := Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}
