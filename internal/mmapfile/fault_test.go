package mmapfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/adaptool/adaptool/internal/mmapfile"
	"github.com/adaptool/adaptool/internal/mmapfile/mmaptest"
	"github.com/adaptool/adaptool/ops/kernels"
)

// checkFault checks that err is the *FaultError of a read at or past byte
// cut of the file name.
func checkFault(t *testing.T, err error, name string, cut int64) {
	t.Helper()
	var fe *mmapfile.FaultError
	if !errors.As(err, &fe) || !errors.Is(err, mmapfile.ErrFileChanged) {
		t.Fatalf("got %v (%T), want a *FaultError wrapping ErrFileChanged", err, err)
	}
	if fe.File != name {
		t.Errorf("FaultError.File = %q, want %q", fe.File, name)
	}
	if fe.Offset < cut {
		t.Errorf("FaultError.Offset = %d, want ≥ %d (the cut)", fe.Offset, cut)
	}
	if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "truncated or changed by another process") {
		t.Errorf("message %q does not name the file and the cause", msg)
	}
}

// load reads b[i] (a call the compiler cannot drop).
//
//go:noinline
func load(b []byte, i int) byte { return b[i] }

// TestGuardTruncatedMapping reads a mapped file past the point where it was
// truncated, on the calling goroutine: Guard returns the fault as an error
// naming the file and the offset, and the goroutine's SetPanicOnFault
// setting is restored.
func TestGuardTruncatedMapping(t *testing.T) {
	const size, cut = 1 << 20, 64 << 10
	m, name := mmaptest.Truncated(t, make([]byte, size), cut)
	if m[cut-1] != 0 { // before the cut: still readable
		t.Fatal("byte before the cut changed")
	}
	var sum byte
	err := mmapfile.Guard(func() error {
		for i := cut; i < size; i += 4096 {
			sum += m[i]
		}
		t.Error("reading past the cut did not fault")
		return nil
	})
	checkFault(t, err, name, cut)
	if debug.SetPanicOnFault(false) {
		t.Error("Guard left SetPanicOnFault on")
	}
	if err := mmapfile.Guard(func() error { return os.ErrClosed }); err != os.ErrClosed {
		t.Errorf("Guard changed fn's error: %v", err)
	}
}

// TestGuardAfterUnmap faults and unmaps the file in a deferred call on the
// way to Guard (a deferred Close): the fault is still attributed to it.
func TestGuardAfterUnmap(t *testing.T) {
	const size, cut = 256 << 10, 8 << 10
	m, name := mmaptest.Truncated(t, make([]byte, size), cut)
	err := mmapfile.Guard(func() error {
		defer mmapfile.Unmap(m)
		load(m, size-1)
		return nil
	})
	checkFault(t, err, name, cut)
}

// TestGuardKernelParallel runs a kernel over a truncated mapping longer
// than its parallel threshold (1<<20 elements, see ops/kernels/dispatch.go):
// the fault happens on the kernel's worker goroutines, which must hand it
// to the calling goroutine instead of crashing the process.
func TestGuardKernelParallel(t *testing.T) {
	defer runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4))
	const n = 4 << 20 // elements
	for _, k := range []struct {
		name string
		run  func(x []float32)
	}{
		{"SumSquares", func(x []float32) { kernels.SumSquares(x) }},
		{"ScaleTo", func(x []float32) { kernels.ScaleTo(make([]float32, len(x)), 2, x) }},
		{"AbsThreshold", func(x []float32) { kernels.AbsThreshold(x, len(x)/10) }},
		{"SplitPlanes", func(x []float32) {
			b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 4*len(x))
			kernels.SplitPlanes(make([]byte, len(b)), b, 4, true)
		}},
	} {
		t.Run(k.name, func(t *testing.T) {
			cut := int64(4 * n / 2)
			m, name := mmaptest.Truncated(t, make([]byte, 4*n), cut)
			x := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(m))), n)
			err := mmapfile.Guard(func() error {
				k.run(x)
				t.Error("the kernel read past the cut without faulting")
				return nil
			})
			checkFault(t, err, name, cut)
		})
	}
}

