package atz

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned for bad input has one of them in its
// chain (test with errors.Is); most arrive wrapped in an *Error naming the
// file, the tensor and the chunk.
var (
	// ErrFormat reports bytes that are not a valid atz container or chunk:
	// bad magic, sizes out of range, inconsistent tables, undecodable data.
	ErrFormat = errors.New("atz: not a valid atz container")
	// ErrVersion reports a container written by a newer, incompatible version.
	ErrVersion = errors.New("atz: unsupported container version")
	// ErrChecksum reports a chunk, directory or restored file whose checksum
	// does not match the stored one.
	ErrChecksum = errors.New("atz: checksum mismatch")
	// ErrLimit reports a declared size beyond the limits of this package
	// (MaxChunkSize, MaxDirectorySize, MaxHeaderSize).
	ErrLimit = errors.New("atz: size exceeds limit")
	// ErrBase reports a delta container opened without its base file, or
	// with a base whose size or checksum differs from the one packed against.
	ErrBase = errors.New("atz: base file missing or different")
	// ErrNotFound reports a tensor name absent from the container.
	ErrNotFound = errors.New("atz: tensor not found")
)

// Error adds context to a sentinel: the container file, the tensor (when the
// failing bytes belong to one) and the chunk index (-1 when not applicable).
type Error struct {
	File   string
	Tensor string
	Chunk  int
	Err    error
}

// Error formats the context and the underlying error.
func (e *Error) Error() string {
	s := "atz"
	if e.File != "" {
		s += ": " + e.File
	}
	if e.Tensor != "" {
		s += fmt.Sprintf(": tensor %q", e.Tensor)
	}
	if e.Chunk >= 0 {
		s += fmt.Sprintf(": chunk %d", e.Chunk)
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// formatErr returns an error wrapping ErrFormat with a detail message.
func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// IsFormatError reports whether err says the input is not a valid, intact
// container (ErrFormat, ErrVersion, ErrChecksum, ErrLimit or ErrBase in the
// chain): the CLI maps it to exit code 2.
func IsFormatError(err error) bool {
	for _, s := range []error{ErrFormat, ErrVersion, ErrChecksum, ErrLimit, ErrBase} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
