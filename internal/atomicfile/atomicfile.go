// Package atomicfile writes files so that they appear whole or not at all.
//
// The content goes to a temporary file in the target's directory, which is
// synced and then renamed over the target. On any error the temporary file
// is removed and an existing target is left untouched. Because the target is
// replaced by rename and never truncated, a reader that has the old file
// open or memory-mapped (for example an in-place rewrite whose data streams
// from the file being replaced) keeps seeing the old bytes.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Perm is the permission of files created by Write (before the umask).
const Perm = 0o644

// Write creates or replaces name with what fill writes to the temporary
// file. fill receives the *os.File so that it can seek or write at offsets.
func Write(name string, fill func(f *os.File) error) (err error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err = fill(tmp); err != nil {
		return err
	}
	if err = tmp.Chmod(Perm); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return os.Rename(tmpName, name)
}

// WriteBytes creates or replaces name with data.
func WriteBytes(name string, data []byte) error {
	return Write(name, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteFrom creates or replaces name with everything read from r.
func WriteFrom(name string, r io.Reader) error {
	return Write(name, func(f *os.File) error {
		_, err := io.Copy(f, r)
		return err
	})
}
