package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

func TestConvertDType(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	data := make([]byte, 16)
	for i, v := range []float32{1, 1.00390625, 1.01171875, -3.14159} {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	if err := safetensors.WriteFile(in, []safetensors.Tensor{
		{Name: "m.lora_A.weight", DType: safetensors.F32, Shape: []int{2, 2}, Data: data},
		{Name: "m.other", DType: safetensors.F32, Shape: []int{4}, Data: data},
	}, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.safetensors")
	code, stdout, stderr := runCLI(t, "convert", in, "--dtype", "bf16", "--only", "lora_", "-o", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep safetensors.RecastReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(rep.Tensors) != 2 || rep.BytesOut != 8+16 {
		t.Fatalf("report %+v", rep)
	}
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := f.Data("m.lora_A.weight")
	// Hand-checked RNE: 1 → 0x3f80; 1+2⁻⁸ ties to even → 0x3f80; 1+3·2⁻⁸ → 0x3f82; −3.14159 → 0xc049.
	for i, want := range []uint16{0x3f80, 0x3f80, 0x3f82, 0xc049} {
		if got := binary.LittleEndian.Uint16(b[2*i:]); got != want {
			t.Errorf("[%d] = %#04x, want %#04x", i, got, want)
		}
	}
	if ti, _ := f.Tensor("m.other"); ti.DType != safetensors.F32 {
		t.Errorf("--only ignored: m.other is %v", ti.DType)
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"convert", in, "--dtype", "int8", "-o", out}, exitUsage, "not one of"},
		{[]string{"convert", in, "--dtype", "f16"}, exitUsage, "missing -o"},
		{[]string{"convert", in, "--dtype", "f16", "--only", "(", "-o", out}, exitUsage, "--only"},
		{[]string{"convert", filepath.Join(dir, "nope"), "--dtype", "f16", "-o", out}, exitInput, "nope"},
	} {
		code, _, stderr := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d (%q), want %d with %q", c.args, code, stderr, c.code, c.msg)
		}
	}
	// Text output names the converted tensors.
	code, stdout, _ = runCLI(t, "convert", in, "--dtype", "f8_e4m3", "-o", filepath.Join(dir, "e4.safetensors"))
	if code != 0 || !strings.Contains(stdout, "m.lora_A.weight") || !strings.Contains(stdout, "2 of 2 tensors converted to F8_E4M3") {
		t.Errorf("exit %d, output %q", code, stdout)
	}
}
