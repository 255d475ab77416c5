package safetensors

import (
	"bytes"
	"encoding/binary"
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

// copyAll returns CopyTensor of every tensor of f, in f's order.
func copyAll(t *testing.T, f *File) []Tensor {
	t.Helper()
	var copies []Tensor
	for _, n := range f.Names() {
		c, err := f.CopyTensor(n)
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	return copies
}

// Tensors copied with CopyTensor into WriteFile go through the kernel copy
// and give the same bytes as streaming them through WriteTo; when the
// kernel refuses, the stream is used instead.
func TestCopyTensorKernelCopy(t *testing.T) {
	f, _ := copyRangeFile(t)
	copies := copyAll(t, f)
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

// copyAlignPad picks the header padding that puts the most kernel-copied
// bytes at their source's page offset at the start of a 64 KiB block, only
// in multiples of 8, and none below minAlignedCopy.
func TestCopyAlignPad(t *testing.T) {
	const M = 1 << 20
	src := func(off, n int64) *fileSection { return &fileSection{off: off, n: n} }
	all := func(*fileSection) bool { return true }
	for _, c := range []struct {
		name   string
		header int // header length before padding (a multiple of 8)
		sizes  []int64
		srcs   []*fileSection // nil: not a kernel copy
		want   int
	}{
		{"no copies", 64, []int64{2 * M}, []*fileSection{nil}, 0},
		{"too small", 64, []int64{M - 8}, []*fileSection{src(720, M-8)}, 0},
		// data starts at 8+64 = 72; the copy from 720 wants 720: pad 648.
		{"one copy", 64, []int64{2 * M}, []*fileSection{src(720, 2*M)}, 648},
		{"already aligned", 712, []int64{2 * M}, []*fileSection{src(720, 2*M)}, 0},
		// the page index does not matter, only the offset in the page.
		{"source page index", 64, []int64{2 * M}, []*fileSection{src(5*4096+720, 2*M)}, 648},
		// a 4-byte-odd source offset would need a header not a multiple of 8.
		{"unreachable", 64, []int64{2 * M}, []*fileSection{src(724, 2*M)}, 0},
		// the larger copy wins; the second starts 8 KiB + 16 after the first.
		{"majority", 64, []int64{M + 16, 3 * M}, []*fileSection{src(0, M+16), src(8, 3*M)},
			int(((8 - 72 - (M + 16)) % copyAlignBlock) + copyAlignBlock)},
		{"streamed tensors shift the copies", 64, []int64{104, 2 * M}, []*fileSection{nil, src(0, 2*M)},
			copyAlignBlock - 176},
		{"resized copy", 64, []int64{2 * M}, []*fileSection{src(720, 2*M+8)}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &plan{header: make([]byte, c.header), sizes: c.sizes}
			for _, s := range c.srcs {
				p.tensors = append(p.tensors, Tensor{src: s})
			}
			got := copyAlignPad(p, all)
			if got != c.want {
				t.Fatalf("pad %d, want %d", got, c.want)
			}
			if got%8 != 0 || got < 0 || got >= copyAlignBlock {
				t.Fatalf("pad %d is not a multiple of 8 in [0, %d)", got, copyAlignBlock)
			}
			if copyAlignPad(p, func(*fileSection) bool { return false }) != 0 {
				t.Fatal("padded for copies that cannot be made inside the kernel")
			}
		})
	}
}

// WriteFile pads the header of a file whose tensors are mostly copied
// inside the kernel so that the copies land at their source's page offset
// at the start of a 64 KiB block; the file stays valid, its tensors
// unchanged, and its header is the canonical one followed by spaces.
func TestWriteFileAlignsKernelCopies(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	in := []Tensor{
		randomTensor(r, "big", U8, []int{3<<20 + 5}),
		randomTensor(r, "small", F32, []int{17}),
	}
	name := filepath.Join(t.TempDir(), "in.safetensors")
	if err := WriteFile(name, in, map[string]string{"pad": strings.Repeat("x", 700)}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	copies := copyAll(t, f)
	var canon bytes.Buffer
	if err := Write(&canon, copies, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.safetensors")
	if err := WriteFile(out, copies, nil); err != nil {
		t.Fatal(err)
	}
	g, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, n := range f.Names() {
		a, _ := f.Data(n)
		b, _ := g.Data(n)
		if !bytes.Equal(a, b) {
			t.Fatalf("tensor %s differs after the copy", n)
		}
	}
	srcBig, _ := f.Tensor("big")
	dstBig, _ := g.Tensor("big")
	srcOff := f.DataOffset() + srcBig.Offsets[0]
	dstOff := g.DataOffset() + dstBig.Offsets[0]
	if !sameFilesystem(f.osFile, f.osFile) {
		t.Skip("no kernel copy on this system: nothing is aligned")
	}
	if dstOff%copyAlignBlock != srcOff%copyAlignPage {
		t.Errorf("big tensor copied from %d to %d: offset %d in its 64 KiB block, want %d",
			srcOff, dstOff, dstOff%copyAlignBlock, srcOff%copyAlignPage)
	}
	got, _ := os.ReadFile(out)
	c := canon.Bytes()
	hg := got[8 : 8+g.HeaderSize]
	cn := int64(binary.LittleEndian.Uint64(c))
	if g.HeaderSize <= cn || g.HeaderSize%8 != 0 {
		t.Fatalf("header of %d bytes, canonical %d: not padded to a multiple of 8", g.HeaderSize, cn)
	}
	if !bytes.Equal(hg[:cn], c[8:8+cn]) || strings.Trim(string(hg[cn:]), " ") != "" {
		t.Errorf("header is not the canonical header followed by spaces")
	}
	if !bytes.Equal(got[8+g.HeaderSize:], c[8+cn:]) {
		t.Errorf("data differs from the canonical file's")
	}
	// Another reader takes the padding as JSON whitespace.
	st, err := nlpAccepts(got)
	if err != nil {
		t.Fatalf("nlpodyssey rejects the padded file: %v", err)
	}
	for _, n := range f.Names() {
		want, _ := f.Data(n)
		tv, ok := st.Tensor(n)
		if !ok || !bytes.Equal(tv.Data(), want) {
			t.Errorf("nlpodyssey reads tensor %s differently", n)
		}
	}
}
