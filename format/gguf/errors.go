package gguf

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by the reader wraps one of them (use
// errors.Is), inside an [*Error] that names the file and the key or tensor.
var (
	// ErrFormat: the bytes are not a well-formed GGUF file (bad magic, short
	// file, out-of-range count, string or offset).
	ErrFormat = errors.New("gguf: invalid file")
	// ErrVersion: the version is not 2 or 3 (v1 uses 32-bit counts; a
	// byte-swapped version means a big-endian file).
	ErrVersion = errors.New("gguf: unsupported version")
	// ErrValueType: a metadata value type id is unknown, or an array nests
	// deeper than MaxArrayDepth.
	ErrValueType = errors.New("gguf: invalid metadata value type")
	// ErrDuplicate: a metadata key or a tensor name occurs twice.
	ErrDuplicate = errors.New("gguf: duplicate key or tensor name")
	// ErrTensorInfo: a tensor info is invalid (dimension count, negative or
	// overflowing dimensions, unknown ggml type, row not a multiple of the block
	// size, name too long).
	ErrTensorInfo = errors.New("gguf: invalid tensor info")
	// ErrOffset: a tensor's data is misaligned, overlaps another tensor or
	// lies outside the file.
	ErrOffset = errors.New("gguf: invalid tensor offset")
	// ErrAlignment: general.alignment is not a u32 power of two.
	ErrAlignment = errors.New("gguf: invalid general.alignment")
	// ErrNotFound: no tensor or key with that name.
	ErrNotFound = errors.New("gguf: not found")
	// ErrUnsupported: a valid request this package does not implement (e.g.
	// decoding a block type other than F32/F16/BF16/Q8_0 to float32).
	ErrUnsupported = errors.New("gguf: unsupported")
)

// Error is the error type of this package: the file, the key or tensor it
// concerns (either may be empty) and the underlying error, which wraps one of
// the sentinels.
type Error struct {
	File   string
	Tensor string // tensor name or metadata key
	Err    error
}

// Error formats the error as "gguf: FILE: \"TENSOR\": rule".
func (e *Error) Error() string {
	s := "gguf"
	if e.File != "" {
		s += ": " + e.File
	}
	if e.Tensor != "" {
		s += ": " + fmt.Sprintf("%q", e.Tensor)
	}
	return s + ": " + strings.TrimPrefix(e.Err.Error(), "gguf: ")
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// IsFormatError reports whether err is, or wraps, one of this package's
// sentinels describing invalid input (everything except ErrNotFound and
// ErrUnsupported).
func IsFormatError(err error) bool {
	for _, s := range []error{ErrFormat, ErrVersion, ErrValueType, ErrDuplicate, ErrTensorInfo, ErrOffset, ErrAlignment} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// ruleErr wraps a sentinel with a rule description.
func ruleErr(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
