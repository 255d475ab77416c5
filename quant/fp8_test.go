package quant

import (
	"errors"
	"math"
	"testing"
)

func TestFP8Vectors(t *testing.T) {
	for _, tc := range []struct {
		f    FP8Format
		in   float32
		want uint8
	}{
		{E4M3, 17, 0x58},                          // 17 → 16 (tie to even)
		{E4M3, 19, 0x5a},                          // 19 → 20 (tie to even)
		{E4M3, 464, 0x7e},                         // → 448
		{E4M3, -464, 0xfe},                        // → −448
		{E4M3, 1e6, 0x7e},                         // clamped
		{E4M3, float32(math.Inf(1)), 0x7e},        // clamped
		{E4M3, 448, 0x7e},                         // 448 ↔ 0x7E
		{E4M3, float32(math.Ldexp(1, -9)), 0x01},  // min subnormal
		{E4M3, float32(math.Ldexp(1, -10)), 0x00}, // tie to even → 0
		{E4M3, float32(math.NaN()), 0x7f},
		{E5M2, 57344, 0x7b},
		{E5M2, 60000, 0x7b},
		{E5M2, 1e9, 0x7b},
		{E5M2, -1e9, 0xfb},
		{E5M2, float32(math.Ldexp(1, -16)), 0x01},
		{E5M2, 1.25, 0x3d},
	} {
		var got [1]uint8
		EncodeFP8(got[:], []float32{tc.in}, tc.f)
		if got[0] != tc.want {
			t.Errorf("%s(%g) = %#02x, want %#02x", tc.f, tc.in, got[0], tc.want)
		}
		if r := refEncodeFP8(tc.in, tc.f); r != tc.want {
			t.Errorf("reference %s(%g) = %#02x, want %#02x", tc.f, tc.in, r, tc.want)
		}
	}
	var back [1]float32
	DecodeFP8(back[:], []uint8{0x7e}, E4M3)
	if back[0] != 448 {
		t.Errorf("0x7e decodes to %g", back[0])
	}
}

// refQuantizeFP8 is the compressed-tensors recipe written out directly.
func refQuantizeFP8(src []float32, rows, cols int, f FP8Format, g Granularity) ([]uint8, []float32) {
	q := make([]uint8, len(src))
	var scales []float32
	mx := float32(448)
	if f == E5M2 {
		mx = 57344
	}
	tile := func(r0, r1, c0, c1 int) {
		var am float32
		for r := r0; r < r1; r++ {
			am = max(am, refAbsMax(src[r*cols+c0:r*cols+c1]))
		}
		s := am / mx
		if s == 0 {
			s = 1.1920928955078125e-07
		}
		scales = append(scales, s)
		for r := r0; r < r1; r++ {
			for c := c0; c < c1; c++ {
				q[r*cols+c] = refEncodeFP8(src[r*cols+c]/s, f)
			}
		}
	}
	switch g.Kind {
	case PerTensor:
		tile(0, rows, 0, cols)
	case PerChannel:
		for r := 0; r < rows; r++ {
			tile(r, r+1, 0, cols)
		}
	case PerBlock:
		for r := 0; r < rows; r += g.Size {
			for c := 0; c < cols; c += g.Size {
				tile(r, min(r+g.Size, rows), c, min(c+g.Size, cols))
			}
		}
	}
	return q, scales
}

func TestFP8BitExact(t *testing.T) {
	shapes := [][2]int{{1, 1}, {3, 5}, {130, 257}, {256, 128}, {7, 300}}
	grans := []Granularity{{Kind: PerTensor}, {Kind: PerChannel}, {Kind: PerBlock, Size: 128}, {Kind: PerBlock, Size: 16}}
	for _, f := range []FP8Format{E4M3, E5M2} {
		for _, sh := range shapes {
			for _, g := range grans {
				rows, cols := sh[0], sh[1]
				x := normals(rows*cols, int64(rows*1000+cols))
				if rows > 2 {
					for c := 0; c < cols; c++ {
						x[cols+c] = 0 // an all-zero row
					}
				}
				ns, _ := g.numScales(rows, cols)
				q := make([]uint8, len(x))
				s := make([]float32, ns)
				if err := QuantizeFP8(q, s, x, rows, cols, f, g); err != nil {
					t.Fatal(err)
				}
				wq, ws := refQuantizeFP8(x, rows, cols, f, g)
				for i := range ws {
					if s[i] != ws[i] {
						t.Fatalf("%s %v %s: scale %d = %g, reference %g", f, sh, g, i, s[i], ws[i])
					}
				}
				for i := range wq {
					if q[i] != wq[i] {
						t.Fatalf("%s %v %s: code %d = %#02x, reference %#02x (x=%g)", f, sh, g, i, q[i], wq[i], x[i])
					}
				}
				out := make([]float32, len(x))
				if err := DequantizeFP8(out, q, s, rows, cols, f, g); err != nil {
					t.Fatal(err)
				}
				sh2, _ := g.ScaleShape(rows, cols)
				for i := range out {
					r, c := i/cols, i%cols
					var si int
					switch g.Kind {
					case PerChannel:
						si = r
					case PerBlock:
						si = (r/g.Size)*sh2[1] + c/g.Size
					}
					want := float32(refFP8Value(wq[i], f)) * ws[si]
					if out[i] != want {
						t.Fatalf("%s %v %s: dequant %d = %g, reference %g", f, sh, g, i, out[i], want)
					}
				}
			}
		}
	}
}

func TestFP8Errors(t *testing.T) {
	x := make([]float32, 12)
	if err := QuantizeFP8(make([]uint8, 12), make([]float32, 1), x, 3, 4, E4M3, Granularity{Kind: PerGroup, Size: 2}); !errors.Is(err, ErrScheme) {
		t.Errorf("group FP8: %v", err)
	}
	if err := QuantizeFP8(make([]uint8, 12), make([]float32, 2), x, 3, 4, E4M3, Granularity{Kind: PerChannel}); !errors.Is(err, ErrLength) {
		t.Errorf("wrong scale count: %v", err)
	}
	if err := DequantizeFP8(x, make([]uint8, 11), make([]float32, 1), 3, 4, E5M2, Granularity{}); !errors.Is(err, ErrLength) {
		t.Errorf("wrong code count: %v", err)
	}
}

func TestParseGranularity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Granularity
		err  bool
	}{
		{"tensor", Granularity{Kind: PerTensor}, false},
		{"channel", Granularity{Kind: PerChannel}, false},
		{"block:128", Granularity{Kind: PerBlock, Size: 128}, false},
		{"block", Granularity{Kind: PerBlock, Size: 128}, false},
		{"group:64", Granularity{Kind: PerGroup, Size: 64}, false},
		{"group", Granularity{}, true},
		{"group:0", Granularity{}, true},
		{"row", Granularity{}, true},
		{"tensor:3", Granularity{}, true},
	} {
		g, err := ParseGranularity(tc.in)
		if (err != nil) != tc.err || (!tc.err && g != tc.want) {
			t.Errorf("ParseGranularity(%q) = %v, %v", tc.in, g, err)
		}
		if err == nil && g.String() != tc.in && tc.in != "block" {
			t.Errorf("String() = %q, want %q", g.String(), tc.in)
		}
	}
}
