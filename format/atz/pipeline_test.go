package atz

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestPackSources packs the same file from a plain io.ReaderAt (copies, the
// SHA-256 fed chunk by chunk), from addressable memory (in place, the
// SHA-256 on its own goroutine over the source) and through PackFile (a
// mapped file), with 1 and 3 workers: the containers must be identical, the
// recorded SHA-256 must be crypto/sha256's, and every unpack path must give
// the original back.
func TestPackSources(t *testing.T) {
	src := buildST(allDTypes(300000), 8)
	want := sha256.Sum256(src)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	if err := os.WriteFile(in, src, 0o644); err != nil {
		t.Fatal(err)
	}
	var ref []byte
	for _, workers := range []int{1, 3} {
		for _, s := range []struct {
			name string
			src  io.ReaderAt
		}{{"reader", bytes.NewReader(src)}, {"memory", byteSource(src)}, {"file", nil}} {
			var got []byte
			var st Stats
			var err error
			if s.src == nil {
				out := filepath.Join(dir, "out.atz")
				st, err = PackFile(out, in, PackOptions{Workers: workers})
				if err == nil {
					got, err = os.ReadFile(out)
				}
			} else {
				var buf bytes.Buffer
				st, err = Pack(&buf, s.src, int64(len(src)), PackOptions{Workers: workers})
				got = buf.Bytes()
			}
			if err != nil {
				t.Fatalf("%s/%d: %v", s.name, workers, err)
			}
			if st.SHA256 != want {
				t.Fatalf("%s/%d: SHA-256 %x, want %x", s.name, workers, st.SHA256, want)
			}
			if ref == nil {
				ref = got
			} else if !bytes.Equal(got, ref) {
				t.Fatalf("%s/%d: container differs from the first one", s.name, workers)
			}
		}
	}
	for _, sha := range []bool{true, false} {
		for _, workers := range []int{1, 3} {
			rd, err := NewReader(bytes.NewReader(ref), int64(len(ref)), WithSHA256Check(sha))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := rd.writeTo(&out, workers); err != nil || !bytes.Equal(out.Bytes(), src) {
				t.Fatalf("sha=%v workers=%d: unpack differs (%v)", sha, workers, err)
			}
		}
	}
}

// TestPackTruncatedMapping maps a file and truncates it before packing, as
// if another process cut it meanwhile: reading the mapping faults (SIGBUS),
// and Pack must return an error instead of crashing.
func TestPackTruncatedMapping(t *testing.T) {
	src := buildST(allDTypes(100000), 8)
	// 0: the header read faults; 8192: the header is intact (it is shorter
	// than 8 KiB), the encoders and the hasher fault on the tensor bytes.
	for _, cut := range []int64{0, 8192} {
		for _, workers := range []int{1, 2} {
			name := filepath.Join(t.TempDir(), "in.safetensors")
			if err := os.WriteFile(name, src, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			m, unmap := mapFile(f, int64(len(src)))
			if m == nil {
				f.Close()
				t.Skip("no mmap on this platform")
			}
			if err := os.Truncate(name, cut); err != nil {
				t.Fatal(err)
			}
			_, err = Pack(io.Discard, byteSource(m), int64(len(src)), PackOptions{Workers: workers, Name: name})
			unmap()
			f.Close()
			if err == nil {
				t.Fatalf("cut=%d workers=%d: packing a truncated mapping succeeded", cut, workers)
			}
			t.Logf("cut=%d workers=%d: %v", cut, workers, err)
		}
	}
}

// failingSource fails every read at or past off.
type failingSource struct {
	b   []byte
	off int64
}

var errInjected = errors.New("injected read error")

func (f failingSource) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.off {
		return 0, errInjected
	}
	return copy(p, f.b[off:]), nil
}

// TestPackReadError checks that a read error in the middle of the file stops
// the pipeline with an *Error naming the file and wrapping the cause.
func TestPackReadError(t *testing.T) {
	src := buildST(allDTypes(300000), 8)
	_, err := Pack(io.Discard, failingSource{src, int64(len(src)) / 2}, int64(len(src)), PackOptions{Workers: 2, Name: "x.safetensors"})
	var ae *Error
	if !errors.Is(err, errInjected) || !errors.As(err, &ae) || ae.File != "x.safetensors" || ae.Chunk < 1 {
		t.Fatalf("got %v, want an *Error for x.safetensors wrapping the read error", err)
	}
}

// TestReadAtDirectCorrupt corrupts one chunk payload: ReadAt over whole
// chunks (decoded straight into the caller's buffer) and over part of the
// chunk (through the cache) must both report ErrChecksum, and a read that
// avoids the chunk must still succeed.
func TestReadAtDirectCorrupt(t *testing.T) {
	src := buildST(allDTypes(300000), 8)
	packed := pack(t, src, PackOptions{})
	rd, err := NewReader(bytes.NewReader(packed), int64(len(packed)))
	if err != nil {
		t.Fatal(err)
	}
	k := len(rd.dir.chunks) / 2
	c := rd.dir.chunks[k]
	bad := bytes.Clone(packed)
	bad[c.storedOff+int64(c.storedLen)/2] ^= 0x40
	rd, err = NewReader(bytes.NewReader(bad), int64(len(bad)))
	if err != nil {
		t.Fatal(err)
	}
	whole := make([]byte, len(src))
	if _, err := rd.ReadAt(whole, 0); !errors.Is(err, ErrChecksum) {
		t.Fatalf("whole read: %v, want ErrChecksum", err)
	}
	part := make([]byte, 10)
	if _, err := rd.ReadAt(part, c.origOff+1); !errors.Is(err, ErrChecksum) {
		t.Fatalf("partial read: %v, want ErrChecksum", err)
	}
	before := make([]byte, c.origOff)
	if _, err := rd.ReadAt(before, 0); err != nil || !bytes.Equal(before, src[:c.origOff]) {
		t.Fatalf("read before the bad chunk: %v", err)
	}
}
