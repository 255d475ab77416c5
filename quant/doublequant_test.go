package quant

import (
	"math"
	"testing"
)

func TestDynamicMap(t *testing.T) {
	ref := refDynamicMapFloat64()
	for i, v := range DynamicMap {
		if d := math.Abs(float64(v) - ref[i]); d > 2e-7*max(1e-6, math.Abs(ref[i]))+1e-12 {
			t.Errorf("DynamicMap[%d] = %.9g, definition %.9g", i, v, ref[i])
		}
		if i > 0 && !(DynamicMap[i] > DynamicMap[i-1]) {
			t.Errorf("DynamicMap not strictly ascending at %d", i)
		}
	}
	if DynamicMap[0] != -0.99296875 || DynamicMap[255] != 1 {
		t.Errorf("min/max = %v/%v, want -0.99296875/1", DynamicMap[0], DynamicMap[255])
	}
}

// refQuantBlockwise8 is bitsandbytes' default-backend quantize_blockwise:
// absmax per block, x·(1/absmax), argmin |x−code| (ties to the first).
func refQuantBlockwise8(src []float32, bs int) ([]uint8, []float32) {
	nb := (len(src) + bs - 1) / bs
	q := make([]uint8, len(src))
	am := make([]float32, nb)
	for b := 0; b < nb; b++ {
		lo, hi := b*bs, min((b+1)*bs, len(src))
		am[b] = refAbsMax(src[lo:hi])
		inv := 1 / max(am[b], 1e-38)
		for i := lo; i < hi; i++ {
			q[i] = refArgmin(src[i]*inv, DynamicMap[:])
		}
	}
	return q, am
}

func TestDoubleQuantize(t *testing.T) {
	x := normals(1<<20+64*300+5, 1234)
	absmax := make([]float32, NumBlocks(len(x), 64))
	packed := make([]byte, PackedLen(len(x)))
	if err := QuantizeNF4(packed, absmax, x, 64); err != nil {
		t.Fatal(err)
	}
	d := DoubleQuantize(absmax)
	var sum float64
	for _, v := range absmax {
		sum += float64(v)
	}
	if want := float32(sum / float64(len(absmax))); d.Offset != want {
		t.Fatalf("offset %g, want mean %g", d.Offset, want)
	}
	centered := make([]float32, len(absmax))
	for i, v := range absmax {
		centered[i] = v - d.Offset
	}
	wq, wa := refQuantBlockwise8(centered, 256)
	for i := range wq {
		if d.Q[i] != wq[i] {
			t.Fatalf("code %d = %d, reference %d (value %g)", i, d.Q[i], wq[i], centered[i]*(1/wa[i/256]))
		}
	}
	for i := range wa {
		if d.Absmax[i] != wa[i] {
			t.Fatalf("nested absmax %d = %g, reference %g", i, d.Absmax[i], wa[i])
		}
	}
	rec := make([]float32, len(absmax))
	if err := d.Dequantize(rec); err != nil {
		t.Fatal(err)
	}
	var rel float64
	for i := range rec {
		want := DynamicMap[wq[i]]*wa[i/256] + d.Offset
		if rec[i] != want {
			t.Fatalf("dequantized absmax %d = %g, reference %g", i, rec[i], want)
		}
		e := float64(rec[i]-absmax[i]) / float64(absmax[i])
		rel += e * e
	}
	rel = math.Sqrt(rel / float64(len(rec)))
	t.Logf("absmax relative error rms %.3g (notes: 2.1e-3)", rel)
	if rel > 2.1e-3*1.5 || rel < 2.1e-3/1.5 {
		t.Errorf("absmax relative error rms %.3g, notes measured 2.1e-3", rel)
	}
	// NF4 through the double-quantized absmax: RMSE 0.0920 within 2%.
	out := make([]float32, len(x))
	if err := DequantizeNF4(out, packed, rec, 64); err != nil {
		t.Fatal(err)
	}
	if r := rmse(x, out); math.Abs(r-0.0920) > 0.02*0.0920 {
		t.Errorf("NF4+DQ RMSE %.5f, reference 0.0920", r)
	}
}

func TestDynamicIndexEdges(t *testing.T) {
	// Every code value maps to itself; values beyond ±1 clamp to the ends.
	for i, v := range DynamicMap {
		if got := dynamicIndex(&DynamicMap, v); int(got) != i {
			t.Errorf("dynamicIndex(code[%d]=%g) = %d", i, v, got)
		}
	}
	if dynamicIndex(&DynamicMap, 2) != 255 || dynamicIndex(&DynamicMap, -2) != 0 {
		t.Error("out-of-range values should map to the end codes")
	}
}
