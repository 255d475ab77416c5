package inspect

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/x448/float16"
)

// refStats is the dense float64 reference: two passes, textbook formulas.
func refStats(vals []float64, isDenorm func(i int) bool) TensorStats {
	var st TensorStats
	st.Count = int64(len(vals))
	st.Min, st.Max = math.Inf(1), math.Inf(-1)
	var sum float64
	var n int
	for i, v := range vals {
		switch {
		case math.IsNaN(v):
			st.NaN++
			continue
		case math.IsInf(v, 0):
			st.Inf++
			continue
		}
		if v == 0 {
			st.Zeros++
		} else if isDenorm(i) {
			st.Denormal++
		}
		st.Min = math.Min(st.Min, v)
		st.Max = math.Max(st.Max, v)
		sum += v
		n++
	}
	if n == 0 {
		st.Min, st.Max = 0, 0
		return st
	}
	st.Mean = sum / float64(n)
	var ss, sq float64
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		ss += (v - st.Mean) * (v - st.Mean)
		sq += v * v
	}
	st.Std = math.Sqrt(ss / float64(n))
	st.Norm = math.Sqrt(sq)
	st.AbsMax = math.Max(math.Abs(st.Min), math.Abs(st.Max))
	return st
}

func compareStats(t *testing.T, got, want TensorStats) {
	t.Helper()
	if got.Count != want.Count || got.Zeros != want.Zeros || got.NaN != want.NaN || got.Inf != want.Inf || got.Denormal != want.Denormal {
		t.Errorf("counts: got n=%d z=%d nan=%d inf=%d den=%d, want n=%d z=%d nan=%d inf=%d den=%d",
			got.Count, got.Zeros, got.NaN, got.Inf, got.Denormal, want.Count, want.Zeros, want.NaN, want.Inf, want.Denormal)
	}
	if got.Min != want.Min || got.Max != want.Max || got.AbsMax != want.AbsMax {
		t.Errorf("min/max/absmax: got %g %g %g want %g %g %g", got.Min, got.Max, got.AbsMax, want.Min, want.Max, want.AbsMax)
	}
	scale := math.Max(want.Std, math.Abs(want.Mean))
	if math.Abs(got.Mean-want.Mean) > 1e-9*scale+1e-300 {
		t.Errorf("mean %g, want %g", got.Mean, want.Mean)
	}
	if math.Abs(got.Std-want.Std) > 1e-9*scale+1e-300 {
		t.Errorf("std %g, want %g", got.Std, want.Std)
	}
	if math.Abs(got.Norm-want.Norm) > 1e-9*want.Norm+1e-300 {
		t.Errorf("norm %g, want %g", got.Norm, want.Norm)
	}
}

func TestStatsF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	for _, n := range []int{0, 1, 2, 3, 7, 100, 3*(chunkBytes/4) + 5, 4*(chunkBytes/4)*2 + 3} {
		for _, mean := range []float64{0, 1e4} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(mean + rng.NormFloat64()*0.02)
			}
			// sprinkle specials
			specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(1), -math.Float32frombits(0x7fffff)}
			for i := 0; i < len(specials) && i < n; i++ {
				x[(i*7919)%n] = specials[i]
			}
			raw := make([]byte, 4*n+1)
			for _, off := range []int{0, 1} { // aligned and unaligned
				b := raw[off : off+4*n]
				for i, v := range x {
					binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
				}
				got, err := StatsOf("t", "F32", b)
				if err != nil {
					t.Fatal(err)
				}
				vals := make([]float64, n)
				for i, v := range x {
					vals[i] = float64(v)
				}
				want := refStats(vals, func(i int) bool { return math.Float32bits(x[i])&0x7f800000 == 0 })
				compareStats(t, got, want)
			}
		}
	}
}

func TestStatsF16BF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	n := 2*(chunkBytes/4) + 11
	h := make([]uint16, n)
	for i := range h {
		h[i] = uint16(rng.Uint32())
	}
	h[0], h[1], h[2], h[3] = 0x7c00, 0xfc00, 0x7e00, 0x0001 // +Inf, −Inf, NaN, smallest subnormal
	rawBuf := make([]byte, 2*n+1)
	for _, off := range []int{0, 1} { // aligned and unaligned
		raw := rawBuf[off : off+2*n]
		for i, v := range h {
			binary.LittleEndian.PutUint16(raw[2*i:], v)
		}
		// F16 against the x448/float16 oracle
		got, err := StatsOf("h", "F16", raw)
		if err != nil {
			t.Fatal(err)
		}
		vals := make([]float64, n)
		for i, v := range h {
			vals[i] = float64(float16.Frombits(v).Float32())
		}
		compareStats(t, got, refStats(vals, func(i int) bool { return h[i]&0x7c00 == 0 }))
		// BF16: the value is the upper half of a float32
		got, err = StatsOf("b", "BF16", raw)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range h {
			vals[i] = float64(math.Float32frombits(uint32(v) << 16))
		}
		compareStats(t, got, refStats(vals, func(i int) bool { return h[i]&0x7f80 == 0 }))
	}
}

