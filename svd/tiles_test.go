package svd

import (
	"math/rand/v2"
	"testing"
)

// TestRowTilesMatchesMatrix32 checks that streaming the rows tile by tile
// gives bit-identical products, and hence an identical randomized SVD, to
// the same matrix held whole, for tile heights below, at and above the
// panel height and not dividing the row count.
func TestRowTilesMatchesMatrix32(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const m, n, c = 333, 41, 5
	x := randF32(rng, m*n, 1)
	whole := Matrix32{m, n, x}
	v := make([]float64, n*c)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	u := make([]float64, m*c)
	for i := range u {
		u[i] = rng.NormFloat64()
	}
	want, wantT := make([]float64, m*c), make([]float64, n*c)
	whole.Mul(want, v, c)
	whole.MulTrans(wantT, u, c)
	dw, err := Randomized(whole, 6, RandomizedOptions{Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range []int{1, 64, 100, 128, 1000} {
		calls := 0
		op := RowTiles{Rows: m, Cols: n, TileRows: th, Fill: func(r0, h int, dst []float32) {
			calls++
			if r0%64 != 0 || len(dst) != h*n {
				t.Fatalf("tile %d: r0 = %d, len = %d (h = %d)", th, r0, len(dst), h)
			}
			copy(dst, x[r0*n:(r0+h)*n])
		}}
		got, gotT := make([]float64, m*c), make([]float64, n*c)
		for i := range gotT {
			gotT[i] = 7 // MulTrans must overwrite
		}
		op.Mul(got, v, c)
		op.MulTrans(gotT, u, c)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("tile %d: Mul[%d] = %v, want %v", th, i, got[i], want[i])
			}
		}
		for i := range wantT {
			if gotT[i] != wantT[i] {
				t.Fatalf("tile %d: MulTrans[%d] = %v, want %v", th, i, gotT[i], wantT[i])
			}
		}
		if wantCalls := 2 * ((m + op.tile() - 1) / op.tile()); calls != wantCalls {
			t.Errorf("tile %d: %d fills, want %d", th, calls, wantCalls)
		}
		d, err := Randomized(op, 6, RandomizedOptions{Seed: 9})
		if err != nil {
			t.Fatal(err)
		}
		gv, wv := d.Values(), dw.Values()
		for i := range wv {
			if gv[i] != wv[i] {
				t.Fatalf("tile %d: σ%d = %v, want %v", th, i, gv[i], wv[i])
			}
		}
	}
}
