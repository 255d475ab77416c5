//go:build !linux

package provenance

import "os"

// statKey reports that files are not cached on this platform.
func statKey(os.FileInfo) (fileKey, bool) { return fileKey{}, false }
