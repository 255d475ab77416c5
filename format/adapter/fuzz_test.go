package adapter

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

// FuzzParseConfig: any bytes either fail with ErrConfig or parse; a parsed
// config resolves patterns without panicking and re-serialises to JSON
// that parses again.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"peft_type":"LORA","r":8,"lora_alpha":16,"rank_pattern":{"q":4,"(?<=x)":2},"alpha_pattern":{"v":1}}`,
		`{"peft_type":"ADALORA","rank_pattern":{"a.lora_E":[true,false]}}`,
		`{"lora_parameters":{"rank":8,"scale":10},"num_layers":4}`,
		`{"target_modules":".*q_proj","layers_to_transform":3,"modules_to_save":"score"}`,
		`{"r":1e400}`, `null`, `[]`, `{"r":-1}`,
	} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("../../testdata/tiny-llama-lora/adapter_config.json"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		for _, m := range []string{"", "q", "model.layers.0.self_attn.q_proj", "a.b.c"} {
			c.ModuleScale(m, PatternsModern)
			c.ModuleScale(m, PatternsOld)
			c.Targets(m)
		}
		out, err := MarshalPython(c.Raw)
		if err != nil {
			return // e.g. a number Python could not write either
		}
		if _, err := ParseConfig(out); err != nil {
			t.Fatalf("re-serialised config does not parse: %v\n%s", err, out)
		}
	})
}

// FuzzLoad: arbitrary weights and config bytes never panic the adapter
// model (FromFile over the strict reader, Factors, Delta, Output, Validate).
func FuzzLoad(f *testing.F) {
	seed := func(weights, config []byte) { f.Add(weights, config) }
	if w, err := os.ReadFile("../../testdata/tiny-llama-lora/adapter_model.safetensors"); err == nil {
		c, _ := os.ReadFile("../../testdata/tiny-llama-lora/adapter_config.json")
		seed(w, c)
		seed(w, []byte{})
	}
	dir := f.TempDir()
	for i, s := range []testgen.Bare{
		{Seed: 1, Dialect: testgen.Kohya, Alpha: 2, Modules: []testgen.Module{{Name: "a.b", In: 3, Out: 2}, {Name: "c", In: 2, Out: 2, Kernel: []int{3, 3}}}},
		{Seed: 2, Dialect: testgen.MLX, Scale: 3, Modules: []testgen.Module{{Name: "model.layers.0.q_proj", In: 3, Out: 2}}},
		{Seed: 3, Dialect: testgen.DiffusersLegacy, Modules: []testgen.Module{{Name: "x.attn1.to_q", In: 3, Out: 2}}},
	} {
		d := filepath.Join(dir, string(rune('a'+i)))
		if _, err := testgen.WriteDialect(d, s); err != nil {
			f.Fatal(err)
		}
		entries, _ := os.ReadDir(d)
		var w, c []byte
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(d, e.Name()))
			if filepath.Ext(e.Name()) == ".json" {
				c = b
			} else {
				w = b
			}
		}
		seed(w, c)
	}
	var buf bytes.Buffer
	safetensors.Write(&buf, []safetensors.Tensor{
		{Name: "base_model.model.m.lora_A", DType: safetensors.F16, Shape: []int{2, 2}, Data: make([]byte, 8)},
		{Name: "base_model.model.m.lora_E", DType: safetensors.F16, Shape: []int{2, 1}, Data: make([]byte, 4)},
		{Name: "base_model.model.m.lora_B", DType: safetensors.F16, Shape: []int{2, 2}, Data: make([]byte, 8)},
		{Name: "base_model.model.n.ia3_l", DType: safetensors.BF16, Shape: []int{1, 3}, Data: make([]byte, 6)},
		{Name: "base_model.vera_A", DType: safetensors.F32, Shape: []int{2, 4}, Data: make([]byte, 32)},
		{Name: "base_model.model.v.vera_lambda_d", DType: safetensors.F32, Shape: []int{2}, Data: make([]byte, 8)},
		{Name: "base_model.model.h.hada_w1_a", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "base_model.model.k.lokr_w1", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "base_model.model.k.lokr_w2", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "base_model.model.c.lokr_w1", DType: safetensors.F32, Shape: []int{1, 2}, Data: make([]byte, 8)},
		{Name: "base_model.model.c.lokr_t2", DType: safetensors.F32, Shape: []int{1, 1, 2, 1}, Data: make([]byte, 8)},
		{Name: "base_model.model.c.lokr_w2_a", DType: safetensors.F32, Shape: []int{1, 2}, Data: make([]byte, 8)},
		{Name: "base_model.model.c.lokr_w2_b", DType: safetensors.F32, Shape: []int{1, 2}, Data: make([]byte, 8)},
		{Name: "base_model.model.h.hada_w1_b", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "base_model.model.h.hada_w2_a", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 16)},
		{Name: "base_model.model.h.hada_w2_b", DType: safetensors.F32, Shape: []int{2, 2}, Data: make([]byte, 16)},
	}, nil)
	seed(buf.Bytes(), []byte(`{"peft_type":"ADALORA","init_r":2}`))
	f.Fuzz(func(t *testing.T, weights, config []byte) {
		// In memory: the reader over the bytes, the config parsed when it parses.
		cfg, err := ParseConfig(config)
		if err != nil {
			cfg = nil
		}
		sf, err := safetensors.NewReader(bytes.NewReader(weights), int64(len(weights)))
		if err != nil {
			return
		}
		a, err := FromFile(sf, cfg)
		if err != nil {
			sf.Close()
			return
		}
		defer a.Close()
		for _, m := range a.Modules {
			if f, err := a.Factors(m); err == nil && f.Out*f.InK() < 1<<16 {
				f.Delta()
			}
			if m.OutFeatures*max(m.InFeatures, 1) < 1<<16 {
				a.Delta(m)
			}
		}
		a.Output()
		a.Validate()
	})
}
