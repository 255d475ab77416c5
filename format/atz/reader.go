package atz

import (
	"bytes"
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/adaptool/adaptool/internal/atomicfile"
)

// Option configures a Reader.
type Option func(*Reader)

// WithBase supplies the base file a delta container was packed against.
func WithBase(r io.ReaderAt, size int64) Option {
	return func(rd *Reader) { rd.base, rd.baseSize = r, size }
}

// WithCacheChunks sets how many decoded chunks ReadAt keeps (default 8,
// i.e. at most 8·MaxChunkSize = 32 MiB, typically 2–8 MiB).
func WithCacheChunks(n int) Option {
	return func(rd *Reader) { rd.cacheMax = max(1, n) }
}

// WithSHA256Check sets whether WriteTo (and Unpack) recompute the SHA-256
// of the restored file and compare it with the one recorded at pack time
// (default true). Every chunk's CRC-32C is checked either way; the SHA-256
// is the end-to-end proof of a byte-exact restore and costs one more pass
// (≈ 1.5–2 GB/s with SHA-NI).
func WithSHA256Check(on bool) Option {
	return func(rd *Reader) { rd.noSHA = !on }
}

// WithName sets the file name used in error messages.
func WithName(name string) Option {
	return func(rd *Reader) { rd.name = name }
}

// Reader gives random access to the original bytes of a container. It is
// an io.ReaderAt over the ORIGINAL file (so a safetensors parser can read
// it as if unpacked), decoding chunks lazily through a small LRU cache. All
// methods are safe for concurrent use.
type Reader struct {
	name     string
	r        io.ReaderAt
	size     int64
	dir      *directory
	base     io.ReaderAt
	baseSize int64
	closer   io.Closer
	noSHA    bool

	mu       sync.Mutex
	cacheMax int
	lru      *list.List // of *cached, most recent first
	byChunk  map[int]*list.Element
}

type cached struct {
	idx  int
	data []byte
}

// Detect reports whether prefix starts with the container magic.
func Detect(prefix []byte) bool { return bytes.HasPrefix(prefix, []byte(Magic)) }

// NewReader reads and validates the container directory of r (size bytes).
// Chunks are only read when needed. Every declared size and offset is checked
// against size and the package limits before anything is allocated.
func NewReader(r io.ReaderAt, size int64, opts ...Option) (*Reader, error) {
	rd := &Reader{r: r, size: size, cacheMax: 8, lru: list.New(), byChunk: map[int]*list.Element{}}
	for _, o := range opts {
		o(rd)
	}
	wrap := func(err error) error { return &Error{File: rd.name, Chunk: -1, Err: err} }
	if size < preambleSize+footerSize {
		return nil, wrap(formatErr("%d bytes is shorter than the %d-byte preamble and footer", size, preambleSize+footerSize))
	}
	pre := make([]byte, preambleSize)
	if _, err := r.ReadAt(pre, 0); err != nil {
		return nil, wrap(fmt.Errorf("reading preamble: %w", err))
	}
	if !Detect(pre) {
		return nil, wrap(formatErr("bad magic %q", pre[:8]))
	}
	if v := binary.LittleEndian.Uint16(pre[8:]); v != Version {
		return nil, wrap(fmt.Errorf("%w: version %d (this reader knows %d)", ErrVersion, v, Version))
	}
	if binary.LittleEndian.Uint16(pre[10:]) != 0 || binary.LittleEndian.Uint32(pre[12:]) != 0 {
		return nil, wrap(formatErr("unknown preamble flags"))
	}
	foot := make([]byte, footerSize)
	if _, err := r.ReadAt(foot, size-footerSize); err != nil {
		return nil, wrap(fmt.Errorf("reading footer: %w", err))
	}
	if string(foot[24:]) != FooterMagic {
		return nil, wrap(formatErr("bad footer magic (truncated file?)"))
	}
	dirOff := binary.LittleEndian.Uint64(foot[0:])
	dirLen := binary.LittleEndian.Uint64(foot[8:])
	if binary.LittleEndian.Uint32(foot[20:]) != 0 {
		return nil, wrap(formatErr("unknown footer flags"))
	}
	if dirLen > MaxDirectorySize {
		return nil, wrap(fmt.Errorf("%w: directory of %d bytes > %d", ErrLimit, dirLen, MaxDirectorySize))
	}
	if dirOff < preambleSize || dirOff > uint64(size) || dirLen != uint64(size-footerSize)-dirOff {
		return nil, wrap(formatErr("directory [%d, +%d) does not end at the footer of a %d-byte file", dirOff, dirLen, size))
	}
	dir := make([]byte, dirLen)
	if _, err := r.ReadAt(dir, int64(dirOff)); err != nil {
		return nil, wrap(fmt.Errorf("reading directory: %w", err))
	}
	if crc(dir) != binary.LittleEndian.Uint32(foot[16:]) {
		return nil, wrap(fmt.Errorf("%w: directory", ErrChecksum))
	}
	d, err := parseDirectory(dir, int64(dirOff))
	if err != nil {
		return nil, wrap(err)
	}
	rd.dir = d
	if d.hasBase && rd.base != nil && rd.baseSize != d.baseSize {
		return nil, wrap(fmt.Errorf("%w: base has %d bytes, the container was packed against %d", ErrBase, rd.baseSize, d.baseSize))
	}
	return rd, nil
}

