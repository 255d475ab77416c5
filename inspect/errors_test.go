package inspect

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInputErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Summarize(dir, Options{}); !IsInputError(err) {
		t.Errorf("empty dir: %v", err)
	}
	p := filepath.Join(dir, "x.safetensors.index.json")
	os.WriteFile(p, []byte(`{"weight_map":{"a":"../evil.safetensors"}}`), 0o644)
	if _, err := Summarize(p, Options{}); !IsInputError(err) || !strings.Contains(err.Error(), "not a file name") {
		t.Errorf("escaping index: %v", err)
	}
	if IsInputError(errors.New("other")) || IsInputError(nil) {
		t.Error("IsInputError too broad")
	}
}
