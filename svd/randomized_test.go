package svd

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// orthonormal returns an m×k matrix with orthonormal columns (QR of a
// Gaussian matrix, computed by gonum's mat.QR as an independent oracle).
func orthonormal(rng *rand.Rand, m, k int) *mat.Dense {
	g := mat.NewDense(m, k, nil)
	for i := 0; i < m; i++ {
		for j := 0; j < k; j++ {
			g.Set(i, j, rng.NormFloat64())
		}
	}
	var qr mat.QR
	qr.Factorize(g)
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, m, 0, k))
}

// planted returns U·diag(σ)·Vᵀ as float32 with a known spectrum.
func planted(rng *rand.Rand, m, n int, sigma []float64) []float32 {
	k := len(sigma)
	u, v := orthonormal(rng, m, k), orthonormal(rng, n, k)
	x := make([]float32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += u.At(i, p) * sigma[p] * v.At(j, p)
			}
			x[i*n+j] = float32(s)
		}
	}
	return x
}

func TestRandomizedRecoversPlantedSpectrum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const m, n = 300, 200
	sigma := []float64{100, 60, 30, 20, 10, 5}
	for i := 0; i < 40; i++ {
		sigma = append(sigma, 0.01*math.Pow(0.9, float64(i)))
	}
	x := planted(rng, m, n, sigma)
	for _, c := range []struct {
		name string
		k    int
		opts RandomizedOptions
		tol  float64
	}{
		{"default", 6, RandomizedOptions{Seed: 7}, 1e-5},
		{"no-power", 6, RandomizedOptions{Seed: 7, PowerIters: -1, Oversample: 20}, 1e-3},
		{"k-larger-than-planted", 10, RandomizedOptions{Seed: 3}, 1e-5},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := Randomized(Matrix32{m, n, x}, c.k, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if d.Len() != c.k {
				t.Fatalf("Len = %d, want %d", d.Len(), c.k)
			}
			for i, s := range d.Values() {
				if !near(s, sigma[i], c.tol*sigma[0]) {
					t.Errorf("σ%d = %g, planted %g", i, s, sigma[i])
				}
			}
			// Reconstruction error close to the optimal (Eckart–Young) tail.
			var tail float64
			for _, s := range sigma[c.k:] {
				tail += s * s
			}
			w := mat.NewDense(m, n, nil)
			for i, v := range x {
				w.RawMatrix().Data[i] = float64(v)
			}
			e := froDiff(reconstruct(d), w)
			if e > math.Sqrt(tail)*1.5+1e-5*sigma[0] {
				t.Errorf("error %g, optimal %g", e, math.Sqrt(tail))
			}
		})
	}
	// Seeded: the same seed gives the same result, bit for bit.
	a, _ := Randomized(Matrix32{m, n, x}, 4, RandomizedOptions{Seed: 11})
	b, _ := Randomized(Matrix32{m, n, x}, 4, RandomizedOptions{Seed: 11})
	ua, _ := a.Split(4)
	ub, _ := b.Split(4)
	for i := range ua {
		if ua[i] != ub[i] {
			t.Fatal("same seed, different U")
		}
	}
}

func TestRandomizedEdges(t *testing.T) {
	// Sketch wider than the matrix: exact.
	rng := rand.New(rand.NewPCG(1, 1))
	x := randF32(rng, 5*4, 1)
	d, err := Randomized(Matrix32{5, 4, x}, 3, RandomizedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := Dense(5, 4, x)
	for i, s := range d.Values() {
		// Products are float32 (see Operator): σ to float32 precision.
		if !near(s, e.s[i], 1e-6*e.s[0]) {
			t.Errorf("σ%d = %g, exact %g", i, s, e.s[i])
		}
	}
	// Zero matrix.
	z, err := Randomized(Matrix32{6, 6, make([]float32, 36)}, 2, RandomizedOptions{})
	if err != nil || z.Norm() != 0 {
		t.Errorf("zero matrix: %v, norm %v", err, z)
	}
	if _, err := Randomized(Matrix32{2, 2, []float32{1, float32(math.NaN()), 0, 0}}, 1, RandomizedOptions{}); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN: err = %v", err)
	}
	if _, err := Randomized(Matrix32{2, 2, []float32{1}}, 1, RandomizedOptions{}); !errors.Is(err, ErrShape) {
		t.Errorf("short: err = %v", err)
	}
}

// TestMatrix32Products checks Mul and MulTrans against float64 sums within
// the bound of float32 products: a fused multiply-add chain of at most
// depthCols (Mul) or panelRows (MulTrans) terms, the right-hand side
// rounded to float32, the chains summed in float64 — an error at most
// (chain+2)·2⁻²⁴·Σ|aᵢⱼ·vⱼₖ| (Higham, Accuracy and Stability, §3.1).
func TestMatrix32Products(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const m, n, c = 130, 600, 3 // more than two panels, three depth blocks
	x := randF32(rng, m*n, 1)
	a := Matrix32{m, n, x}
	v := make([]float64, n*c)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	y := make([]float64, m*c)
	a.Mul(y, v, c)
	for i := 0; i < m; i++ {
		for k := 0; k < c; k++ {
			var s, abs float64
			for j := 0; j < n; j++ {
				s += float64(x[i*n+j]) * v[j*c+k]
				abs += math.Abs(float64(x[i*n+j]) * v[j*c+k])
			}
			bound := (depthCols + 2) * 0x1p-24 * abs
			if !near(y[i*c+k], s, bound) {
				t.Fatalf("Mul[%d,%d] = %g, want %g ± %g", i, k, y[i*c+k], s, bound)
			}
		}
	}
	z := make([]float64, n*c)
	a.MulTrans(z, y, c)
	for j := 0; j < n; j++ {
		for k := 0; k < c; k++ {
			var s, abs float64
			for i := 0; i < m; i++ {
				s += float64(x[i*n+j]) * y[i*c+k]
				abs += math.Abs(float64(x[i*n+j]) * y[i*c+k])
			}
			bound := (panelRows + 2) * 0x1p-24 * abs
			if !near(z[j*c+k], s, bound) {
				t.Fatalf("MulTrans[%d,%d] = %g, want %g ± %g", j, k, z[j*c+k], s, bound)
			}
		}
	}
}
