package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/x448/float16"
)

// alignedBuf returns n bytes starting at an 8-byte aligned address, so that
// offsets 0 and 1 exercise the zero-copy and the copying paths.
func alignedBuf(n int) []byte {
	raw := make([]byte, n+8)
	a := 0
	for uintptr(unsafe.Pointer(&raw[a]))%8 != 0 {
		a++
	}
	return raw[a : a+n]
}

func sameFloat(a, b float32) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

// All 65536 F16 values widen as github.com/x448/float16 does.
func TestToFloat32F16AllValues(t *testing.T) {
	src := make([]byte, 2*65536)
	for h := range 65536 {
		binary.LittleEndian.PutUint16(src[2*h:], uint16(h))
	}
	for _, off := range []int{0, 1} { // aligned and unaligned source
		buf := alignedBuf(len(src) + 1)
		copy(buf[off:], src)
		dst := make([]float32, 65536)
		if err := ToFloat32(dst, buf[off:off+len(src)], F16); err != nil {
			t.Fatal(err)
		}
		for h := range 65536 {
			want := float16.Frombits(uint16(h)).Float32()
			if !sameFloat(dst[h], want) || math.Signbit(float64(dst[h])) != math.Signbit(float64(want)) {
				t.Fatalf("offset %d: F16 0x%04x -> %v, want %v", off, h, dst[h], want)
			}
		}
	}
}

// Random float32 (all bit patterns) round to F16 as x448/float16 does (RNE).
func TestFromFloat32F16Random(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const n = 200_000
	src := make([]float32, n)
	for i := range src {
		switch i % 3 {
		case 0:
			src[i] = math.Float32frombits(r.Uint32())
		case 1: // the F16 range, where rounding matters
			src[i] = float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(40)-25)))
		default: // exact ties between two F16 values
			h := uint16(r.Uint32()) & 0x7bff
			lo := float64(float16.Frombits(h).Float32())
			hi := float64(float16.Frombits(h + 1).Float32())
			src[i] = float32((lo + hi) / 2)
		}
	}
	for _, off := range []int{0, 1} {
		buf := alignedBuf(2*n + 1)
		dst := buf[off : off+2*n]
		if err := FromFloat32(dst, src, F16); err != nil {
			t.Fatal(err)
		}
		for i, f := range src {
			got := binary.LittleEndian.Uint16(dst[2*i:])
			want := float16.Fromfloat32(f).Bits()
			if f != f {
				if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
					t.Fatalf("NaN 0x%08x -> 0x%04x, not a NaN", math.Float32bits(f), got)
				}
				continue
			}
			if got != want {
				t.Fatalf("offset %d: %g (0x%08x) -> 0x%04x, want 0x%04x", off, f, math.Float32bits(f), got, want)
			}
		}
	}
}

// bf16Ref rounds x to bfloat16 with float64 arithmetic: the two neighbours
// by truncation, the nearer one, ties to the even pattern.
func bf16Ref(x float32) uint16 {
	b := math.Float32bits(x)
	lo := uint16(b >> 16)
	if b&0xffff == 0 {
		return lo
	}
	hi := lo + 1
	flo := float64(math.Float32frombits(uint32(lo) << 16))
	fhi := float64(math.Float32frombits(uint32(hi) << 16))
	if hi&0x7f80 == 0x7f80 && hi&0x7f == 0 { // rounding up reaches Inf: compare with the next power of two
		fhi = math.Copysign(math.Ldexp(1, 128), flo)
	}
	dlo, dhi := math.Abs(float64(x)-flo), math.Abs(fhi-float64(x))
	switch {
	case dlo < dhi:
		return lo
	case dhi < dlo:
		return hi
	case lo&1 == 0:
		return lo
	}
	return hi
}

