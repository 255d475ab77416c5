package ops

import (
	"math"
	"math/rand/v2"
	"testing"
)

// tieLowRank returns a rank-r delta whose rows repeat with period 5 (so |ΔW|
// ties across tiles) and whose B has zero rows (zero elements).
func tieLowRank(rng *rand.Rand, out, in, r int, scale float64) *LowRank {
	l := randLowRank(rng, out, in, r, scale, false)
	for i := 5; i < out; i++ {
		copy(l.B[i*r:(i+1)*r], l.B[(i%5)*r:(i%5+1)*r])
	}
	for i := 3; i < out; i += 17 {
		clear(l.B[i*r : (i+1)*r])
	}
	return l
}

// TestTiledMergeEqualsWhole forces 64-row tiles on a 200-row module and
// checks that every tile of the streamed merge is bit-identical to the
// untiled elementwise merge of the whole dense deltas (same top-k threshold
// and index tie-break, same DARE mask and rescale), for every method,
// density, rescale and election, with an absent input and a KaSA diagonal.
func TestTiledMergeEqualsWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const out, in = 200, 37
	srcs := []*LowRank{tieLowRank(rng, out, in, 3, 2), nil, tieLowRank(rng, out, in, 4, 0.5), randLowRank(rng, out, in, 2, 1, true)}
	w := []float64{1, 5, -0.7, 2}
	for _, method := range []string{"task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties"} {
		for _, d := range []float64{0, 0.05, 0.3, 0.999, 1} {
			for _, rescale := range []string{"", "l1", "none"} {
				for _, maj := range []string{"total", "frequency"} {
					p := ElementwiseParams{Density: Float(d), Majority: maj, Rescale: rescale, Seed: 11}
					ts := make([][]float32, len(srcs))
					for i, l := range srcs {
						if l != nil {
							ts[i] = l.Dense()
						}
					}
					want, err := elementwise(method, ts, w, p, 77)
					if err != nil {
						t.Fatal(err)
					}
					tm, err := newTiledMerge(method, srcs, w, p, 77, 64)
					if err != nil {
						t.Fatal(err)
					}
					got := make([]float32, out*in)
					for sweep := 0; sweep < 2; sweep++ { // a second sweep gives the same tiles
						for r0 := 0; r0 < out; r0 += 64 {
							h := min(64, out-r0)
							tm.fill(r0, h, got[r0*in:(r0+h)*in])
						}
						for j := range want {
							if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
								t.Fatalf("%s d=%g rescale=%q %s sweep %d: [%d] = %g, want %g", method, d, rescale, maj, sweep, j, got[j], want[j])
							}
						}
					}
				}
			}
		}
	}
}

