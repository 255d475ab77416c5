package safetensors

import (
	"fmt"
)

// DType is a safetensors element type. The numeric order of the constants is
// the reference "increasing alignment" rank that the canonical writer sorts
// on (descending), so it is part of the format.
type DType uint8

// The 22 dtypes of safetensors 0.8, in rank order.
const (
	Bool       DType = iota // BOOL, 8 bits
	F4                      // F4 (MXFP4 E2M1), 4 bits
	F6E2M3                  // F6_E2M3 (MXFP6), 6 bits
	F6E3M2                  // F6_E3M2 (MXFP6), 6 bits
	U8                      // U8
	I8                      // I8
	F8E5M2                  // F8_E5M2
	F8E4M3                  // F8_E4M3 (E4M3FN: no Inf, NaN = S.1111.111)
	F8E8M0                  // F8_E8M0 (MX scale)
	F8E4M3FNUZ              // F8_E4M3FNUZ (AMD)
	F8E5M2FNUZ              // F8_E5M2FNUZ (AMD)
	I16                     // I16
	U16                     // U16
	F16                     // F16 (IEEE binary16)
	BF16                    // BF16 (bfloat16)
	I32                     // I32
	U32                     // U32
	F32                     // F32
	C64                     // C64 (complex64: two F32)
	F64                     // F64
	I64                     // I64
	U64                     // U64
)

// NumDTypes is the number of dtypes; valid DType values are 0..NumDTypes-1.
const NumDTypes = int(U64) + 1

var dtypeNames = [NumDTypes]string{
	"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
	"F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
	"C64", "F64", "I64", "U64",
}

var dtypeBits = [NumDTypes]int{
	8, 4, 6, 6, 8, 8, 8, 8, 8,
	8, 8, 16, 16, 16, 16, 32, 32, 32,
	64, 64, 64, 64,
}

// String returns the file spelling of d ("BOOL", "F8_E4M3", ...), or
// "DType(n)" for an invalid value.
func (d DType) String() string {
	if int(d) < NumDTypes {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Bits returns the size of one element in bits (4 for F4, 6 for F6_*), or 0
// for an invalid value.
func (d DType) Bits() int {
	if int(d) < NumDTypes {
		return dtypeBits[d]
	}
	return 0
}

// Valid reports whether d is one of the 22 defined dtypes.
func (d DType) Valid() bool { return int(d) < NumDTypes }

// IsFloat reports whether d is a real floating-point type (F4..F64, not C64).
func (d DType) IsFloat() bool {
	switch d {
	case F4, F6E2M3, F6E3M2, F8E5M2, F8E4M3, F8E8M0, F8E4M3FNUZ, F8E5M2FNUZ, F16, BF16, F32, F64:
		return true
	}
	return false
}

// MarshalText implements [encoding.TextMarshaler] with the file spelling.
func (d DType) MarshalText() ([]byte, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("safetensors: invalid dtype %d", uint8(d))
	}
	return []byte(dtypeNames[d]), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] via [ParseDType].
func (d *DType) UnmarshalText(b []byte) error {
	v, err := ParseDType(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDType parses a file spelling ("F16", "F8_E4M3", ...). The match is
// exact and case-sensitive, as in the reference. Names that are not part of
// the format (I4, U4, F8_E3M4, C128, ...) are rejected with an error wrapping
// [ErrInvalidHeaderDeserialization].
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if n == s {
			return DType(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown dtype %q", ErrInvalidHeaderDeserialization, s)
}
