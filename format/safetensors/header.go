package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize is the largest header length N (in bytes, padding included)
// that the reader accepts and the writer produces, as in the reference.
const MaxHeaderSize = 100_000_000

// prefixSize is the size of the little-endian u64 header length.
const prefixSize = 8

// TensorInfo describes one tensor of a header.
type TensorInfo struct {
	Name  string
	DType DType
	// Shape holds the dimensions (row-major); an empty shape is a scalar of
	// one element. Every dimension fits in an int (else ErrValidationOverflow).
	Shape []int
	// Offsets is the [begin, end) byte range relative to the data section.
	Offsets [2]int64
}

// NumElements returns the number of elements (1 for a scalar). For a
// validated header it does not overflow.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Size returns the tensor's data size in bytes (NumElements·Bits/8).
func (t TensorInfo) Size() int64 {
	return t.NumElements() * int64(t.DType.Bits()) / 8
}

// Header is a validated safetensors header.
type Header struct {
	Metadata   map[string]string // nil when absent or null
	Tensors    []TensorInfo      // in offset order
	HeaderSize int64             // N, padding included
	DataSize   int64             // declared data bytes (the last end offset)
	FileSize   int64             // size of the input

	index map[string]int
}

// DataOffset returns the absolute file offset of the data section (8+N).
func (h *Header) DataOffset() int64 { return prefixSize + h.HeaderSize }

