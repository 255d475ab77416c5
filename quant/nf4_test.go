package quant

import (
	"errors"
	"math"
	"math/rand"
	"testing"
)

// normals returns n N(0,1) float32 values from math/rand with the seed.
func normals(n int, seed int64) []float32 {
	r := rand.New(rand.NewSource(seed))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func rmse(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s / float64(len(a)))
}

func TestNF4CodeFromDefinition(t *testing.T) {
	want := refNF4FromDefinition()
	for i, v := range NF4Code {
		if d := math.Abs(float64(v) - want[i]); d > 1e-6 {
			t.Errorf("NF4Code[%d] = %.9g, definition gives %.9g (|diff| %.2g > 1e-6)", i, v, want[i], d)
		}
	}
}

func TestNF4ThresholdsAreMidpoints(t *testing.T) {
	// The kernel literals are the midpoints of adjacent code values to
	// within float32 rounding (≤ 1e-7), ascending.
	for i, th := range nf4Thresholds {
		mid := (float64(NF4Code[i]) + float64(NF4Code[i+1])) / 2
		if math.Abs(float64(th)-mid) > 1e-7 {
			t.Errorf("threshold %d = %.10g, midpoint %.10g", i, th, mid)
		}
		if th != refNF4Literals[i] {
			t.Errorf("threshold %d = %.10g, kernels.cu tree literal %.10g", i, th, refNF4Literals[i])
		}
	}
}

func TestFP4Code(t *testing.T) {
	// Hand-checked: bit patterns 000…111 = 0, 0.0625, 8, 12, 4, 6, 2, 3 over 12.
	want := []float64{0, 0.0052083333, 0.6666667, 1, 0.3333333, 0.5, 0.1666667, 0.25}
	for i, w := range want {
		if math.Abs(float64(FP4Code[i])-w) > 1e-7 || FP4Code[i+8] != -FP4Code[i] {
			t.Errorf("FP4Code[%d]=%g [%d]=%g, want ±%g", i, FP4Code[i], i+8, FP4Code[i+8], w)
		}
	}
	if !math.Signbit(float64(FP4Code[8])) {
		t.Error("FP4Code[8] should be −0")
	}
}

// edgeInputs returns inputs covering the edge cases: odd lengths, partial
// last blocks, all-zero blocks, exact ties on every threshold, ±absmax,
// negative zero and denormals.
func edgeInputs(bs int) map[string][]float32 {
	in := map[string][]float32{}
	for _, n := range []int{0, 1, 2, 3, bs - 1, bs, bs + 1, 3*bs + 17, 1000, 4097} {
		x := normals(n, int64(n))
		in["normal/"+itoa(n)] = x
	}
	z := normals(5*bs+3, 7)
	for i := bs; i < 2*bs; i++ {
		z[i] = 0
	}
	for i := 4 * bs; i < len(z); i++ {
		z[i] = 0
	}
	in["zero-blocks"] = z
	// Ties: absmax 1 in each block, other values exactly on NF4 / FP4
	// thresholds, both signs.
	var ties []float32
	ths := append(append([]float32{}, refNF4Literals...), 0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333)
	for _, v := range ths {
		ties = append(ties, 1, v, -v, float32(math.Nextafter32(v, 2)), float32(math.Nextafter32(v, -2)))
	}
	in["ties"] = ties
	nan := float32(math.NaN())
	in["specials"] = []float32{-0.0, 0, 1e-45, -1e-45, 3e-39, -1, 1, -1, 0.5, -0.5, nan, 0.25, -nan, 0.75}
	inf := make([]float32, bs+5)
	copy(inf, normals(bs+5, 12))
	inf[3], inf[bs+1] = float32(math.Inf(1)), float32(math.Inf(-1))
	in["inf"] = inf
	u := normals(3*bs, 9)
	for i := range u {
		u[i] *= 1e-30 // tiny but normal scales
	}
	in["tiny"] = u
	return in
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}

