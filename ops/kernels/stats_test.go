package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refStats is the float64 reference: values decoded by the caller, classes
// given per element, two-pass mean and variance.
type refStats struct {
	n, finite, zeros, nan, inf, denorm int64
	min, max, mean, std, norm          float64
}

// refOf computes the reference statistics of vals (decoded to float64) with
// sub[i] telling whether element i is subnormal in its stored dtype.
func refOf(vals []float64, sub []bool) refStats {
	r := refStats{n: int64(len(vals)), min: math.Inf(1), max: math.Inf(-1)}
	var sum float64
	for i, v := range vals {
		switch {
		case math.IsNaN(v):
			r.nan++
			continue
		case math.IsInf(v, 0):
			r.inf++
			continue
		}
		if v == 0 {
			r.zeros++
		}
		if sub[i] {
			r.denorm++
		}
		r.finite++
		r.min, r.max = math.Min(r.min, v), math.Max(r.max, v)
		sum += v
	}
	if r.finite == 0 {
		return r
	}
	r.mean = sum / float64(r.finite)
	var ss, sq float64
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		ss += (v - r.mean) * (v - r.mean)
		sq += v * v
	}
	r.std = math.Sqrt(ss / float64(r.finite))
	r.norm = math.Sqrt(sq)
	return r
}

func checkStats(t *testing.T, what string, got Stats, want refStats) {
	t.Helper()
	if got.N != want.n || got.Finite != want.finite || got.Zeros != want.zeros || got.NaN != want.nan ||
		got.Inf != want.inf || got.Denormal != want.denorm {
		t.Fatalf("%s: counts n/finite/zeros/nan/inf/denormal = %d/%d/%d/%d/%d/%d, want %d/%d/%d/%d/%d/%d", what,
			got.N, got.Finite, got.Zeros, got.NaN, got.Inf, got.Denormal,
			want.n, want.finite, want.zeros, want.nan, want.inf, want.denorm)
	}
	if want.finite == 0 {
		if !math.IsInf(got.Min, 1) || !math.IsInf(got.Max, -1) || !math.IsNaN(got.Mean()) {
			t.Fatalf("%s: no finite values: min %v max %v mean %v", what, got.Min, got.Max, got.Mean())
		}
		return
	}
	if got.Min != want.min || got.Max != want.max {
		t.Fatalf("%s: min/max %v/%v, want %v/%v", what, got.Min, got.Max, want.min, want.max)
	}
	// float64 sums of ≤ 2²⁴ values: relative error ≤ n·2⁻⁵³ of the scale
	scale := math.Max(math.Abs(want.min), math.Abs(want.max))
	tol := 1e-9 * scale
	if d := math.Abs(got.Mean() - want.mean); d > tol {
		t.Fatalf("%s: mean %v, want %v (|Δ| %g > %g)", what, got.Mean(), want.mean, d, tol)
	}
	if d := math.Abs(got.Std() - want.std); d > tol+1e-6*want.std {
		t.Fatalf("%s: std %v, want %v (|Δ| %g)", what, got.Std(), want.std, d)
	}
	if d := math.Abs(got.Norm() - want.norm); d > 1e-12*want.norm+1e-300 {
		t.Fatalf("%s: norm %v, want %v (|Δ| %g)", what, got.Norm(), want.norm, d)
	}
}

// randBits16 draws 16-bit codes with a high share of specials: zeros, the
// all-ones exponent (Inf/NaN), subnormals, and ordinary values.
// With finite set, Inf and NaN codes are avoided (the chunked fast path).
func randBits16(rng *rand.Rand, n int, expShift uint, expMask uint16, finite bool) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		h := uint16(rng.Uint32())
		switch rng.IntN(12) {
		case 0:
			h &= 0x8000 // ±0
		case 1:
			h |= expMask << expShift // Inf or NaN
		case 2:
			h &^= expMask << expShift // subnormal (or zero)
		}
		if finite && h>>expShift&expMask == expMask {
			h &^= 1 << expShift
		}
		out[i] = h
	}
	return out
}

func statsLengths() []int {
	var ls []int
	for n := 0; n <= 300; n++ {
		ls = append(ls, n)
	}
	return append(ls, 4095, 4097, reduceBlock-1, reduceBlock+3, 3*reduceBlock+17)
}

func TestStatsF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(1), math.Float32frombits(0x807fffff), math.MaxFloat32, -math.MaxFloat32, 0x1p-126}
	for _, n := range statsLengths() {
		x := make([]float32, n)
		vals := make([]float64, n)
		sub := make([]bool, n)
		for i := range x {
			v := float32(rng.NormFloat64()*0.02 + 3)
			if rng.IntN(8) == 0 {
				v = specials[rng.IntN(len(specials))]
			}
			x[i] = v
			vals[i] = float64(v)
			a := math.Float32bits(v) & 0x7fffffff
			sub[i] = a != 0 && a < 0x00800000
		}
		checkStats(t, "f32", StatsF32(x), refOf(vals, sub))
	}
}

