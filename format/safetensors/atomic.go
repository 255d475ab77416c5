package safetensors

import (
	"os"

	"github.com/adaptool/adaptool/internal/atomicfile"
)

// WriteFile writes a safetensors file atomically: the bytes go to a
// temporary file in the target's directory, which is synced and renamed
// over name only when everything succeeded. On any error the temporary
// file is removed and an existing target is left untouched. Because the
// target is replaced by rename, never truncated, a source that is itself
// memory-mapped from name (for example an in-place rewrite whose tensors
// stream from the old file) is never corrupted. See Write for the format.
func WriteFile(name string, tensors []Tensor, metadata map[string]string, opts ...WriteOption) error {
	o := writeOptions{name: name}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	// Validate before creating anything.
	if _, err := makePlan(tensors, metadata, &o); err != nil {
		return err
	}
	return atomicWrite(name, func(f *os.File) error {
		aw := atomicfile.NewWriter(f)
		err := write(aw, tensors, metadata, &o)
		aw.Close()
		if err != nil {
			return err
		}
		for _, d := range o.deferred {
			v, err := d.value()
			if err != nil {
				return err
			}
			if err := patchHeader(f, name, d.placeholder, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// atomicWrite runs fill on a temporary file next to name and renames it
// into place (see internal/atomicfile). A failure to create, sync or rename
// the file (as opposed to an error from fill, which may be about an input)
// is a *WriteError naming the target.
func atomicWrite(name string, fill func(*os.File) error) error {
	return atomicfile.Write(name, fill)
}

// SetSync sets, for the whole process, whether the files adaptool's
// packages write (WriteFile, WriteCheckpoint, Recast and every writer built
// on them) are synced to disk before they are renamed into place. The
// default is true. With false, outputs still appear whole or not at all to
// other processes and across a crash of this one, but an operating-system
// crash or power loss soon after writing may leave an output empty or
// partial, as after cp.
func SetSync(on bool) { atomicfile.SetSync(on) }

// WriteError reports that an output file could not be created or put in
// place (a missing or read-only directory, a full disk). It is never about
// an input: the CLI maps it to "operation failed", not "bad input", even
// when it wraps fs.ErrNotExist. Every adaptool writer returns this type.
type WriteError = atomicfile.WriteError
