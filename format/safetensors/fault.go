package safetensors

import "github.com/adaptool/adaptool/internal/mmapfile"

// ErrFileChanged reports that a memory-mapped input was truncated or
// changed by another process while its bytes were being read (the read
// faulted). It is in the chain of every [*FaultError]; the CLI exits with
// code 2 for it, as for any unreadable input. It is not a format error:
// [IsFormatError] is false for it.
var ErrFileChanged = mmapfile.ErrFileChanged

// FaultError is the error [CatchFaults] returns for a memory fault on a
// mapped input: the file's name, the offset of the byte whose read faulted
// and the faulting address. It wraps [ErrFileChanged].
type FaultError = mmapfile.FaultError

// CatchFaults calls fn and returns its error, turning a read of a
// memory-mapped input that another process truncated meanwhile into an
// error instead of a crash.
//
// [Open] maps the data section of a file read-only, and the slices [File.Data]
// returns alias the mapping. When another process truncates the file, the
// first read of a page past its new end raises SIGBUS, which by default
// crashes the whole Go process. CatchFaults runs fn with
// [runtime/debug.SetPanicOnFault] set on the calling goroutine, so that
// such a fault, raised in fn or in the worker goroutines of this module
// (kernels, quantizers, hashers, which hand their fault to the goroutine
// waiting for them), is returned as a [*FaultError] naming the file; the
// deferred calls between the fault and CatchFaults run as for any panic.
// Other panics pass through unchanged. Faults in goroutines that the caller
// starts itself are not caught: run CatchFaults on each of them.
//
// The adaptool command runs every command inside CatchFaults.
func CatchFaults(fn func() error) error { return mmapfile.Guard(fn) }
