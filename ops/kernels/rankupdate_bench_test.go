//go:build unix

package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkRankUpdateVsCopy is the RankUpdate target: W += s·B·A for
// W 4096×4096 (64 MiB), r = 16, against copy() of W's bytes (64 MiB read +
// 64 MiB written) in the same run. Metrics:
//
//   - x-copy: fastest copy / fastest RankUpdate of interleaved runs (wall
//     time; the kernel uses GOMAXPROCS cores, copy one);
//
//   - cpu-x-copy: copy's CPU time per call / RankUpdate's CPU time per call
//     (process user+system time summed over all threads), i.e. the ratio on
//     one core that is not shared — on a loaded machine wall times measure the
//     CPU share, this measures the work;
//
//   - cpu-ms: RankUpdate CPU milliseconds per call.
//
//     go test -run '^$' -bench RankUpdateVsCopy -count 5 ./ops/kernels/
//     GOMAXPROCS=1 go test -run '^$' -bench RankUpdateVsCopy -count 5 ./ops/kernels/
func BenchmarkRankUpdateVsCopy(b *testing.B) {
	for _, sh := range [][3]int{{4096, 4096, 16}, {4096, 4096, 64}} {
		out, in, r := sh[0], sh[1], sh[2]
		b.Run(fmt.Sprintf("%dx%d_r%d", out, in, r), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(5, 6))
			w := make([]float32, out*in)
			bm := make([]float32, out*r)
			am := make([]float32, r*in)
			for _, x := range [][]float32{w, bm, am} {
				for i := range x {
					x[i] = float32(rng.NormFloat64() * 0.02)
				}
			}
			src, dst := make([]float32, out*in), make([]float32, out*in)
			copy(src, w)
			copy(dst, w)
			kern := func() { RankUpdate(w, out, in, 1e-3, bm, am, r) }
			cp := func() { copy(dst, src) }
			b.SetBytes(int64(8 * out * in))
			b.ReportAllocs()
			kern()
			b.ResetTimer()
			for b.Loop() {
				kern()
			}
			b.StopTimer()
			bestK, bestC := time.Duration(1<<62), time.Duration(1<<62)
			var cpuK, cpuC float64
			reps := 0
			start := time.Now()
			for ; reps < 9 || (reps < 100 && time.Since(start) < time.Second); reps++ {
				c0 := cpuTime()
				t0 := time.Now()
				kern()
				t1 := time.Now()
				c1 := cpuTime()
				cp()
				t2 := time.Now()
				c2 := cpuTime()
				bestK, bestC = min(bestK, t1.Sub(t0)), min(bestC, t2.Sub(t1))
				cpuK += c1 - c0
				cpuC += c2 - c1
			}
			b.ReportMetric(bestC.Seconds()/bestK.Seconds(), "x-copy")
			b.ReportMetric(cpuC/cpuK, "cpu-x-copy")
			b.ReportMetric(cpuK/float64(reps)*1e3, "cpu-ms")
			b.ReportMetric(float64(8*out*in)/bestC.Seconds()/1e9, "copy-GB/s")
		})
	}
}
