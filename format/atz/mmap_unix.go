//go:build unix

package atz

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the first size bytes of f read-only for Pack, which then
// encodes and hashes the file in place instead of reading copies. It
// returns nil when the file cannot be mapped (Pack then reads it with
// ReadAt) and a function that unmaps it.
func mapFile(f *os.File, size int64) ([]byte, func()) {
	if size <= 0 || size != int64(int(size)) {
		return nil, func() {}
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, func() {}
	}
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL) // a hint; failure is harmless
	return b, func() { _ = unix.Munmap(b) }
}
