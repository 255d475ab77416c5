package convert

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

func r0Tensor(name string, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	b := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(0.05*float32(i%5+1)))
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: b}
}

// r0Load writes and loads a PEFT LoRA adapter whose q_proj has rank rq
// and v_proj rank rv (DoRA magnitudes with dora).
func r0Load(t *testing.T, rq, rv int, dora bool) *adapter.Adapter {
	t.Helper()
	dir := t.TempDir()
	const p = "base_model.model.model.layers.0.self_attn."
	ts := []safetensors.Tensor{
		r0Tensor(p+"q_proj.lora_A.weight", rq, 8), r0Tensor(p+"q_proj.lora_B.weight", 8, rq),
		r0Tensor(p+"v_proj.lora_A.weight", rv, 8), r0Tensor(p+"v_proj.lora_B.weight", 4, rv),
	}
	cfg := `{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]`
	if dora {
		ts = append(ts, r0Tensor(p+"q_proj.lora_magnitude_vector", 8), r0Tensor(p+"v_proj.lora_magnitude_vector", 4))
		cfg += `, "use_dora": true`
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg+"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := adapter.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// A rank-0 module (ΔW = 0) is left out of every converted file with a
// warning naming it — PEFT refuses r = 0, kohya divides alpha by r,
// llama.cpp reads r from lora_b — instead of failing with "inconsistent
// tensor shapes" or writing r = 0 into a config. Only rank-0 modules:
// refused (nothing to convert); a rank-0 DoRA module: refused (its
// magnitude still rescales the base).
func TestConvertRankZero(t *testing.T) {
	for _, to := range []string{ToPEFTName, ToDiffusersName, ToKohyaName, ToMLXName, ToGGUFName} {
		t.Run(to, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if to != ToPEFTName && to != ToMLXName {
				out += map[string]string{ToGGUFName: ".gguf"}[to]
				if to != ToGGUFName {
					out += ".safetensors"
				}
			}
			conv := func(a *adapter.Adapter, out string) (*Result, error) {
				if to == ToGGUFName {
					return ToGGUF(a, out, GGUFOptions{Arch: "qwen2"})
				}
				return Convert(a, to, out, Options{})
			}
			res, err := conv(r0Load(t, 0, 2, false), out)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(res.Warnings, "\n"), "rank-0 module(s) not written") {
				t.Errorf("no rank-0 warning in %q", res.Warnings)
			}
			if to != ToGGUFName {
				b, err := adapter.Load(out)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				if len(b.Modules) != 1 || !strings.HasSuffix(b.Modules[0].Name, "v_proj") || b.Modules[0].Rank != 2 {
					t.Errorf("converted modules %v, want v_proj alone at rank 2", b.Modules)
				}
				if rep, err := b.Validate(); err != nil || rep.Count(adapter.SeverityError) != 0 {
					t.Errorf("converted file does not validate: %v %+v", err, rep)
				}
			}
			_, err = conv(r0Load(t, 0, 0, false), out+"2")
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "every LoRA module has rank 0") {
				t.Errorf("all rank 0: err %v, want ErrRefused", err)
			}
		})
	}
	for _, to := range []string{ToPEFTName, ToKohyaName} {
		_, err := Convert(r0Load(t, 2, 0, true), to, filepath.Join(t.TempDir(), "d.safetensors"), Options{})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "rank-0 DoRA") {
			t.Errorf("%s: rank-0 DoRA: err %v, want ErrRefused naming it", to, err)
		}
	}
}

// A PEFT scale whose kohya alpha (scale·r) float32 cannot hold was written
// as alpha = +Inf with a warning claiming a change of ≤1 ulp; the file then
// had ΔW = Inf. It is refused, naming the module.
func TestToKohyaAlphaOverflow(t *testing.T) {
	dir := t.TempDir()
	const p = "base_model.model.model.layers.0.self_attn.q_proj."
	ts := []safetensors.Tensor{r0Tensor(p+"lora_A.weight", 2, 8), r0Tensor(p+"lora_B.weight", 8, 2)}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	cfg := `{"peft_type": "LORA", "r": 2, "lora_alpha": 1e39, "target_modules": ["q_proj"]}`
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := adapter.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	out := filepath.Join(t.TempDir(), "k.safetensors")
	_, err = ToKohya(a, out, Options{})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "q_proj") || !strings.Contains(err.Error(), "float32") {
		t.Errorf("err %v, want ErrRefused naming the module", err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Error("output written")
	}
}
