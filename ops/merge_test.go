package ops

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestCatExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range []struct {
		name    string
		in      []*LowRank
		weights []float64
	}{
		{"mixed-ranks", []*LowRank{randLowRank(rng, 20, 30, 4, 2, false), randLowRank(rng, 20, 30, 8, 0.5, false)}, []float64{1, -0.5}},
		{"kasa-diag", []*LowRank{randLowRank(rng, 12, 9, 3, 1.5, true), randLowRank(rng, 12, 9, 2, 1, false)}, []float64{0.7, 0.3}},
		{"absent-input", []*LowRank{nil, randLowRank(rng, 6, 5, 2, 4, false), randLowRank(rng, 6, 5, 3, 1, false)}, []float64{1, 1, -2}},
		{"rank-gt-width", []*LowRank{randLowRank(rng, 2, 5, 4, 1, false), randLowRank(rng, 2, 5, 4, 2, false)}, []float64{1, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := Cat(c.in, c.weights)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, l := range c.in {
				if l != nil {
					want += l.Rank
				}
			}
			if res.Rank != want || res.Scale != 1 {
				t.Fatalf("rank %d scale %v, want Σr = %d, scale 1", res.Rank, res.Scale, want)
			}
			if e := relErr(refProduct(res), refSum(c.in, c.weights)); e > 1e-6 {
				t.Errorf("relative error %g > 1e-6", e)
			}
		})
	}
}

// TestSVDEqualsDenseTruncated: the svd merge equals gonum's truncated SVD
// of the formed float64 sum (Eckart–Young), and its stats are the dense ones.
func TestSVDEqualsDenseTruncated(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range []struct {
		name string
		in   []*LowRank
		w    []float64
		p    RankParams
		k    int // expected output rank
	}{
		{"default-max-rank", []*LowRank{randLowRank(rng, 40, 30, 4, 2, false), randLowRank(rng, 40, 30, 6, 1, false)}, []float64{1, 0.5}, RankParams{}, 6},
		{"rank-3", []*LowRank{randLowRank(rng, 40, 30, 4, 2, false), randLowRank(rng, 40, 30, 6, 1, false)}, []float64{1, -1}, RankParams{Rank: 3}, 3},
		{"full-rank-exact", []*LowRank{randLowRank(rng, 25, 35, 4, 1, true), randLowRank(rng, 25, 35, 4, 3, false)}, []float64{1, 1}, RankParams{Rank: 8}, 8},
		{"rank-gt-width", []*LowRank{randLowRank(rng, 2, 7, 4, 1, false), randLowRank(rng, 2, 7, 4, 1, false)}, []float64{1, 1}, RankParams{}, 2},
		{"absent-input", []*LowRank{nil, randLowRank(rng, 9, 8, 3, 1, false)}, []float64{1, 2}, RankParams{}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, st, err := SVD(c.in, c.w, c.p)
			if err != nil {
				t.Fatal(err)
			}
			if res.Rank != c.k {
				t.Fatalf("rank %d, want %d", res.Rank, c.k)
			}
			m, n := res.Out, res.In
			sum := refSum(c.in, c.w)
			want, sv, tail := denseTruncated(t, m, n, sum, c.k)
			if e := relErr(refProduct(res), want); e > 1e-5 {
				t.Errorf("‖svd − dense truncated‖/‖·‖ = %g", e)
			}
			var norm float64
			for _, s := range sv {
				norm += s * s
			}
			if !near(st.FroError, tail, 1e-9*sv[0]) || !near(st.Norm, math.Sqrt(norm), 1e-9*sv[0]) {
				t.Errorf("stats %+v, dense error %g norm %g", st, tail, math.Sqrt(norm))
			}
		})
	}
}

