//go:build !linux

package safetensors

import "os"

// copyFileRange is unavailable here: the caller copies by hand.
func copyFileRange(dst, src *os.File, off, n int64) (int64, error) {
	return 0, errCopyRangeUnsupported
}

// sameFilesystem reports false: there is no kernel copy here.
func sameFilesystem(a, b *os.File) bool { return false }
