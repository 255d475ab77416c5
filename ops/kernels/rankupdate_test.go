package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestRankUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	shapes := [][3]int{{0, 0, 0}, {1, 1, 1}, {3, 5, 0}, {2, 3, 1}, {7, 13, 3}, {16, 64, 16}, {33, 257, 5},
		{5, 4099, 17}, {9, 8193, 9}, {300, 4096, 16}}
	for _, impl := range implLevels() {
		restore := setImpl(impl.name)
		for _, sh := range shapes {
			out, in, r := sh[0], sh[1], sh[2]
			w0 := testValues(rng, out*in, false)
			b := testValues(rng, out*r, false)
			a := testValues(rng, r*in, false)
			s := float32(0.37)
			w, wb := guarded(w0, 1)
			RankUpdate(w, out, in, s, b, a, r)
			checkGuards(t, impl.name+" RankUpdate", wb, 1, out*in)
			for i := range out {
				for j := range in {
					// The documented order, with float64 references for each rounding.
					want := w0[i*in+j]
					exact := float64(want)
					var mag float64
					for k := range r {
						c := r32(float64(s) * float64(b[i*r+k]))
						want = r32(float64(want) + float64(r32(float64(c)*float64(a[k*in+j]))))
						p := float64(s) * float64(b[i*r+k]) * float64(a[k*in+j])
						exact += p
						mag += math.Abs(p)
					}
					got := w[i*in+j]
					if !same(got, want) {
						t.Fatalf("%s %v: W[%d,%d] = %v, want %v", impl.name, sh, i, j, got, want)
					}
					// And the float32 result is close to the exact float64 sum.
					if math.Abs(float64(got)-exact) > float64(2*r+2)*0x1p-23*(mag+math.Abs(float64(w0[i*in+j]))) {
						t.Fatalf("%s %v: W[%d,%d] = %v, exact %v", impl.name, sh, i, j, got, exact)
					}
				}
			}
		}
		restore()
	}
}
