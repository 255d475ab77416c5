package ops

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// This file holds straightforward float64 reference implementations of the
// formulas in the merging notes, written independently of the code under
// test (no kernels, no svd package).

func randF32(rng *rand.Rand, n int, s float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * s)
	}
	return x
}

func randLowRank(rng *rand.Rand, out, in, r int, scale float64, diag bool) *LowRank {
	l := &LowRank{Out: out, In: in, Rank: r, B: randF32(rng, out*r, 1), A: randF32(rng, r*in, 1), Scale: scale}
	if diag {
		l.Diag = randF32(rng, r, 1)
	}
	return l
}

// refDelta returns s·B·diag(D)·A in float64 by the triple loop.
func refDelta(l *LowRank) []float64 {
	d := make([]float64, l.Out*l.In)
	for i := 0; i < l.Out; i++ {
		for j := 0; j < l.In; j++ {
			var s float64
			for k := 0; k < l.Rank; k++ {
				dk := 1.0
				if l.Diag != nil {
					dk = float64(l.Diag[k])
				}
				s += float64(l.B[i*l.Rank+k]) * dk * float64(l.A[k*l.In+j])
			}
			d[i*l.In+j] = l.Scale * s
		}
	}
	return d
}

// refProduct returns s·B·A of a result in float64.
func refProduct(l *LowRank) []float64 { return refDelta(l) }

// refSum returns Σ wᵢΔWᵢ.
func refSum(in []*LowRank, w []float64) []float64 {
	var out []float64
	for i, l := range in {
		if l == nil {
			continue
		}
		d := refDelta(l)
		if out == nil {
			out = make([]float64, len(d))
		}
		for j := range d {
			out[j] += w[i] * d[j]
		}
	}
	return out
}

// refTopK zeroes all but the ⌊d·n⌋ largest |t| (stable sort: ties to the
// lower index).
func refTopK(t []float64, d float64) []float64 {
	out := append([]float64(nil), t...)
	if d >= 1 {
		return out
	}
	k := int(math.Floor(d * float64(len(t))))
	idx := make([]int, len(t))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return math.Abs(t[idx[a]]) > math.Abs(t[idx[b]]) })
	for _, i := range idx[k:] {
		out[i] = 0
	}
	return out
}

func sign64(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// refTies is PEFT's ties on already-pruned tensors: election on the
// unweighted tensors, weighted disjoint mean.
func refTies(ps [][]float64, w []float64, frequency bool) []float64 {
	n := len(ps[0])
	out := make([]float64, n)
	for j := 0; j < n; j++ {
		var m float64
		for _, p := range ps {
			if frequency {
				m += sign64(p[j])
			} else {
				m += p[j]
			}
		}
		maj := 1.0
		if m < 0 {
			maj = -1
		}
		var num, cnt float64
		for i, p := range ps {
			if sign64(p[j]) == maj {
				num += w[i] * p[j]
				cnt++
			}
		}
		out[j] = num / math.Max(cnt, 1)
	}
	return out
}

func refWeighted(ps [][]float64, w []float64) []float64 {
	out := make([]float64, len(ps[0]))
	for i, p := range ps {
		for j, v := range p {
			out[j] += w[i] * v
		}
	}
	return out
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// relErr returns ‖got − want‖_F / max(‖want‖_F, tiny).
func relErr(got, want []float64) float64 {
	var d, n float64
	for i := range want {
		d += (got[i] - want[i]) * (got[i] - want[i])
		n += want[i] * want[i]
	}
	return math.Sqrt(d) / math.Max(math.Sqrt(n), 1e-300)
}

// denseTruncated returns the rank-k truncated SVD of the m×n matrix x
// (gonum, float64), its singular values and the error √Σ_{i>k}σᵢ².
func denseTruncated(t *testing.T, m, n int, x []float64, k int) ([]float64, []float64, float64) {
	t.Helper()
	var s mat.SVD
	if !s.Factorize(mat.NewDense(m, n, append([]float64(nil), x...)), mat.SVDThin) {
		t.Fatal("gonum SVD failed")
	}
	var u, v mat.Dense
	s.UTo(&u)
	s.VTo(&v)
	sv := s.Values(nil)
	out := make([]float64, m*n)
	for p := 0; p < min(k, len(sv)); p++ {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				out[i*n+j] += u.At(i, p) * sv[p] * v.At(j, p)
			}
		}
	}
	var tail float64
	for _, v := range sv[min(k, len(sv)):] {
		tail += v * v
	}
	return out, sv, math.Sqrt(tail)
}
