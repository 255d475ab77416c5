package inspect

import "errors"

// ErrInput marks errors about the input itself (a bad index, a directory
// without weights, an inconsistent sharded checkpoint, a file too short for
// a safetensors header): the CLI exits with code 2 for them. Test with
// IsInputError.
var ErrInput = errors.New("inspect: invalid input")

// inputErr wraps err (already carrying its message) with ErrInput.
type inputErr struct{ err error }

func (e *inputErr) Error() string { return e.err.Error() }

// Is makes errors.Is(err, ErrInput) true.
func (e *inputErr) Is(target error) bool { return target == ErrInput }

func (e *inputErr) Unwrap() error { return e.err }

func asInput(err error) error {
	if err == nil {
		return nil
	}
	return &inputErr{err: err}
}

// IsInputError reports whether err is about a bad or unreadable input
// (ErrInput in the chain).
func IsInputError(err error) bool { return errors.Is(err, ErrInput) }
