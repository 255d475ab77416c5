package ops

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user+system CPU time (benchmarks on a
// shared machine report it next to wall time).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMerge7B merges the 7B-shaped adapter pair written by
// `go run ./internal/testgen/cmd/gen7b -o DIR` with --method svd; set
// ADAPTOOL_7B=DIR to run it.
func BenchmarkMerge7B(b *testing.B) {
	dir := os.Getenv("ADAPTOOL_7B")
	if dir == "" {
		b.Skip("ADAPTOOL_7B not set (see internal/testgen/cmd/gen7b)")
	}
	in := []string{filepath.Join(dir, "a0"), filepath.Join(dir, "a1")}
	for b.Loop() {
		if _, err := Merge(in, MergeParams{}, RunOptions{Output: b.TempDir()}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMergeModule measures one module merge per shape (out×in), input
// rank and input count: svd (QR-core and the √σ split) and, for rank 16,
// ties at density 0.2 (dense deltas in row tiles, top-k, election,
// randomized SVD back to rank 16) with the merged matrix held whole
// ("ties") or streamed through svd.RowTiles ("ties-stream"). Reports wall
// ms and CPU ms per module (a shared machine inflates wall time).
func BenchmarkMergeModule(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, sh := range []struct {
		name    string
		out, in int
	}{{"4096x4096", 4096, 4096}, {"4096x11008", 4096, 11008}} {
		for _, r := range []int{16, 64} {
			for _, n := range []int{2, 4} {
				in := make([]*LowRank, n)
				for i := range in {
					in[i] = randLowRank(rng, sh.out, sh.in, r, 2, false)
				}
				for _, method := range []string{"svd", "ties", "ties-stream"} {
					if method != "svd" && r != 16 {
						continue
					}
					b.Run(fmt.Sprintf("%s/%s/r%d/n%d", method, sh.name, r, n), func(b *testing.B) {
						b.SetBytes(int64(n * r * (sh.out + sh.in) * 4))
						p := MergeParams{Method: strings.TrimSuffix(method, "-stream")}
						o := denseOpts{cache: method == "ties"}
						c0, t0 := cpuTime(), time.Now()
						for b.Loop() {
							if _, _, err := mergeModule(p, "m", in, o); err != nil {
								b.Fatal(err)
							}
						}
						b.ReportMetric(float64(time.Since(t0).Microseconds())/1e3/float64(b.N), "ms/module")
						b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/module")
					})
				}
			}
		}
	}
}
