// Package mmaptest builds memory-mapped files that another process has
// truncated, for the tests of the code that reads mapped inputs.
package mmaptest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/internal/mmapfile"
)

// Truncated writes data to a new file in t.TempDir(), maps the whole file
// with mmapfile.Map, then truncates the file to cut bytes, as another
// process might: reading a page of the mapping at or past the page holding
// byte cut then faults (SIGBUS). It returns the mapping and the file's
// name; the mapping is released when the test ends. It skips the test
// where files cannot be mapped.
func Truncated(t testing.TB, data []byte, cut int64) (mapped []byte, name string) {
	t.Helper()
	name = filepath.Join(t.TempDir(), "input.bin")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := mmapfile.Map(f, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if m == nil {
		t.Skip("files cannot be memory-mapped on this platform")
	}
	t.Cleanup(func() { mmapfile.Unmap(m) })
	if err := os.Truncate(name, cut); err != nil {
		t.Fatal(err)
	}
	return m, name
}

// PageSize is the size of the pages that fault: the cut is rounded up to
// it (the rest of the page holding the last byte reads as zeros).
var PageSize = os.Getpagesize()