func TestBF16(t *testing.T) {
	hand := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above the tie
		{0x7f7fffff, 0x7f80}, // max float32 rounds to Inf
		{0x80000000, 0x8000}, // -0
		{0xff800000, 0xff80}, // -Inf
		{0x00000001, 0x0000}, // smallest subnormal rounds to 0
		{0x00008000, 0x0000}, // tie to even 0
		{0x00018000, 0x0002}, // tie to even 2
	}
	for _, c := range hand {
		var dst [2]byte
		if err := FromFloat32(dst[:], []float32{math.Float32frombits(c.in)}, BF16); err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint16(dst[:]); got != c.want {
			t.Errorf("BF16(0x%08x) = 0x%04x, want 0x%04x", c.in, got, c.want)
		}
	}
	r := rand.New(rand.NewPCG(13, 14))
	src := make([]float32, 100_000)
	for i := range src {
		src[i] = math.Float32frombits(r.Uint32())
	}
	dst := make([]byte, 2*len(src))
	if err := FromFloat32(dst, src, BF16); err != nil {
		t.Fatal(err)
	}
	back := make([]float32, len(src))
	if err := ToFloat32(back, dst, BF16); err != nil {
		t.Fatal(err)
	}
	for i, f := range src {
		got := binary.LittleEndian.Uint16(dst[2*i:])
		if f != f {
			if back[i] == back[i] || got&0x40 == 0 {
				t.Fatalf("NaN 0x%08x -> 0x%04x", math.Float32bits(f), got)
			}
			continue
		}
		if want := bf16Ref(f); got != want {
			t.Fatalf("BF16(%g 0x%08x) = 0x%04x, want 0x%04x", f, math.Float32bits(f), got, want)
		}
		if math.Float32bits(back[i]) != uint32(got)<<16 {
			t.Fatalf("BF16 widening of 0x%04x = 0x%08x", got, math.Float32bits(back[i]))
		}
	}
}

// f8Ref decodes an F8 code by the format definition in float64.
func f8Ref(code uint8, ebits, bias int, hasInf bool) float64 {
	mbits := 7 - ebits
	s := 1.0
	if code&0x80 != 0 {
		s = -1
	}
	e := int(code>>mbits) & (1<<ebits - 1)
	m := int(code) & (1<<mbits - 1)
	emax := 1<<ebits - 1
	if hasInf && e == emax {
		if m == 0 {
			return math.Inf(int(s))
		}
		return math.NaN()
	}
	if !hasInf && e == emax && m == 1<<mbits-1 {
		return math.NaN()
	}
	if e == 0 {
		return s * math.Ldexp(float64(m), 1-bias-mbits)
	}
	return s * math.Ldexp(float64(1<<mbits+m), e-bias-mbits)
}

// f8EncodeRef picks the nearest finite code by brute force (ties to the
// even code), saturating to the largest finite value.
func f8EncodeRef(x float32, ebits, bias int, hasInf bool) (uint8, bool) {
	v := float64(x)
	if v != v {
		return 0, false // NaN, checked separately
	}
	if hasInf && math.IsInf(v, 0) {
		if v > 0 {
			return 0x7c, true
		}
		return 0xfc, true
	}
	maxCode := uint8(0x7e) // largest finite code
	if hasInf {
		maxCode = 0x7b
	}
	if math.Abs(v) >= f8Ref(maxCode, ebits, bias, hasInf) {
		if v > 0 {
			return maxCode, true
		}
		return maxCode | 0x80, true
	}
	best, bestD := -1, math.Inf(1)
	for c := range 256 {
		f := f8Ref(uint8(c), ebits, bias, hasInf)
		if f != f || math.IsInf(f, 0) || math.Signbit(f) != math.Signbit(v) {
			continue
		}
		d := math.Abs(f - v)
		if d < bestD || (d == bestD && c&1 == 0) {
			best, bestD = c, d
		}
	}
	return uint8(best), true
}

