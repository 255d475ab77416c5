//go:build !unix

package mmapfile

import "os"

// mmap is unavailable on this platform: Map returns nil and callers read
// the file with ReadAt.
func mmap(f *os.File, size int) ([]byte, error) { return nil, nil }

func munmap(b []byte) error { return nil }

func adviseSequential(b []byte) {}
