package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A failure to create the output is a *WriteError naming the target, never
// confused with an input error, and leaves nothing behind.
func TestWriteFileWriteError(t *testing.T) {
	dir := t.TempDir()
	ts := []Tensor{{Name: "w", DType: F32, Shape: []int{2}, Data: make([]byte, 8)}}
	notDir := filepath.Join(dir, "f")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{filepath.Join(dir, "no", "such", "x.safetensors"), filepath.Join(notDir, "x.safetensors")} {
		err := WriteFile(target, ts, nil)
		var we *WriteError
		if !errors.As(err, &we) || we.Path != target {
			t.Fatalf("WriteFile(%s) = %v, want a *WriteError for the target", target, err)
		}
		if IsFormatError(err) {
			t.Errorf("write failure classified as a format error: %v", err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	// An error from the content (a tensor whose data is short) is not a
	// WriteError.
	bad := []Tensor{{Name: "w", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}
	var we *WriteError
	if err := WriteFile(filepath.Join(dir, "y.safetensors"), bad, nil); err == nil || errors.As(err, &we) {
		t.Errorf("short tensor data: err %v, want a non-WriteError error", err)
	}
}

// Recasting a directory whose shard is truncated fails before writing
// anything: no half-written output tree, no temporary directory.
func TestRecastDirectoryAtomic(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	ts := []Tensor{{Name: "a", DType: F32, Shape: []int{4}, Data: make([]byte, 16)}}
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(in, "a.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "adapter_config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "z.safetensors"), []byte("\x08\x00\x00\x00\x00\x00\x00\x00{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if _, err := Recast(in, out, RecastOptions{DType: F16}); !errors.Is(err, ErrInvalidHeaderLength) {
		t.Fatalf("Recast: %v, want ErrInvalidHeaderLength", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind next to the input: %v", entries)
	}
	// Without the bad shard the output appears whole, under its own name.
	if err := os.Remove(filepath.Join(in, "z.safetensors")); err != nil {
		t.Fatal(err)
	}
	rep, err := Recast(in, out, RecastOptions{DType: F16})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 1 || rep.Tensors[0].File != filepath.Join(out, "a.safetensors") {
		t.Errorf("report files %+v, want %s", rep.Tensors, filepath.Join(out, "a.safetensors"))
	}
	for _, name := range []string{"a.safetensors", "adapter_config.json"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("temporary directory left: %v", entries)
	}
}

// A shard index inconsistent with its shards (a stored tensor absent from
// weight_map) is refused before anything is written, as OpenCheckpoint
// refuses it.
func TestRecastDirectoryBadIndex(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	ts := []Tensor{{Name: "a", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}, {Name: "b", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}}
	if err := WriteFile(filepath.Join(in, "model-00001-of-00001.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	idx := `{"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00001.safetensors"}}`
	if err := os.WriteFile(filepath.Join(in, "model.safetensors.index.json"), []byte(idx), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Recast(in, filepath.Join(dir, "out"), RecastOptions{DType: F16}); !errors.Is(err, ErrInvalidIndex) {
		t.Fatalf("Recast: %v, want ErrInvalidIndex", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}