func TestF8(t *testing.T) {
	type f8 struct {
		dt     DType
		ebits  int
		bias   int
		hasInf bool
	}
	for _, f := range []f8{{F8E4M3, 4, 7, false}, {F8E5M2, 5, 15, true}} {
		// Decoding of all 256 codes.
		codes := make([]byte, 256)
		for i := range codes {
			codes[i] = byte(i)
		}
		dec := make([]float32, 256)
		if err := ToFloat32(dec, codes, f.dt); err != nil {
			t.Fatal(err)
		}
		for c := range 256 {
			want := f8Ref(uint8(c), f.ebits, f.bias, f.hasInf)
			if want != want {
				if dec[c] == dec[c] {
					t.Errorf("%s code 0x%02x = %v, want NaN", f.dt, c, dec[c])
				}
				continue
			}
			if float64(dec[c]) != want || math.Signbit(float64(dec[c])) != math.Signbit(want) {
				t.Errorf("%s code 0x%02x = %v, want %v", f.dt, c, dec[c], want)
			}
		}
		// Encoding against the brute-force reference.
		r := rand.New(rand.NewPCG(15, uint64(f.dt)))
		var src []float32
		for c := range 256 { // every code value, and every midpoint between neighbours
			v := f8Ref(uint8(c), f.ebits, f.bias, f.hasInf)
			src = append(src, float32(v))
			if w := f8Ref(uint8(c+1), f.ebits, f.bias, f.hasInf); c&0x7f < 0x7f && !math.IsInf(w, 0) && w == w && v == v {
				src = append(src, float32((v+w)/2))
			}
		}
		for range 20000 {
			src = append(src, float32(r.NormFloat64()*math.Ldexp(1, r.IntN(30)-15)))
		}
		src = append(src, 1e30, -1e30, float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)),
			float32(math.NaN()), 464, 465, 57344, 61439, 61440, 1e-10)
		enc := make([]byte, len(src))
		if err := FromFloat32(enc, src, f.dt); err != nil {
			t.Fatal(err)
		}
		for i, x := range src {
			want, ok := f8EncodeRef(x, f.ebits, f.bias, f.hasInf)
			if !ok {
				if enc[i]&0x7f != 0x7f {
					t.Errorf("%s NaN -> 0x%02x", f.dt, enc[i])
				}
				continue
			}
			if enc[i] != want {
				t.Errorf("%s(%g) = 0x%02x, want 0x%02x", f.dt, x, enc[i], want)
			}
		}
	}
	// Hand-checked E4M3 values.
	hand := []struct {
		in   float32
		want byte
	}{{1, 0x38}, {-1, 0xb8}, {448, 0x7e}, {500, 0x7e}, {-1e9, 0xfe}, {0x1p-9, 0x01}, {0x1p-10, 0x00},
		{0x1.8p-10, 0x01}, {1.0625, 0x38}, {1.1875, 0x3a}, {float32(math.Inf(1)), 0x7e}}
	for _, c := range hand {
		var b [1]byte
		FromFloat32(b[:], []float32{c.in}, F8E4M3)
		if b[0] != c.want {
			t.Errorf("E4M3(%g) = 0x%02x, want 0x%02x", c.in, b[0], c.want)
		}
	}
}

func bigF32FromInt(v int64) float32 {
	f, _ := new(big.Float).SetInt64(v).Float32()
	return f
}

func bigF32FromUint(v uint64) float32 {
	f, _ := new(big.Float).SetUint64(v).Float32()
	return f
}

func TestIntegerConversions(t *testing.T) {
	// To float32, against math/big's correctly rounded conversion.
	r := rand.New(rand.NewPCG(17, 18))
	vals := []uint64{0, 1, math.MaxUint64, 1 << 63, 1<<53 + 1, 1<<24 + 1, 1<<25 + 3, 0x7fffffff, 0x80000000, 0xffffffff}
	for range 5000 {
		vals = append(vals, r.Uint64(), r.Uint64()>>r.IntN(64))
	}
	for _, dt := range []DType{U8, I8, I16, U16, I32, U32, I64, U64, Bool} {
		w := dt.Bits() / 8
		src := make([]byte, w*len(vals))
		want := make([]float32, len(vals))
		for i, v := range vals {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], v)
			copy(src[w*i:], b[:w])
			switch dt {
			case U8:
				want[i] = bigF32FromUint(v & 0xff)
			case I8:
				want[i] = bigF32FromInt(int64(int8(v)))
			case I16:
				want[i] = bigF32FromInt(int64(int16(v)))
			case U16:
				want[i] = bigF32FromUint(v & 0xffff)
			case I32:
				want[i] = bigF32FromInt(int64(int32(v)))
			case U32:
				want[i] = bigF32FromUint(v & 0xffffffff)
			case I64:
				want[i] = bigF32FromInt(int64(v))
			case U64:
				want[i] = bigF32FromUint(v)
			case Bool:
				want[i] = 0
				if v&0xff != 0 {
					want[i] = 1
				}
			}
		}
		got := make([]float32, len(vals))
		if err := ToFloat32(got, src, dt); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s 0x%x -> %v, want %v", dt, vals[i], got[i], want[i])
			}
		}
	}
	// From float32: round half to even, saturate, NaN -> 0 (hand-checked).
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	cases := []struct {
		dt   DType
		in   []float32
		want []int64
	}{
		{U8, []float32{2.5, 3.5, -1, 300, nan, 254.5, 0.5, inf}, []int64{2, 4, 0, 255, 0, 254, 0, 255}},
		{I8, []float32{-2.5, -128.5, 127.5, -129, -inf, 1.5}, []int64{-2, -128, 127, -128, -128, 2}},
		{I16, []float32{-32768.5, 32767.5, 40000, 1234.5}, []int64{-32768, 32767, 32767, 1234}},
		{U16, []float32{65535.5, -3, 65536}, []int64{65535, 0, 65535}},
		{I32, []float32{3e9, -3e9, 16777217, -0.5}, []int64{math.MaxInt32, math.MinInt32, 16777216, 0}},
		{U32, []float32{5e9, 4294967040, -7}, []int64{math.MaxUint32, 4294967040, 0}},
		{I64, []float32{1e19, -1e19, 0x1p62, nan}, []int64{math.MaxInt64, math.MinInt64, 1 << 62, 0}},
		{Bool, []float32{0, float32(math.Copysign(0, -1)), 0.1, -3, nan}, []int64{0, 0, 1, 1, 1}},
	}
	for _, c := range cases {
		w := c.dt.Bits() / 8
		dst := make([]byte, w*len(c.in))
		if err := FromFloat32(dst, c.in, c.dt); err != nil {
			t.Fatal(err)
		}
		for i, want := range c.want {
			var b [8]byte
			copy(b[:], dst[w*i:w*i+w])
			u := binary.LittleEndian.Uint64(b[:])
			var got int64
			switch c.dt {
			case I8:
				got = int64(int8(u))
			case I16:
				got = int64(int16(u))
			case I32:
				got = int64(int32(u))
			default:
				got = int64(u)
			}
			if got != want {
				t.Errorf("%s(%v) = %d, want %d", c.dt, c.in[i], got, want)
			}
		}
	}
	var u [8]byte
	FromFloat32(u[:], []float32{2e19}, U64)
	if binary.LittleEndian.Uint64(u[:]) != math.MaxUint64 {
		t.Errorf("U64(2e19) = %d", binary.LittleEndian.Uint64(u[:]))
	}
}

