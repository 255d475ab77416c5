package atz

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/internal/mmapfile"
	"github.com/adaptool/adaptool/internal/mmapfile/mmaptest"
)

// checkChanged checks that err reports the file name as changed while it
// was read.
func checkChanged(t *testing.T, err error, name string) {
	t.Helper()
	var fe *mmapfile.FaultError
	if !errors.Is(err, mmapfile.ErrFileChanged) || !errors.As(err, &fe) || fe.File != name || !strings.Contains(err.Error(), name) {
		t.Fatalf("got %v, want an error naming %s wrapping ErrFileChanged", err, name)
	}
}

// TestPackFaultNamesFile: packing a mapping whose file was truncated
// reports the file as changed (ErrFileChanged, naming it), whether the
// fault is met by the header read, the encoders, their byte-plane workers
// or the hasher.
func TestPackFaultNamesFile(t *testing.T) {
	defer runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4))
	src := buildST(allDTypes(1 << 20)[:4], 8) // 16 MiB; f32 and f64 fill 4 MiB chunks, split across byte-plane workers
	for _, cut := range []int64{0, 8192, int64(len(src)) / 2} {
		for _, workers := range []int{1, 3} {
			m, name := mmaptest.Truncated(t, src, cut)
			_, err := Pack(io.Discard, byteSource(m), int64(len(src)), PackOptions{Workers: workers, Name: name})
			checkChanged(t, err, name)
		}
	}
}

// TestPackFileVerifyFileFault truncates the input of PackFile and of
// VerifyFile as soon as it is mapped: both return the fault as an error
// naming the input, and PackFile leaves no output behind.
func TestPackFileVerifyFileFault(t *testing.T) {
	defer runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4))
	src := buildST(allDTypes(1 << 20)[:4], 8) // 16 MiB; f32 and f64 fill 4 MiB chunks, split across byte-plane workers
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	packed := filepath.Join(dir, "in.atz")
	write := func() {
		if err := os.WriteFile(in, src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	if _, err := PackFile(packed, in, PackOptions{}); err != nil {
		t.Fatal(err)
	}
	truncate := func(name string) {
		if name == in {
			// at a page boundary: the tail of a partial page would read as
			// zeros and Verify would report a mismatch before the fault
			if err := os.Truncate(in, int64(len(src))/3&^int64(mmaptest.PageSize-1)); err != nil {
				t.Error(err)
			}
		}
	}
	restore := mmapfile.SetMapHook(truncate)
	defer restore()
	m, _ := os.Open(in)
	mapped, unmap := mapFile(m, int64(len(src)))
	unmap()
	m.Close()
	if mapped == nil {
		t.Skip("files are not memory-mapped on this platform")
	}

	write()
	err := VerifyFile(packed, in)
	checkChanged(t, err, in)

	write()
	out := filepath.Join(t.TempDir(), "out.atz")
	_, err = PackFile(out, in, PackOptions{})
	checkChanged(t, err, in)
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
		t.Errorf("PackFile left %v behind", left)
	}
}
