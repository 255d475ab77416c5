package atz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/klauspost/compress/huff0"
	"github.com/klauspost/compress/zstd"
)

// Level selects how hard the codec tries. The zero value is LevelDefault.
type Level int

const (
	// LevelDefault Huffman-codes every plane of float data (exponent planes
	// compress, near-random mantissa planes are rejected after a histogram
	// and stored raw), falls back to zstd where Huffman coding cannot
	// compress, and uses zstd for integer and opaque bytes.
	LevelDefault Level = 0
	// LevelFastest never runs zstd on float planes.
	LevelFastest Level = 1
	// LevelBest also tries zstd (level Better) on every plane and keeps the
	// smallest encoding; it helps "clean" (bf16-rounded) and sparse data.
	LevelBest Level = 2
)

// Plane codec identifiers, one byte in front of every plane of a chunk.
const (
	codecRaw    = 0 // payload is the plane itself
	codecRLE    = 1 // payload is one byte, repeated n times
	codecHuff1X = 2 // huff0 single-stream block (table included)
	codecHuff4X = 3 // huff0 four-stream block (table included)
	codecZstd   = 4 // one zstd frame
)

// Limits on what the decoder accepts.
const (
	// MaxChunkSize is the largest decoded chunk accepted (and produced).
	MaxChunkSize = 4 << 20
	// maxPlaneBlock is the largest plane Huffman-coded as one block; it is
	// below huff0.BlockSizeMax (262,143 bytes).
	maxPlaneBlock = 128 << 10
	// zstdMaxWindow and zstdMaxMemory bound the zstd decoder.
	zstdMaxWindow = 8 << 20
	zstdMaxMemory = 64 << 20
)

// chunkHeaderSize returns the size of the plane table in front of a chunk of
// width w: per plane one codec byte and a little-endian uint32 payload size.
func chunkHeaderSize(w int) int { return 5 * w }

var (
	zstdOnce  sync.Once
	zstdEncs  [3]*zstd.Encoder // by Level
	zstdDec   *zstd.Decoder
	zstdError error
)

// zstdCodecs returns the shared encoders and decoder. EncodeAll and DecodeAll
// are safe for concurrent use, so every goroutine shares them.
func zstdCodecs() ([3]*zstd.Encoder, *zstd.Decoder, error) {
	zstdOnce.Do(func() {
		levels := [3]zstd.EncoderLevel{zstd.SpeedDefault, zstd.SpeedFastest, zstd.SpeedBetterCompression}
		for i, l := range levels {
			zstdEncs[i], zstdError = zstd.NewWriter(nil,
				zstd.WithEncoderLevel(l),
				zstd.WithAllLitEntropyCompression(true),
				zstd.WithEncoderCRC(false), // chunks carry their own CRC-32C
				zstd.WithWindowSize(zstdMaxWindow),
				zstd.WithEncoderConcurrency(1))
			if zstdError != nil {
				return
			}
		}
		zstdDec, zstdError = zstd.NewReader(nil,
			zstd.WithDecoderMaxMemory(zstdMaxMemory),
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderConcurrency(0))
	})
	return zstdEncs, zstdDec, zstdError
}

// scratch is per-goroutine working memory for the codec.
type scratch struct {
	planes []byte // decoded planes (DecodeChunk)
	xor    []byte // src XOR base (EncodeChunk)
	zstd   []byte // a zstd candidate (EncodeChunk)
	huff   huff0.Scratch
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// bufPool recycles chunk-sized buffers (original, encoded and stored
// bytes), so steady-state packing and unpacking allocate (and zero) nothing
// per chunk.
var bufPool sync.Pool

// getBuf returns a buffer of length n (contents undefined).
func getBuf(n int) []byte {
	if p, ok := bufPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n, max(n, MaxChunkSize/4+64))
}

