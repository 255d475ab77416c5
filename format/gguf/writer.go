package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/adaptool/adaptool/internal/atomicfile"
	"github.com/adaptool/adaptool/internal/mmapfile"
)

// Tensor is one tensor to write: its name, ggml type, dimensions in ggml
// order (Dims[0] is the row length) and either Data (exactly the byte size
// the type and dims imply) or WriteTo, a streamer that writes exactly that
// many bytes.
type Tensor struct {
	Name    string
	Type    GGMLType
	Dims    []uint64
	Data    []byte
	WriteTo func(w io.Writer) error
}

// Write writes a GGUF v3 file: the KV pairs in the given order, the tensor
// infos in the given order with offsets packed in that order (each aligned),
// padding to the alignment, and the data, each tensor padded with zeros to
// the alignment (as ggml's gguf.cpp and gguf-py do). The alignment is
// general.alignment when kv holds it (it must be a u32 power of two), else 32.
func Write(w io.Writer, kv []KV, tensors []Tensor) error {
	align := uint64(DefaultAlignment)
	seen := make(map[string]bool, len(kv))
	for _, p := range kv {
		if seen[p.Key] {
			return &Error{Tensor: p.Key, Err: ruleErr(ErrDuplicate, "metadata key given twice")}
		}
		seen[p.Key] = true
		if !utf8.ValidString(p.Key) {
			return &Error{Tensor: p.Key, Err: ruleErr(ErrFormat, "key is not valid UTF-8")}
		}
		if err := checkValue(p.Value, 0); err != nil {
			return &Error{Tensor: p.Key, Err: err}
		}
		if p.Key == KeyAlignment {
			a, ok := p.Value.X.(uint32)
			if !ok || p.Value.Type != TypeUint32 || a == 0 || a&(a-1) != 0 {
				return &Error{Tensor: p.Key, Err: ruleErr(ErrAlignment, "want a u32 power of two, got %s %v", p.Value.Type, p.Value.X)}
			}
			align = uint64(a)
		}
	}
	sizes := make([]uint64, len(tensors))
	offs := make([]uint64, len(tensors))
	names := make(map[string]bool, len(tensors))
	var off uint64
	for i, t := range tensors {
		if names[t.Name] {
			return &Error{Tensor: t.Name, Err: ruleErr(ErrDuplicate, "tensor given twice")}
		}
		names[t.Name] = true
		if len(t.Name) > MaxNameLen || !utf8.ValidString(t.Name) {
			return &Error{Tensor: t.Name, Err: ruleErr(ErrTensorInfo, "name must be valid UTF-8 of at most %d bytes", MaxNameLen)}
		}
		sz, err := checkDims(t.Dims, t.Type)
		if err != nil {
			return &Error{Tensor: t.Name, Err: err}
		}
		if t.WriteTo == nil && int64(len(t.Data)) != sz {
			return &Error{Tensor: t.Name, Err: ruleErr(ErrTensorInfo, "%d data bytes, %s %v needs %d", len(t.Data), t.Type, t.Dims, sz)}
		}
		sizes[i], offs[i] = uint64(sz), off
		off += pad(uint64(sz), align)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countWriter{w: bw}
	le := binary.LittleEndian
	var b [8]byte
	put32 := func(x uint32) { le.PutUint32(b[:], x); cw.Write(b[:4]) }
	put64 := func(x uint64) { le.PutUint64(b[:], x); cw.Write(b[:8]) }
	putStr := func(s string) { put64(uint64(len(s))); io.WriteString(cw, s) }
	put32(Magic)
	put32(Version)
	put64(uint64(len(tensors)))
	put64(uint64(len(kv)))
	for _, p := range kv {
		putStr(p.Key)
		put32(uint32(p.Value.Type))
		writeValue(cw, p.Value)
	}
	for i, t := range tensors {
		putStr(t.Name)
		put32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			put64(d)
		}
		put32(uint32(t.Type))
		put64(offs[i])
	}
	zeros := make([]byte, align)
	cw.Write(zeros[:pad(uint64(cw.n), align)-uint64(cw.n)])
	if cw.err != nil {
		return cw.err
	}
	for i, t := range tensors {
		start := cw.n
		if t.WriteTo != nil {
			if err := t.WriteTo(cw); err != nil {
				return &Error{Tensor: t.Name, Err: err}
			}
		} else if n, err := cw.Write(t.Data); err != nil {
			// Data mapping an input truncated meanwhile fails with EFAULT.
			if fe := mmapfile.WriteFault(err, t.Data, n); fe != err {
				return &Error{Tensor: t.Name, Err: fe}
			}
		}
		if cw.err != nil {
			return cw.err
		}
		if got := uint64(cw.n - start); got != sizes[i] {
			return &Error{Tensor: t.Name, Err: fmt.Errorf("gguf: streamer wrote %d bytes, want %d", got, sizes[i])}
		}
		cw.Write(zeros[:pad(sizes[i], align)-sizes[i]])
	}
	if cw.err != nil {
		return cw.err
	}
	return bw.Flush()
}

// WriteFile writes a GGUF file atomically: to a temporary file in the target
// directory, synced, then renamed over name. On error nothing is left behind.
//
// A failure to create, sync or rename the file itself (a missing or
// read-only directory) is a *WriteError naming the target.
func WriteFile(name string, kv []KV, tensors []Tensor) error {
	return atomicfile.WriteStream(name, func(w io.Writer) error {
		err := Write(w, kv, tensors)
		var e *Error
		if errors.As(err, &e) && e.File == "" {
			e.File = name
		}
		return err
	})
}

