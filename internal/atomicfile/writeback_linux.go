package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

const writebackSupported = true

// startWriteback asks the kernel to start writing [off, off+n) of f to disk.
// Errors are ignored: the final fsync reports any failure.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
