package inspect

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

func TestInputErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Summarize(dir, Options{}); !IsInputError(err) {
		t.Errorf("empty dir: %v", err)
	}
	p := filepath.Join(dir, "x.safetensors.index.json")
	os.WriteFile(p, []byte(`{"weight_map":{"a":"../evil.safetensors"}}`), 0o644)
	if _, err := Summarize(p, Options{}); !IsInputError(err) || !strings.Contains(err.Error(), "not a plain file name") || !errors.Is(err, safetensors.ErrInvalidIndex) {
		t.Errorf("escaping index: %v", err)
	}
	if IsInputError(errors.New("other")) || IsInputError(nil) {
		t.Error("IsInputError too broad")
	}
}

// TestEmptyAdapter: a valid file with no tensors is summarized with empty
// lists, not nulls.
func TestEmptyAdapter(t *testing.T) {
	p := filepath.Join(t.TempDir(), "adapter_model.safetensors")
	os.WriteFile(p, append([]byte{8, 0, 0, 0, 0, 0, 0, 0}, []byte("{}      ")...), 0o644)
	s, err := Summarize(p, Options{Stats: true, Hashes: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Tensors == nil || s.Modules == nil || s.Classification == nil || s.Warnings == nil || s.Layers == nil || len(s.Tensors) != 0 {
		t.Errorf("nil lists in %+v", s)
	}
	if err := NewReport(s, nil).WriteHTML(io.Discard); err != nil {
		t.Error(err)
	}
}
