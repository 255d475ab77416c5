package svd

import (
	"errors"
	"math"
	"testing"
)

func TestFnApply(t *testing.T) {
	sigma := []float64{4, 3, 2, 1}
	// power:2 → 16,9,4,1 rescaled by √30/√354.
	pw := math.Sqrt(30) / math.Sqrt(354)
	for _, c := range []struct {
		spec string
		want []float64
	}{
		{"scale:0.5", []float64{2, 1.5, 1, 0.5}},
		{"truncate:2", []float64{4, 3}},
		{"truncate:9", []float64{4, 3, 2, 1}},
		{"energy:0.8", []float64{4, 3}},    // 25/30 = 0.833 ≥ 0.8
		{"energy:0.9", []float64{4, 3, 2}}, // 29/30
		{"soft:1.5", []float64{2.5, 1.5, 0.5, 0}},
		{"shrink:1", []float64{2, 1.5, 1, 0.5}},
		{"power:2", []float64{16 * pw, 9 * pw, 4 * pw, pw}},
		{"weights:1,0,2", []float64{4, 0, 4, 1}},
	} {
		f, err := ParseFn(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if f.String() != c.spec {
			t.Errorf("String() = %q, want %q", f.String(), c.spec)
		}
		got, err := f.Apply(sigma)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: %v, want %v", c.spec, got, c.want)
		}
		for i := range got {
			if !near(got[i], c.want[i], 1e-14) {
				t.Errorf("%s: %v, want %v", c.spec, got, c.want)
				break
			}
		}
	}
	if sigma[0] != 4 {
		t.Error("Apply modified its input")
	}
}

func TestParseFnErrors(t *testing.T) {
	for _, s := range []string{"scale", "bogus:1", "truncate:1.5", "truncate:-1", "energy:0", "energy:1.5", "soft:-1", "shrink:-0.5", "power:0", "scale:NaN", "weights:", "soft:x"} {
		if _, err := ParseFn(s); !errors.Is(err, ErrSpectrumFn) {
			t.Errorf("ParseFn(%q) err = %v, want ErrSpectrumFn", s, err)
		}
	}
	if _, err := (Fn{Op: "weights", Weights: []float64{-1}}).Apply([]float64{1}); !errors.Is(err, ErrSpectrumFn) {
		t.Errorf("negative weight: %v", err)
	}
}
