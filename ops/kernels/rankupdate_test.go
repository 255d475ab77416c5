package kernels

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"testing"
)

// fmaRef is x·y+z rounded once to float32, computed exactly with math/big
// (independent of fma32). Non-finite operands follow IEEE: the float64
// expression gives the same Inf/NaN a single rounding would.
func fmaRef(x, y, z float32) float32 {
	fx, fy, fz := float64(x), float64(y), float64(z)
	if math.IsInf(fx, 0) || math.IsInf(fy, 0) || math.IsInf(fz, 0) || x != x || y != y || z != z {
		return float32(fx*fy + fz)
	}
	p := new(big.Float).SetPrec(2000).SetFloat64(fx)
	p.Mul(p, new(big.Float).SetFloat64(fy))
	p.Add(p, new(big.Float).SetFloat64(fz))
	f, _ := p.Float32()
	if f == 0 && p.Sign() == 0 && math.Signbit(fx*fy) && math.Signbit(fz) {
		return float32(math.Copysign(0, -1)) // (−0)+(−0)
	}
	return f
}

func TestFMA32(t *testing.T) {
	// Double-rounding traps: with z = 1+2⁻²³ (odd last bit) and x·y just
	// below 2⁻²⁴ (half an ulp of z) by m²·2⁻⁷⁰, the float64 sum rounds up to
	// the float32 midpoint and then ties to even (1+2⁻²²); the exact sum is
	// below the midpoint, so the answer is z.
	z := float32(1 + 0x1p-23)
	for m := 1; m <= 200; m++ {
		x := float32(0x1p-24 * (1 - float64(2*m)*0x1p-24))
		y := float32(1 + float64(m)*0x1p-23)
		want := fmaRef(x, y, z)
		if want != z {
			t.Fatalf("m=%d: reference %v, want %v", m, want, z)
		}
		if naive := float32(float64(x)*float64(y) + float64(z)); naive == want {
			t.Fatalf("m=%d: the case does not trap double rounding", m)
		}
		for _, sign := range []float32{1, -1} {
			if got := fma32(sign*x, y, sign*z); got != sign*want {
				t.Fatalf("m=%d sign %v: fma32 = %v, want %v", m, sign, got, sign*want)
			}
		}
	}
	negZero := float32(math.Copysign(0, -1))
	inf := float32(math.Inf(1))
	cases := [][4]float32{
		{0, 5, 0, 0}, {negZero, 5, negZero, negZero}, {negZero, 5, 0, 0}, {2, 3, -6, 0},
		{math.MaxFloat32, 2, 0, inf}, {math.MaxFloat32, 2, -math.MaxFloat32, math.MaxFloat32},
		{1e-45, 0.5, 0, 0}, {1e-45, 1.5, 0, 0x1p-148}, {0x1p-100, 0x1p-100, 1, 1},
		{inf, 1, -1, inf}, {3, 4, inf, inf},
	}
	for _, c := range cases {
		if got := fma32(c[0], c[1], c[2]); !same(got, c[3]) || math.Signbit(float64(got)) != math.Signbit(float64(c[3])) {
			t.Errorf("fma32(%v, %v, %v) = %v, want %v", c[0], c[1], c[2], got, c[3])
		}
	}
	for _, c := range [][3]float32{{inf, 0, 1}, {inf, 1, -inf}, {float32(math.NaN()), 1, 1}, {1, 1, float32(math.NaN())}} {
		if got := fma32(c[0], c[1], c[2]); got == got {
			t.Errorf("fma32(%v, %v, %v) = %v, want NaN", c[0], c[1], c[2], got)
		}
	}
	// Random operands over the whole range, and products near half an ulp of z.
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 200000 {
		x := math.Float32frombits(rng.Uint32())
		y := math.Float32frombits(rng.Uint32())
		z := math.Float32frombits(rng.Uint32())
		if i%2 == 1 {
			x = float32(rng.NormFloat64())
			y = float32(rng.NormFloat64())
			z = float32(rng.NormFloat64() * math.Ldexp(1, rng.IntN(60)-20))
		}
		if got, want := fma32(x, y, z), fmaRef(x, y, z); !same(got, want) {
			t.Fatalf("fma32(%#08x, %#08x, %#08x) = %#08x, want %#08x", math.Float32bits(x), math.Float32bits(y), math.Float32bits(z),
				math.Float32bits(got), math.Float32bits(want))
		}
	}
}

// rankRef is one element of RankUpdate by the documented order with the
// math/big reference: w ← fma(s·b[k], a[k], w) for k = 0…r-1.
func rankRef(w0 float32, s float32, bRow []float32, aCol func(k int) float32) float32 {
	w := w0
	for k, bk := range bRow {
		w = fmaRef(s*bk, aCol(k), w)
	}
	return w
}

func TestRankUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	shapes := [][3]int{{0, 0, 0}, {1, 1, 1}, {3, 5, 0}, {0, 5, 3}, {4, 0, 3}, {2, 3, 1}, {7, 13, 3}, {16, 64, 16},
		{33, 257, 5}, {5, 4099, 17}, {9, 8193, 9}, {4, 1000, 70}, {13, 129, 64}, {6, 300, 33}, {8, 2048, 16}}
	for r := 1; r <= 70; r += 3 {
		shapes = append(shapes, [3]int{4 + r%7, 61 + 17*r, r})
	}
	for si, sh := range shapes {
		out, in, r := sh[0], sh[1], sh[2]
		w0 := testValues(rng, out*in, si%3 == 2)
		b := testValues(rng, out*r, false)
		a := testValues(rng, r*in, false)
		s := float32(0.37)
		want := make([]float32, out*in)
		for i := range out {
			for j := range in {
				want[i*in+j] = rankRef(w0[i*in+j], s, b[i*r:(i+1)*r], func(k int) float32 { return a[k*in+j] })
				if w0[i*in+j] != w0[i*in+j] || math.IsInf(float64(w0[i*in+j]), 0) {
					continue
				}
				// The reference is close to the exact float64 sum.
				exact, mag := float64(w0[i*in+j]), math.Abs(float64(w0[i*in+j]))
				for k := range r {
					p := float64(s) * float64(b[i*r+k]) * float64(a[k*in+j])
					exact += p
					mag += math.Abs(p)
				}
				if math.Abs(float64(want[i*in+j])-exact) > float64(2*r+2)*0x1p-24*mag {
					t.Fatalf("%v: reference W[%d,%d] = %v, exact %v", sh, i, j, want[i*in+j], exact)
				}
			}
		}
		for _, impl := range implLevels() {
			restore := setImpl(impl.name)
			w, wb := guarded(w0, 1)
			RankUpdate(w, out, in, s, b, a, r)
			restore()
			checkGuards(t, impl.name+" RankUpdate", wb, 1, out*in)
			for i := range w {
				if !same(w[i], want[i]) {
					t.Fatalf("%s %v: W[%d,%d] = %v, want %v", impl.name, sh, i/max(in, 1), i%max(in, 1), w[i], want[i])
				}
			}
		}
	}
}

// TestRankUpdateLarge runs every path on shapes large enough for column
// tiles, packing and the goroutine split, against the twin (bit-equal), and
// checks the twin itself on sampled elements against the math/big reference.
func TestRankUpdateLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	shapes := [][3]int{{301, 4096, 16}, {130, 1031, 70}, {257, 2500, 1}, {96, 640, 33}}
	if testing.Short() {
		shapes = shapes[:2]
	}
	for _, sh := range shapes {
		out, in, r := sh[0], sh[1], sh[2]
		w0 := testValues(rng, out*in, false)
		b := testValues(rng, out*r, false)
		a := testValues(rng, r*in, false)
		s := float32(-1.25)
		want := append([]float32(nil), w0...)
		rankUpdateGeneric(want, out, in, s, b, a, r)
		for range 2000 {
			i, j := rng.IntN(out), rng.IntN(in)
			ref := rankRef(w0[i*in+j], s, b[i*r:(i+1)*r], func(k int) float32 { return a[k*in+j] })
			if !same(want[i*in+j], ref) {
				t.Fatalf("twin %v: W[%d,%d] = %v, reference %v", sh, i, j, want[i*in+j], ref)
			}
		}
		for _, impl := range implLevels() {
			restore := setImpl(impl.name)
			for _, procs := range []int{1, 4} {
				old, oldMin := runtime.GOMAXPROCS(procs), parMin
				if procs > 1 {
					parMin = 1 // split even the smaller shapes
				}
				w := append([]float32(nil), w0...)
				RankUpdate(w, out, in, s, b, a, r)
				runtime.GOMAXPROCS(old)
				parMin = oldMin
				for i := range w {
					if !same(w[i], want[i]) {
						t.Fatalf("%s %v procs=%d: W[%d] = %v, twin %v", impl.name, sh, procs, i, w[i], want[i])
					}
				}
			}
			restore()
		}
	}
}

func TestRankUpdatePanics(t *testing.T) {
	w := make([]float32, 6)
	for _, c := range []struct {
		name       string
		out, in, r int
		nb, na     int
	}{
		{"negative", -1, 6, 1, 0, 6}, {"w", 2, 4, 1, 2, 4}, {"b", 2, 3, 2, 3, 6}, {"a", 2, 3, 2, 4, 5},
		{"overflow", math.MaxInt / 2, 4, 1, 0, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if msg := fmt.Sprint(recover()); len(msg) < 9 || msg[:9] != "kernels: " {
					t.Fatalf("panic %q, want a kernels: message", msg)
				}
			}()
			RankUpdate(w, c.out, c.in, 1, make([]float32, c.nb), make([]float32, c.na), c.r)
		})
	}
}
