package provenance

import (
	"errors"
	"testing"

	"github.com/adaptool/adaptool/internal/mmapfile"
	"github.com/adaptool/adaptool/internal/mmapfile/mmaptest"
)

// TestHashMappedAsyncTruncated hashes a mapping whose file was truncated
// after it was mapped: the hashing goroutine faults, and Wait returns the
// fault as an error naming the file instead of the process crashing.
func TestHashMappedAsyncTruncated(t *testing.T) {
	m, name := mmaptest.Truncated(t, make([]byte, 4<<20), 4096)
	sum, err := HashMappedAsync(name, m).Wait()
	var fe *mmapfile.FaultError
	if !errors.Is(err, mmapfile.ErrFileChanged) || !errors.As(err, &fe) || fe.File != name {
		t.Fatalf("Wait = %q, %v; want a FaultError for %s", sum, err, name)
	}
	if sum != "" {
		t.Errorf("Wait returned the digest %q with the error", sum)
	}
}
