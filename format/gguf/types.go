package gguf

import (
	"fmt"
	"math"
)

// Magic is the first four bytes of every GGUF file ("GGUF"), read as a
// little-endian u32.
const Magic uint32 = 0x46554747

// Version is the GGUF version this package writes.
const Version uint32 = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the data alignment (a u32).
const KeyAlignment = "general.alignment"

// Limits applied by the reader (and the writer, so it never produces a file
// the reader refuses).
const (
	// MaxDims is the largest tensor dimension count (GGML_MAX_DIMS).
	MaxDims = 4
	// MaxNameLen is the longest tensor name in bytes (GGML_MAX_NAME is 64
	// including the terminating NUL, so 63).
	MaxNameLen = 63
	// MaxArrayDepth is how deeply metadata arrays may nest (an array of
	// scalars has depth 1).
	MaxArrayDepth = 8
)

// ValueType is a metadata value type id.
type ValueType uint32

// Metadata value types (gguf_type).
const (
	TypeUint8 ValueType = iota
	TypeInt8
	TypeUint16
	TypeInt16
	TypeUint32
	TypeInt32
	TypeFloat32
	TypeBool
	TypeString
	TypeArray
	TypeUint64
	TypeInt64
	TypeFloat64
	numValueTypes
)

var valueTypeNames = [...]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"}

