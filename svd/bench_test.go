package svd

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user+system CPU time, so benchmarks on a
// shared machine can report CPU cost next to wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFactored measures the svd merge of several rank-r adapters of one
// m×n module (QR-core plus the √σ split to rank r), in ms per module.
func BenchmarkFactored(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, sh := range [][2]int{{4096, 4096}, {4096, 11008}} {
		for _, r := range []int{16, 64} {
			for _, na := range []int{2, 4} {
				m, n := sh[0], sh[1]
				terms := make([]Term, na)
				for i := range terms {
					terms[i] = Term{B: randF32(rng, m*r, 1), A: randF32(rng, r*n, 1), Rank: r, Weight: 1}
				}
				b.Run(fmt.Sprintf("%dx%d/r%d/x%d", m, n, r, na), func(b *testing.B) {
					b.SetBytes(int64(4 * na * r * (m + n)))
					b.ReportAllocs()
					c0 := cpuTime()
					for b.Loop() {
						d, err := Factored(m, n, terms)
						if err != nil {
							b.Fatal(err)
						}
						d.Split(r)
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/module")
					b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/module")
				})
			}
		}
	}
}

// BenchmarkCopy copies the same factor bytes as BenchmarkFactored's largest
// case, as the bandwidth reference.
func BenchmarkCopy(b *testing.B) {
	src := make([]byte, 4*4*64*(4096+11008))
	dst := make([]byte, len(src))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		copy(dst, src)
	}
}

// BenchmarkRandomized measures the rank-64 randomized SVD of a dense
// 1024×1024 delta (k+p = 74, q = 2).
func BenchmarkRandomized(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := randF32(rng, 1024*1024, 1)
	b.SetBytes(4 * 1024 * 1024)
	for b.Loop() {
		if _, err := Randomized(Matrix32{1024, 1024, x}, 64, RandomizedOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
