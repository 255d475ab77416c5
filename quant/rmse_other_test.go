package quant

import "testing"

type rmseCase struct {
	name string
	want float64
	run  func([]float32) []float32
}

// rmseCasesOther returns the reference-table rows of the schemes other than
// NF4/FP4.
func rmseCasesOther(t *testing.T) []struct {
	name string
	want float64
	run  func([]float32) []float32
} {
	cases := []rmseCase{
		{"int8-rows/4096", 0.00871, func(x []float32) []float32 {
			rows, cols := len(x)/4096, 4096
			q := make([]int8, len(x))
			s := make([]float32, rows)
			out := make([]float32, len(x))
			if err := QuantizeInt8Rows(q, s, x, rows, cols); err != nil {
				t.Fatal(err)
			}
			if err := DequantizeInt8Rows(out, q, s, rows, cols); err != nil {
				t.Fatal(err)
			}
			return out
		}},
	}
	for _, f := range []FP8Format{E4M3, E5M2} {
		want := 0.0265
		if f == E5M2 {
			want = 0.0528
		}
		cases = append(cases, rmseCase{"fp8-" + f.String() + "/tensor", want, func(x []float32) []float32 {
			q := make([]uint8, len(x))
			s := make([]float32, 1)
			out := make([]float32, len(x))
			if err := QuantizeFP8(q, s, x, 1, len(x), f, Granularity{}); err != nil {
				t.Fatal(err)
			}
			if err := DequantizeFP8(out, q, s, 1, len(x), f, Granularity{}); err != nil {
				t.Fatal(err)
			}
			return out
		}})
	}
	for _, c := range []struct {
		typ  GGUFType
		want float64
	}{{GGUFQ4_0, 0.0859}, {GGUFQ4_1, 0.0782}, {GGUFQ8_0, 0.00536}} {
		typ := c.typ
		cases = append(cases, rmseCase{"gguf-" + typ.String(), c.want, func(x []float32) []float32 {
			n, _ := typ.RowSize(len(x))
			b := make([]byte, n)
			out := make([]float32, len(x))
			if err := QuantizeGGUF(b, x, typ); err != nil {
				t.Fatal(err)
			}
			if err := DequantizeGGUF(out, b, typ); err != nil {
				t.Fatal(err)
			}
			return out
		}})
	}
	out := make([]struct {
		name string
		want float64
		run  func([]float32) []float32
	}, len(cases))
	for i, c := range cases {
		out[i].name, out[i].want, out[i].run = c.name, c.want, c.run
	}
	return out
}
