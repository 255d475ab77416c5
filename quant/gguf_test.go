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
			want := rQuantRow(x, typ)
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
			wy := rDequant(want, typ, len(x))
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
		GGUFQ8_0: {32, 34}, GGUFQ4_K: {256, 144}, GGUFQ6_K: {256, 210}}
	for typ, w := range want {
		if typ.BlockSize() != w[0] || typ.TypeSize() != w[1] {
			t.Errorf("%s: %d/%d, want %v", typ, typ.BlockSize(), typ.TypeSize(), w)
		}
	}
	if _, err := GGUFQ4_K.RowSize(255); !errors.Is(err, ErrLength) {
		t.Errorf("partial block: %v", err)
	}
	if _, err := GGUFType(10).RowSize(256); !errors.Is(err, ErrScheme) {
		t.Errorf("Q2_K: %v", err)
	}
	if err := QuantizeGGUF(make([]byte, 33), make([]float32, 32), GGUFQ8_0); !errors.Is(err, ErrLength) {
		t.Errorf("short dst: %v", err)
	}
}
