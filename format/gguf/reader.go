package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"unicode/utf8"
)

// File is an open GGUF file: its parsed header and access to tensor data.
type File struct {
	Version    uint32
	KV         []KV         // in file order
	Tensors    []TensorInfo // in file order
	Alignment  uint64       // general.alignment or DefaultAlignment
	DataOffset int64        // absolute offset of the data section
	FileSize   int64

	name   string
	r      io.ReaderAt
	closer io.Closer
	kvIdx  map[string]int
	tIdx   map[string]int
}

// Open opens and parses the GGUF file name. The tensor data is read on demand
// (pread); call Close when done.
func Open(name string) (*File, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	f, err := parse(fh, st.Size(), name)
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// NewReader parses a GGUF file of size bytes from r. name is used in errors
// only.
func NewReader(r io.ReaderAt, size int64, name string) (*File, error) {
	return parse(r, size, name)
}

// Close closes the underlying file when it was opened by Open.
func (f *File) Close() error {
	if f.closer != nil {
		c := f.closer
		f.closer = nil
		return c.Close()
	}
	return nil
}

// Name returns the file name given to Open or NewReader.
func (f *File) Name() string { return f.name }

// Get returns the value of a metadata key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kvIdx[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// String returns a string metadata value ("" and false when the key is
// absent or not a string).
func (f *File) String(key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok || v.Type != TypeString {
		return "", false
	}
	return v.X.(string), true
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tIdx[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// Data returns a fresh copy of the named tensor's bytes.
func (f *File) Data(name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, &Error{File: f.name, Tensor: name, Err: ErrNotFound}
	}
	buf := make([]byte, t.Size())
	if _, err := f.r.ReadAt(buf, f.DataOffset+int64(t.Offset)); err != nil {
		if errors.Is(err, io.EOF) {
			err = ruleErr(ErrFormat, "tensor data truncated")
		}
		return nil, &Error{File: f.name, Tensor: name, Err: err}
	}
	return buf, nil
}

// Float32 returns the named tensor decoded to float32 (row-major, i.e. the
// torch order of Shape). Supported types: see Decode; others return
// ErrUnsupported.
func (f *File) Float32(name string) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, &Error{File: f.name, Tensor: name, Err: ErrNotFound}
	}
	raw, err := f.Data(name)
	if err != nil {
		return nil, err
	}
	out, err := Decode(raw, t.Type, t.NumElements())
	if err != nil {
		return nil, &Error{File: f.name, Tensor: name, Err: err}
	}
	return out, nil
}

// header parsing -------------------------------------------------------------

type hreader struct {
	br   *bufio.Reader
	pos  int64 // absolute position
	size int64 // file size
	buf  [8]byte
}

func (h *hreader) left() int64 { return h.size - h.pos }

func (h *hreader) read(n int) ([]byte, error) {
	if int64(n) > h.left() {
		return nil, ruleErr(ErrFormat, "unexpected end of file at offset %d (need %d bytes, %d left)", h.pos, n, h.left())
	}
	b := h.buf[:n]
	if _, err := io.ReadFull(h.br, b); err != nil {
		return nil, ruleErr(ErrFormat, "read at offset %d: %v", h.pos, err)
	}
	h.pos += int64(n)
	return b, nil
}

