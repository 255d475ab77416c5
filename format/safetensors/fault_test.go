package safetensors_test

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/mmapfile"
)

// writeBig writes a file of one F32 tensor of n elements and returns its
// name and the file offset where the tensor's data starts.
func writeBig(t *testing.T, n int) (string, int64) {
	t.Helper()
	data := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(i%1000)/7))
	}
	name := filepath.Join(t.TempDir(), "big.safetensors")
	if err := safetensors.WriteFile(name, []safetensors.Tensor{{Name: "w", DType: safetensors.F32, Shape: []int{n}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	h, err := safetensors.OpenHeader(name)
	if err != nil {
		t.Fatal(err)
	}
	return name, h.DataOffset()
}

// checkChanged checks that err says the file name was changed while it was
// read.
func checkChanged(t *testing.T, err error, name string) {
	t.Helper()
	var fe *safetensors.FaultError
	if !errors.Is(err, safetensors.ErrFileChanged) || !errors.As(err, &fe) || fe.File != name {
		t.Fatalf("got %v, want a FaultError for %s wrapping ErrFileChanged", err, name)
	}
	if safetensors.IsFormatError(err) {
		t.Errorf("IsFormatError(%v) = true; a changed file is not a format error", err)
	}
	if !strings.Contains(err.Error(), name) {
		t.Errorf("message %q does not name the file", err)
	}
}

// TestCatchFaultsData opens a file, lets another "process" truncate it,
// then reads its tensor through the mapping (Data, Float32, Section):
// CatchFaults returns an error naming the file instead of the process
// crashing, also when the deferred Close has unmapped the file by then.
func TestCatchFaultsData(t *testing.T) {
	const n = 1 << 20
	for _, read := range []struct {
		name string
		fn   func(f *safetensors.File) error
	}{
		{"Data", func(f *safetensors.File) error {
			b, err := f.Data("w")
			var s byte
			for i := 0; i < len(b); i += 4096 {
				s += b[i]
			}
			runtime.KeepAlive(s)
			return err
		}},
		{"Float32", func(f *safetensors.File) error { _, err := f.Float32("w"); return err }},
		{"Section", func(f *safetensors.File) error {
			r, err := f.Section("w")
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, r)
			return err
		}},
	} {
		t.Run(read.name, func(t *testing.T) {
			name, off := writeBig(t, n)
			err := safetensors.CatchFaults(func() error {
				f, err := safetensors.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				if !f.Mapped() {
					t.Skip("files are not memory-mapped on this platform")
				}
				if err := os.Truncate(name, off+4096); err != nil {
					t.Fatal(err)
				}
				if err := read.fn(f); err != nil {
					return err
				}
				t.Error("reading the truncated tensor did not fault")
				return nil
			})
			checkChanged(t, err, name)
		})
	}
}

// TestCatchFaultsRecast converts a file whose data is cut after Open has
// mapped it: the conversion kernels split the 2 Mi-element tensor across
// goroutines and the provenance hash reads the mapping on its own
// goroutine; every fault must come back as the error, and no output (not
// even a temporary file) may be left behind.
func TestCatchFaultsRecast(t *testing.T) {
	defer runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4))
	name, off := writeBig(t, 2<<20)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "out.safetensors")
	defer mmapfile.SetMapHook(func(mapped string) {
		if mapped == name {
			if err := os.Truncate(name, off+64<<10); err != nil {
				t.Error(err)
			}
		}
	})()
	err := safetensors.CatchFaults(func() error {
		_, err := safetensors.Recast(name, out, safetensors.RecastOptions{DType: safetensors.BF16})
		return err
	})
	checkChanged(t, err, name)
	if left, _ := os.ReadDir(outDir); len(left) != 0 {
		t.Errorf("output directory holds %v after the failure", left)
	}
}

// TestCatchFaultsPassesPanics: panics that are not memory faults pass
// through CatchFaults unchanged, and fn's own error is returned as it is.
func TestCatchFaultsPassesPanics(t *testing.T) {
	if err := safetensors.CatchFaults(func() error { return io.ErrUnexpectedEOF }); err != io.ErrUnexpectedEOF {
		t.Errorf("CatchFaults = %v, want fn's error", err)
	}
	defer func() {
		if p := recover(); p != "boom" {
			t.Errorf("recovered %v, want boom", p)
		}
	}()
	safetensors.CatchFaults(func() error { panic("boom") })
	t.Error("the panic was swallowed")
}

// TestWriteFileMappedDataTruncated writes a tensor whose Data aliases the
// mapping of an input truncated meanwhile: the write system call fails
// with EFAULT instead of faulting, and WriteFile reports the input as
// changed (naming it), not a write failure of the output, and leaves no
// output behind.
func TestWriteFileMappedDataTruncated(t *testing.T) {
	name, off := writeBig(t, 1<<20)
	f, err := safetensors.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.Mapped() {
		t.Skip("files are not memory-mapped on this platform")
	}
	data, err := f.Data("w")
	if err != nil {
		t.Fatal(err)
	}
	// past the first MiB, which the writer copies into its buffer (a copy
	// that would fault): the rest goes to write(2) straight from the mapping
	if err := os.Truncate(name, off+2<<20); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err = safetensors.CatchFaults(func() error {
		return safetensors.WriteFile(filepath.Join(dir, "out.safetensors"),
			[]safetensors.Tensor{{Name: "w", DType: safetensors.F32, Shape: []int{1 << 20}, Data: data}}, nil)
	})
	checkChanged(t, err, name)
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("output directory holds %v after the failure", left)
	}
}
