package quant

import (
	"encoding/binary"
	"math"
	"testing"
)

// TestGGUFKRoundTripRMSE checks the round-trip error of the k-quants on
// N(0,1) (math/rand seed 1234, 2^22 values, as TestRMSEReference): RMSE of
// dequantize(quantize(x)) within 2% of the measured value of each type
// (ggml's reference quantizers, which these are byte for byte), strictly
// falling with the bits per weight, Q2_K > Q3_K > Q4_K > Q5_K > Q6_K.
func TestGGUFKRoundTripRMSE(t *testing.T) {
	if testing.Short() {
		t.Skip("2^22 values through the reference searches")
	}
	x := normals(1<<22, 1234)
	cases := []struct {
		typ  GGUFType
		bpw  float64 // bits per weight
		want float64 // measured RMSE
	}{
		{GGUFQ2_K, 2.625, 0.29670},
		{GGUFQ3_K, 3.4375, 0.15091},
		{GGUFQ4_K, 4.5, 0.07139},
		{GGUFQ5_K, 5.5, 0.03614},
		{GGUFQ6_K, 6.5625, 0.01775},
	}
	prev := math.Inf(1)
	for _, c := range cases {
		n, err := c.typ.RowSize(len(x))
		if err != nil {
			t.Fatal(err)
		}
		if bpw := float64(8*n) / float64(len(x)); bpw != c.bpw {
			t.Errorf("%s: %.4f bits per weight, want %.4f", c.typ, bpw, c.bpw)
		}
		b := make([]byte, n)
		y := make([]float32, len(x))
		if err := QuantizeGGUF(b, x, c.typ); err != nil {
			t.Fatal(err)
		}
		if err := DequantizeGGUF(y, b, c.typ); err != nil {
			t.Fatal(err)
		}
		got := rmse(x, y)
		t.Logf("%s: %.4f bpw, RMSE %.5f (measured %.5f)", c.typ, c.bpw, got, c.want)
		if math.Abs(got-c.want) > 0.02*c.want {
			t.Errorf("%s: RMSE %.5f, measured %.5f (±2%%)", c.typ, got, c.want)
		}
		if !(got < prev) {
			t.Errorf("%s: RMSE %.5f not below the previous type's %.5f", c.typ, got, prev)
		}
		prev = got
	}
}

// TestGGUFNonFinite: the quantizers are not defined for NaN or ±Inf (ggml
// asserts in debug builds; apply refuses such tensors with ErrNonFinite
// before quantizing), but a block holding them must not panic or disturb
// the other blocks of the row, which quantize exactly as on their own; any
// bytes dequantize without panicking (f16 NaN/Inf scales included).
func TestGGUFNonFinite(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, typ := range GGUFTypes {
		bs := typ.BlockSize()
		x := normals(4*bs, 60)
		x[bs+3] = nan
		x[2*bs] = inf
		x[2*bs+bs-1] = -inf
		n, _ := typ.RowSize(len(x))
		got := make([]byte, n)
		if err := QuantizeGGUF(got, x, typ); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		ts := typ.TypeSize()
		for _, blk := range []int{0, 3} {
			one := make([]byte, ts)
			if err := QuantizeGGUF(one, x[blk*bs:(blk+1)*bs], typ); err != nil {
				t.Fatal(err)
			}
			if string(one) != string(got[blk*ts:(blk+1)*ts]) {
				t.Errorf("%s: finite block %d changed by its non-finite neighbours", typ, blk)
			}
		}
		y := make([]float32, len(x))
		if err := DequantizeGGUF(y, got, typ); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			got[i] = 0xff // f16 scales 0xffff: NaN
		}
		if err := DequantizeGGUF(y, got, typ); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzGGUF quantizes fuzzed rows with every type and requires the bytes
// of the reference transcriptions (refgguf_test.go, refgguf_k_test.go) and
// the reference's dequantized values, and decodes the fuzzed bytes
// themselves as blocks of every type against the reference decoders.
// Values are int16/2^k (k < 40): finite, from 2^15 down to the f16
// subnormals.
func FuzzGGUF(f *testing.F) {
	seed := make([]byte, 2*256)
	for i, v := range normals(256, 70) {
		binary.LittleEndian.PutUint16(seed[2*i:], uint16(int16(v*4096)))
	}
	f.Add(seed, uint8(12))
	f.Add(seed[:64], uint8(0))
	f.Add(make([]byte, 512), uint8(3))
	f.Add([]byte{0xff, 0x7f, 0x00, 0x80, 1, 0}, uint8(39))
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		scale := float32(math.Ldexp(1, -int(k%40)))
		for _, typ := range GGUFTypes {
			bs := typ.BlockSize()
			nb := min(4, 1+len(data)/2/bs)
			x := make([]float32, nb*bs)
			if len(data) >= 2 {
				for i := range x {
					j := 2 * i % (len(data) - len(data)%2)
					x[i] = float32(int16(binary.LittleEndian.Uint16(data[j:]))) * scale
				}
			}
			n, _ := typ.RowSize(len(x))
			got := make([]byte, n)
			if err := QuantizeGGUF(got, x, typ); err != nil {
				t.Fatal(err)
			}
			if want := rQuantRowK(x, typ); string(got) != string(want) {
				t.Fatalf("%s of %v (scale %g): bytes differ from the reference", typ, x, scale)
			}
			y := make([]float32, len(x))
			if err := DequantizeGGUF(y, got, typ); err != nil {
				t.Fatal(err)
			}
			wy := rDequantK(got, typ, len(x))
			for i := range y {
				if math.Float32bits(y[i]) != math.Float32bits(wy[i]) {
					t.Fatalf("%s: dequant %d = %g, reference %g", typ, i, y[i], wy[i])
				}
			}
			// the fuzzed bytes as blocks
			if raw := data[:len(data)/typ.TypeSize()*typ.TypeSize()]; len(raw) > 0 {
				m := len(raw) / typ.TypeSize() * bs
				y := make([]float32, m)
				if err := DequantizeGGUF(y, raw, typ); err != nil {
					t.Fatal(err)
				}
				wy := rDequantK(raw, typ, m)
				for i := range y {
					if math.Float32bits(y[i]) != math.Float32bits(wy[i]) && !(y[i] != y[i] && wy[i] != wy[i]) {
						t.Fatalf("%s: raw dequant %d = %g, reference %g", typ, i, y[i], wy[i])
					}
				}
			}
		}
	})
}
