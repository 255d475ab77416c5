package inspect

import (
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
