package kernels

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// refOrder is the sort-based reference: indices ordered by |x| descending,
// NaN last, ties by lower index. Keeping the first k of it is top-k.
func refOrder(x []float32) []int {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	mag := func(i int) float64 {
		v := math.Abs(float64(x[i]))
		if math.IsNaN(v) {
			return -1
		}
		return v
	}
	sort.SliceStable(idx, func(a, b int) bool { return mag(idx[a]) > mag(idx[b]) })
	return idx
}

// refTopK derives the mask and threshold for k from refOrder's result.
func refTopK(x []float32, idx []int, k int) (mask []bool, thr float32) {
	mask = make([]bool, len(x))
	for j, i := range idx {
		mask[i] = j < k
	}
	thr = float32(math.Inf(1))
	if k > 0 && len(x) > 0 {
		thr = float32(math.Abs(float64(x[idx[min(k, len(x))-1]])))
	}
	return mask, thr
}

func TestTopK(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	gen := map[string]func(n int) []float32{
		"normal":   func(n int) []float32 { return testValues(rng, n, false) },
		"specials": func(n int) []float32 { return testValues(rng, n, true) },
		"allEqual": func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = 0.5
				if i%2 == 1 {
					x[i] = -0.5
				}
			}
			return x
		},
		"zeros": func(n int) []float32 { return make([]float32, n) },
		"fewValues": func(n int) []float32 { // many ties, equal high bits
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.IntN(5)) * 0.25
			}
			return x
		},
		"nanHeavy": func(n int) []float32 {
			x := testValues(rng, n, false)
			for i := range x {
				if rng.IntN(3) == 0 {
					x[i] = float32(math.NaN())
				}
			}
			return x
		},
	}
	for name, g := range gen {
		for _, n := range []int{0, 1, 2, 3, 17, 100, 1000, 70000, 1<<20 + 77} {
			if n > 1<<20 && name != "specials" && name != "fewValues" {
				continue // the parallel path, on the two hardest inputs only
			}
			x := g(n)
			idx := refOrder(x)
			ks := []int{-1, 0, 1, 2, n / 3, n / 2, n - 1, n, n + 5}
			for _, k := range ks {
				wantMask, wantThr := refTopK(x, idx, k)
				mask := make([]bool, n)
				for i := range mask {
					mask[i] = i%2 == 0 // garbage the kernel must overwrite
				}
				TopKMask(mask, x, k)
				kept := 0
				for i := range mask {
					if mask[i] != wantMask[i] {
						t.Fatalf("%s n=%d k=%d: mask[%d] = %v, want %v (x=%v)", name, n, k, i, mask[i], wantMask[i], x[i])
					}
					if mask[i] {
						kept++
					}
				}
				if want := min(max(k, 0), n); kept != want {
					t.Fatalf("%s n=%d k=%d: kept %d, want %d", name, n, k, kept, want)
				}
				if got := AbsThreshold(x, k); !sameValue(float64(got), float64(wantThr)) {
					t.Fatalf("%s n=%d k=%d: AbsThreshold = %v, want %v", name, n, k, got, wantThr)
				}
			}
		}
	}
}

// TestTopKParallelTies forces the multi-goroutine path on a small input with
// ties straddling the chunk boundaries.
func TestTopKParallelTies(t *testing.T) {
	old := parMin
	parMin = 64
	defer func() { parMin = old }()
	rng := rand.New(rand.NewPCG(9, 10))
	for trial := range 200 {
		n := 64 + rng.IntN(3000)
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.IntN(4))
		}
		k := rng.IntN(n + 1)
		want, _ := refTopK(x, refOrder(x), k)
		mask := make([]bool, n)
		TopKMask(mask, x, k)
		for i := range mask {
			if mask[i] != want[i] {
				t.Fatalf("trial %d n=%d k=%d: mask[%d] = %v, want %v", trial, n, k, i, mask[i], want[i])
			}
		}
	}
}
