package quant

import (
	"errors"
	"runtime"
	"testing"
	"unsafe"

	"github.com/adaptool/adaptool/internal/mmapfile"
	"github.com/adaptool/adaptool/internal/mmapfile/mmaptest"
)

// TestForBlocksFault quantizes a mapped tensor larger than parallelMin
// whose file was truncated after mapping: the fault happens on forBlocks'
// worker goroutines and must reach the caller's guard as an error naming
// the file, not crash the process.
func TestForBlocksFault(t *testing.T) {
	defer runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4))
	const n = 4 * parallelMin
	m, name := mmaptest.Truncated(t, make([]byte, 4*n), 4*n/2)
	src := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(m))), n)
	err := mmapfile.Guard(func() error {
		return QuantizeNF4(make([]byte, PackedLen(n)), make([]float32, NumBlocks(n, DefaultBlockSize)), src, DefaultBlockSize)
	})
	var fe *mmapfile.FaultError
	if !errors.Is(err, mmapfile.ErrFileChanged) || !errors.As(err, &fe) || fe.File != name {
		t.Fatalf("QuantizeNF4 = %v, want a FaultError for %s", err, name)
	}
}
