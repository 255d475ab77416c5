package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkSplitPlanes measures SplitPlanes and MergePlanes next to copy()
// of the same bytes (b.SetBytes counts bytes read + written).
func BenchmarkSplitPlanes(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, size := range []int{4 << 10, 1 << 20, 64 << 20} {
		src := make([]byte, size)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		dst := make([]byte, size)
		b.Run(fmt.Sprintf("copy/%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(2 * size))
			for b.Loop() {
				copy(dst, src)
			}
		})
		for _, w := range []int{2, 4, 8} {
			b.Run(fmt.Sprintf("split/w%d/%dKiB", w, size>>10), func(b *testing.B) {
				b.SetBytes(int64(2 * size))
				for b.Loop() {
					SplitPlanes(dst, src, w, true)
				}
			})
			b.Run(fmt.Sprintf("merge/w%d/%dKiB", w, size>>10), func(b *testing.B) {
				b.SetBytes(int64(2 * size))
				for b.Loop() {
					MergePlanes(dst, src, w, true)
				}
			})
			if size > 1<<20 {
				continue // the byte-at-a-time reference is only timed in cache
			}
			b.Run(fmt.Sprintf("generic/w%d/%dKiB", w, size>>10), func(b *testing.B) {
				b.SetBytes(int64(2 * size))
				for b.Loop() {
					splitGeneric(dst, src, size/w, w, true, 0, size/w)
				}
			})
		}
	}
}
