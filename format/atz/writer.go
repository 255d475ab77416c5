package atz

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/adaptool/adaptool/internal/atomicfile"
	"github.com/adaptool/adaptool/internal/mmapfile"
)

// PackOptions configures Pack. The zero value packs at LevelDefault on
// GOMAXPROCS goroutines without a base.
type PackOptions struct {
	// Level selects the codec effort.
	Level Level
	// Workers is the number of encoding goroutines (0: GOMAXPROCS).
	Workers int
	// Base, when not nil, is the file the packed one was fine-tuned from:
	// every tensor whose name, dtype and byte size match a tensor of Base is
	// XORed with it before coding. Unpacking then needs the same base.
	Base io.ReaderAt
	// BaseSize is the size of Base in bytes.
	BaseSize int64
	// Name is the source name used in error messages.
	Name string
	// DryRun makes PackFile pack as usual but discard the container and
	// write nothing: its Stats say what it would have written.
	DryRun bool
}

// Stats summarises a Pack or Unpack.
type Stats struct {
	OriginalSize int64         // bytes of the original file
	PackedSize   int64         // bytes of the container
	Tensors      int           // tensors listed in the header
	Chunks       int           // chunks in the container
	DeltaChunks  int           // chunks coded against the base
	SHA256       [32]byte      // SHA-256 of the original file
	Duration     time.Duration // wall time
}

// Ratio returns OriginalSize / PackedSize.
func (s Stats) Ratio() float64 {
	if s.PackedSize == 0 {
		return 0
	}
	return float64(s.OriginalSize) / float64(s.PackedSize)
}

// countWriter tracks the container offset.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

// Write writes p and counts the bytes; after an error it writes nothing.
func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// readHeaderPrefix reads the bytes parseHeader needs: the 8-byte prefix and,
// when the declared header length is plausible, the header.
func readHeaderPrefix(src io.ReaderAt, size int64) ([]byte, error) {
	if size < 8 {
		return nil, nil
	}
	p := make([]byte, 8)
	if _, err := src.ReadAt(p, 0); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(p)
	if n > MaxHeaderSize-8 || int64(n) > size-8 {
		return p, nil
	}
	h := make([]byte, 8+n)
	if _, err := src.ReadAt(h, 0); err != nil {
		return nil, err
	}
	return h, nil
}

