package atz

import (
	"fmt"
	"io"

	"github.com/adaptool/adaptool/format/safetensors"
)

func init() { safetensors.RegisterContainer(Container{}) }

// Container plugs atz into format/safetensors (registered by this package's
// init): safetensors.Open, OpenHeader and OpenCheckpoint then read a packed
// file as the original safetensors file, decoding chunks lazily.
type Container struct{}

// Detect reports whether prefix starts with the atz magic.
func (Container) Detect(prefix []byte) bool { return Detect(prefix) }

// Open returns a Reader over the original file's bytes and its size. Delta
// containers (packed with a base) cannot be read without their base and
// return ErrBase: unpack them with the base first.
func (Container) Open(r io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	rd, err := NewReader(r, size)
	if err != nil {
		return nil, 0, err
	}
	if rd.NeedsBase() {
		return nil, 0, fmt.Errorf("%w: packed against a base file; run adaptool unpack --base BASE first", ErrBase)
	}
	return rd, rd.Size(), nil
}
