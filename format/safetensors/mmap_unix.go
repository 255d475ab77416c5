//go:build unix

package safetensors

import (
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// mmapFile maps the first size bytes of f read-only. It returns nil (and the
// caller falls back to pread) when mapping is impossible.
func mmapFile(f *os.File, size int64) ([]byte, error) {
	if size <= 0 || size > math.MaxInt {
		return nil, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func munmap(b []byte) error {
	if b == nil {
		return nil
	}
	return unix.Munmap(b)
}
