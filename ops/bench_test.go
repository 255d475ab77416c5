package ops

import (
	"math/rand/v2"
	"os"
	"path/filepath"
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

// BenchmarkMergeModule measures one merge of two rank-16 adapters per
// module shape through MergeModule: svd (QR-core and the √σ split) and ties
// (dense deltas, top-k, election, randomized SVD back to rank 16).
func BenchmarkMergeModule(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, sh := range []struct {
		name    string
		out, in int
	}{{"4096x4096", 4096, 4096}, {"11008x4096", 11008, 4096}} {
		in := []*LowRank{randLowRank(rng, sh.out, sh.in, 16, 2, false), randLowRank(rng, sh.out, sh.in, 16, 2, false)}
		for _, method := range []string{"svd", "ties"} {
			b.Run(method+"/"+sh.name, func(b *testing.B) {
				b.SetBytes(int64(2 * 16 * (sh.out + sh.in) * 4))
				c0 := cpuTime()
				for b.Loop() {
					if _, _, err := MergeModule(MergeParams{Method: method}, "m", in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/module")
			})
		}
	}
}
