package quant

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// TestFold quantizes a base file, folds a rank-2 update into one weight and
// checks: the replaced tensors keep names/dtypes/shapes, the new values
// dequantize close to W + ΔW (within the scheme's error), the reported extra
// error is the round trip of W + ΔW, and an update of zero on a weight
// reproduces its bytes (for schemes whose round trip is idempotent).
func TestFold(t *testing.T) {
	for _, p := range []Params{{Scheme: SchemeNF4}, {Scheme: SchemeNF4, DoubleQuant: true}, {Scheme: SchemeInt8},
		{Scheme: SchemeFP8E4M3, Granularity: "block:128"}, {Scheme: SchemeInt8, Granularity: "channel"}} {
		dir := t.TempDir()
		base := filepath.Join(dir, "base.safetensors")
		w0 := normals(64*160, 3)
		other := normals(40, 4)
		err := safetensors.WriteFile(base, []safetensors.Tensor{
			{Name: "l.weight", DType: safetensors.F32, Shape: []int{64, 160}, Data: f32Bytes(w0)},
			{Name: "l.bias", DType: safetensors.F32, Shape: []int{40}, Data: f32Bytes(other)},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		qpath := filepath.Join(dir, "q.safetensors")
		if _, err := QuantizeFile(base, qpath, FileOptions{Params: p}); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(qpath)
		if err != nil {
			t.Fatal(err)
		}
		ix := NewIndex(f, f.Names())
		d, ok := ix.Weights["l.weight"]
		if !ok || ix.Owner[d.Keys[1]] != "l.weight" {
			t.Fatalf("%+v: index %+v", p, ix)
		}
		before, _, _, err := Dequantize(f, d)
		if err != nil {
			t.Fatal(err)
		}
		// ΔW = B·A with B 64×2, A 2×160, small.
		a, b := normals(2*160, 5), normals(64*2, 6)
		res, err := Fold(f, d, func(w []float32, shape []int) error {
			for i := 0; i < shape[0]; i++ {
				for j := 0; j < shape[1]; j++ {
					w[i*shape[1]+j] += 0.05 * (b[2*i]*a[j] + b[2*i+1]*a[160+j])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Tensors) != len(d.Keys) {
			t.Fatalf("%+v: %d tensors for %d keys", p, len(res.Tensors), len(d.Keys))
		}
		m := memSource{}
		for i, tt := range res.Tensors {
			orig, _ := f.Tensor(d.Keys[i])
			if tt.Name != d.Keys[i] || tt.DType != orig.DType {
				t.Errorf("%+v: tensor %d = %s %s, want %s %s", p, i, tt.Name, tt.DType, orig.Name, orig.DType)
			}
			if !slices.Equal(tt.Shape, orig.Shape) && i != len(res.Tensors)-1 {
				t.Errorf("%+v: %s shape %v, was %v", p, tt.Name, tt.Shape, orig.Shape)
			}
			m[tt.Name] = tt
		}
		nd := Detect(m, d.Keys)
		after, _, _, err := Dequantize(m, nd[0])
		if err != nil {
			t.Fatal(err)
		}
		// Reference: W_deq + ΔW in float64, compared with the requantized values.
		var se, n float64
		for i := 0; i < 64; i++ {
			for j := 0; j < 160; j++ {
				want := float64(before[i*160+j]) + 0.05*(float64(b[2*i])*float64(a[j])+float64(b[2*i+1])*float64(a[160+j]))
				e := float64(after[i*160+j]) - want
				se += e * e
				n++
			}
		}
		if rm := se / n; rm > 0.12*0.12 || res.Extra.RMSE == 0 || abs64(sqrt64(rm)-res.Extra.RMSE) > 1e-6 {
			t.Errorf("%+v: fold RMSE² %g, reported extra RMSE %g", p, rm, res.Extra.RMSE)
		}
		// Zero update: NF4 without double quant and FP8 block reproduce their bytes.
		if (p.Scheme == SchemeNF4 && !p.DoubleQuant) || p.Scheme == SchemeFP8E4M3 {
			r0, err := Fold(f, d, func([]float32, []int) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			for i, tt := range r0.Tensors {
				orig, _ := f.Data(d.Keys[i])
				if !bytes.Equal(orig, tt.Data) {
					t.Errorf("%+v: zero update changed %s", p, tt.Name)
				}
			}
		}
		f.Close()
	}
}

func abs64(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func sqrt64(x float64) float64 {
	z := x
	if z == 0 {
		return 0
	}
	for i := 0; i < 60; i++ {
		z = (z + x/z) / 2
	}
	return z
}
