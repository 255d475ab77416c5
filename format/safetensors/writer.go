package safetensors

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/adaptool/adaptool/internal/atomicfile"
	"github.com/adaptool/adaptool/internal/mmapfile"
)

// Tensor is a tensor to be written: its bytes come either from Data or from
// the WriteTo callback, which must write exactly Size() bytes (this lets
// files larger than memory be written one tensor at a time).
type Tensor struct {
	Name  string
	DType DType
	Shape []int // empty for a scalar
	// Data holds the little-endian row-major bytes (len must equal Size()).
	Data []byte
	// WriteTo, when set instead of Data, streams the bytes.
	WriteTo func(w io.Writer) error

	// src, set by File.CopyTensor for a plain file on disk, lets WriteFile
	// copy the bytes inside the kernel instead of calling WriteTo.
	src *fileSection
	// done, when set, is called after the tensor is written (by any path).
	done func()
}

// fileSection is a byte range of an open file.
type fileSection struct {
	f      *os.File
	off, n int64
}

var (
	errCopyRangeUnsupported = errors.New("safetensors: copy_file_range unsupported")
	errCopyRangeShort       = errors.New("safetensors: source ended while copying")
)

// NumElements returns the number of elements (1 for a scalar), or -1 when a
// dimension is negative or the count overflows int64.
func (t Tensor) NumElements() int64 {
	n := uint64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return -1
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return -1
		}
		n = lo
	}
	return int64(n)
}

// Size returns the data size in bytes, or -1 when the shape is invalid, the
// size overflows or the bit count is not a multiple of 8.
func (t Tensor) Size() int64 {
	n := t.NumElements()
	if n < 0 || !t.DType.Valid() {
		return -1
	}
	hi, nbits := bits.Mul64(uint64(n), uint64(t.DType.Bits()))
	if hi != 0 || nbits%8 != 0 || nbits/8 > math.MaxInt64 {
		return -1
	}
	return int64(nbits / 8)
}

// WriteOption configures writing.
type WriteOption func(*writeOptions)

type writeOptions struct {
	exactMetadata bool
	name          string
	deferred      []deferredValue
}

// deferredValue is a metadata value known only once the data is written.
type deferredValue struct {
	placeholder string
	value       func() (string, error)
}

// WithDeferredValue lets WriteFile record a metadata value that is known
// only after the tensor data has been written, such as the digest of an
// input hashed while the output is being written. The metadata passed to
// WriteFile holds placeholder (a string that occurs nowhere else in the
// header, e.g. provenance.Placeholder()); after the data is written and
// before the file is renamed into place, value is called and its result,
// which must have the same length, replaces the placeholder in the
// temporary file. An error from value aborts the write.
func WithDeferredValue(placeholder string, value func() (string, error)) WriteOption {
	return func(o *writeOptions) {
		o.deferred = append(o.deferred, deferredValue{placeholder, value})
	}
}

// WithExactMetadata writes exactly the given metadata: no "format":"pt" is
// added, a nil map omits "__metadata__" and an empty non-nil map writes
// "__metadata__":{}. Used to reproduce reference goldens.
func WithExactMetadata() WriteOption { return func(o *writeOptions) { o.exactMetadata = true } }

// plan is a validated, canonically ordered set of tensors with its header.
type plan struct {
	tensors []Tensor
	sizes   []int64
	header  []byte // padded
}

// DefaultMetadata returns metadata with "format":"pt" added when it has no
// "format" key (a copy; the input is not modified).
func DefaultMetadata(metadata map[string]string) map[string]string {
	m := make(map[string]string, len(metadata)+1)
	for k, v := range metadata {
		m[k] = v
	}
	if _, ok := m["format"]; !ok {
		m["format"] = "pt"
	}
	return m
}

