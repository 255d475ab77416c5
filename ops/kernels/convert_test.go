package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// TestF16AllPatterns widens every binary16 pattern on every path and checks it
// against x448/float16 (values and NaN payload rule) and the float64 decoder;
// then narrows each widened value back and requires the original bits.
func TestF16AllPatterns(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	for _, impl := range implLevels() {
		restore := setImpl(impl.name)
		dst := make([]float32, len(src))
		F16ToF32(dst, src)
		back := make([]uint16, len(src))
		F32ToF16(back, dst)
		restore()
		for i, h := range src {
			got := dst[i]
			want := float16.Frombits(h).Float32()
			if math.Float32bits(got) != math.Float32bits(want) {
				t.Fatalf("%s: F16ToF32(%#04x) = %#08x, x448 gives %#08x", impl.name, h, math.Float32bits(got), math.Float32bits(want))
			}
			if !sameValue(float64(got), refF16.decode(uint32(h))) {
				t.Fatalf("%s: F16ToF32(%#04x) = %v, reference %v", impl.name, h, got, refF16.decode(uint32(h)))
			}
			wantBack := h
			if h&0x7fff > 0x7c00 {
				wantBack = h | 0x0200 // NaN comes back quiet
			}
			if back[i] != wantBack {
				t.Fatalf("%s: F32ToF16(F16ToF32(%#04x)) = %#04x, want %#04x", impl.name, h, back[i], wantBack)
			}
		}
	}
}

// randomF32 returns float32 values spread over every exponent, plus the
// near-ties and specials that rounding gets wrong first.
func randomF32(rng *rand.Rand, n int) []float32 {
	specials := []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x00000001,
		0x807fffff, 0x7f7fffff, 0x477fefff, 0x477ff000, 0x38800000, 0x387fffff, 0x33000000, 0x33000001,
		0x43e00000, 0x43e80000, 0x43e80001, 0x43f00000, 0x47700000, 0x476fffff, 0x3a800000, 0x3a000000, 0x3a000001,
		0x3b000000, 0x37800000, 0x37000000, 0x37000001}
	out := make([]float32, n)
	for i := range out {
		var u uint32
		switch {
		case i < len(specials):
			u = specials[i]
		case i%4 == 0: // exact ties and neighbours for 16/8-bit targets
			u = rng.Uint32()&^0xffff | [...]uint32{0x8000, 0x7fff, 0x8001, 0x1000, 0x0fff, 0x1001}[rng.IntN(6)]
		case i%4 == 1: // exponents in the f16/f8 range
			u = rng.Uint32()&0x807fffff | uint32(100+rng.IntN(50))<<23
		default:
			u = rng.Uint32()
		}
		out[i] = math.Float32frombits(u)
	}
	return out
}

// TestNarrowRandom checks every narrowing path against the float64
// reference rounding on random and adversarial inputs.
func TestNarrowRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := randomF32(rng, 200000)
	for _, impl := range implLevels() {
		restore := setImpl(impl.name)
		h16 := make([]uint16, len(src))
		b16 := make([]uint16, len(src))
		e4 := make([]uint8, len(src))
		e5 := make([]uint8, len(src))
		F32ToF16(h16, src)
		F32ToBF16(b16, src)
		F32ToF8E4M3(e4, src)
		F32ToF8E5M2(e5, src)
		restore()
		for i, v := range src {
			x := float64(v)
			u := math.Float32bits(v)
			isNaN := math.IsNaN(x)
			check := func(kind string, got uint32, f refFormat, want float64, nanCode uint32) {
				t.Helper()
				if isNaN {
					if got != nanCode {
						t.Fatalf("%s %s(%#08x NaN) = %#x, want %#x", impl.name, kind, u, got, nanCode)
					}
					return
				}
				if g := f.decode(got); !sameValue(g, want) {
					t.Fatalf("%s %s(%v = %#08x) = %#x (%v), reference %v", impl.name, kind, v, u, got, g, want)
				}
			}
			check("F32ToF16", uint32(h16[i]), refF16, refF16.ieeeRound(x), u>>16&0x8000|0x7e00|u>>13&0x3ff)
			if g := float16.Fromfloat32(v); !isNaN && uint16(g) != h16[i] {
				t.Fatalf("%s F32ToF16(%#08x) = %#04x, x448 %#04x", impl.name, u, h16[i], uint16(g))
			}
			check("F32ToBF16", uint32(b16[i]), refBF16, refBF16.ieeeRound(x), u>>16|0x40)
			check("F32ToF8E4M3", uint32(e4[i]), refE4M3, refE4M3.satRound(x, true), u>>24&0x80|0x7f)
			check("F32ToF8E5M2", uint32(e5[i]), refE5M2, refE5M2.satRound(x, false), u>>24&0x80|0x7f)
		}
	}
}

