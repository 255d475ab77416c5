package safetensors

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"testing"
)

func overlapFile(copies int) []byte {
	h := []byte{'{'}
	for i := range copies {
		if i > 0 {
			h = append(h, ',')
		}
		h = append(h, `"weight_`...)
		h = strconv.AppendInt(h, int64(i), 10)
		h = append(h, `":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}`...)
	}
	h = append(h, '}')
	return raw(string(h), make([]byte, 16))
}

// lazyReader serves a prefix claiming n header bytes followed by zeros and
// counts the bytes read.
type lazyReader struct {
	n    uint64
	read int64
}

func (l *lazyReader) ReadAt(p []byte, off int64) (int, error) {
	l.read += int64(len(p))
	for i := range p {
		p[i] = 0
		if o := off + int64(i); o < 8 {
			p[i] = byte(l.n >> (8 * o))
		}
	}
	return len(p), nil
}

var _ io.ReaderAt = (*lazyReader)(nil)

// safetensors attacks 2/3: many entries aliasing the same bytes.
func TestOverlapAttack(t *testing.T) {
	f := overlapFile(100_000)
	if _, err := open(f); !errors.Is(err, ErrInvalidOffset) {
		t.Fatalf("100k copies: %v", err)
	}
	// 10M copies need a header of ~560 MB: rejected from the prefix alone,
	// reading 8 bytes and allocating nothing from the claim.
	entry := len(`"weight_9999999":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},`)
	lr := &lazyReader{n: uint64(10_000_000 * entry)}
	_, err := ReadHeader(lr, 8+int64(lr.n)+16)
	if !errors.Is(err, ErrHeaderTooLarge) || lr.read != 8 {
		t.Fatalf("10M copies: %v after reading %d bytes", err, lr.read)
	}
	// A claimed size within the limit but beyond the file: nothing allocated.
	lr = &lazyReader{n: MaxHeaderSize}
	allocs := testing.AllocsPerRun(1, func() {
		if _, err := ReadHeader(lr, 1000); !errors.Is(err, ErrInvalidHeaderLength) {
			t.Fatalf("N > file: %v", err)
		}
	})
	if allocs > 10 && !raceEnabled {
		t.Fatalf("%v allocations for a rejected claim", allocs)
	}
	_ = binary.LittleEndian
}
