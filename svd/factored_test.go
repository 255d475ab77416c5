package svd

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

type factoredCase struct {
	name    string
	m, n    int
	ranks   []int
	weights []float64
	diag    bool // give every term a diagonal
	zeroB   int  // index of a term whose B is all zero (-1: none)
}

var factoredCases = []factoredCase{
	{"two-adapters", 40, 30, []int{4, 6}, []float64{1, -0.5}, false, -1},
	{"three-weights", 64, 48, []int{8, 8, 4}, []float64{0.5, 0.3, -0.2}, false, -1},
	{"wide", 12, 50, []int{3, 5}, []float64{2, 1}, false, -1},
	{"rank-gt-width", 2, 9, []int{4}, []float64{1.5}, false, -1},
	{"rank-gt-height-and-width", 3, 2, []int{4, 4}, []float64{1, 1}, false, -1},
	{"sum-rank-gt-min", 10, 7, []int{5, 5}, []float64{1, 0.7}, false, -1},
	{"kasa-diag", 30, 20, []int{4, 3}, []float64{2, 0.25}, true, -1},
	{"zero-term", 16, 16, []int{4, 4}, []float64{1, 1}, false, 0},
	{"all-zero", 8, 6, []int{3}, []float64{1}, false, 0},
	{"zero-weight", 8, 6, []int{3}, []float64{0}, false, -1},
	{"one-by-one", 1, 1, []int{2}, []float64{3}, false, -1},
	{"no-terms", 5, 4, nil, nil, false, -1},
}

func (c factoredCase) terms(rng *rand.Rand) []Term {
	var ts []Term
	for i, r := range c.ranks {
		t := Term{B: randF32(rng, c.m*r, 1), A: randF32(rng, r*c.n, 1), Rank: r, Weight: c.weights[i]}
		if c.diag {
			t.Diag = randF32(rng, r, 2)
		}
		if i == c.zeroB {
			clear(t.B)
		}
		ts = append(ts, t)
	}
	return ts
}

// TestFactoredMatchesDense compares QR-core with gonum's dense SVD of the
// formed ΔW: singular values (1e-10 relative to σ₁), reconstruction and
// orthonormality.
func TestFactoredMatchesDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range factoredCases {
		t.Run(c.name, func(t *testing.T) {
			terms := c.terms(rng)
			d, err := Factored(c.m, c.n, terms)
			if err != nil {
				t.Fatal(err)
			}
			w := denseSum(c.m, c.n, terms)
			_, want := denseSVD(t, w)
			R := 0
			for _, r := range c.ranks {
				R += r
			}
			if got := d.Len(); got != min(c.m, c.n, R) {
				t.Fatalf("Len = %d, want min(m,n,R) = %d", got, min(c.m, c.n, R))
			}
			got := d.Values()
			scale := math.Max(want[0], 1e-300)
			for i := range want {
				g := 0.0
				if i < len(got) {
					g = got[i]
				}
				if !near(g, want[i], 1e-10*scale) {
					t.Errorf("σ%d = %.17g, dense %.17g", i, g, want[i])
				}
			}
			if e := froDiff(reconstruct(d), w); e > 1e-10*math.Max(mat.Norm(w, 2), 1) {
				t.Errorf("‖UΣVᵀ − ΔW‖ = %g", e)
			}
			// Columns of U and V belonging to σ > 0 are orthonormal.
			k := d.RankForThreshold(1e-8 * scale)
			u, v := d.vectors(k)
			for p := 0; p < k; p++ {
				for q := 0; q < k; q++ {
					var uu, vv float64
					for i := 0; i < c.m; i++ {
						uu += u.Data[p*u.Stride+i] * u.Data[q*u.Stride+i]
					}
					for i := 0; i < c.n; i++ {
						vv += v.Data[p*v.Stride+i] * v.Data[q*v.Stride+i]
					}
					want := 0.0
					if p == q {
						want = 1
					}
					if !near(uu, want, 1e-10) || !near(vv, want, 1e-10) {
						t.Errorf("UᵀU[%d,%d] = %g, VᵀV = %g, want %g", p, q, uu, vv, want)
					}
				}
			}
		})
	}
}

