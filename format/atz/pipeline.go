package atz

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/adaptool/adaptool/internal/mmapfile"
)

// memSource is a source whose bytes are addressable (a mapped file, an
// in-memory slice): Pack encodes and hashes them in place instead of
// reading copies through ReadAt.
type memSource interface {
	atzBytes() []byte
}

// byteSource is an io.ReaderAt over a byte slice that also exposes the
// slice (memSource). PackFile hands Pack its mapped file this way.
type byteSource []byte

// ReadAt implements io.ReaderAt. A fault on a mapped file (truncated
// meanwhile) is returned as an error (*mmapfile.FaultError).
func (b byteSource) ReadAt(p []byte, off int64) (n int, err error) {
	defer mmapfile.Recover(debug.SetPanicOnFault(true), &err)
	if off < 0 {
		return 0, fmt.Errorf("atz: negative offset %d", off)
	}
	if off >= int64(len(b)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n = copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b byteSource) atzBytes() []byte { return b }

// mapFile maps the first size bytes of f read-only for Pack, which then
// encodes and hashes the file in place instead of reading copies. It
// returns nil when the file cannot be mapped (Pack then reads it with
// ReadAt) and a function that unmaps it. The mapping is registered with
// mmapfile, so a read that faults because another process truncated the
// file meanwhile is reported as an error naming it (see hashMem, encode in
// Pack and verify).
func mapFile(f *os.File, size int64) ([]byte, func()) {
	b, err := mmapfile.Map(f, size)
	if err != nil || b == nil {
		return nil, func() {}
	}
	mmapfile.AdviseSequential(b)
	return b, func() { _ = mmapfile.Unmap(b) }
}

// seqHasher computes the SHA-256 of a sequence of buffers on its own
// goroutine, so the hash (serial by construction, ≈ 1.5–2 GB/s with SHA-NI)
// overlaps with the chunk coding instead of running after it. Buffers are
// handed over in file order; owned ones go back to the pool once hashed.
// At most depth buffers wait, so memory stays bounded.
type seqHasher struct {
	ch  chan hashItem
	sum chan hashResult
}

type hashItem struct {
	b     []byte
	owned bool // return b to the buffer pool after hashing
}

type hashResult struct {
	sum [32]byte
	err error
}

// newSeqHasher starts a hasher over prefix followed by the buffers added.
func newSeqHasher(prefix []byte, depth int) *seqHasher {
	h := &seqHasher{ch: make(chan hashItem, depth), sum: make(chan hashResult, 1)}
	go func() {
		s := sha256.New()
		s.Write(prefix)
		for it := range h.ch {
			s.Write(it.b)
			if it.owned {
				putBuf(it.b)
			}
		}
		var r hashResult
		copy(r.sum[:], s.Sum(nil))
		h.sum <- r
	}()
	return h
}

// add queues b (the next bytes of the file) for hashing.
func (h *seqHasher) add(b []byte, owned bool) { h.ch <- hashItem{b, owned} }

// finish waits for the hash of everything added.
func (h *seqHasher) finish() [32]byte {
	close(h.ch)
	return (<-h.sum).sum
}

// hashMem computes the SHA-256 of b on its own goroutine (b is a mapped
// file: a fault is reported as an error). stop abandons the hash early.
func hashMem(b []byte, stop <-chan struct{}) <-chan hashResult {
	out := make(chan hashResult, 1)
	go func() {
		var r hashResult
		defer func() { out <- r }()
		defer mmapfile.Recover(debug.SetPanicOnFault(true), &r.err)
		s := sha256.New()
		const step = 1 << 20
		for off := 0; off < len(b); off += step {
			select {
			case <-stop:
				r.err = errStopped
				return
			default:
			}
			s.Write(b[off:min(off+step, len(b))])
		}
		copy(r.sum[:], s.Sum(nil))
	}()
	return out
}

var errStopped = fmt.Errorf("atz: stopped")
