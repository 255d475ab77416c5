package atomicfile

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The Writer writes exactly what it is given and requests the writeback of
// every step once, in order, as contiguous ranges behind the write offset;
// with SetSync(false) it requests none.
func TestWriterWriteback(t *testing.T) {
	for _, syncing := range []bool{true, false} {
		t.Run(map[bool]string{true: "sync", false: "nosync"}[syncing], func(t *testing.T) {
			if syncing && !writebackSupported {
				t.Skip("no sync_file_range on this platform")
			}
			oldStep, oldWB := writebackStep, writeback
			t.Cleanup(func() { writebackStep, writeback = oldStep, oldWB; SetSync(true) })
			SetSync(syncing)
			writebackStep = 4096
			var (
				mu     sync.Mutex
				ranges [][2]int64
			)
			writeback = func(f *os.File, off, n int64) {
				mu.Lock()
				ranges = append(ranges, [2]int64{off, n})
				mu.Unlock()
				startWriteback(f, off, n)
			}
			r := rand.New(rand.NewPCG(1, 2))
			want := make([]byte, 1<<20)
			for i := range want {
				want[i] = byte(r.Uint32())
			}
			name := filepath.Join(t.TempDir(), "out")
			const prefix = 100 // the Writer starts at the file's offset
			err := Write(name, func(f *os.File) error {
				if _, err := f.Write(want[:prefix]); err != nil {
					return err
				}
				w := NewWriter(f)
				defer w.Close()
				for p := want[prefix:]; len(p) > 0; {
					k := min(len(p), 1+r.IntN(9000))
					if _, err := w.Write(p[:k]); err != nil {
						return err
					}
					p = p[k:]
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(name)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("content differs (%v)", err)
			}
			if !syncing {
				if len(ranges) != 0 {
					t.Fatalf("writeback requested without sync: %v", ranges)
				}
				return
			}
			if len(ranges) == 0 {
				t.Fatal("no writeback requested")
			}
			next := int64(prefix)
			for _, rg := range ranges {
				if rg[0] != next || rg[1] < writebackStep {
					t.Fatalf("range %v: want start %d, length ≥ %d (all: %v)", rg, next, writebackStep, ranges)
				}
				next = rg[0] + rg[1]
			}
			if next > int64(len(want)) || int64(len(want))-next >= writebackStep+9000 {
				t.Fatalf("writeback covered up to %d of %d bytes", next, len(want))
			}
		})
	}
}

// Close without any write, and twice, is harmless.
func TestWriterCloseIdle(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