func TestStats16And8(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, impl := range implLevels() {
		restore := setImpl(impl.name)
		for k, n := range append(statsLengths(), statsLengths()...) {
			finite := k >= len(statsLengths())
			bf := randBits16(rng, n, 7, 0xff, finite)
			hf := randBits16(rng, n, 10, 0x1f, finite)
			b8 := make([]uint8, n)
			for i := range b8 {
				b8[i] = uint8(rng.Uint32())
			}
			for _, c := range []struct {
				f    refFormat
				bits func(i int) uint32
				got  func() Stats
			}{
				{refBF16, func(i int) uint32 { return uint32(bf[i]) }, func() Stats { return StatsBF16(bf) }},
				{refF16, func(i int) uint32 { return uint32(hf[i]) }, func() Stats { return StatsF16(hf) }},
				{refE4M3, func(i int) uint32 { return uint32(b8[i]) }, func() Stats { return StatsF8E4M3(b8) }},
				{refE5M2, func(i int) uint32 { return uint32(b8[i]) }, func() Stats { return StatsF8E5M2(b8) }},
			} {
				vals := make([]float64, n)
				sub := make([]bool, n)
				for i := range vals {
					code := c.bits(i)
					vals[i] = c.f.decode(code)
					e := code >> c.f.mbits & (1<<c.f.ebits - 1)
					sub[i] = e == 0 && code&(1<<c.f.mbits-1) != 0
				}
				checkStats(t, fmt.Sprintf("%s %s n=%d finite=%v", impl.name, c.f.name, n, finite), c.got(), refOf(vals, sub))
			}
		}
		restore()
	}
}

func TestStatsF64(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	specials := []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), math.SmallestNonzeroFloat64, -0x1p-1023, 0x1p-1022}
	for _, n := range statsLengths() {
		x := make([]float64, n)
		sub := make([]bool, n)
		for i := range x {
			x[i] = rng.NormFloat64() - 7
			if rng.IntN(8) == 0 {
				x[i] = specials[rng.IntN(len(specials))]
			}
			sub[i] = x[i] != 0 && math.Abs(x[i]) < 0x1p-1022
		}
		checkStats(t, "f64", StatsF64(x), refOf(x, sub))
	}
}

// TestStatsParallel forces the multi-goroutine path and requires results
// bit-identical to the sequential one (fixed blocks, in-order merge).
func TestStatsParallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	n := 5*reduceBlock + 123
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	x[n-1] = float32(math.NaN())
	h := randBits16(rng, n, 7, 0xff, false)
	saved := parMin
	parMin = n + 1
	seqF, seqB := StatsF32(x), StatsBF16(h)
	parMin = reduceBlock
	parF, parB := StatsF32(x), StatsBF16(h)
	parMin = saved
	if seqF != parF || seqB != parB {
		t.Fatalf("parallel differs:\n%+v\n%+v\n%+v\n%+v", seqF, parF, seqB, parB)
	}
}

func TestStatsAllNonFinite(t *testing.T) {
	x := []float32{float32(math.NaN()), float32(math.Inf(-1)), float32(math.Inf(1))}
	s := StatsF32(x)
	if s.Finite != 0 || s.NaN != 1 || s.Inf != 2 || !math.IsInf(s.Min, 1) || !math.IsNaN(s.Std()) || s.Norm() != 0 {
		t.Fatalf("got %+v", s)
	}
}

func TestStatsMerge(t *testing.T) {
	// Merge of two halves with different shifts equals the whole.
	x := []float32{1e6, 1e6 + 1, 1e6 + 2, -5, 0, float32(math.NaN()), 7, 7.5}
	whole := StatsF32(x)
	a, b := StatsF32(x[:3]), StatsF32(x[3:])
	a.Merge(b)
	if a.N != whole.N || a.Finite != whole.Finite || a.Min != -5 || a.Max != 1e6+2 ||
		math.Abs(a.Mean()-whole.Mean()) > 1e-9 || math.Abs(a.Std()-whole.Std()) > 1e-6 {
		t.Fatalf("merged %+v (mean %v std %v), whole %+v (mean %v std %v)", a, a.Mean(), a.Std(), whole, whole.Mean(), whole.Std())
	}
}

func ExampleStatsF32() {
	x := []float32{1, 2, 3, 0, float32(math.NaN()), float32(math.Inf(1)), 0x1p-140}
	s := StatsF32(x)
	fmt.Printf("n=%d finite=%d min=%g max=%g mean=%.4f zeros=%d nan=%d inf=%d denormal=%d\n",
		s.N, s.Finite, s.Min, s.Max, s.Mean(), s.Zeros, s.NaN, s.Inf, s.Denormal)
	// Output: n=7 finite=5 min=0 max=3 mean=1.2000 zeros=1 nan=1 inf=1 denormal=1
}
