package testgen

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

func TestFactorization(t *testing.T) {
	// The examples of peft's factorization docstring, plus hand-checked ones.
	for _, c := range []struct{ dim, factor, m, n int }{
		{256, -1, 16, 16}, {128, -1, 8, 16}, {127, -1, 1, 127}, {128, 4, 4, 32},
		{12, -1, 3, 4}, {10, -1, 2, 5}, {6, -1, 2, 3}, {1, -1, 1, 1}, {24, 5, 4, 6}, // 5 ∤ 24: divisors up to 5 → (4, 6)
	} {
		if m, n := Factorization(c.dim, c.factor); m != c.m || n != c.n {
			t.Errorf("Factorization(%d, %d) = (%d, %d), want (%d, %d)", c.dim, c.factor, m, n, c.m, c.n)
		}
	}
}

// shapesOf opens dir's adapter_model.safetensors and returns name → shape.
func shapesOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	for _, ti := range f.Tensors {
		out[ti.Name] = fmt.Sprint(ti.Shape)
	}
	return out
}

func TestWriteLycorisShapes(t *testing.T) {
	base := t.TempDir()
	lin := LycoModule{Name: "m.q", In: 12, Out: 10}                   // in 3·4, out 2·5
	conv := LycoModule{Name: "c", In: 6, Out: 4, Kernel: []int{3, 3}} // in 2·3, out 2·2
	for _, c := range []struct {
		name  string
		write func(dir string) (*LycoResult, error)
		want  map[string]string
		forms map[string]string
	}{
		{"loha", func(d string) (*LycoResult, error) {
			return WriteLoHa(d, Lyco{Seed: 1, R: 2, Modules: []LycoModule{lin, conv}})
		}, map[string]string{
			"base_model.model.m.q.hada_w1_a": "[10 2]", "base_model.model.m.q.hada_w1_b": "[2 12]",
			"base_model.model.m.q.hada_w2_a": "[10 2]", "base_model.model.m.q.hada_w2_b": "[2 12]",
			"base_model.model.c.hada_w1_a": "[4 2]", "base_model.model.c.hada_w1_b": "[2 54]",
			"base_model.model.c.hada_w2_a": "[4 2]", "base_model.model.c.hada_w2_b": "[2 54]",
		}, map[string]string{"m.q": "plain", "c": "plain"}},
		{"loha-cp", func(d string) (*LycoResult, error) {
			return WriteLoHa(d, Lyco{Seed: 1, R: 2, EffectiveConv: true, Modules: []LycoModule{conv}})
		}, map[string]string{
			"base_model.model.c.hada_t1": "[2 2 3 3]", "base_model.model.c.hada_w1_a": "[2 4]", "base_model.model.c.hada_w1_b": "[2 6]",
			"base_model.model.c.hada_t2": "[2 2 3 3]", "base_model.model.c.hada_w2_a": "[2 4]", "base_model.model.c.hada_w2_b": "[2 6]",
		}, map[string]string{"c": "cp"}},
		// r=1: 2r < max(out_k, in_n) → w2 decomposed; w1 whole (no decompose_both)
		{"lokr-w1-w2ab", func(d string) (*LycoResult, error) {
			return WriteLoKr(d, Lyco{Seed: 1, R: 1, Modules: []LycoModule{lin}})
		}, map[string]string{
			"base_model.model.m.q.lokr_w1": "[2 3]", "base_model.model.m.q.lokr_w2_a": "[5 1]", "base_model.model.m.q.lokr_w2_b": "[1 4]",
		}, map[string]string{"m.q": "w1+w2ab"}},
		// r=4: 2r ≥ 5 → whole w2; whole w1 → no rank in the shapes
		{"lokr-whole", func(d string) (*LycoResult, error) {
			return WriteLoKr(d, Lyco{Seed: 1, R: 4, Modules: []LycoModule{lin, conv}})
		}, map[string]string{
			"base_model.model.m.q.lokr_w1": "[2 3]", "base_model.model.m.q.lokr_w2": "[5 4]",
			"base_model.model.c.lokr_w1": "[2 2]", "base_model.model.c.lokr_w2": "[2 3 3 3]",
		}, map[string]string{"m.q": "w1+w2", "c": "w1+w2"}},
		// decompose_both with r=1 on out 2·5, in 3·4: 2 < 3 → w1 decomposed too
		{"lokr-w1ab", func(d string) (*LycoResult, error) {
			return WriteLoKr(d, Lyco{Seed: 1, R: 1, DecomposeBoth: true, Modules: []LycoModule{lin}})
		}, map[string]string{
			"base_model.model.m.q.lokr_w1_a": "[2 1]", "base_model.model.m.q.lokr_w1_b": "[1 3]",
			"base_model.model.m.q.lokr_w2_a": "[5 1]", "base_model.model.m.q.lokr_w2_b": "[1 4]",
		}, map[string]string{"m.q": "w1ab+w2ab"}},
		{"lokr-cp", func(d string) (*LycoResult, error) {
			return WriteLoKr(d, Lyco{Seed: 1, R: 1, EffectiveConv: true, Modules: []LycoModule{conv}})
		}, map[string]string{
			"base_model.model.c.lokr_w1": "[2 2]", "base_model.model.c.lokr_t2": "[1 1 3 3]",
			"base_model.model.c.lokr_w2_a": "[1 2]", "base_model.model.c.lokr_w2_b": "[1 3]",
		}, map[string]string{"c": "w1+cp"}},
		{"lokr-conv-w2ab", func(d string) (*LycoResult, error) {
			return WriteLoKr(d, Lyco{Seed: 1, R: 1, Modules: []LycoModule{conv}})
		}, map[string]string{
			"base_model.model.c.lokr_w1": "[2 2]", "base_model.model.c.lokr_w2_a": "[2 1]", "base_model.model.c.lokr_w2_b": "[1 27]",
		}, map[string]string{"c": "w1+w2ab"}},
		{"vera", func(d string) (*LycoResult, error) {
			return WriteVeRA(d, VeRA{Seed: 1, R: 3, Modules: []LycoModule{{Name: "a", In: 5, Out: 7}, {Name: "b", In: 9, Out: 4}}})
		}, map[string]string{
			"base_model.vera_A": "[3 9]", "base_model.vera_B": "[7 3]",
			"base_model.model.a.vera_lambda_b": "[7]", "base_model.model.a.vera_lambda_d": "[3]",
			"base_model.model.b.vera_lambda_b": "[4]", "base_model.model.b.vera_lambda_d": "[3]",
		}, map[string]string{"a": "vera", "b": "vera"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(base, c.name)
			res, err := c.write(dir)
			if err != nil {
				t.Fatal(err)
			}
			got := shapesOf(t, dir)
			if len(got) != len(c.want) {
				t.Errorf("tensors %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s: shape %s, want %s", k, got[k], v)
				}
			}
			for name, form := range c.forms {
				if res.Modules[name].Form != form {
					t.Errorf("%s: form %s, want %s", name, res.Modules[name].Form, form)
				}
			}
			var cfg map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg["peft_type"] == nil || cfg["r"] == nil {
				t.Errorf("config %s", b)
			}
		})
	}
}