// WriteError reports that an output file could not be created or put in
// place. It is never about an input, even when it wraps fs.ErrNotExist. It
// is the same type as safetensors.WriteError.
type WriteError = atomicfile.WriteError

func pad(n, align uint64) uint64 { return (n + align - 1) / align * align }

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// checkValue verifies that v.X matches v.Type (and Elem for arrays).
func checkValue(v Value, depth int) error {
	ok := false
	switch v.Type {
	case TypeUint8:
		_, ok = v.X.(uint8)
	case TypeInt8:
		_, ok = v.X.(int8)
	case TypeUint16:
		_, ok = v.X.(uint16)
	case TypeInt16:
		_, ok = v.X.(int16)
	case TypeUint32:
		_, ok = v.X.(uint32)
	case TypeInt32:
		_, ok = v.X.(int32)
	case TypeFloat32:
		_, ok = v.X.(float32)
	case TypeBool:
		_, ok = v.X.(bool)
	case TypeString:
		_, ok = v.X.(string)
	case TypeUint64:
		_, ok = v.X.(uint64)
	case TypeInt64:
		_, ok = v.X.(int64)
	case TypeFloat64:
		_, ok = v.X.(float64)
	case TypeArray:
		if depth >= MaxArrayDepth {
			return ruleErr(ErrValueType, "arrays nested deeper than %d", MaxArrayDepth)
		}
		switch x := v.X.(type) {
		case []uint8:
			ok = v.Elem == TypeUint8
		case []int8:
			ok = v.Elem == TypeInt8
		case []uint16:
			ok = v.Elem == TypeUint16
		case []int16:
			ok = v.Elem == TypeInt16
		case []uint32:
			ok = v.Elem == TypeUint32
		case []int32:
			ok = v.Elem == TypeInt32
		case []float32:
			ok = v.Elem == TypeFloat32
		case []bool:
			ok = v.Elem == TypeBool
		case []string:
			ok = v.Elem == TypeString
		case []uint64:
			ok = v.Elem == TypeUint64
		case []int64:
			ok = v.Elem == TypeInt64
		case []float64:
			ok = v.Elem == TypeFloat64
		case []Value:
			ok = v.Elem == TypeArray
			for _, e := range x {
				if e.Type != TypeArray {
					return ruleErr(ErrValueType, "nested array holds a %s", e.Type)
				}
				if err := checkValue(e, depth+1); err != nil {
					return err
				}
			}
		}
	default:
		return ruleErr(ErrValueType, "value type %d", uint32(v.Type))
	}
	if !ok {
		return ruleErr(ErrValueType, "Go value %T does not match %s (elem %s)", v.X, v.Type, v.Elem)
	}
	return nil
}

func writeValue(w io.Writer, v Value) {
	le := binary.LittleEndian
	var b [8]byte
	switch x := v.X.(type) {
	case uint8:
		w.Write([]byte{x})
	case int8:
		w.Write([]byte{byte(x)})
	case bool:
		if x {
			w.Write([]byte{1})
		} else {
			w.Write([]byte{0})
		}
	case uint16:
		le.PutUint16(b[:], x)
		w.Write(b[:2])
	case int16:
		le.PutUint16(b[:], uint16(x))
		w.Write(b[:2])
	case uint32:
		le.PutUint32(b[:], x)
		w.Write(b[:4])
	case int32:
		le.PutUint32(b[:], uint32(x))
		w.Write(b[:4])
	case float32:
		le.PutUint32(b[:], math.Float32bits(x))
		w.Write(b[:4])
	case uint64:
		le.PutUint64(b[:], x)
		w.Write(b[:8])
	case int64:
		le.PutUint64(b[:], uint64(x))
		w.Write(b[:8])
	case float64:
		le.PutUint64(b[:], math.Float64bits(x))
		w.Write(b[:8])
	case string:
		le.PutUint64(b[:], uint64(len(x)))
		w.Write(b[:8])
		io.WriteString(w, x)
	default:
		// array
		le.PutUint32(b[:], uint32(v.Elem))
		w.Write(b[:4])
		n := v.Len()
		le.PutUint64(b[:], uint64(n))
		w.Write(b[:8])
		writeElems(w, v)
	}
}

func writeElems(w io.Writer, v Value) {
	each := func(n int, f func(i int) Value) {
		for i := 0; i < n; i++ {
			writeValue(w, f(i))
		}
	}
	switch x := v.X.(type) {
	case []uint8:
		w.Write(x)
	case []int8:
		each(len(x), func(i int) Value { return Int8(x[i]) })
	case []uint16:
		each(len(x), func(i int) Value { return Uint16(x[i]) })
	case []int16:
		each(len(x), func(i int) Value { return Int16(x[i]) })
	case []uint32:
		each(len(x), func(i int) Value { return Uint32(x[i]) })
	case []int32:
		each(len(x), func(i int) Value { return Int32(x[i]) })
	case []float32:
		each(len(x), func(i int) Value { return Float32(x[i]) })
	case []bool:
		each(len(x), func(i int) Value { return Bool(x[i]) })
	case []string:
		each(len(x), func(i int) Value { return String(x[i]) })
	case []uint64:
		each(len(x), func(i int) Value { return Uint64(x[i]) })
	case []int64:
		each(len(x), func(i int) Value { return Int64(x[i]) })
	case []float64:
		each(len(x), func(i int) Value { return Float64(x[i]) })
	case []Value:
		each(len(x), func(i int) Value { return x[i] })
	}
}
