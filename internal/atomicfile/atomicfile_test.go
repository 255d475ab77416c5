package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteBytesCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "out.bin")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteBytes(name, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != content {
			t.Fatalf("content %q, %v; want %q", got, err, content)
		}
	}
	st, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o600 != 0o600 {
		t.Errorf("mode %v: owner cannot read and write", st.Mode())
	}
	assertOnly(t, dir, "out.bin")
}

func TestWriteFailureLeavesTargetUntouched(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "out.bin")
	if err := os.WriteFile(name, []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(name, func(f *os.File) error {
		f.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	got, _ := os.ReadFile(name)
	if string(got) != "original" {
		t.Fatalf("target changed to %q", got)
	}
	assertOnly(t, dir, "out.bin")
}

func TestOpenReaderKeepsOldContent(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "data")
	if err := os.WriteFile(name, []byte("old bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Rewrite the file from its own open handle, as an in-place operation does.
	if err := WriteFrom(name, strings.NewReader("new")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil || buf.String() != "old bytes" {
		t.Fatalf("open reader sees %q, %v", buf.String(), err)
	}
	got, _ := os.ReadFile(name)
	if string(got) != "new" {
		t.Fatalf("target %q, want new", got)
	}
}

func TestWriteIntoMissingDirectory(t *testing.T) {
	err := WriteBytes(filepath.Join(t.TempDir(), "no", "such", "dir", "f"), []byte("x"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

// assertOnly checks that dir holds exactly the named entries (no temporary
// file was left behind).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("dir holds %v, want %v", got, names)
	}
}

// A failure of the output itself is a *WriteError naming the target (not
// the temporary file) that still matches fs.ErrNotExist; an error from fill
// is returned unchanged.
func TestWriteErrorNamesTarget(t *testing.T) {
	target := filepath.Join(t.TempDir(), "missing", "out.bin")
	err := WriteBytes(target, []byte("x"))
	var we *WriteError
	if !errors.As(err, &we) || we.Path != target {
		t.Fatalf("err = %v, want a *WriteError for %s", err, target)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%v does not match fs.ErrNotExist", err)
	}
	if strings.Contains(err.Error(), ".tmp-") {
		t.Errorf("message names the temporary file: %v", err)
	}
	boom := errors.New("input broke")
	err = Write(filepath.Join(t.TempDir(), "f"), func(*os.File) error { return boom })
	if err != boom {
		t.Errorf("fill error came back as %v", err)
	}
	if errors.As(err, &we) {
		t.Errorf("a fill error must not be a WriteError")
	}
}
