package ops

import "errors"

var (
	// ErrIncompatible reports inputs that cannot be combined: the same module
	// with different shapes, factor-space methods on unequal ranks, or a
	// module kind the operation cannot handle exactly (DoRA, IA3 in a
	// low-rank merge, whole-module replacements present in several inputs).
	ErrIncompatible = errors.New("ops: incompatible inputs")
	// ErrParams reports invalid operation parameters (unknown method,
	// density outside [0, 1], a weight count that does not match the inputs).
	ErrParams = errors.New("ops: invalid parameters")
	// ErrNonFinite reports a NaN or ±Inf in an input's own values (an
	// adapter's factor, for example one trained into fp16 overflow, or a
	// checkpoint's weight in extract); the message names the file, module
	// and tensor. A non-finite value computed from finite inputs is an
	// overflow, reported with ErrIncompatible instead.
	ErrNonFinite = errors.New("ops: non-finite value in input")
	// ErrUnsupported reports a module kind an operation refuses.
	ErrUnsupported = errors.New("ops: unsupported module kind")
)
