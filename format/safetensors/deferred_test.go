package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A deferred metadata value replaces its placeholder before the file is
// renamed into place; a failure leaves no file; a value of the wrong length
// is refused.
func TestWithDeferredValue(t *testing.T) {
	dir := t.TempDir()
	tensors := []Tensor{{Name: "w", DType: F32, Shape: []int{2}, Data: make([]byte, 8)}}
	placeholder := strings.Repeat("p", 64)
	final := strings.Repeat("f", 64)
	name := filepath.Join(dir, "ok.safetensors")
	calls := 0
	err := WriteFile(name, tensors, map[string]string{"digest": placeholder}, WithDeferredValue(placeholder, func() (string, error) {
		calls++
		if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("target exists before the value is known: %v", err)
		}
		return final, nil
	}))
	if err != nil || calls != 1 {
		t.Fatalf("WriteFile = %v after %d calls", err, calls)
	}
	f, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Metadata["digest"]; got != final {
		t.Errorf("digest = %q, want %q", got, final)
	}
	f.Close()

	boom := errors.New("hash failed")
	bad := filepath.Join(dir, "bad.safetensors")
	if err := WriteFile(bad, tensors, map[string]string{"digest": placeholder}, WithDeferredValue(placeholder, func() (string, error) { return "", boom })); !errors.Is(err, boom) {
		t.Errorf("value error: %v", err)
	}
	if err := WriteFile(bad, tensors, map[string]string{"digest": placeholder}, WithDeferredValue(placeholder, func() (string, error) { return "short", nil })); err == nil {
		t.Error("a value of another length was accepted")
	}
	if err := WriteFile(bad, tensors, map[string]string{"digest": "no placeholder here"}, WithDeferredValue(placeholder, func() (string, error) { return final, nil })); err == nil {
		t.Error("a missing placeholder was accepted")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after failed writes, want only ok.safetensors", len(ents))
	}
}