// Pack writes a container holding the size bytes of src to dst. src may be
// any file: a safetensors file gets per-dtype coding, anything else (or any
// part the header does not describe) is stored as opaque bytes. Unpack
// reproduces src byte for byte.
func Pack(dst io.Writer, src io.ReaderAt, size int64, opt PackOptions) (Stats, error) {
	start := time.Now()
	st := Stats{OriginalSize: size}
	if size < 0 || size > maxOrigSize {
		return st, fmt.Errorf("%w: source size %d", ErrLimit, size)
	}
	wrap := func(err error) error { return &Error{File: opt.Name, Chunk: -1, Err: err} }
	prefix, err := readHeaderPrefix(src, size)
	if err != nil {
		return st, wrap(fmt.Errorf("reading header: %w", err))
	}
	hdrLen, tensors := parseHeader(prefix, size)
	d := &directory{origSize: size, header: prefix[:hdrLen], tensors: tensors}
	d.chunks = planLayout(hdrLen, size, tensors)
	if opt.Base != nil {
		if err := planDelta(d, opt.Base, opt.BaseSize); err != nil {
			return st, wrap(err)
		}
	}
	st.Tensors, st.Chunks = len(tensors), len(d.chunks)
	for _, c := range d.chunks {
		if c.flags&flagXOR != 0 {
			st.DeltaChunks++
		}
	}

	// Chunk payloads are large: write them directly, without a bufio copy.
	cw := &countWriter{w: dst}
	bw := cw
	pre := make([]byte, preambleSize)
	copy(pre, Magic)
	binary.LittleEndian.PutUint16(pre[8:], Version)
	bw.Write(pre)
	pos := int64(preambleSize)

	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// The whole-file SHA-256 runs on its own goroutine, next to the
	// encoders: over the source itself when its bytes are addressable (a
	// mapped file), else over the chunk buffers the encoders read, handed
	// over in file order.
	var mem []byte
	if ms, ok := src.(memSource); ok && int64(len(ms.atzBytes())) >= size {
		mem = ms.atzBytes()[:size]
	}
	var memHash <-chan hashResult
	var seqHash *seqHasher
	stopHash := make(chan struct{})
	if mem != nil {
		memHash = hashMem(mem, stopHash)
	} else {
		seqHash = newSeqHasher(d.header, 2*workers)
	}
	type result struct {
		orig, enc       []byte
		origCRC, encCRC uint32
		err             error
	}
	// encode reads (or, from memory, slices) chunk i, computes the CRC-32C
	// of its bytes while they are in cache, encodes it and computes the
	// CRC-32C of the encoding just written: the checksums run on the
	// parallel workers, not on the serial writer.
	encode := func(i int) (r result) {
		c := &d.chunks[i]
		if mem != nil {
			// a fault here or in EncodeChunk's workers becomes r.err
			defer mmapfile.Recover(debug.SetPanicOnFault(true), &r.err)
			r.orig = mem[c.origOff : c.origOff+int64(c.origLen)]
		} else {
			r.orig = getBuf(c.origLen)
			if _, err := src.ReadAt(r.orig, c.origOff); err != nil {
				return result{err: fmt.Errorf("reading bytes [%d, +%d): %w", c.origOff, c.origLen, err)}
			}
		}
		var base []byte
		if c.flags&flagXOR != 0 {
			base = make([]byte, c.origLen)
			if _, err := opt.Base.ReadAt(base, c.baseOff); err != nil {
				return result{err: fmt.Errorf("reading base bytes [%d, +%d): %w", c.baseOff, c.origLen, err)}
			}
		}
		r.origCRC = crc(r.orig)
		r.enc, r.err = EncodeChunk(getBuf(c.origLen + chunkHeaderSize(c.width))[:0], r.orig, base, c.spec(), opt.Level)
		if r.err == nil {
			r.encCRC = crc(r.enc)
		}
		return r
	}
	err = ordered(len(d.chunks), workers, encode, func(i int, r result) error {
		if r.err != nil {
			return &Error{File: opt.Name, Tensor: tensorAt(tensors, d.chunks[i].origOff), Chunk: i, Err: r.err}
		}
		c := &d.chunks[i]
		c.storedOff, c.storedLen = pos, len(r.enc)
		c.storedCRC, c.decodedCRC = r.encCRC, r.origCRC
		pos += int64(len(r.enc))
		_, err := bw.Write(r.enc)
		putBuf(r.enc)
		if seqHash != nil {
			seqHash.add(r.orig, true)
		}
		return err
	})
	if mem != nil {
		if err != nil {
			close(stopHash)
		}
		hr := <-memHash
		if err == nil && hr.err != nil {
			err = wrap(hr.err)
		}
		d.origSHA = hr.sum
	} else {
		d.origSHA = seqHash.finish()
	}
	if err != nil {
		return st, err
	}
	d.storedData = pos
	dir := d.marshal()
	bw.Write(dir)
	foot := make([]byte, footerSize)
	binary.LittleEndian.PutUint64(foot[0:], uint64(pos))
	binary.LittleEndian.PutUint64(foot[8:], uint64(len(dir)))
	binary.LittleEndian.PutUint32(foot[16:], crc(dir))
	copy(foot[24:], FooterMagic)
	bw.Write(foot)
	if cw.err != nil {
		return st, wrap(fmt.Errorf("writing: %w", cw.err))
	}
	st.PackedSize = cw.n
	st.SHA256 = d.origSHA
	st.Duration = time.Since(start)
	return st, nil
}

