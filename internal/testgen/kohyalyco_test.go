package testgen

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// TestWriteKohyaLyco checks the keys, shapes and scales WriteKohyaLyco
// writes, and RefDelta of one small LoKr against a hand-built kron.
func TestWriteKohyaLyco(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k.safetensors")
	res, err := WriteKohyaLyco(p, KohyaLyco{Seed: 1, Modules: []KohyaLycoModule{
		{Name: "lora_unet_a", Kind: "loha", In: 6, Out: 4, Rank: 2, Alpha: 1},
		{Name: "lora_unet_b", Kind: "loha", In: 3, Out: 5, Kernel: []int{3, 3}, Rank: 2, CP: true},
		{Name: "lora_unet_c", Kind: "lokr", In: 6, Out: 4, Rank: 8, Alpha: 3, W2Whole: true},
		{Name: "lora_unet_d", Kind: "lokr", In: 8, Out: 12, Kernel: []int{3, 3}, Rank: 1, Alpha: 2, CP: true, W1Decomposed: true},
		{Name: "lora_unet_e", Kind: "dora", In: 6, Out: 4, Rank: 2, Alpha: 4},
		{Name: "lora_unet_f", Kind: "dora", In: 3, Out: 5, Kernel: []int{1, 1}, Rank: 1, DoRAInput: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	shapes := map[string][]int{}
	for _, ti := range f.Tensors {
		shapes[ti.Name] = ti.Shape
	}
	want := map[string][]int{
		"lora_unet_a.hada_w1_a": {4, 2}, "lora_unet_a.hada_w2_b": {2, 6}, "lora_unet_a.alpha": {},
		"lora_unet_b.hada_t1": {2, 2, 3, 3}, "lora_unet_b.hada_w1_a": {2, 5}, "lora_unet_b.hada_w2_b": {2, 3},
		"lora_unet_c.lokr_w1": {2, 2}, "lora_unet_c.lokr_w2": {2, 3},
		"lora_unet_d.lokr_w1_a": {3, 1}, "lora_unet_d.lokr_w1_b": {1, 2}, "lora_unet_d.lokr_t2": {1, 1, 3, 3},
		"lora_unet_d.lokr_w2_a": {1, 4}, "lora_unet_d.lokr_w2_b": {1, 4},
		"lora_unet_e.lora_down.weight": {2, 6}, "lora_unet_e.lora_up.weight": {4, 2}, "lora_unet_e.dora_scale": {4, 1},
		"lora_unet_f.lora_down.weight": {1, 3, 1, 1}, "lora_unet_f.dora_scale": {1, 3, 1, 1},
	}
	for k, w := range want {
		g, ok := shapes[k]
		if !ok || len(g) != len(w) {
			t.Errorf("%s: shape %v (present %v), want %v", k, g, ok, w)
			continue
		}
		for i := range w {
			if g[i] != w[i] {
				t.Errorf("%s: shape %v, want %v", k, g, w)
			}
		}
	}
	if _, ok := shapes["lora_unet_b.alpha"]; ok {
		t.Error("alpha 0 wrote an .alpha tensor")
	}
	for name, s := range map[string]float64{"lora_unet_a": 0.5, "lora_unet_b": 1, "lora_unet_c": 1, "lora_unet_d": 2, "lora_unet_e": 2, "lora_unet_f": 1} {
		if res.Scale[name] != s {
			t.Errorf("%s: scale %v, want %v", name, res.Scale[name], s)
		}
	}
	// LoKr c: whole w1 (2,2) ⊗ w2 (2,3), scale 1 (LyCORIS ignores alpha 3)
	c := res.Lyco["lora_unet_c"]
	w1, w2 := c.Values["lokr_w1"], c.Values["lokr_w2"]
	ref := c.RefDelta()
	for l := 0; l < 2; l++ {
		for m := 0; m < 2; m++ {
			for k := 0; k < 2; k++ {
				for n := 0; n < 3; n++ {
					got := ref[(l*2+k)*6+m*3+n]
					if want := float64(w1[l*2+m]) * float64(w2[k*3+n]); math.Abs(got-want) > 1e-12 {
						t.Fatalf("RefDelta[%d,%d] = %v, want %v", l*2+k, m*3+n, got, want)
					}
				}
			}
		}
	}
}