func TestSVDEnergyRank(t *testing.T) {
	// ΔW = diag(4, 2, 1) (σ² = 16, 4, 1; Σ = 21) from one rank-3 input.
	l := &LowRank{Out: 3, In: 3, Rank: 3, Scale: 1,
		B: []float32{1, 0, 0, 0, 1, 0, 0, 0, 1}, A: []float32{4, 0, 0, 0, 2, 0, 0, 0, 1}}
	for _, c := range []struct {
		p    RankParams
		k    int
		fe   float64
		name string
	}{
		{RankParams{Energy: 0.75}, 1, math.Sqrt(5), "energy-0.75"},
		{RankParams{Energy: 0.9}, 2, 1, "energy-0.9"},
		{RankParams{Energy: 0.99}, 3, 0, "energy-0.99"},
		{RankParams{Energy: 0.99, Rank: 2}, 2, 1, "energy-capped"},
		{RankParams{Threshold: 1.5}, 2, 1, "threshold"},
	} {
		res, st, err := SVD([]*LowRank{l}, []float64{1}, c.p)
		if err != nil {
			t.Fatal(err)
		}
		if res.Rank != c.k || !near(st.FroError, c.fe, 1e-12) {
			t.Errorf("%s: rank %d error %g, want %d, %g", c.name, res.Rank, st.FroError, c.k, c.fe)
		}
	}
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// TestElementwiseMatchesReference compares the merge_utils methods with the
// float64 reference formulas on random tensors with zeros and magnitude
// ties, negative weights and an absent input.
func TestElementwiseMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 257
	mk := func() []float32 {
		x := randF32(rng, n, 1)
		for i := 0; i < n; i += 7 {
			x[i] = 0
		}
		for i := 3; i < n; i += 11 {
			x[i] = 0.5 // magnitude ties
		}
		return x
	}
	base := [][]float32{mk(), mk(), nil, mk()}
	w := []float64{1, -0.7, 3, 2}
	for _, method := range []string{"task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties"} {
		for _, d := range []float64{0, 0.1, 0.5, 0.9, 1} {
			for _, maj := range []string{"total", "frequency"} {
				p := ElementwiseParams{Density: Float(d), Majority: maj, Seed: 42}
				ts := make([][]float32, len(base))
				var ref [][]float64
				var rw []float64
				for i, b := range base {
					if b == nil {
						continue
					}
					ts[i] = append([]float32(nil), b...)
					t64 := to64(b)
					switch method {
					case "magnitude_prune", "ties":
						t64 = refTopK(t64, d)
					case "dare_linear", "dare_ties":
						// Recover the Bernoulli mask from the same stream.
						ones := make([]float32, n)
						for j := range ones {
							ones[j] = 1
						}
						randomPrune(ones, d, "none", p.stream(99, i))
						for j := range t64 {
							if ones[j] == 0 && d < 1 {
								t64[j] = 0
							} else if d < 1 {
								t64[j] /= d
							}
						}
					}
					ref = append(ref, t64)
					rw = append(rw, w[i])
				}
				got, err := elementwise(method, ts, w, p, 99)
				if err != nil {
					t.Fatal(err)
				}
				var want []float64
				if method == "ties" || method == "dare_ties" {
					want = refTies(ref, rw, maj == "frequency")
				} else {
					want = refWeighted(ref, rw)
				}
				for j := range want {
					if !near(float64(got[j]), want[j], 1e-5*math.Max(1, math.Abs(want[j]))) {
						t.Errorf("%s d=%g %s: [%d] = %g, want %g", method, d, maj, j, got[j], want[j])
						break
					}
				}
			}
		}
	}
}

func TestDAREStatistics(t *testing.T) {
	x := make([]float32, 100000)
	for i := range x {
		x[i] = 2
	}
	p := ElementwiseParams{Seed: 5}
	y := append([]float32(nil), x...)
	randomPrune(y, 0.3, "", p.stream(1, 0))
	kept := 0
	for _, v := range y {
		switch v {
		case 0:
		case float32(2 / 0.3):
			kept++
		default:
			t.Fatalf("kept value %g, want 2/0.3", v)
		}
	}
	if f := float64(kept) / float64(len(x)); math.Abs(f-0.3) > 0.01 {
		t.Errorf("kept fraction %g, want 0.3 ± 0.01", f)
	}
	// Same seed, same mask; L1 rescale keeps the L1 norm.
	z := append([]float32(nil), x...)
	randomPrune(z, 0.3, "l1", p.stream(1, 0))
	var l1 float64
	for i, v := range z {
		if (v == 0) != (y[i] == 0) {
			t.Fatal("same seed gave a different mask")
		}
		l1 += float64(v)
	}
	if !near(l1, 200000, 1e-2) {
		t.Errorf("L1 after l1 rescale %g, want 200000", l1)
	}
}