func (h *hreader) u8() (uint8, error) {
	b, err := h.read(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (h *hreader) u16() (uint16, error) {
	b, err := h.read(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (h *hreader) u32() (uint32, error) {
	b, err := h.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (h *hreader) u64() (uint64, error) {
	b, err := h.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// count reads a u64 count of items of at least minSize bytes each and checks
// that they fit in the rest of the file.
func (h *hreader) count(what string, minSize int64) (int, error) {
	n, err := h.u64()
	if err != nil {
		return 0, err
	}
	if minSize < 1 {
		minSize = 1
	}
	if n > uint64(h.left()/minSize) {
		return 0, ruleErr(ErrFormat, "%s %d cannot fit in the %d bytes left", what, n, h.left())
	}
	return int(n), nil
}

func (h *hreader) str(what string) (string, error) {
	n, err := h.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(h.left()) {
		return "", ruleErr(ErrFormat, "%s length %d exceeds the %d bytes left at offset %d", what, n, h.left(), h.pos)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(h.br, b); err != nil {
		return "", ruleErr(ErrFormat, "read at offset %d: %v", h.pos, err)
	}
	h.pos += int64(n)
	return string(b), nil
}

func parse(r io.ReaderAt, size int64, name string) (*File, error) {
	f, err := parseHeader(r, size, name)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, err
		}
		return nil, &Error{File: name, Err: err}
	}
	return f, nil
}

func parseHeader(r io.ReaderAt, size int64, name string) (*File, error) {
	if size < 0 {
		return nil, ruleErr(ErrFormat, "negative size")
	}
	h := &hreader{br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: size}
	if size < 24 {
		return nil, ruleErr(ErrFormat, "file is %d bytes, shorter than the 24-byte GGUF header", size)
	}
	magic, _ := h.u32()
	if magic != Magic {
		return nil, ruleErr(ErrFormat, "bad magic %#08x, want \"GGUF\"", magic)
	}
	ver, _ := h.u32()
	switch {
	case ver == 2 || ver == 3:
	case ver&0xFFFF == 0 && ver != 0:
		return nil, ruleErr(ErrVersion, "version %#x looks byte-swapped: big-endian GGUF is not supported", ver)
	default:
		return nil, ruleErr(ErrVersion, "version %d (want 2 or 3)", ver)
	}
	f := &File{Version: ver, name: name, r: r, FileSize: size, Alignment: DefaultAlignment}
	nt, err := h.u64()
	if err != nil {
		return nil, err
	}
	nkv, err := h.u64()
	if err != nil {
		return nil, err
	}
	// minimum sizes: a KV is a key (8) + type (4) + 1 byte; a tensor info is a
	// name (8) + n_dims (4) + type (4) + offset (8).
	if nkv > uint64(h.left()/13) {
		return nil, ruleErr(ErrFormat, "kv count %d cannot fit in the %d bytes left", nkv, h.left())
	}
	if nt > uint64(h.left()/24) {
		return nil, ruleErr(ErrFormat, "tensor count %d cannot fit in the %d bytes left", nt, h.left())
	}
	if nkv*13+nt*24 > uint64(h.left()) {
		return nil, ruleErr(ErrFormat, "%d kv pairs and %d tensor infos cannot fit in the %d bytes left", nkv, nt, h.left())
	}
	f.KV = make([]KV, 0, nkv)
	f.kvIdx = make(map[string]int, nkv)
	for i := uint64(0); i < nkv; i++ {
		key, err := h.str("key")
		if err != nil {
			return nil, fmt.Errorf("kv %d: %w", i, err)
		}
		if !utf8.ValidString(key) {
			return nil, &Error{File: name, Tensor: key, Err: ruleErr(ErrFormat, "key is not valid UTF-8")}
		}
		if _, dup := f.kvIdx[key]; dup {
			return nil, &Error{File: name, Tensor: key, Err: ruleErr(ErrDuplicate, "metadata key occurs twice")}
		}
		t, err := h.u32()
		if err != nil {
			return nil, &Error{File: name, Tensor: key, Err: err}
		}
		v, err := h.value(ValueType(t), 0)
		if err != nil {
			return nil, &Error{File: name, Tensor: key, Err: err}
		}
		f.kvIdx[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	if v, ok := f.Get(KeyAlignment); ok {
		a, isU32 := v.X.(uint32)
		if !isU32 || v.Type != TypeUint32 {
			return nil, &Error{File: name, Tensor: KeyAlignment, Err: ruleErr(ErrAlignment, "type %s, want u32", v.Type)}
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, &Error{File: name, Tensor: KeyAlignment, Err: ruleErr(ErrAlignment, "%d is not a power of two", a)}
		}
		f.Alignment = uint64(a)
	}
	if nt > uint64(h.left()/24) {
		return nil, ruleErr(ErrFormat, "tensor count %d cannot fit in the %d bytes left", nt, h.left())
	}
	f.Tensors = make([]TensorInfo, 0, nt)
	f.tIdx = make(map[string]int, nt)
	sizes := make([]int64, 0, nt)
	for i := uint64(0); i < nt; i++ {
		tn, err := h.str("tensor name")
		if err != nil {
			return nil, fmt.Errorf("tensor info %d: %w", i, err)
		}
		terr := func(err error) error { return &Error{File: name, Tensor: tn, Err: err} }
		if len(tn) > MaxNameLen {
			return nil, terr(ruleErr(ErrTensorInfo, "name is %d bytes, at most %d", len(tn), MaxNameLen))
		}
		if !utf8.ValidString(tn) {
			return nil, terr(ruleErr(ErrTensorInfo, "name is not valid UTF-8"))
		}
		if _, dup := f.tIdx[tn]; dup {
			return nil, terr(ruleErr(ErrDuplicate, "tensor name occurs twice"))
		}
		nd, err := h.u32()
		if err != nil {
			return nil, terr(err)
		}
		if nd > MaxDims {
			return nil, terr(ruleErr(ErrTensorInfo, "%d dimensions, at most %d", nd, MaxDims))
		}
		dims := make([]uint64, nd)
		for j := range dims {
			if dims[j], err = h.u64(); err != nil {
				return nil, terr(err)
			}
		}
		typ, err := h.u32()
		if err != nil {
			return nil, terr(err)
		}
		off, err := h.u64()
		if err != nil {
			return nil, terr(err)
		}
		sz, err := checkDims(dims, GGMLType(typ))
		if err != nil {
			return nil, terr(err)
		}
		if off%f.Alignment != 0 {
			return nil, terr(ruleErr(ErrOffset, "offset %d is not a multiple of the alignment %d", off, f.Alignment))
		}
		f.tIdx[tn] = len(f.Tensors)
		f.Tensors = append(f.Tensors, TensorInfo{Name: tn, Dims: dims, Type: GGMLType(typ), Offset: off})
		sizes = append(sizes, sz)
	}
	// data section
	data := uint64(h.pos)
	if rem := data % f.Alignment; rem != 0 {
		data += f.Alignment - rem
	}
	if nt > 0 && data > uint64(size) {
		return nil, ruleErr(ErrOffset, "data section would start at %d, past the end of the %d-byte file", data, size)
	}
	f.DataOffset = int64(data)
	avail := uint64(0)
	if data <= uint64(size) {
		avail = uint64(size) - data
	}
	// bounds and overlap, in offset order
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	var prevEnd uint64
	prev := ""
	for _, i := range order {
		t := f.Tensors[i]
		sz := uint64(sizes[i])
		if t.Offset > avail || sz > avail-t.Offset {
			return nil, &Error{File: name, Tensor: t.Name, Err: ruleErr(ErrOffset,
				"data [%d, %d) lies outside the %d-byte data section", t.Offset, t.Offset+sz, avail)}
		}
		if t.Offset < prevEnd {
			return nil, &Error{File: name, Tensor: t.Name, Err: ruleErr(ErrOffset,
				"data at %d overlaps tensor %q ending at %d", t.Offset, prev, prevEnd)}
		}
		if sz > 0 {
			prevEnd, prev = t.Offset+sz, t.Name
		}
	}
	return f, nil
}

// value reads one value of type t; depth counts enclosing arrays.
func (h *hreader) value(t ValueType, depth int) (Value, error) {
	switch t {
	case TypeUint8:
		x, err := h.u8()
		return Uint8(x), err
	case TypeInt8:
		x, err := h.u8()
		return Int8(int8(x)), err
	case TypeUint16:
		x, err := h.u16()
		return Uint16(x), err
	case TypeInt16:
		x, err := h.u16()
		return Int16(int16(x)), err
	case TypeUint32:
		x, err := h.u32()
		return Uint32(x), err
	case TypeInt32:
		x, err := h.u32()
		return Int32(int32(x)), err
	case TypeFloat32:
		x, err := h.u32()
		return Float32(math.Float32frombits(x)), err
	case TypeBool:
		x, err := h.u8()
		if err == nil && x > 1 {
			err = ruleErr(ErrFormat, "bool byte %d at offset %d, want 0 or 1", x, h.pos-1)
		}
		return Bool(x == 1), err
	case TypeString:
		s, err := h.str("string")
		return String(s), err
	case TypeUint64:
		x, err := h.u64()
		return Uint64(x), err
	case TypeInt64:
		x, err := h.u64()
		return Int64(int64(x)), err
	case TypeFloat64:
		x, err := h.u64()
		return Float64(math.Float64frombits(x)), err
	case TypeArray:
		if depth >= MaxArrayDepth {
			return Value{}, ruleErr(ErrValueType, "arrays nested deeper than %d", MaxArrayDepth)
		}
		et, err := h.u32()
		if err != nil {
			return Value{}, err
		}
		elem := ValueType(et)
		if elem >= numValueTypes {
			return Value{}, ruleErr(ErrValueType, "array element type %d", et)
		}
		n, err := h.count("array length", elem.minSize())
		if err != nil {
			return Value{}, err
		}
		return h.array(elem, n, depth)
	}
	return Value{}, ruleErr(ErrValueType, "value type %d", uint32(t))
}

func readSlice[T any](h *hreader, n int, get func(*hreader) (T, error)) (any, error) {
	s := make([]T, n)
	for i := range s {
		x, err := get(h)
		if err != nil {
			return nil, fmt.Errorf("array element %d: %w", i, err)
		}
		s[i] = x
	}
	return s, nil
}

func (h *hreader) array(elem ValueType, n int, depth int) (Value, error) {
	var x any
	var err error
	switch elem {
	case TypeUint8:
		x, err = readSlice(h, n, (*hreader).u8)
	case TypeInt8:
		x, err = readSlice(h, n, func(h *hreader) (int8, error) { v, e := h.u8(); return int8(v), e })
	case TypeUint16:
		x, err = readSlice(h, n, (*hreader).u16)
	case TypeInt16:
		x, err = readSlice(h, n, func(h *hreader) (int16, error) { v, e := h.u16(); return int16(v), e })
	case TypeUint32:
		x, err = readSlice(h, n, (*hreader).u32)
	case TypeInt32:
		x, err = readSlice(h, n, func(h *hreader) (int32, error) { v, e := h.u32(); return int32(v), e })
	case TypeFloat32:
		x, err = readSlice(h, n, func(h *hreader) (float32, error) { v, e := h.u32(); return math.Float32frombits(v), e })
	case TypeBool:
		x, err = readSlice(h, n, func(h *hreader) (bool, error) {
			v, e := h.value(TypeBool, depth+1)
			b, _ := v.X.(bool)
			return b, e
		})
	case TypeString:
		x, err = readSlice(h, n, func(h *hreader) (string, error) { return h.str("string") })
	case TypeUint64:
		x, err = readSlice(h, n, (*hreader).u64)
	case TypeInt64:
		x, err = readSlice(h, n, func(h *hreader) (int64, error) { v, e := h.u64(); return int64(v), e })
	case TypeFloat64:
		x, err = readSlice(h, n, func(h *hreader) (float64, error) { v, e := h.u64(); return math.Float64frombits(v), e })
	case TypeArray:
		x, err = readSlice(h, n, func(h *hreader) (Value, error) { return h.value(TypeArray, depth+1) })
	}
	if err != nil {
		return Value{}, err
	}
	return Value{Type: TypeArray, Elem: elem, X: x}, nil
}