func TestFloatWidths(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	src := make([]byte, 8*1000)
	for i := range 1000 {
		binary.LittleEndian.PutUint64(src[8*i:], r.Uint64())
	}
	got := make([]float32, 1000)
	if err := ToFloat32(got, src, F64); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		x := math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))
		if x != x {
			if got[i] == got[i] {
				t.Fatalf("F64 NaN -> %v", got[i])
			}
			continue
		}
		want, _ := new(big.Float).SetFloat64(x).Float32()
		if got[i] != want {
			t.Fatalf("F64 %g -> %g, want %g", x, got[i], want)
		}
	}
	// F64 back from float32 is exact; C64 yields interleaved pairs.
	f := []float32{1.5, -2, 3.25, float32(math.Inf(-1))}
	b := make([]byte, 32)
	if err := FromFloat32(b, f, F64); err != nil {
		t.Fatal(err)
	}
	for i, v := range f {
		if math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])) != float64(v) {
			t.Fatalf("F64 widening of %v", v)
		}
	}
	c := make([]float32, 4)
	if err := ToFloat32(c, Float32Bytes(f), C64); err != nil || c[2] != 3.25 {
		t.Fatalf("C64: %v %v", c, err)
	}
}

func TestConvertErrors(t *testing.T) {
	if err := ToFloat32(make([]float32, 2), make([]byte, 7), F32); !errors.Is(err, ErrInvalidTensorView) {
		t.Errorf("short src: %v", err)
	}
	if err := FromFloat32(make([]byte, 3), make([]float32, 2), F16); !errors.Is(err, ErrInvalidTensorView) {
		t.Errorf("short dst: %v", err)
	}
	for _, dt := range []DType{F4, F6E2M3, F6E3M2, F8E8M0, F8E4M3FNUZ, F8E5M2FNUZ} {
		n := 8
		if dt.Bits()%8 != 0 {
			if err := ToFloat32(make([]float32, n), make([]byte, n*dt.Bits()/8), dt); !errors.Is(err, ErrUnsupportedConversion) {
				t.Errorf("ToFloat32 %s: %v", dt, err)
			}
		}
		if err := FromFloat32(make([]byte, n*dt.Bits()/8), make([]float32, n), dt); !errors.Is(err, ErrUnsupportedConversion) {
			t.Errorf("FromFloat32 %s: %v", dt, err)
		}
	}
	if err := FromFloat32(make([]byte, 8), make([]float32, 1), C64); !errors.Is(err, ErrInvalidTensorView) {
		t.Errorf("FromFloat32 C64 with an odd count: %v", err)
	}
	c := make([]byte, 16)
	if err := FromFloat32(c, []float32{1, -2, 3, 0.5}, C64); err != nil || math.Float32frombits(binary.LittleEndian.Uint32(c[4:])) != -2 {
		t.Errorf("FromFloat32 C64: %v", err)
	}
	if IsFormatError(ErrUnsupportedConversion) {
		t.Error("ErrUnsupportedConversion counted as a format error")
	}
}

