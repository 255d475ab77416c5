package adapter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/x448/float16"
)

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func TestValidateRules(t *testing.T) {
	base := t.TempDir()
	q := []testgen.Module{{Name: "model.layers.0.self_attn.q_proj", In: 8, Out: 8}}
	lora := func(dir string, s testgen.LoRA) string {
		t.Helper()
		p := filepath.Join(base, dir)
		s.Seed, s.R = 1, 4
		if s.Modules == nil {
			s.Modules = q
		}
		if _, err := testgen.WriteLoRA(p, s); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw := func(dir, cfg string, tensors ...safetensors.Tensor) string {
		t.Helper()
		p := filepath.Join(base, dir)
		os.MkdirAll(p, 0o755)
		if err := safetensors.WriteFile(filepath.Join(p, PEFTWeightsFile), tensors, nil); err != nil {
			t.Fatal(err)
		}
		if cfg != "" {
			os.WriteFile(filepath.Join(p, ConfigFile), []byte(cfg), 0o644)
		}
		return p
	}
	A := func(name string, r, in int, vals ...float32) safetensors.Tensor {
		if vals == nil {
			vals = make([]float32, r*in)
			for i := range vals {
				vals[i] = float32(i%7) - 3
			}
		}
		return safetensors.Tensor{Name: "base_model.model." + name + ".lora_A.weight", DType: safetensors.F32, Shape: []int{r, in}, Data: f32bytes(vals...)}
	}
	B := func(name string, out, r int) safetensors.Tensor {
		vals := make([]float32, out*r)
		for i := range vals {
			vals[i] = float32(i%5) - 2
		}
		return safetensors.Tensor{Name: "base_model.model." + name + ".lora_B.weight", DType: safetensors.F32, Shape: []int{out, r}, Data: f32bytes(vals...)}
	}
	cfgQ := `{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q"]}`
	nan := float32(math.NaN())
	inf := float32(math.Inf(-1))
	for _, tc := range []struct {
		name   string
		path   string
		rule   string // "" = clean
		sev    Severity
		tensor string
	}{
		{"clean", lora("clean", testgen.LoRA{}), "", "", ""},
		{"rank pattern", lora("rankpat", testgen.LoRA{RankPattern: []testgen.KV{{Key: "q_proj", Value: 2}}}), RuleRankPattern, SeverityError, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"},
		{"dora flag", lora("doraflag", testgen.LoRA{Extra: map[string]any{"use_dora": true}}), RuleDoRAMissing, SeverityError, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"},
		{"dora unexpected", lora("doraunexp", testgen.LoRA{DoRA: true, Extra: map[string]any{"use_dora": false}}), RuleDoRAUnexpected, SeverityWarning, "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"},
		{"lora_bias flag", lora("biasflag", testgen.LoRA{Extra: map[string]any{"lora_bias": true}}), RuleLoRABiasMissing, SeverityWarning, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"},
		{"target no tensors", lora("target", testgen.LoRA{Extra: map[string]any{"target_modules": []string{"q_proj", "k_proj"}}}), RuleTargetNoTensors, SeverityWarning, ""},
		{"not targeted", lora("nottarget", testgen.LoRA{Extra: map[string]any{"target_modules": []string{"k_proj"}}}), RuleNotTargeted, SeverityWarning, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"},
		{"zero B", lora("zerob", testgen.LoRA{ZeroB: true}), RuleZeroB, SeverityWarning, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"},
		{"alpha unknown", lora("noconfig", testgen.LoRA{NoConfig: true}), RuleAlphaUnknown, SeverityWarning, ""},
		{"nan", raw("nan", cfgQ, A("q", 2, 2, 1, nan, 3, 4), B("q", 2, 2)), RuleNonFinite, SeverityError, "base_model.model.q.lora_A.weight"},
		{"inf", raw("inf", cfgQ, A("q", 2, 2, 1, 2, 3, inf), B("q", 2, 2)), RuleNonFinite, SeverityError, "base_model.model.q.lora_A.weight"},
		{"missing B", raw("missb", cfgQ, A("q", 2, 3)), RuleMissingB, SeverityError, "base_model.model.q.lora_A.weight"},
		{"rank mismatch", raw("rankmm", cfgQ, A("q", 2, 3), B("q", 3, 3)), RuleRankMismatch, SeverityError, "base_model.model.q.lora_B.weight"},
		{"peft type", raw("ptype", `{"peft_type":"IA3","target_modules":["q"]}`, A("q", 2, 3), B("q", 3, 2)), RulePeftTypeMismatch, SeverityError, "base_model.model.q.lora_A.weight"},
		{"config invalid", raw("badcfg", `{"peft_type":"LORA","r":"two"}`, A("q", 2, 3), B("q", 3, 2)), RuleConfigInvalid, SeverityError, ""},
		{"config r negative", raw("negr", `{"peft_type":"LORA","r":-4,"lora_alpha":8}`, A("q", 2, 3), B("q", 3, 2)), RuleConfigInvalid, SeverityError, ""},
		{"ia3 feedforward", raw("ia3ff", `{"peft_type":"IA3","target_modules":["q","f"],"feedforward_modules":["q"]}`,
			safetensors.Tensor{Name: "base_model.model.q.ia3_l", DType: safetensors.F32, Shape: []int{2, 1}, Data: f32bytes(1, 1)}), RuleIA3Feedforward, SeverityError, "base_model.model.q.ia3_l"},
		{"pattern unused", lora("patunused", testgen.LoRA{RankPattern: []testgen.KV{{Key: "k_proj", Value: 2}}}), RulePatternUnused, SeverityInfo, ""},
		{"magnitude shape", raw("magshape", `{"peft_type":"LORA","r":2,"use_dora":true,"target_modules":["q"]}`, A("q", 2, 3), B("q", 3, 2),
			safetensors.Tensor{Name: "base_model.model.q.lora_magnitude_vector", DType: safetensors.F32, Shape: []int{2}, Data: f32bytes(1, 1)}), RuleShape, SeverityError, "base_model.model.q.lora_magnitude_vector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Validate(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.rule == "" {
				if !rep.Clean() {
					t.Errorf("want clean, got %+v", rep.Findings)
				}
				return
			}
			if rep.Clean() != (tc.sev == SeverityInfo) {
				t.Errorf("clean = %v with a %s finding: %+v", rep.Clean(), tc.sev, rep.Findings)
			}
			for _, f := range rep.Findings {
				if f.Rule == tc.rule {
					if f.Severity != tc.sev || f.Tensor != tc.tensor || f.File == "" || f.Message == "" {
						t.Errorf("finding %+v: want severity %s tensor %q", f, tc.sev, tc.tensor)
					}
					return
				}
			}
			t.Errorf("no %s finding in %+v", tc.rule, rep.Findings)
		})
	}
}

func TestValidateUnreadable(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, []safetensors.Tensor{{Name: "a", DType: safetensors.F32, Shape: []int{64}, Data: make([]byte, 256)}}, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, buf.Bytes()[:buf.Len()-10], 0o644)
	if _, err := Validate(p); !errors.Is(err, safetensors.ErrMetadataIncompleteBuffer) || !safetensors.IsFormatError(err) {
		t.Errorf("truncated: err = %v", err)
	}
	if _, err := Validate(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: err = %v", err)
	}
}

func TestScanFloats(t *testing.T) {
	h := func(v ...uint16) []byte {
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		return b
	}
	f64 := func(v ...float64) []byte {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
		}
		return b
	}
	for _, tc := range []struct {
		name                string
		dt                  safetensors.DType
		data                []byte
		nan, inf, nz, first int64
	}{
		// F16: 0x7c00 +Inf, 0xfc00 -Inf, 0x7e00 NaN, 0x8000 -0, 0x3c00 1
		{"f16", safetensors.F16, h(0x3c00, 0x8000, 0x7c00, 0x7e00, 0xfc00, 0x0001), 1, 2, 5, 2},
		// BF16: 0x7f80 +Inf, 0x7fc1 NaN
		{"bf16", safetensors.BF16, h(0x0000, 0x7fc1, 0x7f80, 0x3f80), 1, 1, 3, 1},
		{"f32", safetensors.F32, f32bytes(0, float32(math.Copysign(0, -1)), 1, float32(math.NaN()), float32(math.Inf(1))), 1, 1, 3, 3},
		{"f64", safetensors.F64, f64(math.Inf(-1), 2, 0), 0, 1, 2, 0},
		// E4M3FN: 0x7f / 0xff NaN, no Inf; E5M2: 0x7c Inf, 0x7d NaN
		{"e4m3", safetensors.F8E4M3, []byte{0x00, 0x7f, 0xff, 0x7e, 0x80}, 2, 0, 3, 1},
		{"e5m2", safetensors.F8E5M2, []byte{0x7c, 0x7d, 0x3c, 0x80}, 1, 1, 3, 0},
		{"clean", safetensors.F32, f32bytes(1, 2, 3), 0, 0, 3, -1},
	} {
		st, err := scanFloats(bytes.NewReader(tc.data), tc.dt, nil)
		if err != nil || st.nan != tc.nan || st.inf != tc.inf || st.nonzero != tc.nz || st.first != tc.first {
			t.Errorf("%s: %+v %v; want nan %d inf %d nonzero %d first %d", tc.name, st, err, tc.nan, tc.inf, tc.nz, tc.first)
		}
	}
	// more than one 1 MiB chunk, NaN in the second chunk
	n := (1<<20)/4 + 10
	v := make([]float32, n)
	v[n-3] = float32(math.NaN())
	st, err := scanFloats(bytes.NewReader(f32bytes(v...)), safetensors.F32, nil)
	if err != nil || st.nan != 1 || st.first != int64(n-3) || st.nonzero != 1 {
		t.Errorf("chunked: %+v %v", st, err)
	}
}

// TestScanFloatsExhaustive16 checks every 16-bit pattern of F16 and BF16
// against an independent decoder (x448/float16 for F16, the top half of an
// F32 for BF16), and random F32 patterns against math.Float32frombits.
func TestScanFloatsExhaustive16(t *testing.T) {
	all := make([]byte, 2*65536)
	for u := 0; u < 65536; u++ {
		binary.LittleEndian.PutUint16(all[2*u:], uint16(u))
	}
	for _, tc := range []struct {
		dt     safetensors.DType
		decode func(uint16) float64
	}{
		{safetensors.F16, func(u uint16) float64 { return float64(float16.Frombits(u).Float32()) }},
		{safetensors.BF16, func(u uint16) float64 { return float64(math.Float32frombits(uint32(u) << 16)) }},
	} {
		var want floatStats
		want.first = -1
		for u := 0; u < 65536; u++ {
			f := tc.decode(uint16(u))
			want.record(int64(u), math.IsNaN(f), math.IsInf(f, 0))
			if f != 0 || math.IsNaN(f) {
				want.nonzero++
			}
		}
		got, err := scanFloats(bytes.NewReader(all[2:]), tc.dt, nil) // odd length: exercises the tail
		if err != nil {
			t.Fatal(err)
		}
		// pattern 0 (+0) is skipped by all[2:]: counts are unchanged, indexes shift by one
		want2 := want
		want2.first--
		if got.nan != want.nan || got.inf != want.inf || got.nonzero != want.nonzero || got.first != want2.first {
			t.Errorf("%s: got %+v, want nan %d inf %d nonzero %d first %d", tc.dt, got, want.nan, want.inf, want.nonzero, want2.first)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	n := 100003
	buf := make([]byte, 4*n)
	var want floatStats
	want.first = -1
	for i := 0; i < n; i++ {
		u := r.Uint32()
		switch r.IntN(50) {
		case 0:
			u |= 0x7f800000 // Inf or NaN
		case 1:
			u &= 0x80000000 // ±0
		}
		binary.LittleEndian.PutUint32(buf[4*i:], u)
		f := float64(math.Float32frombits(u))
		want.record(int64(i), math.IsNaN(f), math.IsInf(f, 0))
		if f != 0 || math.IsNaN(f) {
			want.nonzero++
		}
	}
	got, err := scanFloats(bytes.NewReader(buf), safetensors.F32, nil)
	if err != nil || got != want {
		t.Errorf("F32 random: got %+v %v, want %+v", got, err, want)
	}
}

// TestLoadNegativeRank: a config with r ≤ 0 is refused by Load (no scale is
// derived from it) with an error naming the config file and the field.
func TestLoadNegativeRank(t *testing.T) {
	dir := t.TempDir()
	if _, err := testgen.WriteLoRA(dir, testgen.LoRA{Seed: 1, R: 4, Modules: []testgen.Module{{Name: "q_proj", In: 4, Out: 4}}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"peft_type":"LORA","r":-4,"lora_alpha":8}`), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := Load(dir)
	if err == nil {
		a.Close()
		t.Fatalf("Load accepted r = -4 (scale %v)", a.Modules[0].Scale)
	}
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), ConfigFile) || !strings.Contains(err.Error(), `"r"`) {
		t.Errorf("err = %v, want ErrConfig naming %s and \"r\"", err, ConfigFile)
	}
}

// TestValidateManyTensorsBounded: Validate reuses one scan buffer, so the
// bytes it allocates do not grow by 1 MiB per tensor.
func TestValidateManyTensorsBounded(t *testing.T) {
	const n = 400
	tensors := make([]safetensors.Tensor, n)
	for i := range tensors {
		tensors[i] = safetensors.Tensor{Name: fmt.Sprintf("base_model.model.m%03d.weight", i), DType: safetensors.F32, Shape: []int{1}, Data: f32bytes(float32(i))}
	}
	path := filepath.Join(t.TempDir(), "many.safetensors")
	if err := safetensors.WriteFile(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rep, err := Validate(path)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tensors != n {
		t.Fatalf("validated %d tensors, want %d", rep.Tensors, n)
	}
	// 400 tensors × 1 MiB would be 400 MiB; one buffer plus the model is a
	// few MiB.
	if got := after.TotalAlloc - before.TotalAlloc; got > 32<<20 {
		t.Errorf("Validate of %d one-element tensors allocated %d MiB, want ≤ 32 MiB", n, got>>20)
	}
}
