package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

func quantTestInput(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	a := make([]byte, 4*4*64)
	b := make([]byte, 4*32*4)
	for i := range a {
		a[i] = byte(i*7 + 3)
	}
	for i := range b {
		b[i] = byte(i*5 + 1)
	}
	// Keep the float bit patterns finite: clear the exponent's top bit.
	for i := 3; i < len(a); i += 4 {
		a[i] &= 0x3f
	}
	for i := 3; i < len(b); i += 4 {
		b[i] &= 0x3f
	}
	p := filepath.Join(dir, "adapter_model.safetensors")
	err := safetensors.WriteFile(p, []safetensors.Tensor{
		{Name: "m.lora_A.weight", DType: safetensors.F32, Shape: []int{4, 64}, Data: a},
		{Name: "m.lora_B.weight", DType: safetensors.F32, Shape: []int{32, 4}, Data: b},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestQuantizeCommand(t *testing.T) {
	in := quantTestInput(t)
	out := filepath.Join(filepath.Dir(in), "q.safetensors")
	code, stdout, stderr := runCLI(t, "quantize", in, "--scheme", "nf4", "--blocksize", "32", "-o", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Tensors []struct {
			Name       string   `json:"name"`
			RMSE       float64  `json:"rmse"`
			SNR        *float64 `json:"snr_db"`
			BytesAfter int64    `json:"bytes_after"`
			Keys       []string `json:"keys"`
		} `json:"tensors"`
		LoRA []struct {
			RelError float64 `json:"rel_error"`
			Worse    string  `json:"worse_factor"`
		} `json:"lora"`
		Params struct {
			Scheme    string `json:"scheme"`
			BlockSize int    `json:"blocksize"`
		} `json:"params"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if len(rep.Tensors) != 2 || len(rep.LoRA) != 1 || rep.Params.Scheme != "nf4" || rep.Params.BlockSize != 32 {
		t.Fatalf("report: %+v", rep)
	}
	if len(rep.Tensors[0].Keys) != 4 || rep.Tensors[0].SNR == nil || rep.LoRA[0].Worse == "" {
		t.Errorf("tensor report: %+v", rep.Tensors[0])
	}
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if ti, ok := f.Tensor("m.lora_A.weight.quant_state.bitsandbytes__nf4"); !ok || ti.DType != safetensors.U8 {
		t.Errorf("quant_state missing: %v", ti)
	}
	f.Close()
	back := filepath.Join(filepath.Dir(in), "d.safetensors")
	if code, _, stderr := runCLI(t, "dequantize", out, "-o", back); code != 0 {
		t.Fatalf("dequantize exit %d: %s", code, stderr)
	}
	g, err := safetensors.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if len(g.Tensors) != 2 {
		t.Errorf("dequantized file has %d tensors", len(g.Tensors))
	}
	// Dry run writes nothing.
	dry := filepath.Join(filepath.Dir(in), "dry.safetensors")
	if code, _, stderr := runCLI(t, "quantize", in, "--scheme", "fp8-e5m2", "--dry-run", "-o", dry); code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(dry); !os.IsNotExist(err) {
		t.Error("dry run wrote the output")
	}
}

func TestQuantizeCommandErrors(t *testing.T) {
	in := quantTestInput(t)
	out := filepath.Join(t.TempDir(), "x.safetensors")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"quantize", in, "--scheme", "int4", "-o", out}, exitUsage},
		{[]string{"quantize", in, "--scheme", "nf4", "--blocksize", "100", "-o", out}, exitUsage},
		{[]string{"quantize", in, "--scheme", "fp8-e4m3", "--granularity", "group:8", "-o", out}, exitUsage},
		{[]string{"quantize", in, "--scheme", "nf4"}, exitUsage},
		{[]string{"quantize", in, "--scheme", "nf4", "--only", "(", "-o", out}, exitUsage},
		{[]string{"quantize", "/nonexistent/x.safetensors", "--scheme", "nf4", "-o", out}, exitInput},
		{[]string{"dequantize", in, "-o", out}, exitFailed}, // nothing quantized in it: refused, not a bad input
	} {
		if code, _, stderr := runCLI(t, tc.args...); code != tc.code {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args, code, tc.code, stderr)
		}
	}
}
