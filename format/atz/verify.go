package atz

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/adaptool/adaptool/internal/mmapfile"
)

// Verify checks that the container packed (packedSize bytes) restores
// exactly the origSize bytes of orig: every chunk is read, its CRC-32C
// checked and decoded (on GOMAXPROCS goroutines) and compared byte for byte
// with orig, and so is the verbatim header. This is what `adaptool pack`
// runs after packing: an exact comparison with the source, cheaper than
// restoring the file and recomputing its SHA-256 (which Pack computed from
// the same source). A difference returns an error wrapping ErrChecksum.
// Options are those of NewReader (WithBase for a delta container).
func Verify(packed io.ReaderAt, packedSize int64, orig io.ReaderAt, origSize int64, opts ...Option) error {
	rd, err := NewReader(packed, packedSize, opts...)
	if err != nil {
		return err
	}
	return rd.verify(orig, origSize, runtime.GOMAXPROCS(0))
}

// VerifyFile is Verify on files; the original is memory-mapped where the
// platform allows.
func VerifyFile(packed, orig string, opts ...Option) error {
	rd, err := Open(packed, opts...)
	if err != nil {
		return err
	}
	defer rd.Close()
	f, err := os.Open(orig)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var src io.ReaderAt = f
	m, unmap := mapFile(f, fi.Size())
	defer unmap()
	if m != nil {
		src = byteSource(m)
	}
	return rd.verify(src, fi.Size(), runtime.GOMAXPROCS(0))
}

func (r *Reader) verify(orig io.ReaderAt, size int64, workers int) error {
	fail := func(chunk int, format string, args ...any) error {
		t := ""
		if chunk >= 0 {
			t = tensorAt(r.dir.tensors, r.dir.chunks[chunk].origOff)
		}
		return &Error{File: r.name, Tensor: t, Chunk: chunk, Err: fmt.Errorf("%w: "+format, append([]any{ErrChecksum}, args...)...)}
	}
	if size != r.dir.origSize {
		return fail(-1, "the container restores %d bytes, the original has %d", r.dir.origSize, size)
	}
	var mem []byte
	if ms, ok := orig.(memSource); ok && int64(len(ms.atzBytes())) >= size {
		mem = ms.atzBytes()[:size]
	}
	h := make([]byte, len(r.dir.header))
	if _, err := orig.ReadAt(h, 0); err != nil && len(h) > 0 {
		return &Error{File: r.name, Chunk: -1, Err: fmt.Errorf("reading the original header: %w", err)}
	}
	if !bytes.Equal(h, r.dir.header) {
		return fail(-1, "the verbatim header differs from the original")
	}
	return ordered(len(r.dir.chunks), workers, func(i int) (err error) {
		c := &r.dir.chunks[i]
		got := getBuf(c.origLen)
		defer putBuf(got)
		if err := r.decodeChunk(got, i); err != nil {
			return err
		}
		var want []byte
		if mem != nil {
			defer mmapfile.Recover(debug.SetPanicOnFault(true), &err)
			want = mem[c.origOff : c.origOff+int64(c.origLen)]
		} else {
			want = getBuf(c.origLen)
			defer putBuf(want)
			if _, err := orig.ReadAt(want, c.origOff); err != nil {
				return &Error{File: r.name, Chunk: i, Err: fmt.Errorf("reading the original: %w", err)}
			}
		}
		if !bytes.Equal(got, want) {
			return fail(i, "decoded bytes differ from the original")
		}
		return nil
	}, func(_ int, err error) error { return err })
}