// TestMergeDenseTilingInvariant checks that the factors written do not
// depend on the tiling: untiled, 64-row tiles held whole (cache) and
// 64-row tiles streamed through svd.RowTiles give the same bits on a module
// large enough for the randomized SVD, and that the merged delta matches
// the float64 reference of ties.
func TestMergeDenseTilingInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const out, in = 600, 520
	srcs := []*LowRank{randLowRank(rng, out, in, 4, 2, false), randLowRank(rng, out, in, 4, 0.5, false)}
	w := []float64{1, 0.8}
	for _, method := range []string{"ties", "dare_ties", "magnitude_prune", "dare_linear"} {
		p := ElementwiseParams{Density: Float(0.3), Seed: 3}
		rp := RankParams{Rank: 6}
		ref, rst, err := mergeDense(method, srcs, w, p, rp, 9, denseOpts{tileRows: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []denseOpts{{tileRows: 64, cache: true}, {tileRows: 64}, {tileRows: 128}} {
			res, st, err := mergeDense(method, srcs, w, p, rp, 9, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Rank != ref.Rank {
				t.Fatalf("%s %+v: rank %d, want %d", method, o, res.Rank, ref.Rank)
			}
			for j := range ref.B {
				if res.B[j] != ref.B[j] {
					t.Fatalf("%s %+v: B[%d] = %g, want %g", method, o, j, res.B[j], ref.B[j])
				}
			}
			for j := range ref.A {
				if res.A[j] != ref.A[j] {
					t.Fatalf("%s %+v: A[%d] = %g, want %g", method, o, j, res.A[j], ref.A[j])
				}
			}
			if !near(st.Norm, rst.Norm, 1e-9*rst.Norm) || !near(st.FroError, rst.FroError, 1e-6*rst.Norm) {
				t.Errorf("%s %+v: stats %+v, want %+v", method, o, st, rst)
			}
		}
		if method == "ties" {
			// The norm is that of the float64 reference ties merge.
			ps := [][]float64{refTopK(refDelta(srcs[0]), 0.3), refTopK(refDelta(srcs[1]), 0.3)}
			var n2 float64
			for _, v := range refTies(ps, w, false) {
				n2 += v * v
			}
			if !near(rst.Norm, math.Sqrt(n2), 1e-5*math.Sqrt(n2)) {
				t.Errorf("ties norm %g, reference %g", rst.Norm, math.Sqrt(n2))
			}
		}
	}
}

// refSplitMix64 is SplitMix64 (Steele, Lea & Flood 2014) written
// sequentially: state += γ, then the output mix.
type refSplitMix64 struct{ s uint64 }

func (r *refSplitMix64) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// TestDAREMaskIsSplitMix64 checks the documented mask: element j is kept
// when the j-th output of SplitMix64 seeded with
// mix(Seed ⊕ mix(key ⊕ (input+1)·γ)), as a 53-bit fraction, is below d.
func TestDAREMaskIsSplitMix64(t *testing.T) {
	const n, d = 5000, 0.37
	p := ElementwiseParams{Seed: 12345}
	for _, input := range []int{0, 3} {
		key := seedKey("model.layers.0.mlp.up_proj", "delta")
		mixOnce := func(z uint64) uint64 { r := refSplitMix64{z - 0x9e3779b97f4a7c15}; return r.next() }
		g := refSplitMix64{mixOnce(p.Seed ^ mixOnce(key^uint64(input+1)*0x9e3779b97f4a7c15))}
		x := make([]float32, n)
		for j := range x {
			x[j] = 1
		}
		randomPrune(x, d, "none", p.stream(key, input))
		kept := 0
		for j := range x {
			u := float64(g.next()>>11) / (1 << 53)
			if (x[j] != 0) != (u < d) {
				t.Fatalf("input %d: element %d kept=%v, reference u=%g", input, j, x[j] != 0, u)
			}
			if x[j] != 0 {
				kept++
			}
		}
		if f := float64(kept) / n; math.Abs(f-d) > 0.03 {
			t.Errorf("kept fraction %g, want %g ± 0.03", f, d)
		}
	}
}

// TestDisjointMerge2Bits checks that the two-input ties kernel gives the
// bits of the general block kernel, with zeros, negative zeros, NaN,
// opposite values that cancel (a tie elects +) and an absent third input.
func TestDisjointMerge2Bits(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	const n = 1000
	a, b := make([]float32, n), make([]float32, n)
	special := []float32{0, float32(math.Copysign(0, -1)), 1.5, -1.5, float32(math.NaN())}
	for i := range a {
		a[i] = float32(rng.NormFloat64())
		b[i] = float32(rng.NormFloat64())
		switch rng.IntN(4) {
		case 0:
			a[i] = special[rng.IntN(len(special))]
		case 1:
			b[i] = special[rng.IntN(len(special))]
		case 2:
			b[i] = -a[i]
		}
	}
	for _, w := range [][]float64{{1, 1}, {0.7, -1.3}} {
		got, want := make([]float32, n), make([]float32, n)
		disjointMerge(got, [][]float32{a, nil, b}, []float64{w[0], 5, w[1]}, false)
		disjointMergeBlocks(want, [][]float32{a, b}, w, false)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("w %v: element %d (%g, %g) = %g, want %g", w, i, a[i], b[i], got[i], want[i])
			}
		}
	}
}
