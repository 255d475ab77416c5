package ops

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// diffFixture writes an adapter with additive full-size deltas (.diff on a
// 2-D weight, .diff/.diff_b on a norm layer, ComfyUI names) and a base
// they fit, and returns the paths and the values written.
func diffFixture(t *testing.T) (adapterPath, basePath string, vals map[string][]float32) {
	t.Helper()
	r := rand.New(rand.NewPCG(11, 12))
	vals = map[string][]float32{}
	mk := func(name string, shape ...int) safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		vals[name] = v
		return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: f32bytes(v)}
	}
	dir := t.TempDir()
	adapterPath = filepath.Join(dir, "diff.safetensors")
	basePath = filepath.Join(dir, "base.safetensors")
	ad := []safetensors.Tensor{
		mk("diffusion_model.blocks.0.k.diff", 6, 5),
		mk("diffusion_model.blocks.0.norm.diff", 6), mk("diffusion_model.blocks.0.norm.diff_b", 6),
	}
	base := []safetensors.Tensor{
		mk("diffusion_model.blocks.0.k.weight", 6, 5), mk("diffusion_model.blocks.0.norm.weight", 6),
		mk("diffusion_model.blocks.0.norm.bias", 6), mk("diffusion_model.blocks.0.v.weight", 6, 5),
	}
	if err := safetensors.WriteFile(adapterPath, ad, nil); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(basePath, base, nil); err != nil {
		t.Fatal(err)
	}
	return adapterPath, basePath, vals
}

// apply adds λ·diff to the weight and λ·diff_b to the bias, elementwise in
// the base's layout (as ComfyUI loads .diff/.diff_b), and copies the rest.
func TestApplyDiff(t *testing.T) {
	adPath, basePath, vals := diffFixture(t)
	const lambda = 0.75
	out := filepath.Join(t.TempDir(), "merged.safetensors")
	rep, err := Apply(ApplyParams{Base: basePath, Adapters: []AdapterScale{{adPath, lambda}}, Verify: true}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VerifyFailures != 0 {
		t.Errorf("%d verify failures", rep.VerifyFailures)
	}
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for base, delta := range map[string]string{
		"diffusion_model.blocks.0.k.weight":    "diffusion_model.blocks.0.k.diff",
		"diffusion_model.blocks.0.norm.weight": "diffusion_model.blocks.0.norm.diff",
		"diffusion_model.blocks.0.norm.bias":   "diffusion_model.blocks.0.norm.diff_b",
		"diffusion_model.blocks.0.v.weight":    "",
	} {
		got, err := f.Float32(base)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range vals[base] {
			want, mag := float64(w), math.Abs(float64(w))
			if delta != "" {
				want += lambda * float64(vals[delta][i])
				mag += math.Abs(lambda * float64(vals[delta][i]))
			}
			// float32 evaluation: λ·d and the sum each rounded once
			if d := math.Abs(float64(got[i]) - want); d > mag*0x1p-23 {
				t.Fatalf("%s[%d] = %v, want %v (|Δ| %g)", base, i, got[i], want, d)
			}
		}
	}
}

// scale and neg multiply diff and diff_b by λ, exactly for λ = 0.5 and −1.
func TestScaleDiff(t *testing.T) {
	adPath, _, vals := diffFixture(t)
	for _, lambda := range []float64{0.5, -1} {
		out := filepath.Join(t.TempDir(), "scaled.safetensors")
		if _, err := ScaleAdapter(adPath, ScaleParams{By: lambda}, RunOptions{Output: out}); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"diffusion_model.blocks.0.k.diff", "diffusion_model.blocks.0.norm.diff", "diffusion_model.blocks.0.norm.diff_b"} {
			got, err := f.Float32(n)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range vals[n] {
				if got[i] != float32(lambda)*x {
					t.Fatalf("λ=%v: %s[%d] = %v, want %v", lambda, n, i, got[i], float32(lambda)*x)
				}
			}
		}
		f.Close()
	}
}

// merge cannot weight a full-size delta into low-rank factors: it refuses
// by kind.
func TestMergeRefusesDiff(t *testing.T) {
	adPath, _, _ := diffFixture(t)
	out := filepath.Join(t.TempDir(), "m.safetensors")
	if _, err := Merge([]string{adPath, adPath}, MergeParams{}, RunOptions{Output: out}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("merge of diff modules: %v, want ErrUnsupported", err)
	}
}
