package main

import (
	"errors"
	"io/fs"

	"github.com/urfave/cli/v2"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/atz"
	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/inspect"
	"github.com/adaptool/adaptool/internal/atomicfile"
	"github.com/adaptool/adaptool/ops"
	"github.com/adaptool/adaptool/quant"
)

// Exit codes, as documented in SPEC.md ("CLI exit codes"). They are mapped
// from errors in exactly one place: exitCode.
const (
	exitOK       = 0 // success; for validate/check: no findings
	exitFindings = 1 // validate, check or --verify found problems
	exitInput    = 2 // an input is missing, unreadable or malformed
	exitUsage    = 3 // bad command line: unknown command or flag, wrong arguments
	exitFailed   = 4 // the operation failed: incompatible inputs, refused operation, write failure
)

// exitError carries an explicit exit code through urfave/cli's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitErr returns err with the given exit code attached. A nil err with a
// non-zero code exits silently with that code (used after findings were
// already printed).
func exitErr(code int, err error) error { return &exitError{code: code, err: err} }

// usageError marks a command-line mistake (exit code 3).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usage error with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{msg: sprintf(format, args...)}
}

// inputErrorCheckers report whether an error is about a bad or unreadable
// input (exit code 2). Packages with format sentinels are listed here.
var inputErrorCheckers = []func(error) bool{
	func(err error) bool { return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) },
	safetensors.IsFormatError,
	gguf.IsFormatError,
	atz.IsFormatError,
	adapter.IsInputError,
	quant.IsInputError,
	inspect.IsInputError,
	// NaN/Inf in an input's own values (SPEC §5.1: exit 2); a non-finite
	// value computed from finite inputs is an overflow (ops.ErrIncompatible,
	// svd.ErrNonFinite): exit 4.
	func(err error) bool { return errors.Is(err, ops.ErrNonFinite) },
}

// exitCode maps an error returned by a command to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	// urfave/cli's own command-line errors (e.g. "No help topic for 'x'")
	// are usage errors too.
	var ce cli.ExitCoder
	if errors.As(err, &ce) {
		return exitUsage
	}
	// An input truncated or changed by another process while it was read
	// (a memory fault on its mapping) is an unreadable input.
	if errors.Is(err, safetensors.ErrFileChanged) {
		return exitInput
	}
	// A failure to write an output is never a bad input, even when it wraps
	// fs.ErrNotExist (a missing output directory).
	var we *atomicfile.WriteError
	if errors.As(err, &we) {
		return exitFailed
	}
	for _, isInput := range inputErrorCheckers {
		if isInput(err) {
			return exitInput
		}
	}
	return exitFailed
}