// TestTruncateEckartYoung checks that the rank-k truncation is the dense
// truncated SVD: its error is √Σ_{i>k}σᵢ² of the dense spectrum and Split's
// float32 factors reproduce it to float32 precision.
func TestTruncateEckartYoung(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const m, n = 50, 40
	terms := []Term{
		{B: randF32(rng, m*8, 1), A: randF32(rng, 8*n, 1), Rank: 8, Weight: 0.5},
		{B: randF32(rng, m*6, 1), A: randF32(rng, 6*n, 1), Rank: 6, Weight: -1.25},
	}
	w := denseSum(m, n, terms)
	dsvd, sv := denseSVD(t, w)
	var U, V mat.Dense
	dsvd.UTo(&U)
	dsvd.VTo(&V)
	d, err := Factored(m, n, terms)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{0, 1, 5, 8, 13, 14, 20} {
		var tail float64
		for _, s := range sv[min(k, len(sv)):] {
			tail += s * s
		}
		tail = math.Sqrt(tail)
		tr := d.Truncate(k)
		if e := froDiff(reconstruct(tr), w); !near(e, tail, 1e-9*sv[0]) {
			t.Errorf("k=%d: ‖ΔW − W_k‖ = %.15g, want √Σσ² tail %.15g", k, e, tail)
		}
		if fe := d.FroError(k); !near(fe, tail, 1e-9*sv[0]) {
			t.Errorf("k=%d: FroError = %g, want %g", k, fe, tail)
		}
		// Dense truncated SVD: U_k Σ_k V_kᵀ.
		kk := min(k, d.Len())
		ref := mat.NewDense(m, n, nil)
		for p := 0; p < kk; p++ {
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					ref.Set(i, j, ref.At(i, j)+U.At(i, p)*sv[p]*V.At(j, p))
				}
			}
		}
		b, a := d.Split(k)
		got := product32(b, a, m, kk, n)
		if e := froDiff(got, ref); e > 1e-5*sv[0] {
			t.Errorf("k=%d: ‖Split product − dense truncated SVD‖ = %g", k, e)
		}
	}
}

