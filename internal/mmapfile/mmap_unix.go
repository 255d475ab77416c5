//go:build unix

package mmapfile

import (
	"os"

	"golang.org/x/sys/unix"
)

func mmap(f *os.File, size int) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
}

func munmap(b []byte) error { return unix.Munmap(b) }

func adviseSequential(b []byte) { _ = unix.Madvise(b, unix.MADV_SEQUENTIAL) } // a hint; failure is harmless
