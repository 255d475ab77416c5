package ops

import (
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

// TestApplyGeneratedLyco folds adapters from internal/testgen's LoHa, LoKr
// and VeRA generators (which re-implement PEFT's shape choices) into F32 and
// F64 bases and compares every weight with base + the generator's float64
// RefDelta: whole-factor LoKr (scale α/r from the config, no rank in the
// shapes), LoKr and LoHa CP convs, VeRA with several modules (in_features
// from the base weight) and fan_in_fan_out.
func TestApplyGeneratedLyco(t *testing.T) {
	lin := testgen.LycoModule{Name: "model.layers.0.q_proj", In: 12, Out: 10}
	conv := testgen.LycoModule{Name: "unet.conv_in", In: 6, Out: 4, Kernel: []int{3, 3}}
	cases := []struct {
		name  string
		dtype safetensors.DType
		fifo  bool
		write func(dir string) (*testgen.LycoResult, error)
	}{
		{"loha-cp", safetensors.F32, false, func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoHa(d, testgen.Lyco{Seed: 31, R: 2, Alpha: 3, EffectiveConv: true, Modules: []testgen.LycoModule{lin, conv}})
		}},
		{"loha-f64", safetensors.F64, false, func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoHa(d, testgen.Lyco{Seed: 32, R: 3, Alpha: 4, Modules: []testgen.LycoModule{lin, conv}})
		}},
		{"lokr-whole", safetensors.F64, false, func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: 33, R: 8, Alpha: 4, Modules: []testgen.LycoModule{lin, conv, {Name: "x.k_proj", In: 12, Out: 10, Rank: 6, Alpha: 9}}})
		}},
		{"lokr-cp", safetensors.F32, false, func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: 34, R: 1, Alpha: 2, EffectiveConv: true, DecomposeBoth: true,
				Modules: []testgen.LycoModule{{Name: "unet.down.conv", In: 16, Out: 36, Kernel: []int{3, 2}}, conv}})
		}},
		{"vera-many-fifo", safetensors.F32, true, func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteVeRA(d, testgen.VeRA{Seed: 35, R: 3, FanInFanOut: true, Modules: []testgen.LycoModule{{Name: "h.0.c_attn", In: 8, Out: 24}, {Name: "h.0.c_fc", In: 8, Out: 32}}})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := c.write(filepath.Join(dir, "adapter"))
			if err != nil {
				t.Fatal(err)
			}
			var specs []baseTensor
			for name, tr := range res.Modules {
				shape := append([]int{tr.Out, tr.In}, tr.Kernel...)
				if c.fifo {
					shape = []int{tr.In, tr.Out} // Conv1D stores (in, out)
				}
				specs = append(specs, baseTensor{Name: name + ".weight", DType: c.dtype, Shape: shape})
			}
			specs = newBase(36, specs)
			base := filepath.Join(dir, "model.safetensors")
			writeBase(t, base, specs)
			got, rep := applyOne(t, base, res.Dir, ApplyParams{})
			if rep.Applied != len(res.Modules) {
				t.Fatalf("applied %d of %d: %+v", rep.Applied, len(res.Modules), rep.Modules)
			}
			for _, s := range specs {
				tr := res.Modules[s.Name[:len(s.Name)-len(".weight")]]
				d := tr.RefDelta()
				if c.fifo {
					d = transposeF64(d, tr.Out, len(d)/tr.Out)
				}
				want := append([]float64(nil), s.Values...)
				for i, x := range d {
					want[i] += x
				}
				checkClose(t, s.Name, s.DType, got[s.Name], want)
			}
		})
	}
}