// TestFaultsWorkers: a worker's fault is recorded by Catch (the worker
// returns normally), Err returns it and Rethrow re-raises the original
// panic value, which Guard converts.
func TestFaultsWorkers(t *testing.T) {
	const size, cut = 1 << 20, 4096
	m, name := mmaptest.Truncated(t, make([]byte, size), cut)
	var f mmapfile.Faults
	if f.Err() != nil {
		t.Fatal("zero Faults has an error")
	}
	f.Rethrow() // nothing recorded: no panic
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			defer f.Catch(debug.SetPanicOnFault(true))
			load(m, size/2+w*4096)
		})
	}
	wg.Wait()
	checkFault(t, f.Err(), name, cut)
	var raised any
	func() {
		defer func() { raised = recover() }()
		f.Rethrow()
	}()
	if _, ok := raised.(interface{ Addr() uintptr }); !ok {
		t.Fatalf("Rethrow raised %v, want the original fault", raised)
	}
	checkFault(t, mmapfile.Guard(func() error { f.Rethrow(); return nil }), name, cut)
}

// TestNonFaultPanics: panics other than a fault on a mapping made by Map
// pass through Guard, Recover and Faults.Catch unchanged.
func TestNonFaultPanics(t *testing.T) {
	var nilp *[4]byte
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"value", func() { panic("boom") }},
		{"error", func() { panic(os.ErrInvalid) }},
		{"nil dereference", func() { _ = nilp[1] }},
		{"index", func() { _ = []int{}[len(os.Args)+5] }},
	} {
		for _, g := range []struct {
			name string
			run  func(fn func())
		}{
			{"Guard", func(fn func()) { mmapfile.Guard(func() error { fn(); return nil }) }},
			{"Recover", func(fn func()) {
				var err error
				defer mmapfile.Recover(debug.SetPanicOnFault(true), &err)
				fn()
			}},
			{"Faults.Catch", func(fn func()) {
				var f mmapfile.Faults
				defer f.Catch(debug.SetPanicOnFault(true))
				fn()
			}},
		} {
			var got any
			func() {
				defer func() { got = recover() }()
				g.run(c.fn)
			}()
			if got == nil {
				t.Errorf("%s/%s: the panic was swallowed", c.name, g.name)
			} else if _, ok := got.(*mmapfile.FaultError); ok {
				t.Errorf("%s/%s: the panic became a FaultError", c.name, g.name)
			}
		}
	}
}

// TestSetMapHook: the hook sees every successful Map, and restore removes
// it.
func TestSetMapHook(t *testing.T) {
	var seen []string
	restore := mmapfile.SetMapHook(func(name string) { seen = append(seen, name) })
	_, name := mmaptest.Truncated(t, make([]byte, 100), 100)
	restore()
	mmaptest.Truncated(t, make([]byte, 100), 100)
	if len(seen) != 1 || seen[0] != name {
		t.Errorf("hook saw %q, want [%q]", seen, name)
	}
}

// TestMapSmall: sizes that cannot be mapped give nil and no error.
func TestMapSmall(t *testing.T) {
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int64{0, -1} {
		if m, err := mmapfile.Map(f, size); m != nil || err != nil {
			t.Errorf("Map(size %d) = %d bytes, %v; want nil, nil", size, len(m), err)
		}
	}
	if err := mmapfile.Unmap(nil); err != nil {
		t.Errorf("Unmap(nil) = %v", err)
	}
}

// TestWriteFault: writing a truncated mapping to a file fails with EFAULT
// (the kernel's copy does not raise a signal); WriteFault turns that into
// a *FaultError at the first byte not written, and leaves other errors,
// and EFAULT for memory that is not a mapping, unchanged.
func TestWriteFault(t *testing.T) {
	const size, cut = 1 << 20, 64 << 10
	m, name := mmaptest.Truncated(t, make([]byte, size), cut)
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Write(m)
	if err == nil {
		t.Fatal("writing the truncated mapping succeeded")
	}
	checkFault(t, mmapfile.WriteFault(err, m, n), name, cut)
	if got := mmapfile.WriteFault(os.ErrClosed, m, 0); got != os.ErrClosed {
		t.Errorf("WriteFault changed another error: %v", got)
	}
	if got := mmapfile.WriteFault(err, make([]byte, 10), 0); got != err {
		t.Errorf("WriteFault(EFAULT, not a mapping) = %v, want the error unchanged", got)
	}
	if got := mmapfile.WriteFault(nil, m, 0); got != nil {
		t.Errorf("WriteFault(nil) = %v", got)
	}
}
