package kernels

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/adaptool/adaptool/internal/mmapfile"
)

// implSet is one complete set of kernel bodies: the pure-Go twins or one of
// the assembly levels. Bodies trust their arguments; the exported functions
// check lengths first.
type implSet struct {
	name    string
	axpy    func(alpha float32, x, y []float32)
	scale   func(alpha float32, x []float32)
	scaleTo func(dst []float32, alpha float32, x []float32)
	add     func(dst, x []float32)
	sub     func(dst, x []float32)
	neg     func(x []float32)
	mul     func(dst, x []float32)
	absMax  func(x []float32) float32
	// dotLanes and sumSquaresLanes take len(x) a multiple of 16 and return
	// the 16-lane sum folded as reduceLanes does.
	dotLanes        func(x, y []float32) float64
	sumSquaresLanes func(x []float32) float64
	f16ToF32        func(dst []float32, src []uint16)
	f32ToF16        func(dst []uint16, src []float32)
	bf16ToF32       func(dst []float32, src []uint16)
	f32ToBF16       func(dst []uint16, src []float32)
	f8E4M3ToF32     func(dst []float32, src []uint8)
	f8E5M2ToF32     func(dst []float32, src []uint8)
	f32ToF8E4M3     func(dst []uint8, src []float32)
	f32ToF8E5M2     func(dst []uint8, src []float32)
	// rankRow is: for k := range c { for j := range w { w[j] = fma32(c[k], a[k*stride+j], w[j]) } }
	rankRow func(w, c, a []float32, stride int)
	// rank4 is rankRow for the four rows w[q*ldw:], q = 0..3, with c
	// holding their 4×r coefficients row by row; nil when the path has none.
	rank4 func(w []float32, ldw int, c, a []float32, lda int, n int)
}

var genericImpl = &implSet{
	name:            "generic",
	axpy:            axpyGeneric,
	scale:           scaleGeneric,
	scaleTo:         scaleToGeneric,
	add:             addGeneric,
	sub:             subGeneric,
	neg:             negGeneric,
	mul:             mulGeneric,
	absMax:          absMaxGeneric,
	dotLanes:        dotLanesGeneric,
	sumSquaresLanes: sumSquaresLanesGeneric,
	f16ToF32:        f16ToF32Generic,
	f32ToF16:        f32ToF16Generic,
	bf16ToF32:       bf16ToF32Generic,
	f32ToBF16:       f32ToBF16Generic,
	f8E4M3ToF32:     f8E4M3ToF32Generic,
	f8E5M2ToF32:     f8E5M2ToF32Generic,
	f32ToF8E4M3:     f32ToF8E4M3Generic,
	f32ToF8E5M2:     f32ToF8E5M2Generic,
	rankRow:         rankRowGeneric,
}

// cur is the active implementation, chosen at init by the platform's
// dispatch file and swapped by setImpl in tests.
var cur = bestImpl()

// Impl names the active path: "avx512", "avx2" or "generic".
func Impl() string { return cur.name }

// setImpl makes the named level active (one of implLevels()) and returns a
// function restoring the previous one; it is a test hook, like
// klauspost/compress's cpuinfo.DisableBMI2. It panics on an unknown or
// unsupported level.
func setImpl(level string) (restore func()) {
	prev := cur
	for _, s := range implLevels() {
		if s.name == level {
			cur = s
			return func() { cur = prev }
		}
	}
	panic("kernels: setImpl: level " + level + " not available")
}

// parMin is the element count from which a kernel splits its work across
// GOMAXPROCS goroutines (measured: below it the goroutine start-up costs more
// than the second core gives back; see bench_test.go).
var parMin = 1 << 20

// parAlign keeps chunk boundaries on 64-element multiples, so no two
// goroutines write one cache line, whatever the element size.
const parAlign = 64

// workers returns how many goroutines n elements are split across.
func workers(n int) int {
	if n < parMin {
		return 1
	}
	p := runtime.GOMAXPROCS(0)
	if w := n / max(parMin/2, 1); w < p {
		p = w
	}
	return max(p, 1)
}

// parallel calls f on consecutive ranges [lo, hi) covering [0, n), in
// parallel when n is large. The range is cut into several pieces per
// worker, taken from a shared counter, so a worker whose core is busy with
// another process does not hold up the whole call (the others take its
// share).
//
// The inputs may be a memory-mapped file that another process truncates
// meanwhile: a worker's read then faults. Each worker panics on a fault
// instead of crashing the process, stops, and the fault is re-raised on the
// calling goroutine once all have finished, where the caller's
// mmapfile.Guard (the CLI runs every command inside one) turns it into an
// error naming the file. The cost is one deferred call per goroutine.
func parallel(n int, f func(lo, hi int)) {
	w := workers(n)
	if w <= 1 {
		f(0, n)
		return
	}
	chunk := max(parMin/4, (n/(w*4)+parAlign-1)/parAlign*parAlign)
	pieces := (n + chunk - 1) / chunk
	var st shared // one allocation for the counter and the faults
	var wg sync.WaitGroup
	for range min(w, pieces) {
		wg.Go(func() {
			defer st.faults.Catch(debug.SetPanicOnFault(true))
			for {
				i := int(st.next.Add(1) - 1)
				if i >= pieces {
					return
				}
				f(i*chunk, min((i+1)*chunk, n))
			}
		})
	}
	wg.Wait()
	st.faults.Rethrow()
}

// shared is what the workers of parallel and parallelPieces share: the
// next piece to take and the first memory fault met.
type shared struct {
	next   atomic.Int64
	faults mmapfile.Faults
}

// parallelPieces calls f(i) for i in [0, pieces) from GOMAXPROCS-bounded
// workers (at most w) taking pieces from a shared counter. A memory fault
// in a worker is re-raised on the caller, as in parallel.
func parallelPieces(pieces, w int, f func(i int)) {
	var st shared
	var wg sync.WaitGroup
	for range min(w, pieces) {
		wg.Go(func() {
			defer st.faults.Catch(debug.SetPanicOnFault(true))
			for {
				i := int(st.next.Add(1) - 1)
				if i >= pieces {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
	st.faults.Rethrow()
}
