package safetensors

import (
	"fmt"
	"io"
	"sync"
)

// Container is a wrapping format (for example a compressed container) that
// holds a safetensors stream. Registered containers are recognised by
// Open, OpenHeader and OpenCheckpoint, which then read the safetensors bytes
// through the ReaderAt returned by Open, in the manner of
// image.RegisterFormat. This lets another package plug in without an import
// cycle.
type Container interface {
	// Detect reports whether prefix (the first min(size, ContainerPrefixLen)
	// bytes of the file) starts this container.
	Detect(prefix []byte) bool
	// Open returns a reader of the contained safetensors stream and its size.
	Open(r io.ReaderAt, size int64) (io.ReaderAt, int64, error)
}

// ContainerPrefixLen is the number of leading bytes passed to Container.Detect.
const ContainerPrefixLen = 64

var (
	containersMu sync.RWMutex
	containers   []Container
)

// RegisterContainer registers a container format. It is meant to be called
// from an init function; it is safe for concurrent use.
func RegisterContainer(c Container) {
	containersMu.Lock()
	defer containersMu.Unlock()
	containers = append(containers, c)
}

// openContainer checks the first bytes of r against the registered
// containers and returns the contained stream, or r itself.
func openContainer(r io.ReaderAt, size int64, name string) (io.ReaderAt, int64, error) {
	ra, sz, _, err := detectContainer(r, size, name)
	return ra, sz, err
}

func detectContainer(r io.ReaderAt, size int64, name string) (io.ReaderAt, int64, bool, error) {
	containersMu.RLock()
	cs := containers
	containersMu.RUnlock()
	if len(cs) == 0 || size <= 0 {
		return r, size, false, nil
	}
	prefix := make([]byte, min(size, ContainerPrefixLen))
	n, err := r.ReadAt(prefix, 0)
	if n < len(prefix) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, 0, false, &TensorError{File: name, Err: fmt.Errorf("reading file prefix: %w", err)}
	}
	for _, c := range cs {
		if c.Detect(prefix) {
			inner, isz, err := c.Open(r, size)
			if err != nil {
				return nil, 0, false, &TensorError{File: name, Err: err}
			}
			return inner, isz, true, nil
		}
	}
	return r, size, false, nil
}
