package quant

import (
	"errors"
	"math"
	"testing"
)

func ggufInputs() map[string][]float32 {
	in := map[string][]float32{}
	in["normal"] = normals(256*12, 42)
	s := normals(256*4, 43)
	for i := range s {
		s[i] *= 0.02 // typical weight scale
	}
	in["small"] = s
	z := normals(256*3, 44)
	for i := 256; i < 512; i++ {
		z[i] = 0 // a whole zero super-block
	}
	for i := 0; i < 32; i++ {
		z[i] = 0 // a zero 32-block
	}
	in["zeros"] = z
	p := normals(256*2, 45)
	for i := range p {
		p[i] = float32(math.Abs(float64(p[i]))) + 1 // all positive (min > 0)
	}
	in["positive"] = p
	c := make([]float32, 512)
	for i := range c {
		c[i] = 0.75 // constant blocks
	}
	in["constant"] = c
	h := make([]float32, 256)
	for i := range h {
		h[i] = float32(i%32) - 16 // values on exact half steps
	}
	in["halves"] = h
	u := normals(256*2, 46)
	for i := range u {
		u[i] = float32(math.Round(float64(u[i]*4))) / 4 // coarse grid: many ties
	}
	in["grid"] = u
	tiny := normals(256*2, 47)
	for i := range tiny {
		tiny[i] *= 1e-7 // scales in the f16 subnormal range and below
	}
	in["tiny"] = tiny
	huge := normals(256*2, 48)
	for i := range huge {
		huge[i] *= 1000 // large, still finite in every intermediate sum
	}
	in["huge"] = huge
	mixed := normals(256*4, 49)
	for i := range mixed {
		switch (i / 16) % 4 {
		case 1:
			mixed[i] *= 1e-4 // sub-blocks of very different magnitude in one super-block
		case 2:
			mixed[i] = float32(math.Abs(float64(mixed[i]))) // one-signed sub-blocks
		case 3:
			mixed[i] = -float32(math.Abs(float64(mixed[i])))
		}
	}
	in["mixed"] = mixed
	// 1024 super-blocks: enough for the rarely winning steps of the
	// reference searches (make_qkx2_quants' last candidates pick a different
	// Q5_K block about once in 150)
	in["normal-wide"] = normals(1<<18, 50)
	return in
}

func TestGGUFBitExact(t *testing.T) {
	for _, typ := range GGUFTypes {
		for name, x := range ggufInputs() {
			n, _ := typ.RowSize(len(x))
			got := make([]byte, n)
			if err := QuantizeGGUF(got, x, typ); err != nil {
				t.Fatal(err)
			}
			want := rQuantRowK(x, typ)
			if len(want) != n {
				t.Fatalf("%s %s: reference produced %d bytes, want %d", typ, name, len(want), n)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s %s: byte %d (block %d, offset %d) = %#02x, reference %#02x",
						typ, name, i, i/typ.TypeSize(), i%typ.TypeSize(), got[i], want[i])
				}
			}
			y := make([]float32, len(x))
			if err := DequantizeGGUF(y, got, typ); err != nil {
				t.Fatal(err)
			}
			wy := rDequantK(want, typ, len(x))
			for i := range y {
				if math.Float32bits(y[i]) != math.Float32bits(wy[i]) {
					t.Fatalf("%s %s: dequant %d = %g, reference %g", typ, name, i, y[i], wy[i])
				}
			}
		}
	}
}

func TestGGUFLayoutByHand(t *testing.T) {
	// Q8_0 block with absmax 127: d = 1 (f16 0x3c00), q = roundf(x), halves
	// away from zero.
	x := make([]float32, 32)
	x[0], x[1], x[2], x[3] = 127, -2.5, 2.5, 0.49
	b := make([]byte, 34)
	if err := QuantizeGGUF(b, x, GGUFQ8_0); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0x00 || b[1] != 0x3c || int8(b[2]) != 127 || int8(b[3]) != -3 || int8(b[4]) != 3 || b[5] != 0 {
		t.Errorf("Q8_0 block = % x", b[:6])
	}
	// Q4_0: max = −8 → d = 1; q = trunc(x + 8.5) capped at 15; element j in
	// the low nibble of qs[j], element j+16 in the high nibble.
	x = make([]float32, 32)
	x[0], x[16], x[1], x[17] = -8, 7, 3, 7.6
	b = make([]byte, 18)
	if err := QuantizeGGUF(b, x, GGUFQ4_0); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0x00 || b[1] != 0x3c || b[2] != 0xf0 || b[3] != 0xfb {
		t.Errorf("Q4_0 block = % x", b[:4])
	}
}

