//go:build !unix

package safetensors

import "os"

// mmapFile is unavailable on this platform; the reader uses pread.
func mmapFile(f *os.File, size int64) ([]byte, error) { return nil, nil }

func munmap(b []byte) error { return nil }
