package inspect

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// A rank-0 module (lora_A (0, in), lora_B (out, 0)) is ΔW = 0: --stats
// reports ‖ΔW‖ = 0 with no singular values (it was null: Factors refused
// the shapes), and neither "scale 0 is far outside the usual range" nor
// "lora_B is all zero (untrained)" is warned — its scale is undefined and
// its lora_B empty, which is what rank 0 means, not a defect.
func TestRankZeroModuleStats(t *testing.T) {
	dir := t.TempDir()
	const p = "base_model.model.model.layers.0.self_attn."
	f32 := func(name string, shape ...int) safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: make([]byte, 4*n)}
	}
	ts := []safetensors.Tensor{f32(p+"q_proj.lora_A.weight", 0, 8), f32(p+"q_proj.lora_B.weight", 8, 0)}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	cfg := `{"peft_type": "ADALORA", "r": 4, "init_r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}`
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, stats := range []bool{false, true} {
		s, err := Summarize(dir, Options{Stats: stats})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Modules) != 1 || s.Modules[0].Rank != 0 {
			t.Fatalf("modules %+v", s.Modules)
		}
		m := s.Modules[0]
		if stats && (m.ModuleStats == nil || m.DeltaFroNorm != 0 || len(m.SingularValues) != 0 || m.EffectiveRank != 0) {
			t.Errorf("stats %+v, want ‖ΔW‖ = 0 and no singular values", m.ModuleStats)
		}
		for _, w := range s.Warnings {
			if strings.Contains(w, "far outside") || strings.Contains(w, "all zero") {
				t.Errorf("stats %v: warning %q", stats, w)
			}
		}
	}
}

// A module whose alpha or scale is not finite — a kohya .alpha of +Inf or
// NaN, a PEFT lora_alpha beyond float32 — made inspect --json fail
// ("json: unsupported value: +Inf", exit 4). JSON has no NaN/Inf: alpha and
// scale are null, and --stats leaves the module's statistics out with a
// warning instead of encoding an infinite ‖ΔW‖.
func TestNonFiniteScaleJSON(t *testing.T) {
	f32 := func(name string, v float32, shape ...int) safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		b := make([]byte, 4*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: b}
	}
	const k = "lora_unet_down_blocks_0_attentions_0_proj_in"
	for _, tt := range []struct {
		name  string
		alpha float32
		cfg   string
	}{
		{"kohya-inf", float32(math.Inf(1)), ""},
		{"kohya-nan", float32(math.NaN()), ""},
		{"peft-huge", 0, `{"peft_type": "LORA", "r": 2, "lora_alpha": 1e309, "target_modules": ["q_proj"]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var ts []safetensors.Tensor
			file := filepath.Join(dir, "lora.safetensors")
			if tt.cfg == "" {
				ts = []safetensors.Tensor{f32(k+".lora_down.weight", 0.5, 2, 8), f32(k+".lora_up.weight", 0.5, 8, 2), f32(k+".alpha", tt.alpha)}
			} else {
				const p = "base_model.model.model.layers.0.self_attn.q_proj."
				ts = []safetensors.Tensor{f32(p+"lora_A.weight", 0.5, 2, 8), f32(p+"lora_B.weight", 0.5, 8, 2)}
				file = filepath.Join(dir, "adapter_model.safetensors")
				if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(strings.Replace(tt.cfg, "1e309", "1e38", 1)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := safetensors.WriteFile(file, ts, nil); err != nil {
				t.Fatal(err)
			}
			for _, stats := range []bool{false, true} {
				s, err := Summarize(dir, Options{Stats: stats})
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg != "" {
					s.Modules[0].Scale = math.Inf(1) // what an alpha beyond float64 would give
				}
				b, err := json.Marshal(s)
				if err != nil {
					t.Fatalf("stats %v: %v", stats, err)
				}
				var doc struct {
					Modules []map[string]any `json:"modules"`
				}
				if err := json.Unmarshal(b, &doc); err != nil || len(doc.Modules) != 1 {
					t.Fatalf("%v %s", err, b)
				}
				if v, ok := doc.Modules[0]["scale"]; !ok || v != nil {
					t.Errorf("stats %v: scale %v, want null", stats, v)
				}
				if _, ok := doc.Modules[0]["alpha"]; !ok {
					t.Errorf("stats %v: no alpha key", stats)
				}
			}
		})
	}
}
