package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// guard values written around every output, checked after each call (the
// idea of gonum's guardVector): an assembly overrun changes them.
const guardLen = 17

var guardF32 = math.Float32frombits(0x7fa5a5a5) // a signalling NaN no kernel produces

// guarded returns a slice of n elements starting off elements into a buffer
// padded with guard values on both sides, copying vals in.
func guarded(vals []float32, off int) (inner, buf []float32) {
	buf = make([]float32, off+len(vals)+guardLen)
	for i := range buf {
		buf[i] = guardF32
	}
	inner = buf[off : off+len(vals) : off+len(vals)]
	copy(inner, vals)
	return inner, buf
}

func checkGuards(t *testing.T, what string, buf []float32, off, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < off || i >= off+n) && math.Float32bits(v) != math.Float32bits(guardF32) {
			t.Fatalf("%s: guard at %d (off %d, n %d) overwritten with %#08x", what, i, off, n, math.Float32bits(v))
		}
	}
}

var pow10 = [...]float64{1e-3, 1e-2, 1e-1, 1, 1e1, 1e2, 1e3}

// testValues returns n values mixing normal numbers of varied magnitude with
// zeros of both signs, subnormals, ±Inf and NaN.
func testValues(rng *rand.Rand, n int, specials bool) []float32 {
	out := make([]float32, n)
	sp := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-45, -1.4e-40, math.MaxFloat32, -math.MaxFloat32}
	for i := range out {
		if specials && rng.IntN(16) == 0 {
			out[i] = sp[rng.IntN(len(sp))]
			continue
		}
		out[i] = float32(rng.NormFloat64() * pow10[rng.IntN(len(pow10))])
	}
	return out
}