// putBuf returns a buffer obtained from getBuf.
func putBuf(b []byte) {
	if cap(b) >= MaxChunkSize/4 {
		bufPool.Put(&b)
	}
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// ChunkSpec describes how the bytes of one chunk are transformed before
// entropy coding.
type ChunkSpec struct {
	Width  int  // element size in bytes, 1..8; the chunk length is a multiple
	Rotate bool // sign rotation (float dtypes; Width 2, 4 or 8)
	Float  bool // Huffman first: mantissa planes of floats are near random
}

func (s ChunkSpec) valid() bool {
	if s.Width < 1 || s.Width > 8 {
		return false
	}
	return !s.Rotate || s.Width == 2 || s.Width == 4 || s.Width == 8
}

// EncodeChunk appends the encoding of src to dst and returns it. base, when
// not nil, must have len(src) bytes: src is XORed with it first (delta
// coding against a base checkpoint). The output is at most
// len(src) + 5·Width bytes: every plane is stored raw when no codec shrinks it.
func EncodeChunk(dst, src, base []byte, spec ChunkSpec, level Level) ([]byte, error) {
	if !spec.valid() || len(src)%spec.Width != 0 {
		return nil, fmt.Errorf("atz: invalid chunk spec %+v for %d bytes", spec, len(src))
	}
	if len(src) > MaxChunkSize {
		return nil, fmt.Errorf("%w: chunk of %d bytes > %d", ErrLimit, len(src), MaxChunkSize)
	}
	if base != nil && len(base) != len(src) {
		return nil, fmt.Errorf("atz: base chunk has %d bytes, want %d", len(base), len(src))
	}
	encs, _, err := zstdCodecs()
	if err != nil {
		return nil, err
	}
	if level < LevelDefault || level > LevelBest {
		level = LevelDefault
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	in := src
	if base != nil {
		sc.xor = grow(sc.xor, len(src))
		for i := range src {
			sc.xor[i] = src[i] ^ base[i]
		}
		in = sc.xor
	}
	w := spec.Width
	n := len(in) / w
	hdr := len(dst)
	body := hdr + chunkHeaderSize(w)
	if w == 1 {
		dst = append(dst, 0, 0, 0, 0, 0)
		out, codec := encodePlane(in, sc, encs[level], spec.Float, level)
		dst = append(dst, out...)
		dst[hdr] = codec
		binary.LittleEndian.PutUint32(dst[hdr+1:], uint32(len(out)))
		return dst, nil
	}
	// The planes are split straight into the output, where the raw ones
	// (near-random mantissa planes) stay; each plane's encoding is then
	// moved down to the end of the previous one (a no-op while every
	// plane before it was stored raw), so no plane is copied twice.
	dst = slices.Grow(dst, body+len(in)-len(dst))[:body+len(in)]
	kernels.SplitPlanes(dst[body:], in, w, spec.Rotate)
	pos := body
	for p := range w {
		plane := dst[body+p*n : body+(p+1)*n]
		out, codec := encodePlane(plane, sc, encs[level], spec.Float, level)
		pos += copy(dst[pos:], out) // len(out) ≤ n: never past this plane
		dst[hdr+5*p] = codec
		binary.LittleEndian.PutUint32(dst[hdr+5*p+1:], uint32(len(out)))
	}
	return dst[:pos], nil
}

// encodePlane returns the smallest encoding of plane it tries and the codec
// used. The result is plane itself (raw), a prefix of it (RLE) or scratch
// memory of sc, valid until the next call; it is never longer than plane.
func encodePlane(plane []byte, sc *scratch, enc *zstd.Encoder, float bool, level Level) ([]byte, byte) {
	n := len(plane)
	if n == 0 {
		return plane, codecRaw
	}
	if n > 1 && allSame(plane) {
		return plane[:1], codecRLE
	}
	best, bestCodec := plane, byte(codecRaw)
	huffOK := false
	if float && level != LevelBest && nearRandom(plane) {
		return plane, codecRaw
	}
	if n <= maxPlaneBlock && n >= 32 {
		sc.huff.Reuse = huff0.ReusePolicyNone
		var out []byte
		var err error
		codec := byte(codecHuff4X)
		if n >= 1024 {
			out, _, err = huff0.Compress4X(plane, &sc.huff)
		} else {
			codec = codecHuff1X
			out, _, err = huff0.Compress1X(plane, &sc.huff)
		}
		if err == nil && len(out) < len(best) {
			best, bestCodec, huffOK = out, codec, true
		}
		// ErrIncompressible / ErrUseRLE (RLE was handled above): keep raw.
	}
	// Huffman coding cannot go below one bit per byte: a plane it shrinks
	// more than 4× is mostly one value (sparse tensors, XOR deltas), where
	// zstd's matches win.
	nearFloor := huffOK && len(best)*4 < n
	tryZstd := level == LevelBest || !float ||
		(level != LevelFastest && (nearFloor || (!huffOK && looksCompressible(plane))))
	if tryZstd {
		sc.zstd = enc.EncodeAll(plane, sc.zstd[:0])
		if len(sc.zstd) < len(best) {
			best, bestCodec = sc.zstd, codecZstd
		}
	}
	return best, bestCodec
}

// nearRandom reports whether a sample of a plane (1024 to 4096 bytes) has a
// byte entropy within 0.15 bits of a uniform byte's expected estimate, where
// no entropy coder gains anything worth its table (mantissa planes of trained
// weights sit at ≈ 7.99 bits). Skipping them saves the Huffman attempt,
// which dominates on small tensors. Planes under 1 KiB are always tried.
func nearRandom(p []byte) bool {
	if len(p) < 1024 {
		return false
	}
	// Up to 4096 samples, at least every 4th byte from 4 KiB up (1024
	// samples already estimate a uniform byte's entropy to ≈ 0.02 bits, and
	// the mantissa planes of small tensors were otherwise read whole).
	n := min(len(p), max(1024, len(p)/4), 4096)
	step := len(p) / n
	var hist [256]uint16
	for i := range n {
		hist[p[i*step]]++
	}
	// H = log2 n − Σ c·log2 c / n, with c·log2 c from a table.
	sum := 0.0
	for _, c := range hist {
		sum += clog2[c]
	}
	h := math.Log2(float64(n)) - sum/float64(n)
	// The plug-in estimate of a uniform byte from n samples is biased low
	// by ≈ 255 / (2 n ln 2) bits.
	return h > 8-0.15-255/(2*float64(n)*math.Ln2)
}

// clog2[c] = c·log2(c) for the sample counts of nearRandom.
var clog2 = func() (t [4097]float64) {
	for c := 2; c < len(t); c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()

// looksCompressible reports whether a float plane that Huffman coding could
// not shrink might still hold repeats zstd finds (runs of zeros from sparse
// tensors): a cheap sample of adjacent equal bytes.
func looksCompressible(p []byte) bool {
	eq := 0
	step := max(1, len(p)/4096)
	total := 0
	for i := step; i < len(p); i += step {
		if p[i] == p[i-1] {
			eq++
		}
		total++
	}
	return total > 0 && eq*8 > total // > 12.5% adjacent repeats; random is ~0.4%
}

func allSame(p []byte) bool {
	c := p[0]
	for _, b := range p {
		if b != c {
			return false
		}
	}
	return true
}

// DecodeChunk decodes an EncodeChunk output into dst, whose length must be
// the original chunk length; base must be the same base bytes given to
// EncodeChunk (nil when none). Corrupt input returns an error wrapping
// ErrFormat; it never panics and never allocates more than len(dst).
func DecodeChunk(dst, src, base []byte, spec ChunkSpec) error {
	if !spec.valid() || len(dst)%spec.Width != 0 {
		return formatErr("invalid chunk spec width %d for %d bytes", spec.Width, len(dst))
	}
	if len(dst) > MaxChunkSize {
		return fmt.Errorf("%w: chunk of %d bytes > %d", ErrLimit, len(dst), MaxChunkSize)
	}
	if base != nil && len(base) != len(dst) {
		return fmt.Errorf("%w: base chunk has %d bytes, want %d", ErrBase, len(base), len(dst))
	}
	_, dec, err := zstdCodecs()
	if err != nil {
		return err
	}
	w := spec.Width
	n := len(dst) / w
	h := chunkHeaderSize(w)
	if len(src) < h {
		return formatErr("chunk of %d bytes shorter than its %d-byte plane table", len(src), h)
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	buf := dst
	if w > 1 {
		sc.planes = grow(sc.planes, len(dst))
		buf = sc.planes
	}
	var planes [8][]byte
	off := h
	for p := range w {
		codec := src[5*p]
		size := int(binary.LittleEndian.Uint32(src[5*p+1:]))
		if size > len(src)-off {
			return formatErr("plane %d: payload of %d bytes overruns the chunk", p, size)
		}
		payload := src[off : off+size]
		off += size
		if codec == codecRaw && w > 1 && size == n {
			planes[p] = payload // merged straight from the payload, no copy
			continue
		}
		planes[p] = buf[p*n : (p+1)*n]
		if err := decodePlane(planes[p], payload, codec, sc, dec); err != nil {
			return fmt.Errorf("plane %d: %w", p, err)
		}
	}
	if off != len(src) {
		return formatErr("%d trailing bytes after the planes", len(src)-off)
	}
	if w > 1 {
		kernels.MergePlaneSlices(dst, planes[:w], spec.Rotate)
	}
	if base != nil {
		for i := range dst {
			dst[i] ^= base[i]
		}
	}
	return nil
}

func decodePlane(dst, src []byte, codec byte, sc *scratch, dec *zstd.Decoder) error {
	n := len(dst)
	if n == 0 {
		if codec != codecRaw || len(src) != 0 {
			return formatErr("empty plane with codec %d and %d payload bytes", codec, len(src))
		}
		return nil
	}
	switch codec {
	case codecRaw:
		if len(src) != n {
			return formatErr("raw plane of %d bytes, want %d", len(src), n)
		}
		copy(dst, src)
	case codecRLE:
		if len(src) != 1 {
			return formatErr("RLE plane payload of %d bytes, want 1", len(src))
		}
		for i := range dst {
			dst[i] = src[0]
		}
	case codecHuff1X, codecHuff4X:
		if n > maxPlaneBlock {
			return formatErr("Huffman plane of %d bytes > %d", n, maxPlaneBlock)
		}
		sc.huff.MaxDecodedSize = n
		s, rest, err := huff0.ReadTable(src, &sc.huff)
		if err != nil {
			return formatErr("Huffman table: %v", err)
		}
		var out []byte
		if codec == codecHuff4X {
			out, err = s.Decoder().Decompress4X(dst[:0:n], rest)
		} else {
			out, err = s.Decoder().Decompress1X(dst[:0:n], rest)
		}
		if err != nil {
			return formatErr("Huffman data: %v", err)
		}
		if len(out) != n {
			return formatErr("Huffman plane decoded to %d bytes, want %d", len(out), n)
		}
		if &out[0] != &dst[0] {
			copy(dst, out)
		}
	case codecZstd:
		out, err := dec.DecodeAll(src, dst[:0:n])
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
				return fmt.Errorf("%w: zstd: %v", ErrLimit, err)
			}
			return formatErr("zstd: %v", err)
		}
		if len(out) != n {
			return formatErr("zstd plane decoded to %d bytes, want %d", len(out), n)
		}
		if &out[0] != &dst[0] {
			copy(dst, out)
		}
	default:
		return formatErr("unknown plane codec %d", codec)
	}
	return nil
}
