//go:build !unix

package atz

import "os"

// mapFile is unavailable on this platform: Pack reads the file with ReadAt.
func mapFile(f *os.File, size int64) ([]byte, func()) { return nil, func() {} }
