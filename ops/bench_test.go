package ops

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

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

// BenchmarkMergeModule measures one svd merge of two rank-16 adapters per
// module shape, through MergeModule (QR-core and the √σ split).
func BenchmarkMergeModule(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, sh := range []struct {
		name    string
		out, in int
	}{{"4096x4096", 4096, 4096}, {"11008x4096", 11008, 4096}} {
		in := []*LowRank{randLowRank(rng, sh.out, sh.in, 16, 2, false), randLowRank(rng, sh.out, sh.in, 16, 2, false)}
		b.Run(sh.name, func(b *testing.B) {
			b.SetBytes(int64(2 * 16 * (sh.out + sh.in) * 4))
			for b.Loop() {
				if _, _, err := MergeModule(MergeParams{}, "m", in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