// TestEnergyHandChecked uses ΔW = diag(3, 2, 1): σ² = 9, 4, 1, Σ = 14.
func TestEnergyHandChecked(t *testing.T) {
	b := []float32{1, 0, 0, 0, 1, 0, 0, 0, 1}
	a := []float32{0, 2, 0, 0, 0, 0, 1, 0, 3, 0, 0, 0} // rows: 2e1, e2, 3e0 (3×4)
	d, err := Factored(3, 4, []Term{{B: b, A: a, Rank: 3, Weight: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{3, 2, 1} {
		if !near(d.Values()[i], want, 1e-14) {
			t.Fatalf("σ = %v, want [3 2 1]", d.Values())
		}
	}
	for _, c := range []struct {
		k          int
		energy, fe float64
	}{{0, 0, math.Sqrt(14)}, {1, 9.0 / 14, math.Sqrt(5)}, {2, 13.0 / 14, 1}, {3, 1, 0}, {9, 1, 0}} {
		if got := d.Energy(c.k); !near(got, c.energy, 1e-15) {
			t.Errorf("Energy(%d) = %g, want %g", c.k, got, c.energy)
		}
		if got := d.FroError(c.k); !near(got, c.fe, 1e-14) {
			t.Errorf("FroError(%d) = %g, want %g", c.k, got, c.fe)
		}
	}
	for _, c := range []struct {
		e    float64
		want int
	}{{0, 0}, {0.5, 1}, {9.0 / 14, 1}, {0.65, 2}, {0.92, 2}, {0.93, 3}, {0.95, 3}, {1, 3}, {2, 3}} {
		if got := d.RankForEnergy(c.e); got != c.want {
			t.Errorf("RankForEnergy(%g) = %d, want %d", c.e, got, c.want)
		}
	}
	if got := d.RankForThreshold(1.5); got != 2 {
		t.Errorf("RankForThreshold(1.5) = %d, want 2", got)
	}
	if got := d.Norm(); !near(got, math.Sqrt(14), 1e-14) {
		t.Errorf("Norm = %g, want √14", got)
	}
	u, vt := d.Vectors(1)
	// First triplet: σ=3, u = ±e3, v = ±e1.
	if math.Abs(float64(u[2])) != 1 || math.Abs(float64(vt[0])) != 1 || u[2]*vt[0] != 1 {
		t.Errorf("first singular vectors u=%v vᵀ=%v, want ±e3, ±e1 with the same sign", u, vt)
	}
}

func TestFactoredErrors(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		name  string
		m, n  int
		terms []Term
		want  error
	}{
		{"zero-dims", 0, 3, nil, ErrShape},
		{"short-B", 2, 2, []Term{{B: make([]float32, 3), A: make([]float32, 4), Rank: 2}}, ErrShape},
		{"short-A", 2, 2, []Term{{B: make([]float32, 4), A: make([]float32, 3), Rank: 2}}, ErrShape},
		{"bad-diag", 2, 2, []Term{{B: make([]float32, 4), A: make([]float32, 4), Rank: 2, Diag: []float32{1}}}, ErrShape},
		{"negative-rank", 2, 2, []Term{{Rank: -1}}, ErrShape},
		{"nan-B", 2, 2, []Term{{B: []float32{0, nan}, A: make([]float32, 2), Rank: 1}}, ErrNonFinite},
		{"inf-weight", 2, 2, []Term{{B: make([]float32, 2), A: make([]float32, 2), Rank: 1, Weight: math.Inf(1)}}, ErrNonFinite},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Factored(c.m, c.n, c.terms); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestDenseMatchesGonum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, sz := range [][2]int{{1, 1}, {7, 3}, {3, 7}, {20, 20}} {
		m, n := sz[0], sz[1]
		x := randF32(rng, m*n, 1)
		d, err := Dense(m, n, x)
		if err != nil {
			t.Fatal(err)
		}
		w := product32(x, []float32{1}, m*n, 1, 1)
		w2 := mat.NewDense(m, n, w.RawMatrix().Data)
		_, want := denseSVD(t, w2)
		for i := range want {
			if !near(d.s[i], want[i], 1e-12*want[0]) {
				t.Errorf("%dx%d σ%d = %g, want %g", m, n, i, d.s[i], want[i])
			}
		}
		if e := froDiff(reconstruct(d), w2); e > 1e-10*want[0] {
			t.Errorf("%dx%d reconstruction error %g", m, n, e)
		}
	}
	if _, err := Dense(2, 2, []float32{1}); !errors.Is(err, ErrShape) {
		t.Errorf("short data: err = %v", err)
	}
}

// TestFactoredPaths checks both QR-core routes against the dense SVD: the
// Gram/Cholesky route for well-conditioned stacks and the Householder LQ
// fallback for a stack whose B has a column 1e-7 times the others.
func TestFactoredPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const m, n = 60, 45
	mk := func(illB bool) []Term {
		t1 := Term{B: randF32(rng, m*5, 1), A: randF32(rng, 5*n, 1), Rank: 5, Weight: 0.8}
		t2 := Term{B: randF32(rng, m*3, 1), A: randF32(rng, 3*n, 1), Rank: 3, Weight: -1.3, Diag: []float32{2, 0.5, 1e-3}}
		if illB {
			for i := 0; i < m; i++ {
				t1.B[i*5+2] *= 1e-7
			}
		}
		return []Term{t1, t2}
	}
	for _, c := range []struct {
		name string
		ill  bool
		gram bool
	}{{"gram", false, true}, {"lq-fallback", true, false}} {
		terms := mk(c.ill)
		d, err := Factored(m, n, terms)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.lu.Rows > 0; got != c.gram {
			t.Errorf("%s: Gram route used = %v, want %v", c.name, got, c.gram)
		}
		w := denseSum(m, n, terms)
		_, want := denseSVD(t, w)
		for i, s := range d.Values() {
			if !near(s, want[i], 1e-10*want[0]) {
				t.Errorf("%s: σ%d = %.17g, dense %.17g", c.name, i, s, want[i])
			}
		}
		if e := froDiff(reconstruct(d), w); e > 1e-10*want[0] {
			t.Errorf("%s: reconstruction error %g", c.name, e)
		}
		u, v := d.vectors(d.Len())
		for p := 0; p < d.Len(); p++ {
			for q := 0; q < d.Len(); q++ {
				var uu, vv float64
				for i := 0; i < m; i++ {
					uu += u.Data[p*u.Stride+i] * u.Data[q*u.Stride+i]
				}
				for i := 0; i < n; i++ {
					vv += v.Data[p*v.Stride+i] * v.Data[q*v.Stride+i]
				}
				want := 0.0
				if p == q {
					want = 1
				}
				if !near(uu, want, 1e-10) || !near(vv, want, 1e-10) {
					t.Errorf("%s: UᵀU[%d,%d] = %g, VᵀV = %g", c.name, p, q, uu, vv)
				}
			}
		}
	}
}
