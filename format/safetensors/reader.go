package safetensors

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/adaptool/adaptool/internal/mmapfile"
)

// File is an open, fully validated safetensors file (rules 1–8). Its tensor
// data is memory-mapped read-only when possible and read with pread
// otherwise. A File is safe for concurrent use.
type File struct {
	*Header

	name   string
	r      io.ReaderAt
	closer io.Closer
	mapped []byte   // the whole file when memory-mapped, else nil
	osFile *os.File // the file itself when it is a plain file (no container)
}

// Open opens and validates the named safetensors file: the 8-byte prefix and
// the header are read and checked first (rules 1–7), then the data size
// (rule 8). The data section is then memory-mapped read-only (pread on
// platforms without mmap). A file inside a registered Container is read
// through it. Slices returned by Data are valid until Close.
func Open(name string, opts ...Option) (*File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	o := buildOptions(opts)
	o.name = name
	ra, size, wrapped, err := detectContainer(f, st.Size(), name)
	if err != nil {
		f.Close()
		return nil, err
	}
	h, err := newFile(ra, size, &o)
	if err != nil {
		f.Close()
		return nil, err
	}
	h.name = name
	h.closer = f
	if c, ok := ra.(io.Closer); ok && wrapped {
		h.closer = multiCloser{c, f}
	}
	if !wrapped {
		h.osFile = f
	}
	if !wrapped && h.DataSize > 0 {
		if m, err := mmapfile.Map(f, size); err == nil && m != nil {
			h.mapped = m
		}
	}
	return h, nil
}

type multiCloser []io.Closer

func (m multiCloser) Close() error {
	var errs []error
	for _, c := range m {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// NewReader validates a safetensors stream of the given size (rules 1–8)
// and returns a File that reads tensor data from r with ReadAt. Close does
// not close r.
func NewReader(r io.ReaderAt, size int64, opts ...Option) (*File, error) {
	o := buildOptions(opts)
	f, err := newFile(r, size, &o)
	if err != nil {
		return nil, err
	}
	f.name = o.name
	return f, nil
}

func newFile(r io.ReaderAt, size int64, o *options) (*File, error) {
	h, err := readHeader(r, size, o)
	if err != nil {
		return nil, err
	}
	// Rule 8: the data buffer must end exactly at the end of the file. All
	// terms are bounded (N ≤ 1e8, DataSize < MaxInt64-1e8-8), so no overflow.
	if want := prefixSize + h.HeaderSize + h.DataSize; want != size {
		tensor := ""
		if len(h.Tensors) > 0 {
			tensor = h.Tensors[len(h.Tensors)-1].Name
		}
		what := "trailing bytes"
		if size < want {
			what = "truncated"
		}
		return nil, &TensorError{File: o.name, Tensor: tensor, Err: fmt.Errorf(
			"%w: %s: header declares %d data bytes ending at file offset %d, file has %d bytes",
			ErrMetadataIncompleteBuffer, what, h.DataSize, want, size)}
	}
	return &File{Header: h, r: r}, nil
}

// Close releases the mapping and closes the file. Slices returned by Data
// must not be used afterwards.
func (f *File) Close() error {
	var err error
	if f.mapped != nil {
		err = mmapfile.Unmap(f.mapped)
		f.mapped = nil
	}
	if f.closer != nil {
		if cerr := f.closer.Close(); err == nil {
			err = cerr
		}
		f.closer = nil
		f.osFile = nil
	}
	return err
}

// Name returns the file name given to Open ("" for NewReader without WithName).
func (f *File) Name() string { return f.name }

// Mapped reports whether the data is memory-mapped (Data is then zero-copy).
func (f *File) Mapped() bool { return f.mapped != nil }

func (f *File) lookup(name string) (TensorInfo, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return t, &TensorError{File: f.name, Tensor: name, Err: ErrTensorNotFound}
	}
	return t, nil
}

// Data returns the raw little-endian bytes of the named tensor. When the
// file is memory-mapped the slice aliases the mapping (zero-copy) and must
// never be modified; otherwise it is a fresh copy.
func (f *File) Data(name string) ([]byte, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	return f.TensorData(t)
}

// TensorData is Data for a TensorInfo of this file's header.
func (f *File) TensorData(t TensorInfo) ([]byte, error) {
	off := f.DataOffset() + t.Offsets[0]
	n := t.Offsets[1] - t.Offsets[0]
	if f.mapped != nil {
		return f.mapped[off : off+n : off+n], nil
	}
	buf := make([]byte, n)
	if n == 0 {
		return buf, nil
	}
	if got, err := f.r.ReadAt(buf, off); got < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, &TensorError{File: f.name, Tensor: t.Name, Err: fmt.Errorf("reading data: %w", err)}
	}
	return buf, nil
}

// Section returns a reader of the named tensor's bytes, for streaming a
// tensor without holding it in memory.
func (f *File) Section(name string) (*io.SectionReader, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	off := f.DataOffset() + t.Offsets[0]
	return io.NewSectionReader(f.readerAt(), off, t.Offsets[1]-t.Offsets[0]), nil
}

func (f *File) readerAt() io.ReaderAt {
	if f.mapped != nil {
		return bytesReaderAt(f.mapped)
	}
	return f.r
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Float32 returns the named tensor converted to a fresh []float32 (see
// ToFloat32 for the supported dtypes and rounding).
func (f *File) Float32(name string) ([]float32, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	data, err := f.TensorData(t)
	if err != nil {
		return nil, err
	}
	n := t.NumElements()
	if t.DType == C64 {
		n *= 2
	}
	dst := make([]float32, n)
	if err := ToFloat32(dst, data, t.DType); err != nil {
		return nil, &TensorError{File: f.name, Tensor: name, Err: err}
	}
	return dst, nil
}
