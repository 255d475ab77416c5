package quant

import (
	"errors"
	"math"
	"testing"
)

func refRNE(x float32) int { return int(math.RoundToEven(float64(x))) }

func TestInt8RowsBitExact(t *testing.T) {
	for _, sh := range [][2]int{{1, 1}, {4, 7}, {33, 100}, {3, 4096}} {
		rows, cols := sh[0], sh[1]
		x := normals(rows*cols, int64(rows+cols))
		if rows > 2 {
			for c := 0; c < cols; c++ {
				x[2*cols+c] = 0
			}
			x[0] = 2.5 // exact halves after scaling are rare; add an extremum
		}
		q := make([]int8, len(x))
		scb := make([]float32, rows)
		if err := QuantizeInt8Rows(q, scb, x, rows, cols); err != nil {
			t.Fatal(err)
		}
		out := make([]float32, len(x))
		if err := DequantizeInt8Rows(out, q, scb, rows, cols); err != nil {
			t.Fatal(err)
		}
		for r := 0; r < rows; r++ {
			am := refAbsMax(x[r*cols : (r+1)*cols])
			if scb[r] != am {
				t.Fatalf("%v: SCB[%d] = %g, want %g", sh, r, scb[r], am)
			}
			f := float32(127) / am
			for c := 0; c < cols; c++ {
				i := r*cols + c
				want := 0
				if am != 0 {
					want = refRNE(x[i] * f)
				}
				if int(q[i]) != want {
					t.Fatalf("%v: q[%d] = %d, want %d", sh, i, q[i], want)
				}
				if wd := float32(want) * (am * float32(7.874015718698502e-3)); out[i] != wd {
					t.Fatalf("%v: dequant[%d] = %g, want %g", sh, i, out[i], wd)
				}
			}
		}
	}
}

func TestInt8GroupsBitExact(t *testing.T) {
	grans := []Granularity{{Kind: PerTensor}, {Kind: PerChannel}, {Kind: PerGroup, Size: 32}, {Kind: PerGroup, Size: 7}}
	for _, asym := range []bool{false, true} {
		for _, g := range grans {
			rows, cols := 9, 224
			x := normals(rows*cols, 5)
			for i := range x[:cols] {
				x[i] = float32(math.Abs(float64(x[i]))) + 0.5 // a positive-only row: lo clamps to 0
			}
			for i := cols; i < 2*cols; i++ {
				x[i] = 0
			}
			ns, _ := g.numScales(rows, cols)
			q := make([]int8, len(x))
			s := make([]float32, ns)
			var zp []int8
			if asym {
				zp = make([]int8, ns)
			}
			if err := QuantizeInt8Groups(q, s, zp, x, rows, cols, g); err != nil {
				t.Fatal(err)
			}
			// Reference: per group, by the compressed-tensors formulas.
			gw := cols
			switch g.Kind {
			case PerGroup:
				gw = g.Size
			case PerTensor:
				gw = rows * cols
			}
			for gi := 0; gi < ns; gi++ {
				var idx []int
				for i := range x {
					r, c := i/cols, i%cols
					var k int
					switch g.Kind {
					case PerTensor:
						k = 0
					case PerChannel:
						k = r
					default:
						k = r*(cols/gw) + c/gw
					}
					if k == gi {
						idx = append(idx, i)
					}
				}
				var lo, hi, am float32
				for _, i := range idx {
					lo = float32(math.Min(float64(lo), float64(x[i])))
					hi = float32(math.Max(float64(hi), float64(x[i])))
					am = float32(math.Max(float64(am), math.Abs(float64(x[i]))))
				}
				var ws, wz float32
				if asym {
					ws = (hi - lo) / 255
					if ws == 0 {
						ws = 1.1920928955078125e-07
					}
					wz = float32(refRNE(float32(math.Max(-128, math.Min(127, float64(-128-lo/ws))))))
				} else {
					ws = am / 127.5
					if ws == 0 {
						ws = 1.1920928955078125e-07
					}
				}
				if s[gi] != ws || (asym && float32(zp[gi]) != wz) {
					t.Fatalf("asym=%v %s group %d: scale %g zp %v, want %g %g", asym, g, gi, s[gi], zp, ws, wz)
				}
				for _, i := range idx {
					v := x[i] / ws
					if asym {
						v += wz
					}
					want := refRNE(float32(math.Max(-128, math.Min(127, float64(v)))))
					if int(q[i]) != want {
						t.Fatalf("asym=%v %s: q[%d] = %d, want %d", asym, g, i, q[i], want)
					}
				}
			}
			out := make([]float32, len(x))
			if err := DequantizeInt8Groups(out, q, s, zp, rows, cols, g); err != nil {
				t.Fatal(err)
			}
			if e := rmse(x, out); e > 0.01 {
				t.Errorf("asym=%v %s: round-trip RMSE %g", asym, g, e)
			}
		}
	}
}

func TestInt8Errors(t *testing.T) {
	x := make([]float32, 12)
	if err := QuantizeInt8Rows(make([]int8, 12), make([]float32, 2), x, 3, 4); !errors.Is(err, ErrLength) {
		t.Errorf("SCB length: %v", err)
	}
	if err := QuantizeInt8Groups(make([]int8, 12), make([]float32, 6), nil, x, 3, 4, Granularity{Kind: PerGroup, Size: 3}); !errors.Is(err, ErrLength) {
		t.Errorf("group not dividing: %v", err)
	}
	if err := QuantizeInt8Groups(make([]int8, 12), make([]float32, 1), nil, x, 3, 4, Granularity{Kind: PerBlock, Size: 2}); !errors.Is(err, ErrScheme) {
		t.Errorf("block int8: %v", err)
	}
}
