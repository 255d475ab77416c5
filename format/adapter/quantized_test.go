package adapter

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/adaptool/adaptool/quant"
)

// TestLoadQuantized: an adapter quantized by quant.QuantizeFile (NF4 and
// FP4 packed, int8 rows and per-channel, FP8) loads with the modules, ranks
// and features of its source (not the packed shapes; no auxiliary tensor
// becomes a module), records its quantized tensors, refuses factor and
// delta reads with ErrQuantized naming the tensor, and validates with an
// info finding per quantized tensor and no error.
func TestLoadQuantized(t *testing.T) {
	base := t.TempDir()
	mods := []testgen.Module{
		{Name: "model.layers.0.self_attn.q_proj", In: 16, Out: 16},
		{Name: "model.layers.0.self_attn.v_proj", In: 16, Out: 8},
	}
	src := filepath.Join(base, "src")
	if _, err := testgen.WriteLoRA(src, testgen.LoRA{Seed: 5, R: 4, Alpha: 8, Modules: mods}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []quant.Params{
		{Scheme: quant.SchemeNF4, BlockSize: 64},
		{Scheme: quant.SchemeFP4, BlockSize: 64, DoubleQuant: true},
		{Scheme: quant.SchemeInt8},
		{Scheme: quant.SchemeInt8, Granularity: "channel"},
		{Scheme: quant.SchemeFP8E4M3},
	} {
		name := string(p.Scheme) + p.Granularity
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(base, name)
			if _, err := quant.QuantizeFile(src, out, quant.FileOptions{Params: p}); err != nil {
				t.Fatal(err)
			}
			a := mustLoad(t, out)
			if len(a.Modules) != len(mods) || len(a.Quantized) != 2*len(mods) {
				t.Fatalf("%d modules (want %d), %d quantized tensors (want %d); unknown %v", len(a.Modules), len(mods), len(a.Quantized), 2*len(mods), a.Unknown)
			}
			for i, m := range a.Modules {
				want := mods[i] // sorted by name: q_proj, v_proj
				if m.Name != want.Name {
					t.Fatalf("module %d is %q, want %q", i, m.Name, want.Name)
				}
				if m.Kind != KindLoRA || m.Rank != 4 || m.InFeatures != want.In || m.OutFeatures != want.Out || m.Scale != 2 {
					t.Errorf("%s: kind %s rank %d in %d out %d scale %g; want lora 4 %d %d 2", m.Name, m.Kind, m.Rank, m.InFeatures, m.OutFeatures, m.Scale, want.In, want.Out)
				}
				_, err := a.Factors(m)
				if !errors.Is(err, ErrQuantized) || !strings.Contains(err.Error(), "lora_") || !strings.Contains(err.Error(), string(p.Scheme)) {
					t.Errorf("%s: Factors: %v, want ErrQuantized naming the tensor and scheme", m.Name, err)
				}
				if IsInputError(err) {
					t.Errorf("%s: a quantized tensor is reported as bad input: %v", m.Name, err)
				}
				if _, err := a.Delta(m); !errors.Is(err, ErrQuantized) {
					t.Errorf("%s: Delta: %v, want ErrQuantized", m.Name, err)
				}
			}
			if !strings.Contains(strings.Join(a.Warnings, "\n"), "dequantize") {
				t.Errorf("no warning about quantization: %v", a.Warnings)
			}
			rep, err := a.Validate()
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, f := range rep.Findings {
				switch {
				case f.Rule == RuleQuantized && f.Severity == SeverityInfo && f.Tensor != "":
					n++
				case f.Severity == SeverityError:
					t.Errorf("error finding on a quantized adapter: %+v", f)
				}
			}
			if n != 2*len(mods) {
				t.Errorf("%d quantized findings, want %d: %+v", n, 2*len(mods), rep.Findings)
			}
		})
	}
}

// TestLoadQuantizedBadState: a packed 4-bit weight whose quant_state is not
// JSON, has no usable shape, or a shape that does not fit the packed bytes
// is ErrShape naming the quant_state tensor (never a packed-shape module).
func TestLoadQuantizedBadState(t *testing.T) {
	base := t.TempDir()
	const w = "base_model.model.q.lora_A.weight"
	u8 := func(name string, b []byte) safetensors.Tensor {
		return safetensors.Tensor{Name: name, DType: safetensors.U8, Shape: []int{len(b)}, Data: b}
	}
	for i, state := range []string{
		`not json`,
		`{"quant_type":"nf4","blocksize":64,"dtype":"float32","shape":[]}`,
		`{"quant_type":"nf4","blocksize":64,"dtype":"float32","shape":[4,-8]}`,
		`{"quant_type":"nf4","blocksize":64,"dtype":"float32","shape":[4,9]}`, // 36 values need 18 bytes, not 16
	} {
		dir := writeRaw(t, filepath.Join(base, fmt.Sprint(i)), PEFTWeightsFile, `{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q"]}`, nil,
			safetensors.Tensor{Name: w, DType: safetensors.U8, Shape: []int{16, 1}, Data: make([]byte, 16)},
			safetensors.Tensor{Name: w + ".absmax", DType: safetensors.F32, Shape: []int{1}, Data: make([]byte, 4)},
			safetensors.Tensor{Name: w + ".quant_map", DType: safetensors.F32, Shape: []int{16}, Data: make([]byte, 64)},
			u8(w+".quant_state.bitsandbytes__nf4", []byte(state)),
			zt("base_model.model.q.lora_B.weight", 8, 4))
		a, err := Load(dir)
		if err == nil {
			a.Close()
			t.Errorf("quant_state %s: loaded", state)
			continue
		}
		if !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), "quant_state.bitsandbytes__nf4") {
			t.Errorf("quant_state %s: %v, want ErrShape naming the quant_state tensor", state, err)
		}
	}
}
