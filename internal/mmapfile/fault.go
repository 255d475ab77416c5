package mmapfile

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// ErrFileChanged is in the chain of every [*FaultError]: a memory-mapped
// input was truncated or changed by another process while it was read.
var ErrFileChanged = errors.New("file truncated or changed by another process while it was being read")

// FaultError reports a memory fault on a mapping made by [Map]: the file
// became shorter than its mapping (another process truncated or rewrote
// it) while its bytes were being read.
type FaultError struct {
	File   string  // the mapped file, as named when it was opened
	Offset int64   // the file offset of the byte whose read faulted
	Addr   uintptr // the faulting address
}

// Error names the file and the rule broken.
func (e *FaultError) Error() string {
	return fmt.Sprintf("%s: %v (reading byte %d of the mapped file faulted)", e.File, ErrFileChanged, e.Offset)
}

// Unwrap returns ErrFileChanged.
func (e *FaultError) Unwrap() error { return ErrFileChanged }

// faultOf returns the *FaultError of a recovered panic value p when p is a
// memory fault (a runtime.Error with an Addr method, raised under
// debug.SetPanicOnFault) at an address of a mapping made by Map, and nil
// otherwise.
func faultOf(p any) *FaultError {
	if _, ok := p.(runtime.Error); !ok {
		return nil
	}
	a, ok := p.(interface{ Addr() uintptr })
	if !ok {
		return nil
	}
	addr := a.Addr()
	name, off, ok := reg.lookup(addr)
	if !ok {
		return nil
	}
	return &FaultError{File: name, Offset: off, Addr: addr}
}

// Guard calls fn on the calling goroutine with debug.SetPanicOnFault(true)
// and returns fn's error. A memory fault on a mapping made by [Map] that
// reaches it (raised on this goroutine, or re-raised here by
// [Faults.Rethrow] from a worker) is returned as a [*FaultError]; every
// other panic passes through unchanged. The goroutine's previous
// SetPanicOnFault setting is restored.
//
// The deferred functions between the fault and Guard run as for any
// panic (files are closed, temporary outputs removed).
func Guard(fn func() error) (err error) {
	defer Recover(debug.SetPanicOnFault(true), &err)
	return fn()
}

// Recover is Guard for the rest of a function, without a closure:
//
//	defer mmapfile.Recover(debug.SetPanicOnFault(true), &err)
//
// (the argument is evaluated at once) makes the function panic on a memory
// fault from then on and, when it returns, stores a fault on a mapping made
// by [Map] in *err as a [*FaultError]; any other panic passes through. prev
// is the SetPanicOnFault setting restored.
func Recover(prev bool, err *error) {
	p := recover()
	debug.SetPanicOnFault(prev)
	if p == nil {
		return
	}
	fe := faultOf(p)
	if fe == nil {
		panic(p)
	}
	*err = fe
}

// Faults collects the first memory fault of a group of worker goroutines,
// for the goroutine that waits for them. Each worker starts with
//
//	defer faults.Catch(debug.SetPanicOnFault(true))
//
// (the argument is evaluated at once: the worker panics on a fault from
// then on) and the waiter, once every worker has finished, calls
// [Faults.Rethrow] or [Faults.Err]. The cost is a deferred call per
// goroutine, nothing per element. The zero value is ready to use.
type Faults struct {
	first atomic.Pointer[caught]
}

type caught struct {
	p   any // the panic value, re-raised unchanged by Rethrow
	err *FaultError
}

// Catch, deferred by a worker goroutine, recovers a memory fault on a
// mapping made by [Map] and records it when it is the group's first; the
// worker then returns normally. Any other panic is re-raised. prev is the
// goroutine's SetPanicOnFault setting to restore (what
// debug.SetPanicOnFault(true) returned).
func (f *Faults) Catch(prev bool) {
	p := recover()
	debug.SetPanicOnFault(prev)
	if p == nil {
		return
	}
	fe := faultOf(p)
	if fe == nil {
		panic(p)
	}
	f.first.CompareAndSwap(nil, &caught{p, fe})
}

// Rethrow re-raises on the calling goroutine the first fault a worker
// recorded, with its original panic value, so that the [Guard] (or the
// Catch of an enclosing worker) around the caller converts it; it does
// nothing when no worker faulted. Call it after the workers have finished.
func (f *Faults) Rethrow() {
	if c := f.first.Load(); c != nil {
		panic(c.p)
	}
}

// Err returns the first fault a worker recorded as a [*FaultError], or nil.
func (f *Faults) Err() error {
	if c := f.first.Load(); c != nil {
		return c.err
	}
	return nil
}

// WriteFault returns the *FaultError for a write of b that failed with err
// after n bytes were written, when err is EFAULT and the byte b[n] lies in
// a mapping made by [Map]: a write system call copying from a mapping
// whose file was truncated does not fault, it fails with EFAULT ("bad
// address"). Otherwise it returns err unchanged.
func WriteFault(err error, b []byte, n int) error {
	if err == nil || !errors.Is(err, syscall.EFAULT) || n < 0 || n >= len(b) {
		return err
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b))) + uintptr(n)
	name, off, ok := reg.lookup(addr)
	if !ok {
		return err
	}
	return &FaultError{File: name, Offset: off, Addr: addr}
}