func TestViews(t *testing.T) {
	raw := make([]byte, 24)
	a := 0 // first 4-aligned offset
	for uintptr(unsafe.Pointer(&raw[a]))%4 != 0 {
		a++
	}
	buf := raw[a : a+17]
	v, ok := AsFloat32(buf[:16])
	if !ok || len(v) != 4 || unsafe.Pointer(&v[0]) != unsafe.Pointer(&buf[0]) {
		t.Fatal("aligned AsFloat32 is not a zero-copy view")
	}
	if _, ok := AsFloat32(buf[1:17]); ok {
		t.Fatal("misaligned AsFloat32 reported ok")
	}
	if _, ok := AsFloat32(buf[:15]); ok {
		t.Fatal("odd-length AsFloat32 reported ok")
	}
	if _, ok := AsUint16(buf[1:3]); ok {
		t.Fatal("misaligned AsUint16 reported ok")
	}
	f := []float32{1, 2}
	if b := Float32Bytes(f); len(b) != 8 || binary.LittleEndian.Uint32(b[4:]) != math.Float32bits(2) {
		t.Fatal("Float32Bytes")
	}
}

// F8_E8M0 and the FNUZ formats decode by their definitions; hand-checked
// extremes (torch.finfo: e4m3fnuz max 240, smallest subnormal 2⁻¹⁰;
// e5m2fnuz max 57344, smallest subnormal 2⁻¹⁷).
func TestF8DecodeOnly(t *testing.T) {
	codes := make([]byte, 256)
	for i := range codes {
		codes[i] = byte(i)
	}
	dec := func(dt DType) []float32 {
		v := make([]float32, 256)
		if err := ToFloat32(v, codes, dt); err != nil {
			t.Fatal(err)
		}
		return v
	}
	e8 := dec(F8E8M0)
	for c := 0; c < 255; c++ {
		if float64(e8[c]) != math.Pow(2, float64(c-127)) {
			t.Fatalf("E8M0 0x%02x = %v", c, e8[c])
		}
	}
	if e8[255] == e8[255] {
		t.Fatal("E8M0 0xff is not NaN")
	}
	hand := []struct {
		dt   DType
		code byte
		want float64
	}{
		{F8E4M3FNUZ, 0x7f, 240}, {F8E4M3FNUZ, 0xff, -240}, {F8E4M3FNUZ, 0x01, 0x1p-10}, {F8E4M3FNUZ, 0x08, 0x1p-7},
		{F8E4M3FNUZ, 0x40, 1}, {F8E4M3FNUZ, 0x00, 0}, {F8E4M3FNUZ, 0xc4, -1.5},
		{F8E5M2FNUZ, 0x7f, 57344}, {F8E5M2FNUZ, 0x01, 0x1p-17}, {F8E5M2FNUZ, 0x40, 1}, {F8E5M2FNUZ, 0xc2, -1.5},
	}
	tables := map[DType][]float32{F8E4M3FNUZ: dec(F8E4M3FNUZ), F8E5M2FNUZ: dec(F8E5M2FNUZ)}
	for _, h := range hand {
		if got := tables[h.dt][h.code]; float64(got) != h.want {
			t.Errorf("%s 0x%02x = %v, want %v", h.dt, h.code, got, h.want)
		}
	}
	for dt, v := range tables {
		nan := 0
		for c, x := range v {
			if x != x {
				nan++
				if c != 0x80 {
					t.Errorf("%s 0x%02x is NaN", dt, c)
				}
			} else if math.IsInf(float64(x), 0) {
				t.Errorf("%s 0x%02x is infinite", dt, c)
			}
		}
		if nan != 1 {
			t.Errorf("%s has %d NaN codes", dt, nan)
		}
		// Monotone over the positive codes.
		for c := 1; c < 0x80; c++ {
			if !(v[c] > v[c-1]) {
				t.Errorf("%s not increasing at 0x%02x", dt, c)
			}
		}
	}
}