func TestMergeDenseSmallIsTruncatedSVD(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	in := []*LowRank{randLowRank(rng, 30, 20, 4, 2, false), randLowRank(rng, 30, 20, 4, 1, false)}
	w := []float64{1, 0.5}
	p := ElementwiseParams{Density: Float(0.4)}
	res, st, err := mergeDense("ties", in, w, p, RankParams{Rank: 5}, 7, denseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	ps := [][]float64{refTopK(refDelta(in[0]), 0.4), refTopK(refDelta(in[1]), 0.4)}
	merged := refTies(ps, w, false)
	want, _, tail := denseTruncated(t, 30, 20, merged, 5)
	if e := relErr(refProduct(res), want); e > 1e-5 {
		t.Errorf("ties rank 5: relative error %g to the dense truncated SVD", e)
	}
	if !near(st.FroError, tail, 1e-4*tail) {
		t.Errorf("FroError %g, want %g", st.FroError, tail)
	}
}

func TestMergeDenseRandomizedPath(t *testing.T) {
	// min(out,in) > 512 takes the randomized path; the inputs have rank 8
	// each, so task arithmetic on the dense deltas is rank ≤ 16 and a rank-16
	// randomized factorization is exact to float32 precision.
	rng := rand.New(rand.NewPCG(1, 1))
	in := []*LowRank{randLowRank(rng, 600, 520, 8, 1, false), randLowRank(rng, 600, 520, 8, 0.5, false)}
	res, st, err := mergeDense("task_arithmetic", in, []float64{1, -1}, ElementwiseParams{}, RankParams{Rank: 16}, 3, denseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if e := relErr(refProduct(res), refSum(in, []float64{1, -1})); e > 1e-5 {
		t.Errorf("relative error %g", e)
	}
	if st.Energy < 1-1e-9 {
		t.Errorf("energy %g, want 1", st.Energy)
	}
}

func TestMergeModuleErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	a, b := randLowRank(rng, 4, 5, 2, 1, false), randLowRank(rng, 5, 4, 2, 1, false)
	c := randLowRank(rng, 4, 5, 3, 1, false)
	for _, x := range []struct {
		name string
		p    MergeParams
		in   []*LowRank
		want error
	}{
		{"shape-mismatch", MergeParams{}, []*LowRank{a, b}, ErrIncompatible},
		{"unknown-method", MergeParams{Method: "slerp"}, []*LowRank{a, a}, ErrParams},
		{"weights-count", MergeParams{Weights: []float64{1}}, []*LowRank{a, a}, ErrParams},
		{"weights-nan", MergeParams{Weights: []float64{1, math.NaN()}}, []*LowRank{a, a}, ErrParams},
		{"density", MergeParams{Method: "ties", ElementwiseParams: ElementwiseParams{Density: Float(1.5)}}, []*LowRank{a, a}, ErrParams},
		{"majority", MergeParams{Method: "ties", ElementwiseParams: ElementwiseParams{Majority: "most"}}, []*LowRank{a, a}, ErrParams},
		{"energy", MergeParams{RankParams: RankParams{Energy: 2}}, []*LowRank{a, a}, ErrParams},
		{"factor-space-ranks", MergeParams{Method: "linear"}, []*LowRank{a, c}, ErrIncompatible},
		{"absent-everywhere", MergeParams{}, []*LowRank{nil, nil}, ErrIncompatible},
		{"bad-factors", MergeParams{}, []*LowRank{{Out: 2, In: 2, Rank: 1, B: []float32{1}, A: []float32{1, 2}}}, ErrIncompatible},
	} {
		if _, _, err := MergeModule(x.p, "m", x.in); !errors.Is(err, x.want) {
			t.Errorf("%s: err = %v, want %v", x.name, err, x.want)
		}
	}
}

// TestMergeDenseSmallRandomized: a 300×200 ties merge back to rank 16 takes
// the randomized route (K+p = 26 < 200/2); its error and kept energy are
// within 0.1 % and 0.5 % of the Eckart–Young optimum of the float64
// reference merge, and the reported
// FroError and Norm are those of the written factors.
func TestMergeDenseSmallRandomized(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const m, n, k = 300, 200, 16
	if exactSmall(m, n, RankParams{Rank: k}, k) {
		t.Fatal("300×200 at rank 16 should take the randomized route")
	}
	in := []*LowRank{randLowRank(rng, m, n, 16, 2, false), randLowRank(rng, m, n, 16, 1, false)}
	w := []float64{1, 0.5}
	p := ElementwiseParams{Density: Float(0.3)}
	res, st, err := mergeDense("ties", in, w, p, RankParams{Rank: k}, 7, denseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	merged := refTies([][]float64{refTopK(refDelta(in[0]), 0.3), refTopK(refDelta(in[1]), 0.3)}, w, false)
	_, sv, tail := denseTruncated(t, m, n, merged, k)
	got := refProduct(res)
	var e2, n2 float64
	for i := range merged {
		e2 += (got[i] - merged[i]) * (got[i] - merged[i])
		n2 += merged[i] * merged[i]
	}
	e := math.Sqrt(e2)
	// The kept energy ‖X‖² − e² against the optimum Σ_{i≤k}σᵢ² (the error
	// alone is dominated by the tail here).
	kept, opt := n2-e*e, n2-tail*tail
	if e > 1.001*tail || kept < 0.995*opt {
		t.Errorf("error %g, kept energy %g; Eckart–Young: %g, %g", e, kept, tail, opt)
	}
	if !near(st.FroError, e, 1e-4*sv[0]) || !near(st.Norm, math.Sqrt(n2), 1e-5*math.Sqrt(n2)) {
		t.Errorf("stats %+v, want fro_error %g norm %g", st, e, math.Sqrt(n2))
	}
}