func TestStatsKnownValues(t *testing.T) {
	cases := []struct {
		dtype string
		raw   []byte
		want  TensorStats
	}{
		// E4M3: 0x38 = 1, 0x7e = 448, 0xfe = −448, 0x7f = NaN, 0x01 = 2⁻⁹ (subnormal), 0x80 = −0
		{"F8_E4M3", []byte{0x38, 0x7e, 0xfe, 0x7f, 0x01, 0x80}, TensorStats{Count: 6, Min: -448, Max: 448, AbsMax: 448, NaN: 1, Zeros: 1, Denormal: 1}},
		// E5M2: 0x3c = 1, 0x7b = 57344, 0x7c = +Inf, 0x7d = NaN, 0x02 = 2⁻¹⁵
		{"F8_E5M2", []byte{0x3c, 0x7b, 0x7c, 0x7d, 0x02}, TensorStats{Count: 5, Min: math.Ldexp(1, -15), Max: 57344, AbsMax: 57344, Inf: 1, NaN: 1, Denormal: 1}},
		{"I8", []byte{0xff, 0x02, 0x00}, TensorStats{Count: 3, Min: -1, Max: 2, AbsMax: 2, Zeros: 1}},
		{"U8", []byte{0xff, 0x01}, TensorStats{Count: 2, Min: 1, Max: 255, AbsMax: 255}},
	}
	for _, c := range cases {
		got, err := StatsOf("k", c.dtype, c.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got.Count != c.want.Count || got.Min != c.want.Min || got.Max != c.want.Max || got.AbsMax != c.want.AbsMax ||
			got.NaN != c.want.NaN || got.Inf != c.want.Inf || got.Zeros != c.want.Zeros || got.Denormal != c.want.Denormal {
			t.Errorf("%s: got %+v, want %+v", c.dtype, got, c.want)
		}
	}
	// mean/std of 1, 448, −448, 2⁻⁹, −0 by hand
	got, _ := StatsOf("k", "F8_E4M3", []byte{0x38, 0x7e, 0xfe, 0x01, 0x80})
	vals := []float64{1, 448, -448, math.Ldexp(1, -9), 0}
	m := (1 + math.Ldexp(1, -9)) / 5
	var v float64
	for _, x := range vals {
		v += (x - m) * (x - m)
	}
	if math.Abs(got.Mean-m) > 1e-12 || math.Abs(got.Std-math.Sqrt(v/5)) > 1e-9 {
		t.Errorf("E4M3 mean/std %g %g, want %g %g", got.Mean, got.Std, m, math.Sqrt(v/5))
	}
}

func TestStatsErrors(t *testing.T) {
	if _, err := StatsOf("x", "F4", []byte{1}); err == nil {
		t.Error("F4 accepted")
	}
	if _, err := StatsOf("x", "F32", []byte{1, 2, 3}); err == nil {
		t.Error("ragged F32 accepted")
	}
	if st, err := StatsOf("x", "F32", nil); err != nil || st.Count != 0 {
		t.Errorf("empty: %+v %v", st, err)
	}
}

func benchData(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(float32(rng.NormFloat64()*0.02)))
	}
	return raw
}

// BenchmarkStatsF32 measures the statistics stream over 64 MiB of F32 next
// to a copy() of the same bytes.
func BenchmarkStatsF32(b *testing.B) {
	raw := benchData(16 << 20)
	b.Run("stats", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := StatsOf("x", "F32", raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("copy", func(b *testing.B) {
		dst := make([]byte, len(raw))
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			copy(dst, raw)
		}
	})
}

// BenchmarkStats16 measures the F16 and BF16 paths (conversion + statistics).
func BenchmarkStats16(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 16 << 20
	for _, dt := range []string{"F16", "BF16"} {
		raw := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			v := float32(rng.NormFloat64() * 0.02)
			h := uint16(math.Float32bits(v) >> 16)
			if dt == "F16" {
				h = float16.Fromfloat32(v).Bits()
			}
			binary.LittleEndian.PutUint16(raw[2*i:], h)
		}
		b.Run(dt, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := StatsOf("x", dt, raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestStatsParallel covers the split-and-merge path of large tensors, with
// a large mean so the shift re-basing matters, and specials in every part.
func TestStatsParallel(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	rng := rand.New(rand.NewPCG(21, 22))
	n := 4<<20 + 3
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(100 + float64(i)/float64(n)*50 + rng.NormFloat64())
	}
	x[0] = float32(math.NaN())                  // first part starts with NaN
	x[n/4] = 0                                  // zero in part 2
	x[n/2] = float32(math.Inf(-1))              // Inf in part 3
	x[3*n/4+1] = math.Float32frombits(0x000001) // denormal in part 4
	raw := make([]byte, 4*n)
	vals := make([]float64, n)
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		vals[i] = float64(v)
	}
	got, err := StatsOf("big", "F32", raw)
	if err != nil {
		t.Fatal(err)
	}
	compareStats(t, got, refStats(vals, func(i int) bool { return math.Float32bits(x[i])&0x7f800000 == 0 }))
	// BF16 of the same values (truncated): also split
	raw16 := make([]byte, 2*n)
	for i, v := range x {
		h := uint16(math.Float32bits(v) >> 16)
		binary.LittleEndian.PutUint16(raw16[2*i:], h)
		vals[i] = float64(math.Float32frombits(uint32(h) << 16))
	}
	got, _ = StatsOf("big16", "BF16", raw16)
	compareStats(t, got, refStats(vals, func(i int) bool { return math.Float32bits(x[i])&0x7f800000 == 0 }))
}