// same reports bitwise equality, or both NaN (arithmetic on two NaN operands
// may keep either payload, documented in the package comment).
func same(a, b float32) bool {
	if a != a && b != b {
		return true
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

// r32 rounds a float64 to float32: the float64 result of one +, − or × of
// float32 operands rounded once more is the correctly rounded float32 result
// (double rounding is innocuous at 53 ≥ 2·24+2 bits), so these references
// are independent of float32 arithmetic.
func r32(v float64) float32 { return float32(v) }

var testLens = func() []int {
	var l []int
	for n := 0; n <= 300; n++ {
		l = append(l, n)
	}
	return append(l, 1023, 4097, 65536+5, 1<<20+3)
}()

type elemCase struct {
	name string
	run  func(dst, x []float32) // dst is modified in place
	ref  func(d, x float32) float32
}

const alpha = float32(-1.7)

var elemCases = []elemCase{
	{"Axpy", func(d, x []float32) { Axpy(alpha, x, d) }, func(d, x float32) float32 {
		return r32(float64(d) + float64(r32(float64(alpha)*float64(x))))
	}},
	{"Scale", func(d, x []float32) { Scale(alpha, d) }, func(d, x float32) float32 { return r32(float64(d) * float64(alpha)) }},
	{"ScaleTo", func(d, x []float32) { ScaleTo(d, alpha, x) }, func(d, x float32) float32 { return r32(float64(alpha) * float64(x)) }},
	{"Add", func(d, x []float32) { Add(d, x) }, func(d, x float32) float32 { return r32(float64(d) + float64(x)) }},
	{"Sub", func(d, x []float32) { Sub(d, x) }, func(d, x float32) float32 { return r32(float64(d) - float64(x)) }},
	{"Neg", func(d, x []float32) { Neg(d) }, func(d, x float32) float32 { return math.Float32frombits(math.Float32bits(d) ^ 1<<31) }},
	{"Mul", func(d, x []float32) { Mul(d, x) }, func(d, x float32) float32 { return r32(float64(d) * float64(x)) }},
}

// TestElementwise runs every elementwise kernel on every path, every length
// 0..300 plus large ones, start offsets 0..3, with specials, against the
// float64 reference, and checks the guards.
func TestElementwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range testLens {
		xv := testValues(rng, n, true)
		dv := testValues(rng, n, true)
		for _, impl := range implLevels() {
			restore := setImpl(impl.name)
			for _, c := range elemCases {
				for off := range 4 {
					if n > 4097 && off > 0 {
						break
					}
					x, xb := guarded(xv, off)
					d, db := guarded(dv, (off+1)%4)
					c.run(d, x)
					checkGuards(t, impl.name+" "+c.name+" dst", db, (off+1)%4, n)
					checkGuards(t, impl.name+" "+c.name+" x", xb, off, n)
					for i := range n {
						if want := c.ref(dv[i], xv[i]); !same(d[i], want) {
							t.Fatalf("%s %s n=%d off=%d: [%d] = %v, want %v (d=%v x=%v)", impl.name, c.name, n, off, i, d[i], want, dv[i], xv[i])
						}
						if math.Float32bits(x[i]) != math.Float32bits(xv[i]) {
							t.Fatalf("%s %s modified x", impl.name, c.name)
						}
					}
				}
			}
			restore()
		}
	}
}

// refSum is the documented reduction order written independently: blocks of
// 65536, 16 float64 lanes, the w = 8,4,2,1 fold, then the tail.
func refSum(x, y []float32) float64 {
	var total float64
	for lo := 0; lo < len(x) || lo == 0; lo += 1 << 16 {
		hi := min(lo+1<<16, len(x))
		var s [16]float64
		m := lo + (hi-lo)&^15
		for i := lo; i < m; i++ {
			s[(i-lo)%16] += float64(x[i]) * float64(y[i])
		}
		for w := 8; w >= 1; w /= 2 {
			for j := 0; j < w; j++ {
				s[j] += s[j+w]
			}
		}
		t := s[0]
		for i := m; i < hi; i++ {
			t += float64(x[i]) * float64(y[i])
		}
		total += t
		if hi == len(x) {
			break
		}
	}
	return total
}

func TestReductions(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	lens := append(slices.Clone(testLens), 3<<16+7)
	for _, impl := range implLevels() {
		restore := setImpl(impl.name)
		for _, n := range lens {
			xv := testValues(rng, n, false)
			yv := testValues(rng, n, false)
			for off := range 4 {
				if n > 4097 && off > 0 {
					break
				}
				x, _ := guarded(xv, off)
				y, _ := guarded(yv, 3-off)
				got, want := Dot(x, y), refSum(xv, yv)
				if got != want {
					t.Fatalf("%s Dot n=%d off=%d = %v, want %v", impl.name, n, off, got, want)
				}
				// Independent bound: |sum − exact| ≤ n·2⁻⁵²·Σ|xy| (exact products, float64 sums).
				var exact, abs float64
				for i := range xv {
					exact += float64(xv[i]) * float64(yv[i])
					abs += math.Abs(float64(xv[i]) * float64(yv[i]))
				}
				if math.Abs(got-exact) > float64(n+1)*0x1p-52*abs {
					t.Fatalf("%s Dot n=%d = %v far from %v", impl.name, n, got, exact)
				}
				if got, want := SumSquares(x), refSum(xv, xv); got != want {
					t.Fatalf("%s SumSquares n=%d = %v, want %v", impl.name, n, got, want)
				}
				// AbsMax with specials.
				sv := testValues(rng, n, true)
				s, _ := guarded(sv, off)
				var m float32
				for _, v := range sv {
					if a := float32(math.Abs(float64(v))); !math.IsNaN(float64(v)) && a > m {
						m = a
					}
				}
				if got := AbsMax(s); math.Float32bits(got) != math.Float32bits(m) {
					t.Fatalf("%s AbsMax n=%d = %v, want %v", impl.name, n, got, m)
				}
			}
		}
		restore()
	}
}

func TestAbsMaxSpecial(t *testing.T) {
	nan := float32(math.NaN())
	negZero := float32(math.Copysign(0, -1))
	for _, c := range []struct {
		x    []float32
		want float32
	}{
		{nil, 0},
		{[]float32{nan, nan}, 0},
		{[]float32{negZero}, 0},
		{[]float32{nan, -3, 2, nan}, 3},
		{[]float32{1, float32(math.Inf(-1))}, float32(math.Inf(1))},
	} {
		for _, impl := range implLevels() {
			restore := setImpl(impl.name)
			got := AbsMax(c.x)
			restore()
			if math.Float32bits(got) != math.Float32bits(c.want) {
				t.Errorf("%s AbsMax(%v) = %v, want %v", impl.name, c.x, got, c.want)
			}
		}
	}
}

// TestPanics checks that caller mistakes panic with a "kernels: " message.
func TestPanics(t *testing.T) {
	a, b := make([]float32, 3), make([]float32, 4)
	for name, f := range map[string]func(){
		"Axpy":       func() { Axpy(1, a, b) },
		"ScaleTo":    func() { ScaleTo(a, 1, b) },
		"Add":        func() { Add(a, b) },
		"Sub":        func() { Sub(a, b) },
		"Mul":        func() { Mul(a, b) },
		"Dot":        func() { Dot(a, b) },
		"F16ToF32":   func() { F16ToF32(a, make([]uint16, 4)) },
		"F32ToF16":   func() { F32ToF16(make([]uint16, 4), a) },
		"BF16ToF32":  func() { BF16ToF32(a, make([]uint16, 4)) },
		"F32ToBF16":  func() { F32ToBF16(make([]uint16, 4), a) },
		"E4M3ToF32":  func() { F8E4M3ToF32(a, make([]uint8, 4)) },
		"F32ToE4M3":  func() { F32ToF8E4M3(make([]uint8, 4), a) },
		"E5M2ToF32":  func() { F8E5M2ToF32(a, make([]uint8, 4)) },
		"F32ToE5M2":  func() { F32ToF8E5M2(make([]uint8, 4), a) },
		"TopKMask":   func() { TopKMask(make([]bool, 4), a, 1) },
		"RankUpdate": func() { RankUpdate(make([]float32, 6), 2, 3, 1, make([]float32, 2), make([]float32, 4), 1) },
		"RankNeg":    func() { RankUpdate(nil, -1, 0, 1, nil, nil, 0) },
		"RankOver":   func() { RankUpdate(nil, math.MaxInt/2+1, 4, 1, nil, nil, 0) },
	} {
		func() {
			defer func() {
				r := recover()
				s, ok := r.(string)
				if !ok || len(s) < 9 || s[:9] != "kernels: " {
					t.Errorf("%s: recovered %v, want a \"kernels: \" panic", name, r)
				}
			}()
			f()
		}()
	}
}
