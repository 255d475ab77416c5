package inspect

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/internal/testgen"
)

// FuzzSummarize feeds arbitrary bytes as an adapter file (with and without
// a config beside it) through Summarize with statistics and hashes, and
// through Diff and Check against itself: any input may be rejected, none
// may panic.
func FuzzSummarize(f *testing.F) {
	dir := f.TempDir()
	if _, err := testgen.WriteLoRA(filepath.Join(dir, "seed"), testgen.LoRA{Seed: 1, R: 2, Alpha: 4,
		Modules: []testgen.Module{{Name: "model.layers.0.q_proj", In: 4, Out: 3}, {Name: "c", In: 2, Out: 2, Kernel: []int{1, 1}}}}); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(dir, "seed", "adapter_model.safetensors"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, true)
	f.Add(seed[:len(seed)-3], false)
	f.Add([]byte{0x0d, 0x0a}, false)
	f.Add([]byte("GGUF\x03\x00\x00\x00"), false)
	cfg := []byte(`{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q_proj","k_proj"]}`)
	f.Fuzz(func(t *testing.T, data []byte, withConfig bool) {
		d := t.TempDir()
		p := filepath.Join(d, "adapter_model.safetensors")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if withConfig {
			os.WriteFile(filepath.Join(d, "adapter_config.json"), cfg, 0o644)
		}
		s, _ := Summarize(d, Options{Stats: true, Hashes: true})
		if s != nil {
			NewReport(s, nil).Figures()
		}
		Diff(d, d, DiffOptions{Dense: true})
		Check(d, p)
	})
}
