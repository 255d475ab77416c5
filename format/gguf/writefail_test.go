package gguf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/internal/mmapfile"
	"github.com/adaptool/adaptool/internal/mmapfile/mmaptest"
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

// A tensor whose Data maps an input truncated meanwhile: the write(2) of
// the mapped bytes fails with EFAULT, reported as the input having changed
// (naming it), not as a bad address of the output; nothing is left behind.
func TestWriteFileMappedDataTruncated(t *testing.T) {
	const n = 4 << 20
	m, name := mmaptest.Truncated(t, make([]byte, n), n/2)
	dir := t.TempDir()
	err := mmapfile.Guard(func() error {
		return WriteFile(filepath.Join(dir, "out.gguf"), []KV{{Key: "general.architecture", Value: String("llama")}},
			[]Tensor{{Name: "w", Type: F32, Dims: []uint64{n / 4}, Data: m}})
	})
	var fe *mmapfile.FaultError
	if !errors.Is(err, mmapfile.ErrFileChanged) || !errors.As(err, &fe) || fe.File != name {
		t.Fatalf("error %v, want a FaultError naming %s", err, name)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("output directory holds %v after the failure", left)
	}
}
