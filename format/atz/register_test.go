package atz_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/atz"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
)

// TestTransparentSafetensors opens packed corpus files through
// format/safetensors (the registered container) and compares every tensor
// with the same tensor read from the original file.
func TestTransparentSafetensors(t *testing.T) {
	dir := corpus(t)
	tmp := t.TempDir()
	for _, f := range []string{"opt125m-bf16/adapter_model.safetensors", "gemma2b-f16-mqa/adapter_model.safetensors", "vit-custom-unaligned/lora.safetensors"} {
		src := filepath.Join(dir, f)
		packed := filepath.Join(tmp, filepath.Base(filepath.Dir(f))+".atz")
		if _, err := atz.PackFile(packed, src, atz.PackOptions{}); err != nil {
			t.Fatal(err)
		}
		want, err := safetensors.Open(src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got, err := safetensors.Open(packed)
		if err != nil {
			t.Fatalf("%s packed: %v", f, err)
		}
		if len(got.Tensors) != len(want.Tensors) || len(want.Tensors) == 0 {
			t.Fatalf("%s: %d tensors through atz, %d direct", f, len(got.Tensors), len(want.Tensors))
		}
		for _, ti := range want.Tensors {
			a, err := want.Data(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := got.Data(ti.Name)
			if err != nil {
				t.Fatalf("%s %s: %v", f, ti.Name, err)
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("%s %s: bytes differ through atz", f, ti.Name)
			}
		}
		want.Close()
		got.Close()
	}
	// A corrupt container is a format error naming the file.
	bad := filepath.Join(tmp, "bad.atz")
	b, _ := os.ReadFile(filepath.Join(tmp, "opt125m-bf16.atz"))
	b[len(b)-40] ^= 0xFF
	os.WriteFile(bad, b, 0o644)
	if _, err := safetensors.Open(bad); !errors.Is(err, atz.ErrChecksum) && !errors.Is(err, atz.ErrFormat) {
		t.Fatalf("corrupt container: %v", err)
	}
}

// corpus returns the shared corpus root, or skips the test when it is absent.
func corpus(t *testing.T) string { return testcorpus.Dir(t) }

// TestTransparentCheckpoint packs the shards of a sharded checkpoint under
// their own names (as `adaptool pack DIR` does) and opens the packed
// directory with safetensors.OpenCheckpoint: the unchanged index.json
// resolves to packed shards and every tensor reads back exactly.
func TestTransparentCheckpoint(t *testing.T) {
	src, packed := t.TempDir(), t.TempDir()
	shards := map[string][]safetensors.Tensor{
		"model-00001-of-00002.safetensors": {{Name: "a", DType: safetensors.BF16, Shape: []int{300, 500}, Data: randBytes(300*500*2, 1)}},
		"model-00002-of-00002.safetensors": {{Name: "b", DType: safetensors.F32, Shape: []int{7, 3}, Data: randBytes(7*3*4, 2)}, {Name: "c", DType: safetensors.I64, Shape: []int{5}, Data: randBytes(40, 3)}},
	}
	weightMap := map[string]string{}
	for name, ts := range shards {
		if err := safetensors.WriteFile(filepath.Join(src, name), ts, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := atz.PackFile(filepath.Join(packed, name), filepath.Join(src, name), atz.PackOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, tt := range ts {
			weightMap[tt.Name] = name
		}
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
	for _, d := range []string{src, packed} {
		if err := os.WriteFile(filepath.Join(d, "model.safetensors.index.json"), idx, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := safetensors.OpenCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	got, err := safetensors.OpenCheckpoint(packed)
	if err != nil {
		t.Fatalf("packed checkpoint: %v", err)
	}
	defer got.Close()
	for _, ts := range shards {
		for _, tt := range ts {
			b, err := got.Data(tt.Name)
			if err != nil {
				t.Fatalf("%s: %v", tt.Name, err)
			}
			if !bytes.Equal(b, tt.Data) {
				t.Fatalf("%s: bytes differ through packed shards", tt.Name)
			}
		}
	}
}

func randBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
