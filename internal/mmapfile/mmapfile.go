package mmapfile

import (
	"math"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Map maps the first size bytes of f read-only and records the mapping
// under f.Name() (see [FaultError]). It returns nil and no error when the
// file cannot be mapped: on platforms without mmap and when size is not in
// (0, MaxInt]; callers then read the file with ReadAt. A failed mmap call
// returns its error. The mapping must be released with [Unmap].
func Map(f *os.File, size int64) ([]byte, error) {
	if size <= 0 || size > math.MaxInt {
		return nil, nil
	}
	b, err := mmap(f, int(size))
	if err != nil || b == nil {
		return nil, err
	}
	reg.add(b, f.Name())
	if h := mapHook.Load(); h != nil {
		(*h)(f.Name())
	}
	return b, nil
}

// Unmap releases a mapping returned by [Map]; nil does nothing. The
// slice, and every slice of it, must not be used afterwards.
func Unmap(b []byte) error {
	if b == nil {
		return nil
	}
	reg.remove(b)
	return munmap(b)
}

// AdviseSequential tells the kernel that b, a mapping returned by [Map],
// will be read once from start to end (more read-ahead, pages dropped
// sooner). It is a hint: nothing happens where it is not supported.
func AdviseSequential(b []byte) {
	if b != nil {
		adviseSequential(b)
	}
}

// mapHook is called with the file's name after every successful Map.
var mapHook atomic.Pointer[func(name string)]

// SetMapHook makes fn be called with the file's name after every
// successful [Map] (nil removes the hook) and returns a function restoring
// the previous hook. It is a test hook: end-to-end tests truncate an input
// after it has been mapped and before its bytes are read, as another
// process might.
func SetMapHook(fn func(name string)) (restore func()) {
	var p *func(string)
	if fn != nil {
		p = &fn
	}
	prev := mapHook.Swap(p)
	return func() { mapHook.Store(prev) }
}

// region is one mapping: the addresses [base, end) hold the file name's
// bytes from offset 0.
type region struct {
	base, end uintptr
	name      string
}

// recentUnmapped is how many unmapped regions the registry remembers. A
// fault is usually recovered only after the panic has unwound through the
// deferred Close that unmapped the file, so the lookup also searches the
// regions unmapped last.
const recentUnmapped = 64

// registry holds the live mappings and a ring of the recently unmapped
// ones. It is locked only by Map, Unmap and a fault's lookup, never on the
// path that reads the mapped bytes.
type registry struct {
	mu   sync.Mutex
	live []region
	gone [recentUnmapped]region
	next int // the slot of gone written next
}

var reg registry

func span(b []byte) (base, end uintptr) {
	base = uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return base, base + uintptr(len(b))
}

func (r *registry) add(b []byte, name string) {
	base, end := span(b)
	r.mu.Lock()
	r.live = append(r.live, region{base, end, name})
	r.mu.Unlock()
}

func (r *registry) remove(b []byte) {
	base, _ := span(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, g := range r.live {
		if g.base == base {
			r.gone[r.next] = g
			r.next = (r.next + 1) % recentUnmapped
			r.live = append(r.live[:i], r.live[i+1:]...)
			return
		}
	}
}

// lookup returns the file and the offset in it of address addr: from a
// live mapping first, else from the most recently unmapped one holding it.
func (r *registry) lookup(addr uintptr) (name string, off int64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.live {
		if addr >= g.base && addr < g.end {
			return g.name, int64(addr - g.base), true
		}
	}
	for k := 1; k <= recentUnmapped; k++ {
		g := r.gone[(r.next-k+recentUnmapped)%recentUnmapped]
		if g.end != 0 && addr >= g.base && addr < g.end {
			return g.name, int64(addr - g.base), true
		}
	}
	return "", 0, false
}
