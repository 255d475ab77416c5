package atz_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/atz"
	"github.com/adaptool/adaptool/format/safetensors"
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

func corpus(t *testing.T) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Skip("go.mod not found")
		}
		dir = filepath.Dir(dir)
	}
	c := filepath.Join(dir, "..", "shared", "corpus")
	if _, err := os.Stat(c); err != nil {
		t.Skipf("corpus %s absent", c)
	}
	return c
}
