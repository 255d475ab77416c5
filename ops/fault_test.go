package ops

import (
	"errors"
	"testing"

	"github.com/adaptool/adaptool/internal/mmapfile"
	"github.com/adaptool/adaptool/internal/mmapfile/mmaptest"
)

// TestRunPoolFault: a worker of runPool reading a mapped input that was
// truncated meanwhile gets the fault as its call's error (a FaultError
// naming the file), which runPool returns, instead of the process
// crashing; the other items stop.
func TestRunPoolFault(t *testing.T) {
	const size, cut = 1 << 20, 64 << 10
	m, name := mmaptest.Truncated(t, make([]byte, size), cut)
	for _, workers := range []int{1, 3} {
		var sink [16]byte
		err := runPool(16, workers, nil, func(i int) error {
			sink[i] = m[i*size/16] // items 0 and 1 lie before the cut
			return nil
		})
		var fe *mmapfile.FaultError
		if !errors.Is(err, mmapfile.ErrFileChanged) || !errors.As(err, &fe) || fe.File != name {
			t.Fatalf("workers=%d: runPool = %v, want a FaultError for %s", workers, err, name)
		}
	}
}
