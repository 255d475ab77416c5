package svd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// FuzzFactored compares QR-core with gonum's dense SVD of the formed matrix
// on random shapes (including rank > width, zero and badly scaled columns,
// which switch between the Gram and the Householder routes).
func FuzzFactored(f *testing.F) {
	f.Add(uint8(7), uint8(5), uint8(3), uint8(2), uint64(1), uint8(0))
	f.Add(uint8(2), uint8(9), uint8(4), uint8(1), uint64(2), uint8(1))
	f.Add(uint8(30), uint8(20), uint8(8), uint8(3), uint64(3), uint8(2))
	f.Fuzz(func(t *testing.T, m8, n8, r8, terms8 uint8, seed uint64, mode uint8) {
		m, n := int(m8%40)+1, int(n8%40)+1
		nt := int(terms8%4) + 1
		rng := rand.New(rand.NewPCG(seed, seed^7))
		var ts []Term
		for i := 0; i < nt; i++ {
			r := int(r8%12) + i%2
			tt := Term{B: randF32(rng, m*r, 1), A: randF32(rng, r*n, 1), Rank: r, Weight: rng.NormFloat64()}
			switch mode % 4 {
			case 1: // a zero column of B
				for j := 0; j < m && r > 0; j++ {
					tt.B[j*r] = 0
				}
			case 2: // badly scaled column
				for j := 0; j < m && r > 0; j++ {
					tt.B[j*r] *= 1e-6
				}
			case 3:
				tt.Diag = randF32(rng, r, 3)
			}
			ts = append(ts, tt)
		}
		d, err := Factored(m, n, ts)
		if err != nil {
			t.Fatal(err)
		}
		w := denseSum(m, n, ts)
		_, want := denseSVD(t, w)
		scale := math.Max(want[0], 1e-300)
		got := d.Values()
		for i := range want {
			g := 0.0
			if i < len(got) {
				g = got[i]
			}
			if !near(g, want[i], 1e-9*scale) {
				t.Fatalf("%d×%d: σ%d = %g, dense %g", m, n, i, g, want[i])
			}
		}
		if e := froDiff(reconstruct(d), w); e > 1e-9*math.Max(scale, 1) {
			t.Fatalf("%d×%d: reconstruction error %g", m, n, e)
		}
	})
}