func TestQuant4BitExact(t *testing.T) {
	type scheme struct {
		name string
		q    func([]byte, []float32, []float32, int) error
		dq   func([]float32, []byte, []float32, int) error
		tree func(float32) uint8
		code []float32
	}
	schemes := []scheme{
		{"nf4", QuantizeNF4, DequantizeNF4, refNF4Tree, NF4Code[:]},
		{"fp4", QuantizeFP4, DequantizeFP4, refFP4Tree, FP4Code[:]},
	}
	for _, s := range schemes {
		for _, bs := range []int{32, 64, 128, 256, 4096} {
			for name, x := range edgeInputs(bs) {
				packed := make([]byte, PackedLen(len(x)))
				absmax := make([]float32, NumBlocks(len(x), bs))
				if err := s.q(packed, absmax, x, bs); err != nil {
					t.Fatalf("%s bs=%d %s: %v", s.name, bs, name, err)
				}
				wp, wa := refQuant4(x, bs, s.tree)
				for i := range wp {
					if packed[i] != wp[i] {
						t.Fatalf("%s bs=%d %s: byte %d = %#02x, reference %#02x (inputs %v)", s.name, bs, name, i, packed[i], wp[i], x[2*i:min(2*i+2, len(x))])
					}
				}
				for i := range wa {
					if math.Float32bits(absmax[i]) != math.Float32bits(wa[i]) {
						t.Fatalf("%s bs=%d %s: absmax[%d] = %g, reference %g", s.name, bs, name, i, absmax[i], wa[i])
					}
				}
				got := make([]float32, len(x))
				if err := s.dq(got, packed, absmax, bs); err != nil {
					t.Fatal(err)
				}
				want := refDequant4(wp, wa, s.code, len(x), bs)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s bs=%d %s: dequant[%d] = %g, reference %g", s.name, bs, name, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestNF4MatchesArgmin checks the fast path against the other reference
// (torch.argmin in bitsandbytes' default backend) on random data, where the
// two references agree.
func TestNF4MatchesArgmin(t *testing.T) {
	x := normals(1<<16, 3)
	packed := make([]byte, PackedLen(len(x)))
	absmax := make([]float32, NumBlocks(len(x), 64))
	if err := QuantizeNF4(packed, absmax, x, 64); err != nil {
		t.Fatal(err)
	}
	for i, v := range x {
		inv := 1 / absmax[i/64]
		want := refArgmin(max(-1, min(1, v*inv)), NF4Code[:])
		got := packed[i/2] >> 4
		if i%2 == 1 {
			got = packed[i/2] & 15
		}
		if got != want {
			t.Fatalf("element %d (%g): code %d, argmin %d", i, v, got, want)
		}
	}
}

func TestQuant4Large(t *testing.T) {
	// Large enough for the parallel path; odd length and partial last block.
	x := normals(1<<19+37, 11)
	for _, s := range []struct {
		name string
		q    func([]byte, []float32, []float32, int) error
		tree func(float32) uint8
	}{{"nf4", QuantizeNF4, refNF4Tree}, {"fp4", QuantizeFP4, refFP4Tree}} {
		packed := make([]byte, PackedLen(len(x)))
		absmax := make([]float32, NumBlocks(len(x), 64))
		if err := s.q(packed, absmax, x, 64); err != nil {
			t.Fatal(err)
		}
		wp, _ := refQuant4(x, 64, s.tree)
		for i := range wp {
			if packed[i] != wp[i] {
				t.Fatalf("%s: byte %d = %#02x, reference %#02x", s.name, i, packed[i], wp[i])
			}
		}
	}
}

func TestQuant4Errors(t *testing.T) {
	x := make([]float32, 100)
	for _, tc := range []struct {
		name           string
		packed, absmax int
		bs             int
		want           error
	}{
		{"bs 16", 50, 7, 16, ErrBlockSize},
		{"bs 96", 50, 2, 96, ErrBlockSize},
		{"bs 8192", 50, 1, 8192, ErrBlockSize},
		{"short packed", 49, 2, 64, ErrLength},
		{"long absmax", 50, 3, 64, ErrLength},
	} {
		err := QuantizeNF4(make([]byte, tc.packed), make([]float32, tc.absmax), x, tc.bs)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: quantize err = %v, want %v", tc.name, err, tc.want)
		}
		err = DequantizeFP4(x, make([]byte, tc.packed), make([]float32, tc.absmax), tc.bs)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: dequantize err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestRMSEReference checks round-trip RMSE on N(0,1) (math/rand seed 1234,
// 2^22 values) against the notes' reference table, within 2%.
func TestRMSEReference(t *testing.T) {
	x := normals(1<<22, 1234)
	cases := []struct {
		name string
		want float64
		run  func([]float32) []float32
	}{}
	for _, c := range []struct {
		bs       int
		nf4, fp4 float64
	}{{32, 0.0874, 0.114}, {64, 0.0920, 0.122}, {128, 0.0957, 0.129}, {256, 0.0988, 0.135}} {
		bs := c.bs
		cases = append(cases,
			struct {
				name string
				want float64
				run  func([]float32) []float32
			}{"nf4/" + itoa(bs), c.nf4, func(x []float32) []float32 { return roundTrip4(t, x, bs, QuantizeNF4, DequantizeNF4) }},
			struct {
				name string
				want float64
				run  func([]float32) []float32
			}{"fp4/" + itoa(bs), c.fp4, func(x []float32) []float32 { return roundTrip4(t, x, bs, QuantizeFP4, DequantizeFP4) }})
	}
	cases = append(cases, rmseCasesOther(t)...)
	for _, c := range cases {
		got := rmse(x, c.run(x))
		t.Logf("%-22s RMSE %.5f (reference %.5f)", c.name, got, c.want)
		if math.Abs(got-c.want) > 0.02*c.want {
			t.Errorf("%s: RMSE %.5f, reference %.5f (±2%%)", c.name, got, c.want)
		}
	}
}

func roundTrip4(t *testing.T, x []float32, bs int, q func([]byte, []float32, []float32, int) error, dq func([]float32, []byte, []float32, int) error) []float32 {
	packed := make([]byte, PackedLen(len(x)))
	absmax := make([]float32, NumBlocks(len(x), bs))
	if err := q(packed, absmax, x, bs); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(x))
	if err := dq(out, packed, absmax, bs); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPackNF4Paths checks the platform's fast packing (AVX-512 where the
// CPU has it) against the Go loop on random blocks with NaN, ±0, values
// beyond ±1 by an ulp and every threshold.
func TestPackNF4Paths(t *testing.T) {
	// Scaled values as the quantizer produces them: |x·inv| ≤ 1 up to an ulp.
	x := normals(4096+13, 21)
	am := refAbsMax(x)
	for i := range x {
		x[i] /= am
	}
	for i, th := range nf4Thresholds {
		x[100+i] = th
		x[200+i] = math.Nextafter32(th, 2)
	}
	x[7] = float32(math.NaN())
	x[8] = float32(math.Copysign(0, -1))
	x[9] = math.Nextafter32(1, 2)
	x[10] = math.Nextafter32(-1, -2)
	for _, f := range []float32{1, 0.37, 1e-38} {
		inv := 1 / f
		xs := make([]float32, len(x))
		for i, v := range x {
			xs[i] = v * f
		}
		a := make([]byte, PackedLen(len(x)))
		b := make([]byte, PackedLen(len(x)))
		packNF4(a, xs, inv)
		packNF4Fast(b, xs, inv)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("inv %g: byte %d: Go %#02x, fast %#02x (x %v)", inv, i, a[i], b[i], xs[2*i:min(2*i+2, len(x))])
			}
		}
	}
}