// TestLycorisRefDeltaHand checks RefDelta on values worked out by hand.
func TestLycorisRefDeltaHand(t *testing.T) {
	// LoHa plain, out 2, in 2, r 1, s = 0.5:
	// w1a·w1b = [1;2]·[3 4] = [[3,4],[6,8]]; w2a·w2b = [1;-1]·[1 2] = [[1,2],[-1,-2]]
	// ⊙ = [[3,8],[-6,-16]]; ·0.5 = [[1.5,4],[-3,-8]]
	loha := &Truth{Kind: "loha", Rank: 1, Scale: 0.5, In: 2, Out: 2, Values: map[string][]float32{
		"hada_w1_a": {1, 2}, "hada_w1_b": {3, 4}, "hada_w2_a": {1, -1}, "hada_w2_b": {1, 2}}}
	// LoHa CP, out 1, in 1, kernel 1×2, r 1: factor i = t_i[0,0,q]·wa·wb
	// t1 = [1,2], w1a = 2, w1b = 3 → [6,12]; t2 = [1,-1], w2a = 1, w2b = 1 → [1,-1]; s = 1 → [6,-12]
	cp := &Truth{Kind: "loha", Rank: 1, Scale: 1, In: 1, Out: 1, Kernel: []int{1, 2}, Values: map[string][]float32{
		"hada_t1": {1, 2}, "hada_w1_a": {2}, "hada_w1_b": {3}, "hada_t2": {1, -1}, "hada_w2_a": {1}, "hada_w2_b": {1}}}
	// LoKr: W1 = [[1,2]] (1×2), W2 = [[1],[3]] (2×1), s = 2:
	// kron = [[1,2],[3,6]] → ·2 = [[2,4],[6,12]]
	lokr := &Truth{Kind: "lokr", Rank: 4, Scale: 2, In: 2, Out: 2, outL: 1, inM: 2, outK: 2, inN: 1, Values: map[string][]float32{
		"lokr_w1": {1, 2}, "lokr_w2": {1, 3}}}
	// VeRA: r 1, A = [[1,2,5]] (max_in 3), B = [[2],[1]], λd = [3], λb = [1,-1], in 2:
	// ΔW[o,i] = λb[o]·B[o]·3·A[i] → [[6,12],[-3,-6]]
	vera := &Truth{Kind: "vera", Rank: 1, Scale: 1, In: 2, Out: 2, inM: 3, Values: map[string][]float32{
		"vera_A": {1, 2, 5}, "vera_B": {2, 1}, "vera_lambda_d": {3}, "vera_lambda_b": {1, -1}}}
	for _, c := range []struct {
		name string
		tr   *Truth
		want []float64
	}{
		{"loha", loha, []float64{1.5, 4, -3, -8}},
		{"loha-cp", cp, []float64{6, -12}},
		{"lokr", lokr, []float64{2, 4, 6, 12}},
		{"vera", vera, []float64{6, 12, -3, -6}},
	} {
		got := c.tr.RefDelta()
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: RefDelta = %v, want %v", c.name, got, c.want)
		}
	}
}