// TestF8AllCodes decodes all 256 codes of both formats against the float64
// decoder and encodes the decoded value back.
func TestF8AllCodes(t *testing.T) {
	codes := make([]uint8, 256)
	for i := range codes {
		codes[i] = uint8(i)
	}
	for _, tc := range []struct {
		f    refFormat
		dec  func([]float32, []uint8)
		enc  func([]uint8, []float32)
		nans func(c uint8) bool
	}{
		{refE4M3, F8E4M3ToF32, F32ToF8E4M3, func(c uint8) bool { return c&0x7f == 0x7f }},
		{refE5M2, F8E5M2ToF32, F32ToF8E5M2, func(c uint8) bool { return c&0x7f > 0x7c }},
	} {
		for _, impl := range implLevels() {
			restore := setImpl(impl.name)
			dst := make([]float32, 256)
			tc.dec(dst, codes)
			back := make([]uint8, 256)
			tc.enc(back, dst)
			restore()
			for c := range 256 {
				want := tc.f.decode(uint32(c))
				if !sameValue(float64(dst[c]), want) {
					t.Errorf("%s decode %#02x = %v, reference %v", tc.f.name, c, dst[c], want)
				}
				if tc.nans(uint8(c)) != math.IsNaN(want) {
					t.Errorf("%s: code %#02x NaN-ness disagrees with the format table", tc.f.name, c)
				}
				wantBack := uint8(c)
				if tc.nans(uint8(c)) {
					wantBack = uint8(c)&0x80 | 0x7f
				}
				if back[c] != wantBack {
					t.Errorf("%s %s encode(decode(%#02x)) = %#02x, want %#02x", impl.name, tc.f.name, c, back[c], wantBack)
				}
			}
		}
	}
}

// TestF8Vectors holds the hand-checked vectors of quantization.md §4.
func TestF8Vectors(t *testing.T) {
	cases := []struct {
		v    float32
		e4m3 uint8
		e5m2 uint8
	}{
		{17, 0x58, 0x4c},  // E4M3 17 → 16 = 2⁴ = e 11 (tie to even); E5M2 17 → 16
		{19, 0x5a, 0x4d},  // E4M3 19 → 20 = 1.25·2⁴ (tie to even)
		{464, 0x7e, 0x5f}, // E4M3 464 → 448 (tie to even); E5M2 464 → 448
		{448, 0x7e, 0x5f},
		{1e6, 0x7e, 0x7b}, // saturate
		{float32(math.Inf(1)), 0x7e, 0x7c},
		{float32(math.Inf(-1)), 0xfe, 0xfc},
		{61440, 0x7e, 0x7b}, // E5M2: would round to Inf, saturates
		{57344, 0x7e, 0x7b},
		{0x1p-9, 0x01, 0x18},  // E4M3 smallest subnormal; E5M2 e = 6
		{0x1p-10, 0x00, 0x14}, // E4M3 tie to even → 0; E5M2 e = 5
		{0x1p-16, 0x00, 0x01},
		{0x1p-17, 0x00, 0x00},
		{-0.0, 0x00, 0x00},
		{float32(math.Copysign(0, -1)), 0x80, 0x80},
		{-2, 0xc0, 0xc0},
		{float32(math.NaN()), 0x7f, 0x7f},
	}
	for _, c := range cases {
		var e4, e5 [1]uint8
		F32ToF8E4M3(e4[:], []float32{c.v})
		F32ToF8E5M2(e5[:], []float32{c.v})
		if e4[0] != c.e4m3 || e5[0] != c.e5m2 {
			t.Errorf("%v: E4M3 %#02x (want %#02x), E5M2 %#02x (want %#02x)", c.v, e4[0], c.e4m3, e5[0], c.e5m2)
		}
	}
}

// TestBF16Widen checks every bf16 pattern widens to the reference value and
// narrows back to itself (NaN quieted).
func TestBF16AllPatterns(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	for _, impl := range implLevels() {
		restore := setImpl(impl.name)
		dst := make([]float32, len(src))
		BF16ToF32(dst, src)
		back := make([]uint16, len(src))
		F32ToBF16(back, dst)
		restore()
		for i, h := range src {
			if !sameValue(float64(dst[i]), refBF16.decode(uint32(h))) || math.Float32bits(dst[i]) != uint32(h)<<16 {
				t.Fatalf("%s BF16ToF32(%#04x) = %#08x", impl.name, h, math.Float32bits(dst[i]))
			}
			want := h
			if h&0x7fff > 0x7f80 {
				want |= 0x40
			}
			if back[i] != want {
				t.Fatalf("%s F32ToBF16(BF16ToF32(%#04x)) = %#04x, want %#04x", impl.name, h, back[i], want)
			}
		}
	}
}
