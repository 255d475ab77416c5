package adapter

import (
	"math"
	"math/rand/v2"
	"testing"
)

// WritePEFT's alpha must give back the module's scale under PEFT's float64
// division lora_alpha / r: exactly whenever some float alpha does, and
// otherwise within one unit in the last place; the module's own alpha is
// kept when it is exact.
func TestAlphaForScale(t *testing.T) {
	tests := []struct {
		scale float64
		r     int
		alpha float64 // the module's own alpha
		want  float64
	}{
		{1.0 / 49, 49, 1, 1},                  // own alpha kept, not 0.9999999999999999
		{0.1, 10, 1, 1},                       // bloom: alpha 1, r 10
		{4, 4, 16, 16},                        // sd15: alpha 16, r 4
		{1.0 / 49, 49, 0, 0.9999999999999999}, // no own alpha: the float64 product, which divides back
		{2, 8, math.NaN(), 16},
	}
	for _, tt := range tests {
		if got := alphaForScale(tt.scale, tt.r, tt.alpha); got != tt.want {
			t.Errorf("alphaForScale(%v, %d, %v) = %v, want %v", tt.scale, tt.r, tt.alpha, got, tt.want)
		}
	}

	rng := rand.New(rand.NewPCG(1, 1))
	ulp := func(x float64) float64 { return math.Nextafter(math.Abs(x), math.Inf(1)) - math.Abs(x) }
	inexact := 0
	for range 5000 {
		scale := rng.Float64() * math.Pow(10, float64(rng.IntN(7)-3))
		r := 1 + rng.IntN(512)
		a := alphaForScale(scale, r, math.NaN())
		q := a / float64(r)
		if q == scale {
			continue
		}
		inexact++
		if math.Abs(q-scale) > ulp(scale) {
			t.Fatalf("scale %v r %d: alpha %v gives %v, more than 1 ulp off", scale, r, a, q)
		}
		// No float alpha near the product may divide back exactly.
		p := scale * float64(r)
		for k, x := -8, p; k <= 8; k++ {
			x = p
			for range abs(k) {
				x = math.Nextafter(x, math.Copysign(math.Inf(1), float64(k)))
			}
			if x/float64(r) == scale {
				t.Fatalf("scale %v r %d: alpha %v is exact but %v was returned", scale, r, x, a)
			}
		}
	}
	t.Logf("%d of 5000 random scales have no exact alpha; all within 1 ulp", inexact)
}

func abs(k int) int {
	if k < 0 {
		return -k
	}
	return k
}
