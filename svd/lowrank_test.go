package svd

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// lrRand builds a random factored delta with the given shape.
func lrRand(rng *rand.Rand, out, in, r int, scale float64, withDiag bool) LowRank {
	f := LowRank{Out: out, In: in, Rank: r, Scale: scale, A: make([]float32, r*in), B: make([]float32, out*r)}
	for i := range f.A {
		f.A[i] = float32(rng.NormFloat64())
	}
	for i := range f.B {
		f.B[i] = float32(rng.NormFloat64() * 0.1)
	}
	if withDiag {
		f.Diag = make([]float64, r)
		for i := range f.Diag {
			f.Diag[i] = rng.NormFloat64()
		}
	}
	return f
}

// lrDense is the float64 reference ΔW = s·B·diag(d)·A, built entry by entry.
func lrDense(f LowRank) *mat.Dense {
	d := mat.NewDense(max(f.Out, 1), max(f.In, 1), nil)
	for o := 0; o < f.Out; o++ {
		for i := 0; i < f.In; i++ {
			var s float64
			for k := 0; k < f.Rank; k++ {
				dk := 1.0
				if f.Diag != nil {
					dk = f.Diag[k]
				}
				s += float64(f.B[o*f.Rank+k]) * dk * float64(f.A[k*f.In+i])
			}
			d.Set(o, i, f.Scale*s)
		}
	}
	return d
}

func lrDenseSV(d *mat.Dense) []float64 {
	var dec mat.SVD
	if !dec.Factorize(d, mat.SVDNone) {
		panic("reference SVD failed")
	}
	return dec.Values(nil)
}

func TestLowRankGramAgainstDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	cases := []struct {
		name         string
		out, in, r   int
		scale        float64
		diag         bool
		wantSVLength int
	}{
		{"square", 32, 32, 8, 2, false, 8},
		{"tall", 96, 24, 4, 0.5, false, 4},
		{"wide", 12, 80, 6, -1.5, false, 6},
		{"rank>in (tinygpt2 c_attn)", 6, 2, 4, 0.25, false, 2},
		{"rank>out", 2, 8, 4, 0.25, false, 2},
		{"kasa diag", 40, 30, 5, 1, true, 5},
		{"conv 3x3 flattened", 16, 8 * 9, 4, 1, false, 4},
		{"rank one", 10, 7, 1, 3, false, 1},
	}
	const tol = 1e-7 // relative to σ₁: the Gram route squares the condition number
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := lrRand(rng, c.out, c.in, c.r, c.scale, c.diag)
			d := lrDense(f)
			want := lrDenseSV(d)
			g, err := NewGram(f)
			if err != nil {
				t.Fatal(err)
			}
			sv, err := g.SingularValues()
			if err != nil {
				t.Fatal(err)
			}
			if len(sv) != c.wantSVLength {
				t.Fatalf("got %d singular values, want %d", len(sv), c.wantSVLength)
			}
			for i := range sv {
				if math.Abs(sv[i]-want[i]) > tol*want[0] {
					t.Errorf("σ%d = %g, dense %g", i, sv[i], want[i])
				}
				if i > 0 && sv[i] > sv[i-1] {
					t.Errorf("not descending at %d", i)
				}
			}
			for i := len(sv); i < len(want); i++ {
				if want[i] > tol*want[0] {
					t.Errorf("dense σ%d = %g was dropped", i, want[i])
				}
			}
			fro := mat.Norm(d, 2)
			if got := g.FroNorm(); math.Abs(got-fro) > 1e-10*fro {
				t.Errorf("FroNorm %g, dense %g", got, fro)
			}
			// ‖A‖, ‖B‖ directly
			var na, nb float64
			for k := 0; k < f.Rank; k++ {
				dk := 1.0
				if f.Diag != nil {
					dk = f.Diag[k]
				}
				for i := 0; i < f.In; i++ {
					v := dk * float64(f.A[k*f.In+i])
					na += v * v
				}
			}
			for _, v := range f.B {
				nb += float64(v) * float64(v)
			}
			if math.Abs(g.NormA()-math.Sqrt(na)) > 1e-10*math.Sqrt(na) || math.Abs(g.NormB()-math.Sqrt(nb)) > 1e-10*math.Sqrt(nb) {
				t.Errorf("norms A %g/%g B %g/%g", g.NormA(), math.Sqrt(na), g.NormB(), math.Sqrt(nb))
			}
			// spectrum-derived quantities against the dense singular values
			sp := NewSpectrum(sv, g.FroNorm())
			var sum, h, e2 float64
			for _, s := range want {
				sum += s
				e2 += s * s
			}
			for _, s := range want {
				if p := s / sum; p > 1e-15 {
					h -= p * math.Log(p)
				}
			}
			if math.Abs(sp.EffectiveRank-math.Exp(h)) > 1e-6 {
				t.Errorf("effective rank %g, dense %g", sp.EffectiveRank, math.Exp(h))
			}
			if sr := e2 / (want[0] * want[0]); math.Abs(sp.StableRank-sr) > 1e-6*sr {
				t.Errorf("stable rank %g, dense %g", sp.StableRank, sr)
			}
			for _, e := range []struct {
				frac float64
				got  int
			}{{0.9, sp.Rank90}, {0.99, sp.Rank99}} {
				acc, k := 0.0, 0
				for acc < e.frac*e2 {
					acc += want[k] * want[k]
					k++
				}
				if k != e.got {
					t.Errorf("energy %g rank %d, dense %d", e.frac, e.got, k)
				}
			}
		})
	}
}

func TestLowRankCompareAgainstDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	for _, c := range []struct {
		name            string
		out, in, r1, r2 int
	}{
		{"same rank", 20, 30, 4, 4},
		{"different ranks", 50, 17, 8, 3},
		{"rank>width", 3, 2, 4, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := lrRand(rng, c.out, c.in, c.r1, 0.7, false)
			g := lrRand(rng, c.out, c.in, c.r2, 1.3, true)
			df, dg := lrDense(f), lrDense(g)
			var dot, nf, ng, dist float64
			for o := 0; o < c.out; o++ {
				for i := 0; i < c.in; i++ {
					a, b := df.At(o, i), dg.At(o, i)
					dot += a * b
					nf += a * a
					ng += b * b
					dist += (a - b) * (a - b)
				}
			}
			in, err := f.Inner(g)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(in-dot) > 1e-10*math.Sqrt(nf*ng) {
				t.Errorf("inner %g, dense %g", in, dot)
			}
			cos, rd, nr, err := f.Compare(g)
			if err != nil {
				t.Fatal(err)
			}
			if w := dot / math.Sqrt(nf*ng); math.Abs(cos-w) > 1e-9 {
				t.Errorf("cosine %g, dense %g", cos, w)
			}
			if w := math.Sqrt(dist / nf); math.Abs(rd-w) > 1e-7*w {
				t.Errorf("relative distance %g, dense %g", rd, w)
			}
			if w := math.Sqrt(ng / nf); math.Abs(nr-w) > 1e-10*w {
				t.Errorf("norm ratio %g, dense %g", nr, w)
			}
			// self comparison: cosine 1, distance 0
			cos, rd, _, _ = f.Compare(f)
			if math.Abs(cos-1) > 1e-12 || rd > 1e-6 {
				t.Errorf("self: cosine %g distance %g", cos, rd)
			}
		})
	}
}

func TestLowRankErrors(t *testing.T) {
	bad := []LowRank{
		{Out: 2, In: 2, Rank: 1, A: make([]float32, 3), B: make([]float32, 2)},
		{Out: 2, In: 2, Rank: 1, A: make([]float32, 2), B: make([]float32, 1)},
		{Out: 2, In: 2, Rank: 1, A: make([]float32, 2), B: make([]float32, 2), Diag: []float64{1, 2}},
		{Out: -1},
	}
	for i, f := range bad {
		if _, err := NewGram(f); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	f := LowRank{Out: 2, In: 2, Rank: 1, A: make([]float32, 2), B: make([]float32, 2)}
	g := LowRank{Out: 2, In: 3, Rank: 1, A: make([]float32, 3), B: make([]float32, 2)}
	if _, err := f.Inner(g); err == nil {
		t.Error("shape mismatch accepted")
	}
}

func TestLowRankSpectrumKnownValues(t *testing.T) {
	cases := []struct {
		sv       []float64
		er       float64
		r90, r99 int
	}{
		{[]float64{}, 0, 0, 0},
		{[]float64{0, 0}, 0, 0, 0},
		{[]float64{5}, 1, 1, 1},
		{[]float64{2, 2, 2, 2}, 4, 4, 4},
		{[]float64{3, 1}, math.Exp(-(0.75*math.Log(0.75) + 0.25*math.Log(0.25))), 1, 2}, // 9/10 energy in σ₁
	}
	for _, c := range cases {
		if got := EffectiveRank(c.sv); math.Abs(got-c.er) > 1e-12 {
			t.Errorf("EffectiveRank(%v) = %g, want %g", c.sv, got, c.er)
		}
		if got := EnergyRank(c.sv, 0.9); got != c.r90 {
			t.Errorf("EnergyRank(%v, .9) = %d, want %d", c.sv, got, c.r90)
		}
		if got := EnergyRank(c.sv, 0.99); got != c.r99 {
			t.Errorf("EnergyRank(%v, .99) = %d, want %d", c.sv, got, c.r99)
		}
	}
	if got := StableRank([]float64{3, 1}, math.Sqrt(10)); math.Abs(got-10.0/9) > 1e-12 {
		t.Errorf("StableRank = %g", got)
	}
}

func TestLowRankRankBound(t *testing.T) {
	r := MaxGramRank + 1
	f := LowRank{Out: 1, In: 1, Rank: r, A: make([]float32, r), B: make([]float32, r)}
	if _, err := NewGram(f); !errors.Is(err, ErrRankTooLarge) {
		t.Errorf("rank %d: %v", r, err)
	}
}

// TestLowRankSingularValuesQRCore: the QR-core route resolves the whole
// spectrum (no squared condition number): 1e-12·σ₁ against the dense SVD,
// including a spectrum spanning eight decades, rank > width and a diagonal.
func TestLowRankSingularValuesQRCore(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct {
		name       string
		out, in, r int
		diag       bool
	}{{"square", 24, 24, 6, false}, {"rank>in", 5, 3, 4, false}, {"diag", 30, 18, 5, true}, {"empty", 0, 4, 2, false}} {
		f := lrRand(rng, c.out, c.in, c.r, -0.8, c.diag)
		if c.diag {
			for i := range f.Diag {
				f.Diag[i] = math.Ldexp(1, -7*i) // σ over eight decades (float32-exact diagonal)
			}
		}
		sv, err := f.SingularValues()
		if err != nil {
			t.Fatal(err)
		}
		if len(sv) != min(c.r, c.out, c.in) {
			t.Fatalf("%s: %d values", c.name, len(sv))
		}
		if len(sv) == 0 {
			continue
		}
		want := lrDenseSV(lrDense(f))
		for i := range sv {
			if math.Abs(sv[i]-want[i]) > 1e-12*want[0] {
				t.Errorf("%s: σ%d = %g, dense %g", c.name, i, sv[i], want[i])
			}
		}
	}
	bad := LowRank{Out: 2, In: 2, Rank: 1, A: []float32{float32(math.NaN()), 0}, B: []float32{1, 1}, Scale: 1}
	if _, err := bad.SingularValues(); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN factor: %v", err)
	}
}

