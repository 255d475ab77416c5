// Package mmapfile maps input files read-only for the whole project and
// turns a memory fault on such a mapping into an error naming the file.
//
// A shared read-only mapping of a file that another process truncates
// faults (SIGBUS) as soon as a page past the new end of the file is
// touched, and the Go runtime then crashes the whole process. A goroutine
// that has called debug.SetPanicOnFault(true) panics instead, with a
// runtime.Error that has an Addr() uintptr method giving the faulting
// address. [Map] and [Unmap] keep a registry of the mappings (address range
// → file name), which turns that address into a [*FaultError] naming the
// file; errors.Is(err, [ErrFileChanged]) is true for it.
//
// SetPanicOnFault is a per-goroutine setting. [Guard] runs a function on
// the calling goroutine with it set and returns a fault as an error; worker
// goroutines that may touch mapped bytes catch their fault with a [Faults]
// and hand it to the goroutine that waits for them, which re-raises it
// ([Faults.Rethrow], for APIs that return no error) or returns it
// ([Faults.Err]). Only faults on mappings made by Map are converted: any
// other panic, a fault at another address included, passes through.
//
// The package imports only the standard library and golang.org/x/sys/unix,
// so that any package of the module can use it.
package mmapfile
