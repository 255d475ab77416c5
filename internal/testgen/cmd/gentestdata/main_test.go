package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The committed testdata must be exactly what the generator produces.
func TestCommittedTestdataIsReproducible(t *testing.T) {
	committed := filepath.Join("..", "..", "..", "..", "testdata", TinyLlama)
	if _, err := os.Stat(committed); err != nil {
		t.Fatalf("committed sample missing: %v", err)
	}
	dir := t.TempDir()
	if err := generate(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		got, err := os.ReadFile(filepath.Join(dir, TinyLlama, f))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(committed, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the committed testdata: rerun go run ./internal/testgen/cmd/gentestdata", f)
		}
	}
}