// Open opens a container file.
func Open(name string, opts ...Option) (*Reader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	rd, err := NewReader(f, fi.Size(), append([]Option{WithName(name)}, opts...)...)
	if err != nil {
		f.Close()
		return nil, err
	}
	rd.closer = f
	return rd, nil
}

// Close closes the file opened by Open (a no-op for NewReader).
func (r *Reader) Close() error {
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

// Size returns the size of the original file.
func (r *Reader) Size() int64 { return r.dir.origSize }

// SHA256 returns the SHA-256 of the original file recorded at pack time.
func (r *Reader) SHA256() [32]byte { return r.dir.origSHA }

// Header returns the original 8-byte prefix and JSON header, verbatim (empty
// when the original was not a parseable safetensors file). Do not modify.
func (r *Reader) Header() []byte { return r.dir.header }

// Tensors lists the tensors of the original header, in offset order.
func (r *Reader) Tensors() []TensorEntry { return r.dir.tensors }

// NeedsBase reports whether the container was packed against a base file.
func (r *Reader) NeedsBase() bool { return r.dir.hasBase }

// PackedSize returns the size of the container.
func (r *Reader) PackedSize() int64 { return r.size }

// Tensor returns the original bytes of the named tensor, decoding only the
// chunks that hold them.
func (r *Reader) Tensor(name string) ([]byte, error) {
	for _, t := range r.dir.tensors {
		if t.Name == name {
			b := make([]byte, t.End-t.Begin)
			if _, err := r.ReadAt(b, t.Begin); err != nil {
				return nil, err
			}
			return b, nil
		}
	}
	return nil, &Error{File: r.name, Tensor: name, Chunk: -1, Err: ErrNotFound}
}

// ReadAt reads len(p) bytes of the ORIGINAL file at off (io.ReaderAt).
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &Error{File: r.name, Chunk: -1, Err: errors.New("negative offset")}
	}
	if off >= r.dir.origSize {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := 0
	hl := int64(len(r.dir.header))
	if off < hl {
		n = copy(p, r.dir.header[off:])
	}
	for n < len(p) && off+int64(n) < r.dir.origSize {
		pos := off + int64(n)
		i := sort.Search(len(r.dir.chunks), func(i int) bool {
			c := &r.dir.chunks[i]
			return c.origOff+int64(c.origLen) > pos
		})
		if c := &r.dir.chunks[i]; c.origOff == pos && c.origLen <= len(p)-n && !r.isCached(i) {
			// A whole chunk: decode straight into p, bypassing the cache
			// (large sequential reads, e.g. a tensor, copy nothing twice).
			if err := r.decodeChunk(p[n:n+c.origLen], i); err != nil {
				return n, err
			}
			n += c.origLen
			continue
		}
		data, err := r.cachedChunk(i)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], data[pos-r.dir.chunks[i].origOff:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// isCached reports whether chunk i is in the cache.
func (r *Reader) isCached(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.byChunk[i]
	return ok
}

// cachedChunk returns chunk i decoded, through the LRU cache.
func (r *Reader) cachedChunk(i int) ([]byte, error) {
	r.mu.Lock()
	if e, ok := r.byChunk[i]; ok {
		r.lru.MoveToFront(e)
		data := e.Value.(*cached).data
		r.mu.Unlock()
		return data, nil
	}
	r.mu.Unlock()
	data := make([]byte, r.dir.chunks[i].origLen)
	if err := r.decodeChunk(data, i); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byChunk[i]; !ok {
		r.byChunk[i] = r.lru.PushFront(&cached{i, data})
		for r.lru.Len() > r.cacheMax {
			old := r.lru.Remove(r.lru.Back()).(*cached)
			delete(r.byChunk, old.idx)
		}
	}
	return data, nil
}

// decodeChunk reads, checks and decodes chunk i into dst (len = origLen).
func (r *Reader) decodeChunk(dst []byte, i int) error {
	c := &r.dir.chunks[i]
	wrap := func(err error) error {
		return &Error{File: r.name, Tensor: tensorAt(r.dir.tensors, c.origOff), Chunk: i, Err: err}
	}
	stored := getBuf(c.storedLen)
	defer putBuf(stored)
	if _, err := r.r.ReadAt(stored, c.storedOff); err != nil {
		return wrap(fmt.Errorf("reading payload: %w", err))
	}
	if crc(stored) != c.storedCRC {
		return wrap(fmt.Errorf("%w: stored bytes", ErrChecksum))
	}
	var base []byte
	if c.flags&flagXOR != 0 {
		if r.base == nil {
			return wrap(fmt.Errorf("%w: delta chunk needs the base file (WithBase / --base)", ErrBase))
		}
		base = make([]byte, c.origLen)
		if _, err := r.base.ReadAt(base, c.baseOff); err != nil {
			return wrap(fmt.Errorf("%w: reading base: %v", ErrBase, err))
		}
	}
	if err := DecodeChunk(dst, stored, base, c.spec()); err != nil {
		return wrap(err)
	}
	if crc(dst) != c.decodedCRC {
		if base != nil {
			return wrap(fmt.Errorf("%w: decoded bytes (wrong base file?): %w", ErrChecksum, ErrBase))
		}
		return wrap(fmt.Errorf("%w: decoded bytes", ErrChecksum))
	}
	return nil
}

// WriteTo writes the whole original file to w, decoding chunks in parallel
// (GOMAXPROCS goroutines, bounded memory), and checks the SHA-256 recorded
// at pack time; a mismatch returns ErrChecksum after the bytes were written.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	return r.writeTo(w, runtime.GOMAXPROCS(0))
}

func (r *Reader) writeTo(w io.Writer, workers int) (int64, error) {
	// Chunks are large: write them directly, without a bufio copy. Workers
	// read, check (CRC-32C of the stored and of the decoded bytes, while in
	// cache) and decode; the writer only writes, and the SHA-256 runs on
	// its own goroutine over the written buffers, in file order.
	cw := &countWriter{w: w}
	var h *seqHasher
	if !r.noSHA {
		h = newSeqHasher(r.dir.header, 2*max(workers, 1))
	}
	cw.Write(r.dir.header)
	type result struct {
		data []byte
		err  error
	}
	err := ordered(len(r.dir.chunks), workers, func(i int) result {
		data := getBuf(r.dir.chunks[i].origLen)
		return result{data, r.decodeChunk(data, i)}
	}, func(i int, res result) error {
		if res.err != nil {
			return res.err
		}
		_, err := cw.Write(res.data)
		if h != nil {
			h.add(res.data, true)
		} else {
			putBuf(res.data)
		}
		return err
	})
	if err == nil {
		err = cw.err
	}
	if h == nil {
		return cw.n, err
	}
	sum := h.finish()
	if err != nil {
		return cw.n, err
	}
	if sum != r.dir.origSHA {
		return cw.n, &Error{File: r.name, Chunk: -1, Err: fmt.Errorf("%w: SHA-256 of the restored file", ErrChecksum)}
	}
	return cw.n, nil
}

// Unpack writes the original file held by the container src (size bytes) to
// dst and verifies its SHA-256.
func Unpack(dst io.Writer, src io.ReaderAt, size int64, opts ...Option) (Stats, error) {
	start := time.Now()
	rd, err := NewReader(src, size, opts...)
	if err != nil {
		return Stats{}, err
	}
	n, err := rd.WriteTo(dst)
	st := rd.stats()
	st.OriginalSize = n
	st.Duration = time.Since(start)
	return st, err
}

func (r *Reader) stats() Stats {
	st := Stats{OriginalSize: r.dir.origSize, PackedSize: r.size, Tensors: len(r.dir.tensors), Chunks: len(r.dir.chunks), SHA256: r.dir.origSHA}
	for _, c := range r.dir.chunks {
		if c.flags&flagXOR != 0 {
			st.DeltaChunks++
		}
	}
	return st
}

// UnpackFile unpacks the container src into the file dst, written
// atomically; the file is only renamed into place once its SHA-256 matched.
func UnpackFile(dst, src string, opts ...Option) (Stats, error) {
	start := time.Now()
	rd, err := Open(src, opts...)
	if err != nil {
		return Stats{}, err
	}
	defer rd.Close()
	err = atomicfile.WriteStream(dst, func(w io.Writer) error {
		_, err := rd.WriteTo(w)
		return err
	})
	st := rd.stats()
	st.Duration = time.Since(start)
	return st, err
}

// CheckFile decodes the container src completely without writing anything:
// every chunk's CRC-32C and the original's SHA-256 are checked, as
// UnpackFile checks them before it renames its output into place. The Stats
// are those UnpackFile would report.
func CheckFile(src string, opts ...Option) (Stats, error) {
	start := time.Now()
	rd, err := Open(src, opts...)
	if err != nil {
		return Stats{}, err
	}
	defer rd.Close()
	_, err = rd.WriteTo(io.Discard)
	st := rd.stats()
	st.Duration = time.Since(start)
	return st, err
}
