package ops

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/adaptool/adaptool/svd"
	"gonum.org/v1/gonum/mat"
)

func TestNegateScaleExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	l := randLowRank(rng, 7, 5, 3, 2.5, true)
	ref := refDelta(l)
	for _, c := range []struct {
		name   string
		got    *LowRank
		lambda float64
	}{{"neg", Negate(l), -1}, {"scale-0.3", ScaleBy(l, 0.3), 0.3}, {"scale-0", ScaleBy(l, 0), 0}} {
		got := refDelta(c.got)
		for i := range ref {
			if !near(got[i], c.lambda*ref[i], 1e-6*math.Abs(ref[i])+1e-12) {
				t.Fatalf("%s: [%d] = %g, want %g", c.name, i, got[i], c.lambda*ref[i])
			}
		}
		if c.got.Rank != l.Rank || &c.got.A[0] != &l.A[0] {
			t.Errorf("%s: rank or A changed", c.name)
		}
	}
	if l.B[0] == Negate(l).B[0] && l.B[0] != 0 {
		t.Error("Negate did not flip B")
	}
	ia := []float32{1, 0.5, 2, 1.25}
	checkVals(t, "ia3 neg", NegateIA3(ia), []float64{1, 1.5, 0, 0.75}, 0)
	checkVals(t, "ia3 scale 0.5", ScaleIA3(ia, 0.5), []float64{1, 0.75, 1.5, 1.125}, 0)
}

func TestResizeMatchesDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	l := randLowRank(rng, 30, 24, 12, 0.75, true) // KaSA-style diagonal folded in
	for _, k := range []int{1, 4, 12} {
		res, st, err := Resize(l, RankParams{Rank: k})
		if err != nil {
			t.Fatal(err)
		}
		want, sv, tail := denseTruncated(t, 30, 24, refDelta(l), k)
		if e := relErr(refProduct(res), want); e > 1e-5 {
			t.Errorf("k=%d: relative error %g", k, e)
		}
		if !near(st.FroError, tail, 1e-9*sv[0]) {
			t.Errorf("k=%d: FroError %g, want %g", k, st.FroError, tail)
		}
	}
}

// TestReweightMatchesDense: for each spectrum function, the output equals
// U·diag(f(σ))·Vᵀ from gonum's SVD of the formed ΔW, in both layouts.
func TestReweightMatchesDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	l := randLowRank(rng, 20, 16, 6, 2, true)
	ref := refDelta(l)
	var s mat.SVD
	if !s.Factorize(mat.NewDense(20, 16, append([]float64(nil), ref...)), mat.SVDThin) {
		t.Fatal("gonum SVD failed")
	}
	var u, v mat.Dense
	s.UTo(&u)
	s.VTo(&v)
	sv := s.Values(nil)[:6]
	for _, spec := range []string{"scale:0.5", "scale:-2", "truncate:3", "energy:0.9", "soft:0.5", "shrink:1", "power:0.5", "weights:1,0.5,0"} {
		f, err := svd.ParseFn(spec)
		if err != nil {
			t.Fatal(err)
		}
		// Independent application of the definitions of merging.md §12.
		want := make([]float64, 20*16)
		sp := append([]float64(nil), sv...)
		sign := 1.0
		switch spec {
		case "scale:0.5":
			for i := range sp {
				sp[i] *= 0.5
			}
		case "scale:-2":
			for i := range sp {
				sp[i] *= 2
			}
			sign = -1
		case "truncate:3":
			sp = sp[:3]
		case "energy:0.9":
			var tot, cum float64
			for _, x := range sp {
				tot += x * x
			}
			k := 0
			for cum < 0.9*tot {
				cum += sp[k] * sp[k]
				k++
			}
			sp = sp[:k]
		case "soft:0.5":
			for i := range sp {
				sp[i] = math.Max(sp[i]-0.5, 0)
			}
		case "shrink:1":
			for i := range sp {
				sp[i] /= 2
			}
		case "power:0.5":
			var n0, n1 float64
			for i := range sp {
				n0 += sp[i] * sp[i]
				sp[i] = math.Sqrt(sp[i])
				n1 += sp[i] * sp[i]
			}
			for i := range sp {
				sp[i] *= math.Sqrt(n0 / n1)
			}
		case "weights:1,0.5,0":
			sp[1] *= 0.5
			sp[2] = 0
		}
		for p := range sp {
			for i := 0; i < 20; i++ {
				for j := 0; j < 16; j++ {
					want[i*16+j] += sign * u.At(i, p) * sp[p] * v.At(j, p)
				}
			}
		}
		for _, layout := range []string{"lora", "kasa"} {
			res, st, err := Reweight(l, ReweightParams{Fn: f, Layout: layout})
			if err != nil {
				t.Fatalf("%s: %v", spec, err)
			}
			if e := relErr(refProduct(res), want); e > 1e-5 {
				t.Errorf("%s %s: relative error %g", spec, layout, e)
			}
			if layout == "kasa" {
				if res.Diag == nil || res.Scale != 1 {
					t.Fatalf("%s kasa: no diagonal or scale %v", spec, res.Scale)
				}
				// lora_B columns orthonormal.
				for p := 0; p < res.Rank; p++ {
					var nn float64
					for i := 0; i < 20; i++ {
						nn += float64(res.B[i*res.Rank+p]) * float64(res.B[i*res.Rank+p])
					}
					if !near(nn, 1, 1e-5) {
						t.Errorf("%s kasa: ‖B[:,%d]‖² = %g", spec, p, nn)
					}
				}
			}
			if !near(st.NormIn, mat.Norm(mat.NewDense(20, 16, append([]float64(nil), ref...)), 2), 1e-9*sv[0]) {
				t.Errorf("%s: NormIn %g", spec, st.NormIn)
			}
		}
	}
	if _, _, err := Reweight(l, ReweightParams{Layout: "svd"}); !errors.Is(err, ErrParams) {
		t.Errorf("bad layout: %v", err)
	}
}

func TestPrune(t *testing.T) {
	if got := LowNormModules([]float64{3, 1, 2, 1, 5}, 0.5); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Errorf("LowNormModules = %v, want [1 3]", got)
	}
	if got := LowNormModules([]float64{3, 1, 2, 1, 5}, 0.3); len(got) != 1 || got[0] != 3 {
		t.Errorf("LowNormModules(0.3) = %v, want [3] (tie: later index first)", got)
	}
	for _, s := range []string{"energy:0", "energy:1.5", "top:0", "top:2.5", "module-fraction:2", "bogus:1", "energy"} {
		if _, err := ParsePrune(s); !errors.Is(err, ErrParams) {
			t.Errorf("ParsePrune(%q) err = %v", s, err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	l := randLowRank(rng, 10, 12, 6, 1, false)
	p, _ := ParsePrune("top:2")
	res, st, err := PruneRanks(l, p)
	if err != nil {
		t.Fatal(err)
	}
	want, _, tail := denseTruncated(t, 10, 12, refDelta(l), 2)
	if res.Rank != 2 || relErr(refProduct(res), want) > 1e-5 || !near(st.FroError, tail, 1e-9) {
		t.Errorf("top:2 rank %d, stats %+v, dense tail %g", res.Rank, st, tail)
	}
	n, _ := l.Norm()
	var ref float64
	for _, v := range refDelta(l) {
		ref += v * v
	}
	if !near(n, math.Sqrt(ref), 1e-9*n) {
		t.Errorf("Norm %g, dense %g", n, math.Sqrt(ref))
	}
}