func TestGGUFSizes(t *testing.T) {
	want := map[GGUFType][2]int{GGUFQ4_0: {32, 18}, GGUFQ4_1: {32, 20}, GGUFQ5_0: {32, 22}, GGUFQ5_1: {32, 24},
		GGUFQ8_0: {32, 34}, GGUFQ2_K: {256, 84}, GGUFQ3_K: {256, 110}, GGUFQ4_K: {256, 144}, GGUFQ5_K: {256, 176},
		GGUFQ6_K: {256, 210}}
	if len(GGUFTypes) != len(want) {
		t.Errorf("GGUFTypes %v, want the %d types of the table", GGUFTypes, len(want))
	}
	for i, typ := range GGUFTypes {
		if _, ok := want[typ]; !ok || (i > 0 && GGUFTypes[i-1] >= typ) {
			t.Errorf("GGUFTypes %v: not the table's types in id order", GGUFTypes)
		}
	}
	for typ, w := range want {
		if typ.BlockSize() != w[0] || typ.TypeSize() != w[1] {
			t.Errorf("%s: %d/%d, want %v", typ, typ.BlockSize(), typ.TypeSize(), w)
		}
	}
	if _, err := GGUFQ4_K.RowSize(255); !errors.Is(err, ErrLength) {
		t.Errorf("partial block: %v", err)
	}
	if _, err := GGUFType(15).RowSize(256); !errors.Is(err, ErrScheme) {
		t.Errorf("Q8_K: %v", err)
	}
	if _, err := GGUFQ2_K.RowSize(512); err != nil {
		t.Errorf("Q2_K: %v", err)
	}
	if err := QuantizeGGUF(make([]byte, 33), make([]float32, 32), GGUFQ8_0); !errors.Is(err, ErrLength) {
		t.Errorf("short dst: %v", err)
	}
}

