package adapter

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
	"github.com/adaptool/adaptool/internal/testgen"
)

func TestPyFloat(t *testing.T) {
	initR, eps := 12.0, 1e-5
	adaScale := 32 / (initR + eps) // run-time float64, as Python evaluates it
	// expected strings are Python 3 repr() of the same doubles
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {16, "16.0"}, {-3, "-3.0"}, {0.1, "0.1"},
		{1e-05, "1e-05"}, {0.0001, "0.0001"}, {0.00025, "0.00025"}, {1e16, "1e+16"},
		{9999999999999998, "9999999999999998.0"}, {123456789012345680, "1.2345678901234568e+17"},
		{1.5e300, "1.5e+300"}, {2.5e-7, "2.5e-07"}, {1.0 / 3, "0.3333333333333333"}, {adaScale, "2.6666644444462966"},
		{123.456, "123.456"}, {5e-324, "5e-324"},
	} {
		got, err := pyFloat(tc.f)
		if err != nil || got != tc.want {
			t.Errorf("pyFloat(%v) = %q, %v; want %q", tc.f, got, err, tc.want)
		}
	}
	if _, err := pyFloat(math.NaN()); err == nil {
		t.Error("NaN accepted")
	}
}

func TestMarshalPythonStrings(t *testing.T) {
	got, err := MarshalPython(map[string]any{"é": "a\"b\\c\n\x01\x7f<&>é😀", "a": []any{}, "b": map[string]any{}, "c": []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"a\": [],\n  \"b\": {},\n  \"c\": [\n    \"x\"\n  ],\n  \"\\u00e9\": \"a\\\"b\\\\c\\n\\u0001\\u007f<&>\\u00e9\\ud83d\\ude00\"\n}"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// corpusDir returns the shared corpus root, or skips the test when it is absent.
func corpusDir(t testing.TB) string { return testcorpus.Dir(t) }

// Every PEFT-written config of the corpus re-serialises byte for byte.
func TestMarshalPythonCorpusConfigs(t *testing.T) {
	c := corpusDir(t)
	files, _ := filepath.Glob(filepath.Join(c, "*", "adapter_config.json"))
	n := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := ParseConfig(src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if cfg.IsMLX() {
			continue // MLX writes its own (4-space) JSON
		}
		got, err := MarshalPython(cfg.Raw)
		if err != nil {
			t.Fatal(err)
		}
		// PEFT on Windows writes in text mode: the same JSON with CRLF.
		if bytes.Contains(src, []byte("\r\n")) {
			src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
		}
		if !bytes.Equal(got, src) {
			t.Errorf("%s: re-serialised config differs from PEFT's bytes", f)
		}
		n++
	}
	if n < 20 {
		t.Errorf("only %d PEFT configs checked", n)
	}
}

func TestWritePEFTGolden(t *testing.T) {
	dir := t.TempDir()
	out := &Output{Modules: []OutModule{
		{Name: "model.layers.0.self_attn.q_proj", Rank: 2, In: 3, Out: 2, Scale: 2, A: []float32{1, 2, 3, 4, 5, 6}, B: []float32{1, 0, 0, 1}},
		{Name: "model.layers.0.self_attn.v_proj", Rank: 2, In: 3, Out: 2, Scale: 2, A: []float32{1, 2, 3, 4, 5, 6}, B: []float32{1, 0, 0, 1}},
		{Name: "model.layers.1.self_attn.q_proj", Rank: 1, In: 3, Out: 2, Scale: 0.25, A: []float32{1, 2, 3}, B: []float32{1, 1}},
	}}
	if err := WritePEFT(dir, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "alpha_pattern": {
    "^model\\.layers\\.1\\.self_attn\\.q_proj": 0.25
  },
  "base_model_name_or_path": null,
  "bias": "none",
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layers_pattern": null,
  "layers_to_transform": null,
  "lora_alpha": 4,
  "lora_bias": false,
  "lora_dropout": 0.0,
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 2,
  "rank_pattern": {
    "^model\\.layers\\.1\\.self_attn\\.q_proj": 1
  },
  "target_modules": [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.1.self_attn.q_proj"
  ],
  "task_type": null,
  "use_dora": false,
  "use_rslora": false
}`
	if string(got) != want {
		t.Errorf("config:\n%s\nwant:\n%s", got, want)
	}
	f, err := safetensors.Open(filepath.Join(dir, PEFTWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	for _, ti := range f.Tensors {
		names = append(names, ti.Name+":"+ti.DType.String())
	}
	wantNames := "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight:F32 base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight:F32 " +
		"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight:F32 base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight:F32 " +
		"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight:F32 base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight:F32"
	if strings.Join(names, " ") != wantNames || f.Metadata["format"] != "pt" {
		t.Errorf("tensors %v metadata %v", names, f.Metadata)
	}
}

// Load → Output → WritePEFT → Load keeps every module's scale and ΔW.
func TestWritePEFTRoundTrip(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	_, err := testgen.WriteLoRA(src, testgen.LoRA{
		Seed: 9, R: 8, Alpha: 16, RSLoRA: true, DoRA: true, LoRABias: true,
		Modules: []testgen.Module{
			{Name: "model.layers.0.self_attn.q_proj", In: 16, Out: 16},
			{Name: "model.layers.0.self_attn.v_proj", In: 16, Out: 4, Rank: 2},
			{Name: "model.layers.1.mlp.down_proj", In: 24, Out: 16, Rank: 6},
			{Name: "model.embed_tokens", In: 30, Out: 16},
			{Name: "conv", In: 3, Out: 5, Kernel: []int{3, 3}, Rank: 2},
		},
		RankPattern:  []testgen.KV{{Key: "v_proj", Value: 2}, {Key: "down_proj", Value: 6}, {Key: "conv", Value: 2}},
		AlphaPattern: []testgen.KV{{Key: "down_proj", Value: 3}},
		Full:         map[string][]int{"score.weight": {3, 16}, "score.bias": {3}},
		Extra:        map[string]any{"future_option": map[string]any{"z": 1, "a": []any{"x"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := mustLoad(t, src)
	out, err := a.Output()
	if err != nil {
		t.Fatal(err)
	}
	b := writeLoad(t, filepath.Join(base, "dst"), out)
	if len(b.Modules) != len(a.Modules) || len(b.Warnings) != 0 {
		t.Fatalf("%d modules (want %d), warnings %v", len(b.Modules), len(a.Modules), b.Warnings)
	}
	if string(b.Config.Raw["future_option"]) == "" || b.Config.UseRSLoRA || !b.Config.UseDoRA || !b.Config.LoraBias {
		t.Errorf("config: future_option=%s rslora=%v dora=%v lora_bias=%v", b.Config.Raw["future_option"], b.Config.UseRSLoRA, b.Config.UseDoRA, b.Config.LoraBias)
	}
	for i, ma := range a.Modules {
		mb := b.Modules[i]
		if ma.Name != mb.Name || ma.Kind != mb.Kind || ma.Rank != mb.Rank {
			t.Errorf("module %d: %s/%s/%d vs %s/%s/%d", i, ma.Name, ma.Kind, ma.Rank, mb.Name, mb.Kind, mb.Rank)
			continue
		}
		if ma.Kind == KindFull {
			for role, ta := range ma.Tensors {
				va, _ := a.File.Float32(ta.Name)
				vb, err := b.File.Float32(mb.Tensors[role].Name)
				if err != nil || !equalF32(va, vb) {
					t.Errorf("%s %s differs: %v", ma.Name, role, err)
				}
			}
			continue
		}
		if math.Abs(ma.Scale-mb.Scale) > 1e-15*math.Abs(ma.Scale) {
			t.Errorf("%s: scale %.17g → %.17g", ma.Name, ma.Scale, mb.Scale)
		}
		fa, err := a.Factors(ma)
		if err != nil {
			t.Fatal(err)
		}
		fb, err := b.Factors(mb)
		if err != nil {
			t.Fatal(err)
		}
		if !equalF32(fa.A, fb.A) || !equalF32(fa.B, fb.B) || !equalF32(fa.Magnitude, fb.Magnitude) || !equalF32(fa.Bias, fb.Bias) {
			t.Errorf("%s: factors changed", ma.Name)
		}
		da, db := fa.Delta(), fb.Delta()
		want := make([]float64, len(da))
		for j := range da {
			want[j] = float64(da[j])
		}
		checkDelta(t, ma.Name, db, want)
	}
}

func TestWritePEFTCorpusRoundTrip(t *testing.T) {
	c := corpusDir(t)
	for _, name := range []string{"tinygpt2-r4-gt-dim", "berttiny-adalora-tokcls", "distilbert-seqcls", "mlx-gemma2b-lora"} {
		t.Run(name, func(t *testing.T) {
			a := mustLoad(t, filepath.Join(c, name))
			out, err := a.Output()
			if err != nil {
				t.Fatal(err)
			}
			b := writeLoad(t, "", out)
			if b.PeftType != "LORA" || len(b.Modules) != len(a.Modules) {
				t.Fatalf("peft_type %s, %d modules (want %d)", b.PeftType, len(b.Modules), len(a.Modules))
			}
			for i, ma := range a.Modules {
				mb := b.Modules[i]
				if !ma.IsLowRank() {
					continue
				}
				if math.Abs(ma.Scale-mb.Scale) > 1e-15*ma.Scale || mb.FanInFanOut != ma.FanInFanOut {
					t.Errorf("%s: scale %.17g → %.17g, fan_in_fan_out %v → %v", ma.Name, ma.Scale, mb.Scale, ma.FanInFanOut, mb.FanInFanOut)
				}
				fa, _ := a.Factors(ma)
				fb, err := b.Factors(mb)
				if err != nil {
					t.Fatal(err)
				}
				da := fa.Delta()
				want := make([]float64, len(da))
				for j := range da {
					want[j] = float64(da[j])
				}
				checkDelta(t, ma.Name, fb.Delta(), want)
			}
			if name == "distilbert-seqcls" {
				var v any
				if err := json.Unmarshal(b.Config.Raw["velora_config"], &v); err != nil || string(b.Config.Raw["peft_version"]) != `"0.20.0"` {
					t.Errorf("unknown keys not preserved: velora_config=%s peft_version=%s", b.Config.Raw["velora_config"], b.Config.Raw["peft_version"])
				}
			}
		})
	}
}

func TestWritePEFTRefuses(t *testing.T) {
	ok := OutModule{Name: "q", Rank: 1, In: 2, Out: 2, Scale: 1, A: []float32{1, 2}, B: []float32{1, 2}}
	for _, tc := range []struct {
		name string
		out  *Output
	}{
		{"nil", nil},
		{"empty", &Output{}},
		{"short A", &Output{Modules: []OutModule{{Name: "q", Rank: 1, In: 3, Out: 2, Scale: 1, A: []float32{1}, B: []float32{1, 2}}}}},
		{"no name", &Output{Modules: []OutModule{{Rank: 1, In: 2, Out: 2, Scale: 1, A: []float32{1, 2}, B: []float32{1, 2}}}}},
		{"nan scale", &Output{Modules: []OutModule{{Name: "q", Rank: 1, In: 2, Out: 2, Scale: math.NaN(), A: []float32{1, 2}, B: []float32{1, 2}}}}},
		{"duplicate", &Output{Modules: []OutModule{ok, ok}}},
		{"mixed dora", &Output{Modules: []OutModule{ok, {Name: "k", Rank: 1, In: 2, Out: 2, Scale: 1, A: []float32{1, 2}, B: []float32{1, 2}, Magnitude: []float32{1, 1}}}}},
		{"ia3 kind", &Output{Modules: []OutModule{{Name: "q", Kind: KindIA3}}}},
		{"int dtype", &Output{Modules: []OutModule{ok}, DType: safetensors.I8}},
	} {
		dir := t.TempDir()
		if err := WritePEFT(dir, tc.out); !errors.Is(err, ErrInvalidOutput) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s: wrote %d files on error", tc.name, len(entries))
		}
	}
}

// writeLoad writes out as a PEFT directory dst (a fresh temp dir when "")
// and loads it back; the adapter is closed when the test ends.
func writeLoad(t *testing.T, dst string, out *Output) *Adapter {
	t.Helper()
	if dst == "" {
		dst = t.TempDir()
	}
	if err := WritePEFT(dst, out); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
