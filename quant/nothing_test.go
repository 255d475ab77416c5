package quant

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// dequantize of a file with nothing quantized failed as "inconsistent
// quantized layout" (ErrLayout, a bad input, exit 2), and quantize of a
// file where no tensor qualifies wrote a copy reporting "0 tensors". Both
// inputs are valid and the operation does not apply: ErrNothing (a
// refusal, exit 4), saying why, also in a dry run, and nothing written.
func TestNothingToDo(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, ts ...safetensors.Tensor) string {
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFile(p, ts, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tensor := func(name string, dt safetensors.DType, shape ...int) safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: make([]byte, n*dt.Bits()/8)}
	}
	plain := file("plain.safetensors", tensor("a.weight", safetensors.F32, 8, 4))
	f8 := file("f8.safetensors", tensor("a.lora_A.weight", safetensors.F8E4M3, 2, 8), tensor("a.lora_B.weight", safetensors.F8E4M3, 8, 2))
	conv := file("conv.safetensors", tensor("c.lora_A.weight", safetensors.F32, 2, 3, 3, 3), tensor("c.lora_B.weight", safetensors.F32, 6, 2, 1, 1))
	empty := file("empty.safetensors")

	// an NF4 file: everything belongs to its layout
	nf4 := filepath.Join(dir, "nf4.safetensors")
	if _, err := QuantizeFile(file("w.safetensors", tensor("w.weight", safetensors.F32, 8, 64)), nf4, FileOptions{Params: Params{Scheme: SchemeNF4}}); err != nil {
		t.Fatal(err)
	}

	for _, dry := range []bool{false, true} {
		out := filepath.Join(dir, "deq.safetensors")
		_, err := DequantizeFile(plain, out, DequantizeOptions{DryRun: dry})
		if !errors.Is(err, ErrNothing) || errors.Is(err, ErrLayout) || IsInputError(err) ||
			!strings.Contains(err.Error(), plain+" holds no quantized tensors (nothing to dequantize") {
			t.Errorf("dequantize (dry run %v): err %v, want ErrNothing", dry, err)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("dequantize (dry run %v): output written", dry)
		}
	}

	for _, tc := range []struct {
		name string
		path string
		only *regexp.Regexp
		want []string
	}{
		{"F8 tensors", f8, nil, []string{"no tensor qualifies for nf4 quantization", "2 tensor(s) of dtype F8_E4M3, which is not F32/F16/BF16/F64 (a.lora_A.weight, a.lora_B.weight)"}},
		{"conv factors", conv, nil, []string{"2 float tensor(s) that are not 2-D (c.lora_A.weight [2 3 3 3], c.lora_B.weight [6 2 1 1])", "--only REGEX"}},
		{"no tensors", empty, nil, []string{empty + " holds no tensors (nothing to quantize)"}},
		{"already quantized", nf4, nil, []string{"1 weight(s) already quantized as nf4 (w.weight)"}},
		{"--only matches nothing", plain, regexp.MustCompile(`^x`), []string{`--only "^x" matches none of its 1 tensors`}},
		{"--only selects F8", f8, regexp.MustCompile(`lora_A`), []string{`1 selected by --only "lora_A" cannot be quantized (a.lora_A.weight: dtype F8_E4M3 is not a float type)`}},
	} {
		for _, dry := range []bool{false, true} {
			out := filepath.Join(dir, "q.safetensors")
			rep, err := QuantizeFile(tc.path, out, FileOptions{Params: Params{Scheme: SchemeNF4}, Only: tc.only, DryRun: dry})
			if !errors.Is(err, ErrNothing) || IsInputError(err) {
				t.Errorf("%s (dry run %v): err %v, want ErrNothing", tc.name, dry, err)
				continue
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: error %q lacks %q", tc.name, err, s)
				}
			}
			if rep == nil || len(rep.Tensors) != 0 || rep.DryRun != dry {
				t.Errorf("%s: report %+v, want the (empty) plan", tc.name, rep)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Errorf("%s (dry run %v): output written", tc.name, dry)
			}
		}
	}
}
