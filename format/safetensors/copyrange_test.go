package safetensors

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// copyRangeFile writes a file whose tensors have odd sizes (so that the
// copies start and end inside pages) and returns it opened.
func copyRangeFile(t *testing.T) (*File, []Tensor) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	ts := []Tensor{
		randomTensor(r, "a", F32, []int{3, 1001}),
		randomTensor(r, "b", BF16, []int{7, 333}),
		randomTensor(r, "c", U8, []int{4099}),
		randomTensor(r, "d", F64, []int{0}),
		randomTensor(r, "e", F16, []int{1 << 16}),
	}
	name := filepath.Join(t.TempDir(), "in.safetensors")
	if err := WriteFile(name, ts, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, ts
}

// Tensors copied with CopyTensor into WriteFile go through the kernel copy
// and give the same bytes as streaming them through WriteTo; when the
// kernel refuses, the stream is used instead.
func TestCopyTensorKernelCopy(t *testing.T) {
	f, _ := copyRangeFile(t)
	var copies []Tensor
	for _, n := range f.Names() {
		c, err := f.CopyTensor(n)
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	var want bytes.Buffer // Write to a buffer: always the WriteTo path
	if err := Write(&want, copies, f.Metadata, WithExactMetadata()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name        string
		unsupported bool
		wantCalls   bool
	}{
		{"kernel", false, true},
		{"fallback", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			old := copyRange
			t.Cleanup(func() { copyRange = old })
			copyRange = func(dst, src *os.File, off, n int64) (int64, error) {
				calls++
				if c.unsupported {
					return 0, errCopyRangeUnsupported
				}
				return old(dst, src, off, n)
			}
			out := filepath.Join(t.TempDir(), "out.safetensors")
			if err := WriteFile(out, copies, f.Metadata, WithExactMetadata()); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("output differs from the streamed copy (%d vs %d bytes)", len(got), want.Len())
			}
			if c.wantCalls && calls != len(copies) {
				t.Fatalf("kernel copy tried %d times, want %d", calls, len(copies))
			}
		})
	}
}

// A copied tensor whose shape was changed no longer matches its source
// range: it is streamed, and the size mismatch is reported.
func TestCopyTensorResizedIsRefused(t *testing.T) {
	f, _ := copyRangeFile(t)
	c, err := f.CopyTensor("c")
	if err != nil {
		t.Fatal(err)
	}
	c.Shape = []int{4000}
	out := filepath.Join(t.TempDir(), "out.safetensors")
	err = WriteFile(out, []Tensor{c}, nil)
	if !errors.Is(err, ErrInvalidTensorView) {
		t.Fatalf("err = %v, want ErrInvalidTensorView", err)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Fatal("output left behind")
	}
}

// A kernel copy that finds its source shorter than the header says (the
// file truncated under the reader) fails the write and leaves nothing.
func TestCopyTensorTruncatedSource(t *testing.T) {
	f, _ := copyRangeFile(t)
	c, err := f.CopyTensor("e")
	if err != nil {
		t.Fatal(err)
	}
	old := copyRange
	t.Cleanup(func() { copyRange = old })
	copyRange = func(dst, src *os.File, off, n int64) (int64, error) {
		k, err := old(dst, src, off, n/2)
		if err != nil {
			return k, err
		}
		return k, errCopyRangeShort
	}
	out := filepath.Join(t.TempDir(), "out.safetensors")
	if err := WriteFile(out, []Tensor{c}, nil); err == nil {
		t.Fatal("no error")
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Fatal("output left behind")
	}
}

// A source truncated after it was opened fails the kernel copy with an
// error (never a read of the mapping past the file's end) and leaves no
// output.
func TestCopyTensorSourceTruncatedOnDisk(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("copy_file_range is Linux-only; elsewhere copies stream from the mapping")
	}
	f, _ := copyRangeFile(t)
	c, err := f.CopyTensor("e") // the last tensor in the file
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Tensor("e")
	if err := os.Truncate(f.Name(), f.DataOffset()+info.Offsets[0]); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.safetensors")
	err = WriteFile(out, []Tensor{c}, nil)
	if err == nil || !strings.Contains(err.Error(), `"e"`) {
		t.Fatalf("err = %v, want an error naming tensor e", err)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Fatal("output left behind")
	}
}