// String returns the short name of the type ("u32", "string", ...).
func (t ValueType) String() string {
	if t < numValueTypes {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// size returns the fixed encoded size of a scalar type, 0 for string/array or
// unknown types.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// minSize is the fewest bytes one encoded value of type t can take.
func (t ValueType) minSize() int64 {
	switch t {
	case TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return int64(t.size())
}

// Value is a typed metadata value. X holds the Go value: uint8, int8,
// uint16, int16, uint32, int32, float32, bool, string, uint64, int64 or
// float64 for scalars; for arrays (Type == TypeArray) a slice of the element
// type ([]uint32, []string, ...) or, for nested arrays, []Value.
type Value struct {
	Type ValueType
	Elem ValueType // element type, arrays only
	X    any
}

// Scalar constructors.

// Uint8 returns a u8 value.
func Uint8(v uint8) Value { return Value{Type: TypeUint8, X: v} }

// Int8 returns an i8 value.
func Int8(v int8) Value { return Value{Type: TypeInt8, X: v} }

// Uint16 returns a u16 value.
func Uint16(v uint16) Value { return Value{Type: TypeUint16, X: v} }

// Int16 returns an i16 value.
func Int16(v int16) Value { return Value{Type: TypeInt16, X: v} }

// Uint32 returns a u32 value.
func Uint32(v uint32) Value { return Value{Type: TypeUint32, X: v} }

// Int32 returns an i32 value.
func Int32(v int32) Value { return Value{Type: TypeInt32, X: v} }

// Float32 returns an f32 value.
func Float32(v float32) Value { return Value{Type: TypeFloat32, X: v} }

// Bool returns a bool value.
func Bool(v bool) Value { return Value{Type: TypeBool, X: v} }

// String returns a string value.
func String(v string) Value { return Value{Type: TypeString, X: v} }

// Uint64 returns a u64 value.
func Uint64(v uint64) Value { return Value{Type: TypeUint64, X: v} }

// Int64 returns an i64 value.
func Int64(v int64) Value { return Value{Type: TypeInt64, X: v} }

// Float64 returns an f64 value.
func Float64(v float64) Value { return Value{Type: TypeFloat64, X: v} }

// Array returns an array value. elems must be a slice of the Go type of elem
// ([]uint32 for TypeUint32, []string for TypeString, []Value for TypeArray);
// the writer checks this.
func Array(elem ValueType, elems any) Value { return Value{Type: TypeArray, Elem: elem, X: elems} }

// String renders the value for humans (arrays longer than 8 are elided).
func (v Value) String() string {
	if v.Type != TypeArray {
		return fmt.Sprint(v.X)
	}
	n := v.Len()
	s := fmt.Sprintf("[%s × %d]", v.Elem, n)
	if n <= 8 {
		s = fmt.Sprint(v.X)
	}
	return s
}

// Len returns the element count of an array value (0 for scalars).
func (v Value) Len() int {
	switch x := v.X.(type) {
	case []uint8:
		return len(x)
	case []int8:
		return len(x)
	case []uint16:
		return len(x)
	case []int16:
		return len(x)
	case []uint32:
		return len(x)
	case []int32:
		return len(x)
	case []float32:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	case []uint64:
		return len(x)
	case []int64:
		return len(x)
	case []float64:
		return len(x)
	case []Value:
		return len(x)
	}
	return 0
}

// Float64 converts a numeric scalar to float64 (ok false for strings, bools
// and arrays).
func (v Value) Float64() (float64, bool) {
	switch x := v.X.(type) {
	case uint8:
		return float64(x), true
	case int8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case int16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case int32:
		return float64(x), true
	case float32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return math.NaN(), false
}

// KV is one metadata key/value pair.
type KV struct {
	Key   string
	Value Value
}

// GGMLType is a ggml tensor type id.
type GGMLType uint32

// ggml tensor types (enum ggml_type). Ids 4, 5 (Q4_2, Q4_3) and 31–33, 36–38
// (removed repacked types) are not valid in files.
const (
	F32     GGMLType = 0
	F16     GGMLType = 1
	Q4_0    GGMLType = 2
	Q4_1    GGMLType = 3
	Q5_0    GGMLType = 6
	Q5_1    GGMLType = 7
	Q8_0    GGMLType = 8
	Q8_1    GGMLType = 9
	Q2_K    GGMLType = 10
	Q3_K    GGMLType = 11
	Q4_K    GGMLType = 12
	Q5_K    GGMLType = 13
	Q6_K    GGMLType = 14
	Q8_K    GGMLType = 15
	IQ2_XXS GGMLType = 16
	IQ2_XS  GGMLType = 17
	IQ3_XXS GGMLType = 18
	IQ1_S   GGMLType = 19
	IQ4_NL  GGMLType = 20
	IQ3_S   GGMLType = 21
	IQ2_S   GGMLType = 22
	IQ4_XS  GGMLType = 23
	I8      GGMLType = 24
	I16     GGMLType = 25
	I32     GGMLType = 26
	I64     GGMLType = 27
	F64     GGMLType = 28
	IQ1_M   GGMLType = 29
	BF16    GGMLType = 30
	TQ1_0   GGMLType = 34
	TQ2_0   GGMLType = 35
	MXFP4   GGMLType = 39
)

type typeTrait struct {
	name  string
	block int64 // elements per block
	size  int64 // bytes per block
}

// Block sizes and bytes per block, from ggml's type_traits (ggml.c) and
// gguf-py GGML_QUANT_SIZES.
var typeTraits = map[GGMLType]typeTrait{
	F32: {"F32", 1, 4}, F16: {"F16", 1, 2},
	Q4_0: {"Q4_0", 32, 18}, Q4_1: {"Q4_1", 32, 20},
	Q5_0: {"Q5_0", 32, 22}, Q5_1: {"Q5_1", 32, 24},
	Q8_0: {"Q8_0", 32, 34}, Q8_1: {"Q8_1", 32, 36},
	Q2_K: {"Q2_K", 256, 84}, Q3_K: {"Q3_K", 256, 110},
	Q4_K: {"Q4_K", 256, 144}, Q5_K: {"Q5_K", 256, 176},
	Q6_K: {"Q6_K", 256, 210}, Q8_K: {"Q8_K", 256, 292},
	IQ2_XXS: {"IQ2_XXS", 256, 66}, IQ2_XS: {"IQ2_XS", 256, 74},
	IQ3_XXS: {"IQ3_XXS", 256, 98}, IQ1_S: {"IQ1_S", 256, 50},
	IQ4_NL: {"IQ4_NL", 32, 18}, IQ3_S: {"IQ3_S", 256, 110},
	IQ2_S: {"IQ2_S", 256, 82}, IQ4_XS: {"IQ4_XS", 256, 136},
	I8: {"I8", 1, 1}, I16: {"I16", 1, 2}, I32: {"I32", 1, 4}, I64: {"I64", 1, 8},
	F64: {"F64", 1, 8}, IQ1_M: {"IQ1_M", 256, 56}, BF16: {"BF16", 1, 2},
	TQ1_0: {"TQ1_0", 256, 54}, TQ2_0: {"TQ2_0", 256, 66},
	MXFP4: {"MXFP4", 32, 17},
}

// String returns ggml's name of the type ("F32", "Q8_0", ...).
func (t GGMLType) String() string {
	if tr, ok := typeTraits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// Known reports whether t is a type this package can size.
func (t GGMLType) Known() bool { _, ok := typeTraits[t]; return ok }

// BlockSize returns the number of elements per block (1 for plain types),
// 0 for unknown types.
func (t GGMLType) BlockSize() int64 { return typeTraits[t].block }

// TypeSize returns the bytes per block, 0 for unknown types.
func (t GGMLType) TypeSize() int64 { return typeTraits[t].size }

// ParseGGMLType parses a type name as written by String (case-insensitive).
func ParseGGMLType(s string) (GGMLType, error) {
	for t, tr := range typeTraits {
		if equalFold(tr.name, s) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown ggml type %q", ErrUnsupported, s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name   string
	Dims   []uint64 // ne, ggml order: Dims[0] is the row length (innermost)
	Type   GGMLType
	Offset uint64 // relative to the data section
}

// NumElements returns the product of the dimensions.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= int64(d)
	}
	return n
}

// Size returns the byte size of the tensor data.
func (t TensorInfo) Size() int64 {
	tr := typeTraits[t.Type]
	if tr.block == 0 {
		return 0
	}
	return t.NumElements() / tr.block * tr.size
}

// Shape returns the dimensions in torch (row-major, outermost first) order.
func (t TensorInfo) Shape() []int {
	s := make([]int, len(t.Dims))
	for i, d := range t.Dims {
		s[len(t.Dims)-1-i] = int(d)
	}
	return s
}

// checkDims validates dims for type typ and returns the byte size; the rule
// is named in the returned error.
func checkDims(dims []uint64, typ GGMLType) (int64, error) {
	if len(dims) > MaxDims {
		return 0, ruleErr(ErrTensorInfo, "%d dimensions, at most %d", len(dims), MaxDims)
	}
	tr, ok := typeTraits[typ]
	if !ok {
		return 0, ruleErr(ErrTensorInfo, "unknown ggml type %d", uint32(typ))
	}
	n := int64(1)
	for i, d := range dims {
		if d > math.MaxInt64 {
			return 0, ruleErr(ErrTensorInfo, "dimension %d = %d overflows int64", i, d)
		}
		if d != 0 && n > math.MaxInt64/int64(d) {
			return 0, ruleErr(ErrTensorInfo, "element count overflows int64")
		}
		n *= int64(d)
	}
	row := int64(1)
	if len(dims) > 0 {
		row = int64(dims[0])
	}
	if row%tr.block != 0 {
		return 0, ruleErr(ErrTensorInfo, "row length %d is not a multiple of the %s block size %d", row, tr.name, tr.block)
	}
	blocks := n / tr.block
	if blocks != 0 && blocks > math.MaxInt64/tr.size {
		return 0, ruleErr(ErrTensorInfo, "byte size overflows int64")
	}
	return blocks * tr.size, nil
}
