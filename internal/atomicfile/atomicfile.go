// Package atomicfile writes files so that they appear whole or not at all.
//
// The content goes to a temporary file in the target's directory, which is
// synced (unless SetSync(false) was called) and then renamed over the
// target. On any error the temporary file
// is removed and an existing target is left untouched. Because the target is
// replaced by rename and never truncated, a reader that has the old file
// open or memory-mapped (for example an in-place rewrite whose data streams
// from the file being replaced) keeps seeing the old bytes.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
)

// noSync is set by SetSync(false).
var noSync atomic.Bool

// SetSync sets, for the whole process, whether Write syncs each file to
// disk before renaming it into place (the default, true). Without the sync
// the rename is still atomic for every other process and survives a crash
// of this one, but an operating-system crash or power loss soon after may
// leave the target empty or partial, as after cp. It is meant for
// pipelines that write to scratch space and value speed over durability
// (the CLI's --no-sync).
func SetSync(on bool) { noSync.Store(!on) }

// Syncing reports whether Write syncs files (see SetSync).
func Syncing() bool { return !noSync.Load() }

// Perm is the permission of files created by Write (before the umask).
const Perm = 0o644

// WriteError reports that the output itself could not be created, synced
// or put in place (a missing or read-only directory, a full disk). It names
// the target, not the temporary file, and is never about an input: callers
// that classify errors (the CLI's exit codes) must not take the
// fs.ErrNotExist it may wrap for a missing input.
type WriteError struct {
	Path string // the target file
	Err  error  // the cause, without the temporary file's name
}

func (e *WriteError) Error() string { return fmt.Sprintf("cannot write %s: %v", e.Path, e.Err) }

// Unwrap returns the cause, so errors.Is(err, fs.ErrNotExist) still works.
func (e *WriteError) Unwrap() error { return e.Err }

// writeError wraps a failure of the output file itself.
func writeError(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path in it is the temporary file's
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	return &WriteError{Path: name, Err: err}
}

// Write creates or replaces name with what fill writes to the temporary
// file. fill receives the *os.File so that it can seek or write at offsets.
// An error returned by fill is returned as it is; a failure to create,
// sync or rename the file is a *WriteError.
func Write(name string, fill func(f *os.File) error) (err error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return writeError(name, err)
	}
	tmpName := tmp.Name()
	done := false
	defer func() {
		// !done: a panic unwinds through fill (a memory fault on a mapped
		// input, which the caller's mmapfile.Guard turns into an error)
		if err != nil || !done {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err = fill(tmp); err != nil {
		return err
	}
	if err = tmp.Chmod(Perm); err != nil {
		return writeError(name, err)
	}
	if Syncing() {
		if err = tmp.Sync(); err != nil {
			return writeError(name, err)
		}
	}
	if err = tmp.Close(); err != nil {
		return writeError(name, err)
	}
	if err = os.Rename(tmpName, name); err != nil {
		return writeError(name, err)
	}
	done = true
	return nil
}

// WriteStream is Write for content produced sequentially: fill writes to a
// Writer, which starts the disk writeback as the data comes (see Writer).
func WriteStream(name string, fill func(w io.Writer) error) error {
	return Write(name, func(f *os.File) error {
		w := NewWriter(f)
		defer w.Close()
		return fill(w)
	})
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
