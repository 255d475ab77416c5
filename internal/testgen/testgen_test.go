package testgen

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

func TestWriteLoRAFiles(t *testing.T) {
	dir := t.TempDir()
	res, err := WriteLoRA(dir, LoRA{
		Seed: 5, R: 4, Alpha: 8, DoRA: true, KaSA: true, LoRABias: true, AdapterName: "default",
		Modules:     []Module{{Name: "a.q", In: 6, Out: 3}, {Name: "emb", In: 10, Out: 4, Embedding: true, Rank: 2}, {Name: "c", In: 2, Out: 3, Kernel: []int{3, 3}}},
		RankPattern: []KV{{Key: "emb", Value: 2}, {Key: "a", Value: 9}},
		Full:        map[string][]int{"head.weight": {2, 6}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string][]int{
		"base_model.model.a.q.lora_A.default.weight": {4, 6}, "base_model.model.a.q.lora_B.default.weight": {3, 4},
		"base_model.model.a.q.lora_B.default.bias": {3}, "base_model.model.a.q.lora_magnitude_vector": {3}, "base_model.model.a.q.lora_diag": {4},
		"base_model.model.emb.lora_embedding_A.default": {2, 10}, "base_model.model.emb.lora_embedding_B.default": {4, 2},
		"base_model.model.c.lora_A.default.weight": {4, 2, 3, 3}, "base_model.model.c.lora_B.default.weight": {3, 4, 1, 1},
		"base_model.model.c.lora_magnitude_vector": {1, 3, 1, 1},
		"base_model.model.head.weight":             {2, 6},
	}
	for name, shape := range want {
		ti, ok := f.Tensor(name)
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if len(ti.Shape) != len(shape) {
			t.Errorf("%s shape %v want %v", name, ti.Shape, shape)
		}
		for i := range shape {
			if i < len(ti.Shape) && ti.Shape[i] != shape[i] {
				t.Errorf("%s shape %v want %v", name, ti.Shape, shape)
			}
		}
	}
	// 3 modules × (A, B, bias, magnitude, diag) + 1 full tensor
	if len(f.Tensors) != 16 {
		t.Errorf("%d tensors, want 16", len(f.Tensors))
	}
	got, _ := f.Float32("base_model.model.a.q.lora_A.default.weight")
	for i, v := range got {
		if v != res.Modules["a.q"].A[i] || math.Abs(float64(v)) > 0.5 {
			t.Fatalf("A[%d] = %g, returned %g", i, v, res.Modules["a.q"].A[i])
		}
	}
	for _, m := range res.Modules {
		for _, v := range m.Magnitude {
			if v < 0.5 {
				t.Fatalf("magnitude %g < 0.5", v)
			}
		}
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["r"] != 4.0 || cfg["lora_alpha"] != 8.0 || cfg["use_dora"] != true || cfg["lora_bias"] != true {
		t.Errorf("config %v", cfg)
	}
	// rank_pattern keeps the given key order
	if want := `"rank_pattern": {"emb":2,"a":9}`; !contains(string(b), want) {
		t.Errorf("config %s does not contain %s", b, want)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestSeedsAreDeterministic(t *testing.T) {
	a, err := WriteLoRA(t.TempDir(), LoRA{Seed: 42, Modules: []Module{{Name: "x", In: 5, Out: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := WriteLoRA(t.TempDir(), LoRA{Seed: 42, Modules: []Module{{Name: "x", In: 5, Out: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := WriteLoRA(t.TempDir(), LoRA{Seed: 43, Modules: []Module{{Name: "x", In: 5, Out: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	same, diff := true, false
	for i := range a.Modules["x"].A {
		same = same && a.Modules["x"].A[i] == b.Modules["x"].A[i]
		diff = diff || a.Modules["x"].A[i] != c.Modules["x"].A[i]
	}
	if !same || !diff {
		t.Errorf("same seed equal: %v, different seed differs: %v", same, diff)
	}
}

func TestWriteDialectMLXTransposed(t *testing.T) {
	dir := t.TempDir()
	res, err := WriteDialect(dir, Bare{Seed: 1, Dialect: MLX, R: 2, Scale: 10, Modules: []Module{{Name: "m.q", In: 3, Out: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, "adapters.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	la, _ := f.Float32("m.q.lora_a") // (in, r)
	lb, _ := f.Float32("m.q.lora_b") // (r, out)
	g := res.Modules["m.q"]
	for i := 0; i < 3; i++ {
		for k := 0; k < 2; k++ {
			if la[i*2+k] != g.A[k*3+i] {
				t.Fatalf("lora_a[%d][%d] != A[%d][%d]", i, k, k, i)
			}
		}
	}
	for k := 0; k < 2; k++ {
		for o := 0; o < 5; o++ {
			if lb[k*5+o] != g.B[o*2+k] {
				t.Fatalf("lora_b[%d][%d] != B[%d][%d]", k, o, o, k)
			}
		}
	}
}

func TestRefDelta(t *testing.T) {
	// hand-checked: B = [[1,2],[3,4]], A = [[1,0,2],[0,1,1]], diag = [2, -1], scale 0.5
	f := &Factors{Rank: 2, In: 3, Out: 2, A: []float32{1, 0, 2, 0, 1, 1}, B: []float32{1, 2, 3, 4}, Diag: []float32{2, -1}}
	got := f.RefDelta(0.5)
	want := []float64{1, -1, 1, 3, -2, 4} // 0.5·[[2,-2,2],[6,-4,8]]
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("RefDelta = %v, want %v", got, want)
		}
	}
}
