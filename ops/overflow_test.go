package ops

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

func TestCheckOverflow(t *testing.T) {
	mod := func(a, b, diag []float32) adapter.OutModule {
		return adapter.OutModule{Name: "q", Rank: 1, In: 2, Out: 2, Scale: 1, A: a, B: b, Diag: diag}
	}
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, tc := range []struct {
		name string
		m    adapter.OutModule
		dt   safetensors.DType
		bad  bool
	}{
		{"finite f32", mod([]float32{math.MaxFloat32, -1}, []float32{1, 2}, nil), safetensors.F32, false},
		{"inf A", mod([]float32{1, inf}, []float32{1, 2}, nil), safetensors.F32, true},
		{"nan B", mod([]float32{1, 2}, []float32{nan, 2}, nil), safetensors.F32, true},
		{"inf diag", mod([]float32{1, 2}, []float32{1, 2}, []float32{-inf}), safetensors.F32, true},
		{"f16 largest", mod([]float32{65519.996, -65504}, []float32{1, 2}, nil), safetensors.F16, false},
		{"f16 overflow", mod([]float32{65520, 2}, []float32{1, 2}, nil), safetensors.F16, true},
		{"bf16 largest", mod([]float32{math.Float32frombits(0x7f7f7fff), 2}, []float32{1, 2}, nil), safetensors.BF16, false},
		{"bf16 overflow", mod([]float32{1, 2}, []float32{1, -math.MaxFloat32}, nil), safetensors.BF16, true},
		{"full module passes", adapter.OutModule{Name: "head", Kind: adapter.KindFull, A: []float32{inf}}, safetensors.F32, false},
	} {
		err := checkOverflow([]adapter.OutModule{tc.m}, tc.dt)
		if (err != nil) != tc.bad || (err != nil && !errors.Is(err, ErrIncompatible)) {
			t.Errorf("%s: err %v, want error %v", tc.name, err, tc.bad)
		}
	}
}

// merge --method cat folds each input's scale into its A rows: with a
// scale beyond float32 (lora_alpha 1e39) they were written as +Inf with
// exit 0. The merge is refused and writes nothing.
func TestMergeCatOverflowRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "huge")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const p = "base_model.model.model.layers.0.self_attn.q_proj."
	ts := []safetensors.Tensor{r0Tensor(p+"lora_A.weight", 1, 2, 8), r0Tensor(p+"lora_B.weight", 1, 8, 2)}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	cfg := `{"peft_type": "LORA", "r": 2, "lora_alpha": 1e39, "target_modules": ["q_proj"]}`
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err := Merge([]string{dir, dir}, MergeParams{Method: "cat"}, RunOptions{Output: out})
	if err == nil || !strings.Contains(err.Error(), "overflows") {
		t.Fatalf("err %v, want an overflow refusal", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written")
	}
}
