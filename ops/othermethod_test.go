package ops

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// A module of a PEFT method adaptool computes no ΔW for (here OFT) is
// refused by name by scale even with --keep-full, which passes whole-module
// replacements through: an OFT rotation passed through unscaled would be a
// silently wrong result. Nothing is written.
func TestScaleRefusesOtherMethods(t *testing.T) {
	dir := t.TempDir()
	ts := []safetensors.Tensor{
		{Name: "base_model.model.l.q.oft_r", DType: safetensors.F32, Shape: []int{2, 2, 2}, Data: make([]byte, 32)},
		{Name: "base_model.model.l.v.lora_A.weight", DType: safetensors.F32, Shape: []int{1, 4}, Data: make([]byte, 16)},
		{Name: "base_model.model.l.v.lora_B.weight", DType: safetensors.F32, Shape: []int{4, 1}, Data: make([]byte, 16)},
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	cfg := `{"peft_type":"LORA","r":1,"lora_alpha":1,"target_modules":["v"]}`
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.safetensors")
	rep, err := ScaleAdapter(dir, ScaleParams{By: 2, KeepFull: true}, RunOptions{Output: out})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("error %v, want ErrUnsupported", err)
	}
	found := false
	for _, m := range rep.Modules {
		if m.Name == "l.q" {
			found = m.Status == "refused" && strings.Contains(m.Reason, "oft")
		}
	}
	if !found {
		t.Errorf("module l.q not refused as oft: %+v", rep.Modules)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output written: %v", err)
	}
}
