package convert

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
)

// A GGUF adapter whose own general.architecture has no name table was
// ErrOptions, which the CLI reports as a usage error (exit 3) although no
// option was given: it is a refusal of the input (ErrRefused, exit 4). An
// architecture the caller passes stays an option error.
func TestGGUFToPEFTUnknownArchitecture(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mamba.gguf")
	if err := gguf.WriteFile(p, []gguf.KV{{Key: "general.architecture", Value: gguf.String("mamba")},
		{Key: "general.type", Value: gguf.String("adapter")}, {Key: "adapter.type", Value: gguf.String("lora")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := GGUFToPEFT(p, filepath.Join(dir, "out"), Options{}, ""); !errors.Is(err, ErrRefused) || errors.Is(err, ErrOptions) {
		t.Errorf("file architecture: err %v, want ErrRefused", err)
	}
	if _, err := GGUFToPEFT(p, filepath.Join(dir, "out"), Options{}, "mamba"); !errors.Is(err, ErrOptions) {
		t.Errorf("caller's architecture: err %v, want ErrOptions", err)
	}
}