// planDelta marks the chunks of tensors that also exist in the base (same
// name, dtype and byte size) for XOR coding and records the base identity.
func planDelta(d *directory, base io.ReaderAt, baseSize int64) error {
	prefix, err := readHeaderPrefix(base, baseSize)
	if err != nil {
		return fmt.Errorf("%w: reading base header: %v", ErrBase, err)
	}
	_, bts := parseHeader(prefix, baseSize)
	byName := make(map[string]TensorEntry, len(bts))
	for _, t := range bts {
		byName[t.Name] = t
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(base, 0, baseSize)); err != nil {
		return fmt.Errorf("%w: hashing base: %v", ErrBase, err)
	}
	d.hasBase, d.baseSize = true, baseSize
	copy(d.baseSHA[:], h.Sum(nil))
	ci := 0
	for _, t := range d.tensors {
		bt, ok := byName[t.Name]
		if !ok || bt.DType != t.DType || bt.End-bt.Begin != t.End-t.Begin {
			continue
		}
		for ci < len(d.chunks) && d.chunks[ci].origOff < t.Begin {
			ci++
		}
		for j := ci; j < len(d.chunks) && d.chunks[j].origOff < t.End; j++ {
			c := &d.chunks[j]
			if c.origOff+int64(c.origLen) > t.End {
				break
			}
			c.flags |= flagXOR
			c.baseOff = bt.Begin + (c.origOff - t.Begin)
		}
	}
	return nil
}

// tensorAt names the tensor holding original offset off ("" if none).
func tensorAt(ts []TensorEntry, off int64) string {
	for _, t := range ts {
		if off >= t.Begin && off < t.End {
			return t.Name
		}
	}
	return ""
}

// ordered runs work(i) for i in [0, n) on up to workers goroutines and
// calls sink(i, result) in index order from the calling goroutine, with at
// most 2·workers results in flight (bounded memory, whatever n is). The
// first error from sink stops the pipeline; ordered returns once every
// worker has stopped.
func ordered[R any](n, workers int, work func(int) R, sink func(int, R) error) error {
	if workers < 1 {
		workers = 1
	}
	inflight := 2 * workers
	// Result i goes to slot i % inflight: the producer only dispatches i
	// once result i − inflight was consumed (sem), so the slot is free.
	slots := make([]chan R, inflight)
	for i := range slots {
		slots[i] = make(chan R, 1)
	}
	next := make(chan int)
	stop := make(chan struct{})
	sem := make(chan struct{}, inflight)
	go func() {
		defer close(next)
		for i := range n {
			select {
			case sem <- struct{}{}:
			case <-stop:
				return
			}
			select {
			case next <- i:
			case <-stop:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				slots[i%inflight] <- work(i)
			}
		}()
	}
	for i := range n {
		r := <-slots[i%inflight]
		err := sink(i, r)
		<-sem
		if err != nil {
			close(stop)
			// Let in-flight workers finish (their slots are buffered and
			// free: at most inflight results are outstanding, one per
			// slot), so no work runs on after the caller released its
			// inputs (an unmapped file, pooled buffers).
			for range next {
			}
			wg.Wait()
			return err
		}
	}
	return nil
}

// PackFile packs the file src into dst, written atomically (temporary file
// in dst's directory, then rename). Where the platform allows, src is
// memory-mapped and encoded and hashed in place (no read copies); a file
// truncated while it is packed then fails with an error, not a crash. With
// opt.DryRun nothing is written.
func PackFile(dst, src string, opt PackOptions) (Stats, error) {
	f, err := os.Open(src)
	if err != nil {
		return Stats{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Stats{}, err
	}
	if opt.Name == "" {
		opt.Name = src
	}
	var in io.ReaderAt = f
	m, unmap := mapFile(f, fi.Size())
	defer unmap()
	if m != nil {
		in = byteSource(m)
	}
	if opt.DryRun {
		return Pack(io.Discard, in, fi.Size(), opt)
	}
	var st Stats
	err = atomicfile.WriteStream(dst, func(w io.Writer) error {
		var err error
		st, err = Pack(w, in, fi.Size(), opt)
		return err
	})
	return st, err
}