// TestLowRankInnerMatchesGramInner: the fold of gram.go's Inner/FroNorm
// into LowRank (scale 1, no diagonal) gives the same values up to float64
// rounding.
func TestLowRankInnerMatchesGramInner(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	f := lrRand(rng, 40, 33, 5, 1, false)
	g := lrRand(rng, 40, 33, 3, 1, false)
	old, err := Inner(f.B, f.A, f.Rank, g.B, g.A, g.Rank)
	if err != nil {
		t.Fatal(err)
	}
	nw, _ := f.Inner(g)
	fro, _ := FroNorm(f.B, f.A, f.Rank)
	gr, _ := NewGram(f)
	if math.Abs(old-nw) > 1e-12*math.Abs(old) || math.Abs(fro-gr.FroNorm()) > 1e-12*fro {
		t.Errorf("Inner %g vs %g, FroNorm %g vs %g", old, nw, fro, gr.FroNorm())
	}
}

// EnergyRank at exact boundaries: 9 of 10 equal values hold exactly 90%.
func TestEnergyRankBoundaries(t *testing.T) {
	ten := []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	for _, c := range []struct {
		sv   []float64
		e    float64
		want int
	}{{ten, 0.9, 9}, {ten, 0.91, 10}, {ten, 0, 0}, {ten, math.NaN(), 0}, {ten, 1, 10}, {[]float64{2, 1, 0}, 1, 2}, {[]float64{3, 1}, 0.9, 1}} {
		if got := EnergyRank(c.sv, c.e); got != c.want {
			t.Errorf("EnergyRank(%v, %g) = %d, want %d", c.sv, c.e, got, c.want)
		}
	}
}

// A rank-2 delta ΔW = s·B·A analysed from its factors alone.
func ExampleNewGram() {
	f := LowRank{
		Out: 3, In: 2, Rank: 2, Scale: 0.5,
		A: []float32{1, 0, 0, 1}, // A = I₂
		B: []float32{3, 0, 0, 4, 0, 0},
	}
	g, err := NewGram(f)
	if err != nil {
		panic(err)
	}
	sv, _ := f.SingularValues()
	sp := NewSpectrum(sv, g.FroNorm())
	fmt.Printf("‖ΔW‖_F = %.4g\n", sp.FroNorm)
	fmt.Printf("σ = %.4g\n", sp.SingularValues)
	fmt.Printf("effective rank %.4f, stable rank %.4f, rank for 90%% energy %d\n", sp.EffectiveRank, sp.StableRank, sp.Rank90)
	// Output:
	// ‖ΔW‖_F = 2.5
	// σ = [2 1.5]
	// effective rank 1.9796, stable rank 1.5625, rank for 90% energy 2
}

// Comparing two deltas exactly: cosine, relative distance and norm ratio.
func ExampleLowRank_Compare() {
	a := LowRank{Out: 2, In: 2, Rank: 1, Scale: 1, A: []float32{1, 0}, B: []float32{1, 0}}
	b := LowRank{Out: 2, In: 2, Rank: 1, Scale: 2, A: []float32{1, 0}, B: []float32{1, 1}}
	cos, dist, ratio, _ := a.Compare(b)
	fmt.Printf("cosine %.4f, relative distance %.4f, norm ratio %.4f\n", cos, dist, ratio)
	// Output:
	// cosine 0.7071, relative distance 2.2361, norm ratio 2.8284
}
