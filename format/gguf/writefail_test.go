package gguf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A target in a missing directory is a *WriteError naming it (not a format
// error, not taken for a missing input), and nothing is left behind.
func TestWriteFileWriteError(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "no", "such", "a.gguf")
	err := WriteFile(target, []KV{{Key: "general.architecture", Value: String("llama")}}, nil)
	var we *WriteError
	if !errors.As(err, &we) || we.Path != target {
		t.Fatalf("WriteFile = %v, want a *WriteError for %s", err, target)
	}
	if IsFormatError(err) {
		t.Errorf("write failure classified as a format error: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}
