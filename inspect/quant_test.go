package inspect

import (
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// TestQuantSchemes: quantized tensors are recognized by their companion keys.
func TestQuantSchemes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "q.safetensors")
	// the 32 packed bytes hold 64 NF4 values: an 8×8 weight (format/adapter
	// reads the logical shape from the quant_state and refuses a bad one)
	state := `{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [8, 8]}`
	ts := []safetensors.Tensor{
		{Name: "a.weight", DType: safetensors.U8, Shape: []int{32}, Data: make([]byte, 32)},
		{Name: "a.weight.absmax", DType: safetensors.F32, Shape: []int{1}, Data: make([]byte, 4)},
		{Name: "a.weight.quant_map", DType: safetensors.F32, Shape: []int{16}, Data: make([]byte, 64)},
		{Name: "a.weight.quant_state.bitsandbytes__nf4", DType: safetensors.U8, Shape: []int{len(state)}, Data: []byte(state)},
		{Name: "b.weight", DType: safetensors.I8, Shape: []int{4, 4}, Data: make([]byte, 16)},
		{Name: "b.SCB", DType: safetensors.F32, Shape: []int{4}, Data: make([]byte, 16)},
		{Name: "c.weight", DType: safetensors.F8E4M3, Shape: []int{4, 4}, Data: make([]byte, 16)},
		{Name: "c.weight_scale", DType: safetensors.F32, Shape: []int{1}, Data: make([]byte, 4)},
		{Name: "d.weight", DType: safetensors.F32, Shape: []int{2}, Data: make([]byte, 8)},
	}
	if err := safetensors.WriteFile(p, ts, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.weight": "nf4", "a.weight.absmax": "nf4-aux", "b.weight": "int8", "b.SCB": "int8-aux",
		"c.weight": "fp8-e4m3", "c.weight_scale": "fp8-e4m3-aux", "d.weight": ""}
	for _, ts := range s.Tensors {
		if w, ok := want[ts.Name]; ok && ts.Quant != w {
			t.Errorf("%s: quant %q, want %q", ts.Name, ts.Quant, w)
		}
	}
}