// Tensor returns the named tensor's description.
func (h *Header) Tensor(name string) (TensorInfo, bool) {
	if h.index != nil {
		i, ok := h.index[name]
		if !ok {
			return TensorInfo{}, false
		}
		return h.Tensors[i], true
	}
	for _, t := range h.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// Names returns the tensor names in offset order.
func (h *Header) Names() []string {
	s := make([]string, len(h.Tensors))
	for i, t := range h.Tensors {
		s[i] = t.Name
	}
	return s
}

// Option configures reading.
type Option func(*options)

type options struct {
	lenient       bool
	strictFields  bool
	name          string
	skipContainer bool
}

// WithLenient accepts duplicate names in the header with the reference
// semantics (the last occurrence wins) instead of failing with
// ErrDuplicateKey.
func WithLenient() Option { return func(o *options) { o.lenient = true } }

// WithStrictFields rejects unknown fields inside a tensor entry with
// ErrInvalidHeaderDeserialization (the reference ignores them).
func WithStrictFields() Option { return func(o *options) { o.strictFields = true } }

// WithName sets the file name used in error messages for readers opened with
// ReadHeader or NewReader.
func WithName(name string) Option { return func(o *options) { o.name = name } }

func buildOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// OpenHeader reads and validates only the header of the named file (rules
// 1–7): the data section is not read, so a truncated file still lists its
// tensors. Registered containers (see RegisterContainer) are recognised.
func OpenHeader(name string, opts ...Option) (*Header, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	o.name = name
	ra, size, err := openContainer(f, st.Size(), name)
	if err != nil {
		return nil, err
	}
	return readHeader(ra, size, &o)
}

// ReadHeader reads and validates the header of a safetensors stream of the
// given size (rules 1–7 of the specification, in the reference order). It
// reads the 8-byte prefix and then exactly N header bytes; the data section
// is not touched and rule 8 (data size) is not checked.
func ReadHeader(r io.ReaderAt, size int64, opts ...Option) (*Header, error) {
	o := buildOptions(opts)
	return readHeader(r, size, &o)
}

func readHeader(r io.ReaderAt, size int64, o *options) (*Header, error) {
	fail := func(tensor string, err error) error {
		return &TensorError{File: o.name, Tensor: tensor, Err: err}
	}
	// Rule 1.
	if size < prefixSize {
		return nil, fail("", fmt.Errorf("%w: %d bytes", ErrHeaderTooSmall, max(size, 0)))
	}
	var prefix [prefixSize]byte
	if n, err := r.ReadAt(prefix[:], 0); n < prefixSize {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fail("", fmt.Errorf("%w: read %d bytes", ErrHeaderTooSmall, n))
		}
		return nil, fail("", err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	// Rule 2.
	if n > MaxHeaderSize {
		return nil, fail("", fmt.Errorf("%w: N = %d%s", ErrHeaderTooLarge, n, otherFormat(prefix)))
	}
	// Rule 3 (n <= 1e8, so 8+n does not overflow).
	if int64(n)+prefixSize > size {
		return nil, fail("", fmt.Errorf("%w: N = %d, file has %d bytes%s", ErrInvalidHeaderLength, n, size, otherFormat(prefix)))
	}
	hdr := make([]byte, n)
	if got, err := r.ReadAt(hdr, prefixSize); got < len(hdr) {
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fail("", fmt.Errorf("%w: N = %d, only %d header bytes readable", ErrInvalidHeaderLength, n, got))
		}
		return nil, fail("", err)
	}
	h, err := parseHeader(hdr, o)
	if err != nil {
		return nil, err
	}
	h.HeaderSize = int64(n)
	h.FileSize = size
	return h, nil
}

// otherFormat names the kind of file whose first bytes are prefix when it
// is a well-known non-safetensors format (as ", which looks like …"; "" when
// none matches), for the error of a header length no safetensors file has.
func otherFormat(prefix [prefixSize]byte) string {
	p := string(prefix[:])
	var what string
	switch {
	case p == "version ":
		what = "a Git LFS pointer, not the file it points to (run git lfs pull, or download the file itself)"
	case strings.HasPrefix(p, "PK\x03\x04"):
		what = "a ZIP archive, as torch.save writes (.bin, .pt, .pth): PyTorch pickles are never unpickled; convert it to safetensors first"
	case prefix[0] == 0x80 && prefix[1] >= 2 && prefix[1] <= 5:
		what = "a Python pickle (legacy torch.save): PyTorch pickles are never unpickled; convert it to safetensors first"
	case strings.HasPrefix(p, "GGUF"):
		what = "a GGUF file"
	case strings.HasPrefix(p, "\x89ATZ"):
		what = "an adaptool compressed container (adaptool unpack restores the safetensors file)"
	case strings.HasPrefix(p, "\x89HDF"):
		what = "an HDF5 file (Keras .h5)"
	case strings.HasPrefix(strings.ToLower(p), "<!doctyp") || strings.HasPrefix(strings.ToLower(p), "<html"):
		what = "an HTML page (a download that saved an error or login page?)"
	case p[0] == '{' || p[0] == '[':
		what = "JSON (a config file? pass the .safetensors file or the adapter directory)"
	default:
		return ""
	}
	return ", which looks like " + what
}

// rawTensor is a decoded entry before validation.
type rawTensor struct {
	name    string
	dtype   DType
	shape   []uint64
	offsets [2]uint64
}

// parseHeader applies rules 4–7 to the header bytes.
func parseHeader(hdr []byte, o *options) (*Header, error) {
	fail := func(tensor string, err error) error {
		return &TensorError{File: o.name, Tensor: tensor, Err: err}
	}
	// Rule 4: the whole header must be UTF-8 (encoding/json would silently
	// substitute U+FFFD).
	if !utf8.Valid(hdr) {
		i := 0
		for i < len(hdr) {
			r, sz := utf8.DecodeRune(hdr[i:])
			if r == utf8.RuneError && sz <= 1 {
				break
			}
			i += sz
		}
		return nil, fail("", fmt.Errorf("%w: invalid byte 0x%02x at header offset %d", ErrInvalidHeader, hdr[i], i))
	}
	// Rule 5.
	meta, raws, seen, err := decodeHeaderSeen(hdr, o)
	if err != nil {
		var te *TensorError
		if errors.As(err, &te) {
			te.File = o.name
			return nil, te
		}
		return nil, fail("", err)
	}
	// Rule 6: sort by (begin, end); the name breaks ties deterministically.
	slices.SortFunc(raws, func(a, b rawTensor) int {
		if c := cmpU64(a.offsets[0], b.offsets[0]); c != 0 {
			return c
		}
		if c := cmpU64(a.offsets[1], b.offsets[1]); c != 0 {
			return c
		}
		if a.name < b.name {
			return -1
		} else if a.name > b.name {
			return 1
		}
		return 0
	})
	// Rule 7.
	// The duplicate-detection map already holds every name: reuse it as the
	// index (values are overwritten with the sorted positions below).
	h := &Header{Metadata: meta, Tensors: make([]TensorInfo, len(raws)), index: seen}
	var start uint64
	ndims := 0
	for _, t := range raws {
		ndims += len(t.shape)
	}
	dims := make([]int, ndims) // one backing array for every shape
	for i, t := range raws {
		s, e := t.offsets[0], t.offsets[1]
		if s != start || e < s {
			return nil, fail(t.name, fmt.Errorf("%w: data_offsets [%d,%d], expected begin %d", ErrInvalidOffset, s, e, start))
		}
		start = e
		nel := uint64(1)
		shape := dims[:len(t.shape):len(t.shape)]
		dims = dims[len(t.shape):]
		overflow := false
		for j, d := range t.shape {
			hi, lo := bits.Mul64(nel, d)
			if hi != 0 {
				overflow = true
			}
			nel = lo
			if d > math.MaxInt {
				overflow = true
			}
			shape[j] = int(d)
		}
		if overflow {
			return nil, fail(t.name, fmt.Errorf("%w: shape %v", ErrValidationOverflow, t.shape))
		}
		hi, nbits := bits.Mul64(nel, uint64(t.dtype.Bits()))
		if hi != 0 {
			return nil, fail(t.name, fmt.Errorf("%w: %d elements of %s", ErrValidationOverflow, nel, t.dtype))
		}
		if nbits%8 != 0 {
			return nil, fail(t.name, fmt.Errorf("%w: %s shape %v is %d bits", ErrMisalignedSlice, t.dtype, t.shape, nbits))
		}
		if e-s != nbits/8 {
			return nil, fail(t.name, fmt.Errorf("%w: %s shape %v needs %d bytes, data_offsets [%d,%d] hold %d",
				ErrTensorInvalidInfo, t.dtype, t.shape, nbits/8, s, e, e-s))
		}
		if e > math.MaxInt64-MaxHeaderSize-prefixSize {
			return nil, fail(t.name, fmt.Errorf("%w: end offset %d", ErrValidationOverflow, e))
		}
		h.Tensors[i] = TensorInfo{Name: t.name, DType: t.dtype, Shape: shape, Offsets: [2]int64{int64(s), int64(e)}}
		h.index[t.name] = i
	}
	h.DataSize = int64(start)
	return h, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func deserErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidHeaderDeserialization}, args...)...)
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
