package adapter

import (
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// A module of rank 0 (AdaLoRA prunes modules to it: lora_A (0, in),
// lora_B (out, 0)) has ΔW = 0 in every dialect: Factors returns empty
// factors instead of an "inconsistent tensor shapes" error, Delta is all
// zeros, and no alpha is missing (nothing depends on it), so Validate
// reports no alpha-unknown finding.
func TestRankZeroModule(t *testing.T) {
	const peftCfg = `{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"q_proj": 0}}`
	const adaCfg = `{"peft_type": "ADALORA", "r": 4, "init_r": 4, "target_r": 2, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}`
	const mlxCfg = `{"fine_tune_type": "lora", "num_layers": 1, "lora_parameters": {"rank": 2, "scale": 10.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]}}`
	q, v := "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
	tests := []struct {
		name, file, cfg string
		module          string // the rank-0 module
		in, out         int
		kernel          []int
		tensors         []string // names, shapes below
		shapes          [][]int
	}{
		{"peft", PEFTWeightsFile, peftCfg, q, 8, 8, nil,
			[]string{"base_model.model." + q + ".lora_A.weight", "base_model.model." + q + ".lora_B.weight", "base_model.model." + v + ".lora_A.weight", "base_model.model." + v + ".lora_B.weight"},
			[][]int{{0, 8}, {8, 0}, {2, 8}, {4, 2}}},
		{"adalora", PEFTWeightsFile, adaCfg, q, 8, 8, nil,
			[]string{"base_model.model." + q + ".lora_A", "base_model.model." + q + ".lora_B", "base_model.model." + q + ".lora_E",
				"base_model.model." + v + ".lora_A", "base_model.model." + v + ".lora_B", "base_model.model." + v + ".lora_E"},
			[][]int{{0, 8}, {8, 0}, {0, 1}, {2, 8}, {4, 2}, {2, 1}}},
		{"kohya-conv", "lora.safetensors", "", "lora_unet_conv_in", 3, 6, []int{3, 3},
			[]string{"lora_unet_conv_in.lora_down.weight", "lora_unet_conv_in.lora_up.weight", "lora_unet_conv_in.alpha",
				"lora_unet_proj_in.lora_down.weight", "lora_unet_proj_in.lora_up.weight", "lora_unet_proj_in.alpha"},
			[][]int{{0, 3, 3, 3}, {6, 0, 1, 1}, {}, {2, 8}, {8, 2}, {}}},
		{"mlx", "adapters.safetensors", mlxCfg, v, 8, 4, nil,
			[]string{q + ".lora_a", q + ".lora_b", v + ".lora_a", v + ".lora_b"},
			[][]int{{8, 2}, {2, 8}, {8, 0}, {0, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tensors []safetensors.Tensor
			for i, n := range tt.tensors {
				tensors = append(tensors, zt(n, tt.shapes[i]...))
			}
			dir := writeRaw(t, filepath.Join(t.TempDir(), tt.name), tt.file, tt.cfg, nil, tensors...)
			a, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			m := a.Module(tt.module)
			if m == nil {
				t.Fatalf("no module %s among %d", tt.module, len(a.Modules))
			}
			if m.Rank != 0 || m.InFeatures != tt.in || m.OutFeatures != tt.out || !m.AlphaKnown {
				t.Fatalf("rank %d in %d out %d alpha known %v; want 0, %d, %d, true", m.Rank, m.InFeatures, m.OutFeatures, m.AlphaKnown, tt.in, tt.out)
			}
			f, err := a.Factors(m)
			if err != nil {
				t.Fatalf("Factors: %v", err)
			}
			if f.Rank != 0 || len(f.A) != 0 || len(f.B) != 0 || f.InK() != tt.in*product(tt.kernel) {
				t.Fatalf("factors rank %d, |A| %d, |B| %d, InK %d", f.Rank, len(f.A), len(f.B), f.InK())
			}
			d := f.Delta()
			if len(d) != tt.out*f.InK() {
				t.Fatalf("Delta has %d values, want %d", len(d), tt.out*f.InK())
			}
			for i, x := range d {
				if x != 0 {
					t.Fatalf("Delta[%d] = %v, want 0", i, x)
				}
			}
			rep, err := a.Validate()
			if err != nil {
				t.Fatal(err)
			}
			for _, fd := range rep.Findings {
				if fd.Rule == RuleAlphaUnknown || fd.Severity == SeverityError {
					t.Errorf("finding %s %s: %s", fd.Severity, fd.Rule, fd.Message)
				}
			}
		})
	}
}
