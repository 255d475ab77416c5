package safetensors

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// copyFileRange copies n bytes of src at offset off to dst at its current
// offset inside the kernel (copy_file_range(2): no copy through user
// memory, and a reflink on filesystems that share extents). It returns how
// many bytes it copied; a zero count with errCopyRangeUnsupported means the
// kernel or filesystem cannot do it and the caller must copy by hand.
func copyFileRange(dst, src *os.File, off, n int64) (int64, error) {
	var done int64
	for done < n {
		roff := off + done
		k, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), nil, int(min(n-done, 1<<30)), 0)
		if err != nil {
			if done == 0 && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) ||
				errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM)) {
				return 0, errCopyRangeUnsupported
			}
			return done, err
		}
		if k == 0 {
			// The source ended early (truncated under us), or the
			// filesystem reports 0 instead of an error: only the latter
			// may fall back to the stream, which reads a memory mapping
			// (a mapping read past a truncated file's end would fault).
			if st, err := src.Stat(); done == 0 && err == nil && st.Size() >= off+n {
				return 0, errCopyRangeUnsupported
			}
			return done, errCopyRangeShort
		}
		done += int64(k)
	}
	return done, nil
}

// sameFilesystem reports whether a and b are on one filesystem, so that
// copy_file_range between them can copy inside the kernel (it fails with
// EXDEV across filesystems).
func sameFilesystem(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(int(a.Fd()), &sa) != nil || unix.Fstat(int(b.Fd()), &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev
}