func makePlan(tensors []Tensor, metadata map[string]string, o *writeOptions) (*plan, error) {
	fail := func(tensor string, err error) error {
		return &TensorError{File: o.name, Tensor: tensor, Err: err}
	}
	if !o.exactMetadata {
		metadata = DefaultMetadata(metadata)
	}
	p := &plan{tensors: slices.Clone(tensors)}
	// Canonical order: dtype rank descending, then name byte-wise.
	slices.SortStableFunc(p.tensors, func(a, b Tensor) int {
		if a.DType != b.DType {
			return int(b.DType) - int(a.DType)
		}
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	// Bound the header before building it.
	est := 2
	for k, v := range metadata {
		est += len(k) + len(v)
	}
	for _, t := range p.tensors {
		est += len(t.Name)
	}
	if est > MaxHeaderSize {
		return nil, fail("", fmt.Errorf("%w: header would exceed %d bytes", ErrHeaderTooLarge, est))
	}
	p.sizes = make([]int64, len(p.tensors))
	names := make(map[string]struct{}, len(p.tensors))
	for i, t := range p.tensors {
		if _, dup := names[t.Name]; dup {
			return nil, fail(t.Name, fmt.Errorf("%w: two tensors have this name", ErrDuplicateKey))
		}
		names[t.Name] = struct{}{}
		if t.Name == "__metadata__" {
			return nil, fail(t.Name, fmt.Errorf("%w: the name __metadata__ is reserved", ErrDuplicateKey))
		}
		if !utf8.ValidString(t.Name) {
			return nil, fail(t.Name, fmt.Errorf("%w: tensor name is not valid UTF-8", ErrInvalidHeader))
		}
		if !t.DType.Valid() {
			return nil, fail(t.Name, fmt.Errorf("%w: invalid dtype %d", ErrInvalidHeaderDeserialization, uint8(t.DType)))
		}
		n := t.NumElements()
		if n < 0 {
			return nil, fail(t.Name, fmt.Errorf("%w: shape %v", ErrValidationOverflow, t.Shape))
		}
		hi, nbits := bits.Mul64(uint64(n), uint64(t.DType.Bits()))
		if hi != 0 || nbits/8 > math.MaxInt64 {
			return nil, fail(t.Name, fmt.Errorf("%w: shape %v of %s", ErrValidationOverflow, t.Shape, t.DType))
		}
		if nbits%8 != 0 {
			return nil, fail(t.Name, fmt.Errorf("%w: %s shape %v is %d bits", ErrMisalignedSlice, t.DType, t.Shape, nbits))
		}
		size := int64(nbits / 8)
		switch {
		case t.Data != nil && t.WriteTo != nil:
			return nil, fail(t.Name, errors.New("safetensors: both Data and WriteTo are set"))
		case t.WriteTo == nil && int64(len(t.Data)) != size:
			return nil, fail(t.Name, fmt.Errorf("%w: %s shape %v needs %d bytes, Data has %d",
				ErrInvalidTensorView, t.DType, t.Shape, size, len(t.Data)))
		}
		p.sizes[i] = size
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fail("__metadata__", fmt.Errorf("%w: metadata key %q is not valid UTF-8", ErrInvalidHeader, k))
		}
	}
	// Header: compact, __metadata__ first, entries in offset order.
	h := make([]byte, 0, est+64*len(p.tensors)+16)
	h = append(h, '{')
	if metadata != nil {
		h = appendString(h, "__metadata__")
		h = append(h, ':', '{')
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				h = append(h, ',')
			}
			h = appendString(h, k)
			h = append(h, ':')
			h = appendString(h, metadata[k])
		}
		h = append(h, '}')
	}
	var off uint64
	for i, t := range p.tensors {
		if i > 0 || metadata != nil {
			h = append(h, ',')
		}
		h = appendString(h, t.Name)
		h = append(h, `:{"dtype":"`...)
		h = append(h, t.DType.String()...)
		h = append(h, `","shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				h = append(h, ',')
			}
			h = strconv.AppendInt(h, int64(d), 10)
		}
		h = append(h, `],"data_offsets":[`...)
		h = strconv.AppendUint(h, off, 10)
		h = append(h, ',')
		end, carry := bits.Add64(off, uint64(p.sizes[i]), 0)
		if carry != 0 || end > math.MaxInt64-MaxHeaderSize-prefixSize {
			return nil, fail(t.Name, fmt.Errorf("%w: data size overflows", ErrValidationOverflow))
		}
		off = end
		h = strconv.AppendUint(h, off, 10)
		h = append(h, ']', '}')
		if len(h) > MaxHeaderSize {
			return nil, fail("", fmt.Errorf("%w: header would exceed %d bytes", ErrHeaderTooLarge, MaxHeaderSize))
		}
	}
	h = append(h, '}')
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	if len(h) > MaxHeaderSize {
		return nil, fail("", fmt.Errorf("%w: header is %d bytes", ErrHeaderTooLarge, len(h)))
	}
	p.header = h
	return p, nil
}

// appendString appends s as a JSON string escaped exactly as serde_json
// does: only '"', '\\' and control characters are escaped (\b \f \n \r \t,
// otherwise \u00xx); '<', '>', '&', U+2028 and all non-ASCII are kept.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Write writes tensors and metadata to w in the canonical form of the
// reference writer: tensors sorted by dtype rank (descending, so 8-byte
// types come first) then name; a compact header with "__metadata__" first
// (keys sorted) and entries in offset order with fields dtype, shape,
// data_offsets; the header padded with spaces to a multiple of 8. Metadata
// gets "format":"pt" unless it has a "format" key or WithExactMetadata is
// given. Nothing is written if the tensors are invalid; each WriteTo
// callback must write exactly its tensor's Size() bytes.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string, opts ...WriteOption) error {
	var o writeOptions
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return write(w, tensors, metadata, &o)
}

func write(w io.Writer, tensors []Tensor, metadata map[string]string, o *writeOptions) error {
	p, err := makePlan(tensors, metadata, o)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	fw, _ := w.(*atomicfile.Writer)
	if fw != nil {
		same := map[*os.File]bool{}
		pad := copyAlignPad(p, func(src *fileSection) bool {
			ok, seen := same[src.f]
			if !seen {
				ok = sameFilesystem(src.f, fw.File())
				same[src.f] = ok
			}
			return ok
		})
		if pad > 0 && len(p.header)+pad <= MaxHeaderSize {
			p.header = append(p.header, bytes.Repeat([]byte{' '}, pad)...)
		}
	}
	var prefix [prefixSize]byte
	n := uint64(len(p.header))
	for i := range prefix {
		prefix[i] = byte(n >> (8 * i))
	}
	if _, err := bw.Write(prefix[:]); err != nil {
		return &TensorError{File: o.name, Err: err}
	}
	if _, err := bw.Write(p.header); err != nil {
		return &TensorError{File: o.name, Err: err}
	}
	for i, t := range p.tensors {
		if t.WriteTo == nil {
			if n, err := bw.Write(t.Data); err != nil {
				if fe := mmapfile.WriteFault(err, t.Data, n); fe != err {
					return sourceError(o, t, fe) // Data maps an input truncated meanwhile
				}
				return &TensorError{File: o.name, Tensor: t.Name, Err: err}
			}
			continue
		}
		if t.src != nil && fw != nil && t.src.n == p.sizes[i] {
			done, err := copySection(bw, fw, t.src, p.sizes[i])
			if err != nil {
				return sourceError(o, t, err)
			}
			if done {
				if t.done != nil {
					t.done()
				}
				continue
			}
		}
		lw := &limitedWriter{w: bw, left: p.sizes[i]}
		if fw != nil {
			lw.bw, lw.direct = bw, fw
		}
		if err := t.WriteTo(lw); err != nil {
			return sourceError(o, t, err)
		}
		if lw.over || lw.left != 0 {
			return &TensorError{File: o.name, Tensor: t.Name, Err: fmt.Errorf(
				"%w: WriteTo wrote %d bytes, want %d", ErrInvalidTensorView, p.sizes[i]-lw.left+lw.extra, p.sizes[i])}
		}
		if t.done != nil {
			t.done()
		}
	}
	if err := bw.Flush(); err != nil {
		return &TensorError{File: o.name, Err: err}
	}
	return nil
}

// sourceError reports that producing tensor t's bytes failed (usually
// reading an input): it says which output was being written, without
// presenting the error as a format error of that output.
func sourceError(o *writeOptions, t Tensor, err error) error {
	if o.name == "" {
		return fmt.Errorf("writing tensor %s: %w", quote(t.Name), err)
	}
	return fmt.Errorf("writing %s: tensor %s: %w", o.name, quote(t.Name), err)
}

// Kernel copies are fastest when each destination range starts at the
// source's offset within its page and at a page index that is a multiple of
// copyAlignBlock/copyAlignPage (ext4 on Linux 6.18, 16 MiB ranges of 1 GiB:
// 0.29 s against 0.38–0.45 s at other page indexes and 0.45–0.53 s at
// other offsets within the page; the destination's page cache is then
// filled in whole large folios).
const (
	copyAlignPage  = 4 << 10
	copyAlignBlock = 64 << 10
)

// minAlignedCopy is the least number of kernel-copied bytes for which
// copyAlignPad pads the header.
const minAlignedCopy = 1 << 20

// copyAlignPad returns how many spaces (a multiple of 8, below
// copyAlignBlock) to append to p's header so that the most bytes of the
// tensors to be copied inside the kernel (those with a source for which
// copyable is true) start at the offset copy_file_range copies fastest:
// their source's offset within a page, at the start of a copyAlignBlock.
// Tensors whose alignment cannot be met (they would need a header length
// that is not a multiple of 8) do not count. It returns 0 when fewer than
// minAlignedCopy bytes would be aligned.
func copyAlignPad(p *plan, copyable func(*fileSection) bool) int {
	votes := map[int64]int64{}
	data := int64(prefixSize + len(p.header))
	var off int64
	for i, t := range p.tensors {
		if t.src != nil && t.src.n == p.sizes[i] && copyable(t.src) {
			d := (t.src.off%copyAlignPage - data - off) % copyAlignBlock
			if d < 0 {
				d += copyAlignBlock
			}
			if d%8 == 0 {
				votes[d] += p.sizes[i]
			}
		}
		off += p.sizes[i]
	}
	best, most := int64(0), int64(0)
	for d, n := range votes {
		if n > most || n == most && d < best {
			best, most = d, n
		}
	}
	if most < minAlignedCopy {
		return 0
	}
	return int(best)
}

// copyRange is copyFileRange, replaceable by tests.
var copyRange = copyFileRange

// copySection copies size bytes of src to the file behind fw inside the
// kernel, after flushing bw. It reports false, having written nothing, when
// the kernel cannot copy between these files (the caller then streams the
// tensor through bw).
func copySection(bw *bufio.Writer, fw *atomicfile.Writer, src *fileSection, size int64) (bool, error) {
	if err := bw.Flush(); err != nil {
		return false, err
	}
	n, err := copyRange(fw.File(), src.f, src.off, size)
	fw.Advance(n)
	switch {
	case errors.Is(err, errCopyRangeUnsupported) && n == 0:
		return false, nil
	case errors.Is(err, errCopyRangeShort):
		// Open checked the size: the source was truncated since
		return false, fmt.Errorf("%s: %w (it ended while it was copied)", src.f.Name(), ErrFileChanged)
	case err != nil:
		return false, err
	}
	return true, nil
}

// directWriteMin is the size from which a write to an output file skips
// the buffer: copying a large chunk into the buffer first costs a pass
// over its bytes and saves no system call.
const directWriteMin = 64 << 10

// limitedWriter passes at most left bytes and records any excess. With
// direct set, writes of directWriteMin bytes or more flush bw (which is w)
// and go straight to direct.
type limitedWriter struct {
	w      io.Writer
	bw     *bufio.Writer
	direct io.Writer
	left   int64
	extra  int64
	over   bool
}

var errTooMuch = errors.New("safetensors: WriteTo wrote more than the tensor size")

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		l.over = true
		l.extra += int64(len(p)) - l.left
		return 0, fmt.Errorf("%w: %w", ErrInvalidTensorView, errTooMuch)
	}
	w := l.w
	if l.direct != nil && len(p) >= directWriteMin {
		if err := l.bw.Flush(); err != nil {
			return 0, err
		}
		w = l.direct
	}
	n, err := w.Write(p)
	l.left -= int64(n)
	return n, err
}

// tensorReader reads a tensor's bytes and names the input file and tensor
// in its read errors (a write error of io.Copy passes unchanged).
type tensorReader struct {
	r            io.Reader
	file, tensor string
}

func (t tensorReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = &TensorError{File: t.file, Tensor: t.tensor, Err: fmt.Errorf("reading data: %w", err)}
	}
	return n, err
}

// CopyTensor returns a Tensor that streams the named tensor's bytes
// unchanged from f (for writing untouched tensors byte-identically without
// holding them in memory). f must stay open until the tensor is written.
func (f *File) CopyTensor(name string) (Tensor, error) {
	t, err := f.lookup(name)
	if err != nil {
		return Tensor{}, err
	}
	out := Tensor{
		Name:  t.Name,
		DType: t.DType,
		Shape: slices.Clone(t.Shape),
		WriteTo: func(w io.Writer) error {
			sec := io.NewSectionReader(f.readerAt(), f.DataOffset()+t.Offsets[0], t.Offsets[1]-t.Offsets[0])
			_, err := io.Copy(w, tensorReader{sec, f.name, t.Name})
			return err
		},
	}
	if f.osFile != nil {
		out.src = &fileSection{f: f.osFile, off: f.DataOffset() + t.Offsets[0], n: t.Offsets[1] - t.Offsets[0]}
	}
	return out, nil
}