// TestGGUFKLayoutByHand checks the Q2_K, Q3_K and Q5_K layouts on blocks
// whose every level is exact, worked out by hand from ggml-common.h and the
// reference quantizers.
func TestGGUFKLayoutByHand(t *testing.T) {
	quant := func(typ GGUFType, x []float32) ([]byte, []float32) {
		t.Helper()
		b := make([]byte, typ.TypeSize())
		if err := QuantizeGGUF(b, x, typ); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := DequantizeGGUF(y, b, typ); err != nil {
			t.Fatal(err)
		}
		return b, y
	}
	x := make([]float32, QKK)

	// Q2_K, x = i%4: every 16-value sub-block has min 0 and max 3, so
	// make_qkx2_quants keeps scale 1, min 0 (no candidate beats error 0):
	// scales[j] = nearest(15·1/1) = 0x0f (min nibble 0), d = f16(1/15) =
	// 0x2c44 at byte 80, dmin = 0 at 82; requantized against d·15 =
	// 0.99975586 the levels stay i%4, and values l, l+32, l+64, l+96 (all
	// ≡ l mod 4) fill qs[32·half + l] = (l%4)·0x55.
	for i := range x {
		x[i] = float32(i % 4)
	}
	b, y := quant(GGUFQ2_K, x)
	for j := 0; j < 16; j++ {
		if b[j] != 0x0f {
			t.Fatalf("Q2_K scales[%d] = %#02x, want 0x0f", j, b[j])
		}
	}
	for l := 0; l < 64; l++ {
		if want := byte(l%4) * 0x55; b[16+l] != want {
			t.Fatalf("Q2_K qs[%d] = %#02x, want %#02x", l, b[16+l], want)
		}
	}
	if b[80] != 0x44 || b[81] != 0x2c || b[82] != 0 || b[83] != 0 {
		t.Fatalf("Q2_K d, dmin = % x", b[80:84])
	}
	for i, v := range y {
		if want := float32(1092.0/16384*15) * float32(i%4); v != want { // d = 0x2c44 = 1092/2^14
			t.Fatalf("Q2_K y[%d] = %v, want %v", i, v, want)
		}
	}

	// Q3_K, x = i%8 − 4: make_q3_quants(nmax 4) starts at iscale =
	// −4/max = 1 (max = −4, the first largest |x|), levels exact, scale 1 in
	// every sub-block; iscale = −32/1, so every 6-bit scale is −32 + 32 = 0
	// (scales[12] all zero) and d = f16(−1/32) = 0xa800; requantized against
	// d·(0 − 32) = 1: L = x + 4 = i%8. hmask[i%32] bit i/32 holds L ≥ 4
	// (0xff when i%8 ≥ 4), qs the low two bits as for Q2_K.
	for i := range x {
		x[i] = float32(i%8) - 4
	}
	b, y = quant(GGUFQ3_K, x)
	for r := 0; r < 32; r++ {
		want := byte(0)
		if r%8 >= 4 {
			want = 0xff
		}
		if b[r] != want {
			t.Fatalf("Q3_K hmask[%d] = %#02x, want %#02x", r, b[r], want)
		}
	}
	for l := 0; l < 64; l++ {
		if want := byte(l%4) * 0x55; b[32+l] != want {
			t.Fatalf("Q3_K qs[%d] = %#02x, want %#02x", l, b[32+l], want)
		}
	}
	for j := 96; j < 108; j++ {
		if b[j] != 0 {
			t.Fatalf("Q3_K scales = % x, want zeros", b[96:108])
		}
	}
	if b[108] != 0x00 || b[109] != 0xa8 {
		t.Fatalf("Q3_K d = % x, want 00 a8", b[108:110])
	}
	for i, v := range y {
		if v != x[i] {
			t.Fatalf("Q3_K y[%d] = %v, want %v", i, v, x[i])
		}
	}

	// Q5_K, x = i%32: every 32-value sub-block has min 0, max 31, levels
	// exact at scale 1 (make_qkx2_quants(nmax 31)); ls = 63, lm = 0, so
	// scales[0..3] = 63 | (63>>4)<<6 = 0xff, scales[4..7] = 0, scales[8..11]
	// = 0x0f; d = f16(1/63) = 0x2410, dmin = 0; requantized against
	// d·63 = 0.99975586 the levels stay i%32: qh[r] = 0xff for r ≥ 16 (the
	// fifth bit of every chunk), ql[32c + r] = (r%16)·0x11.
	for i := range x {
		x[i] = float32(i % 32)
	}
	b, y = quant(GGUFQ5_K, x)
	if b[0] != 0x10 || b[1] != 0x24 || b[2] != 0 || b[3] != 0 {
		t.Fatalf("Q5_K d, dmin = % x", b[:4])
	}
	wantSc := []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x0f, 0x0f, 0x0f, 0x0f}
	for j, w := range wantSc {
		if b[4+j] != w {
			t.Fatalf("Q5_K scales = % x, want % x", b[4:16], wantSc)
		}
	}
	for r := 0; r < 32; r++ {
		want := byte(0)
		if r >= 16 {
			want = 0xff
		}
		if b[16+r] != want {
			t.Fatalf("Q5_K qh[%d] = %#02x, want %#02x", r, b[16+r], want)
		}
	}
	for k := 0; k < 128; k++ {
		if want := byte(k%16) * 0x11; b[48+k] != want {
			t.Fatalf("Q5_K qs[%d] = %#02x, want %#02x", k, b[48+k], want)
		}
	}
	for i, v := range y {
		if want := float32(0.015869140625*63) * float32(i%32); v != want {
			t.Fatalf("Q5_K y[%d] = %v, want %v", i, v, want)
		}
	}
}
