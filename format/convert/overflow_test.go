package convert

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

// ovLoad writes and loads a PEFT LoRA (q_proj 8×8, v_proj 4×8, r 2) in
// dtype dt with the given config fields after "r": 2; big sets q_proj's
// lora_B to 1e5.
func ovLoad(t *testing.T, dt safetensors.DType, cfg string, big bool) *adapter.Adapter {
	t.Helper()
	dir := t.TempDir()
	const p = "base_model.model.model.layers.0.self_attn."
	ts := []safetensors.Tensor{
		r0Tensor(p+"q_proj.lora_A.weight", 2, 8), r0Tensor(p+"q_proj.lora_B.weight", 8, 2),
		r0Tensor(p+"v_proj.lora_A.weight", 2, 8), r0Tensor(p+"v_proj.lora_B.weight", 4, 2),
	}
	if big {
		for i := 0; i < 16; i++ {
			binary.LittleEndian.PutUint32(ts[1].Data[4*i:], math.Float32bits(1e5))
		}
	}
	for i := range ts {
		v := make([]float32, len(ts[i].Data)/4)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(ts[i].Data[4*j:]))
		}
		b := make([]byte, len(v)*dt.Bits()/8)
		if err := safetensors.FromFloat32(b, v, dt); err != nil {
			t.Fatal(err)
		}
		ts[i].DType, ts[i].Data = dt, b
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	body := `{"peft_type": "LORA", "r": 2, ` + cfg + `, "target_modules": ["q_proj", "v_proj"]}`
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, dir)
}

// ToGGUF: a scale whose alpha (scale·r) float32 cannot hold is multiplied
// into lora_b (the warning now says why, instead of "module scales
// differ"), which is exact when the products fit the output type; a value
// the type cannot hold (F16 above 65504 — also q8_0's f16 fallback —, a
// product beyond float32) was written as Inf and is refused, naming the
// module, the tensor and the rule.
func TestToGGUFOverflow(t *testing.T) {
	huge := ovLoad(t, safetensors.F32, `"lora_alpha": 4e38`, false)  // scale 2e38: lora_b·s ≤ 5e37
	huger := ovLoad(t, safetensors.F32, `"lora_alpha": 3e39`, false) // scale 1.5e39: 0.25·s beyond float32
	big := ovLoad(t, safetensors.F32, `"lora_alpha": 4`, true)       // lora_B 1e5, scale 2
	for _, tc := range []struct {
		name    string
		a       *adapter.Adapter
		outtype string
		refuse  []string // substrings of the refusal; nil: converts
	}{
		{"alpha beyond float32, f32", huge, "f32", nil},
		{"alpha beyond float32, bf16", huge, "bf16", nil},
		{"alpha beyond float32, f16", huge, "f16", []string{"blk.0.attn_q.weight.lora_b", "(the module's scale 2e+38 multiplied into lora_b", "F16 (at most 65504"}},
		{"alpha beyond float32, q8_0 (lora_b falls back to f16)", huge, "q8_0", []string{".lora_b", "F16 (at most 65504"}},
		{"baked product beyond float32", huger, "f32", []string{"model.layers.0.self_attn.", "+Inf", "beyond the range of float32"}},
		{"lora_B 1e5, f16", big, "f16", []string{`module "model.layers.0.self_attn.q_proj"`, "blk.0.attn_q.weight.lora_b", "value 100000", "F16 (at most 65504"}},
		{"lora_B 1e5, f32", big, "f32", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "a.gguf")
			res, err := ToGGUF(tc.a, out, GGUFOptions{Arch: "qwen2", OutType: tc.outtype})
			if tc.refuse == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tc.a == huge && (!res.Baked || !strings.Contains(strings.Join(res.Warnings, "\n"), "which the float32 adapter.lora.alpha cannot hold")) {
					t.Errorf("baked %v, warnings %q", res.Baked, res.Warnings)
				}
				return
			}
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("err %v, want ErrRefused", err)
			}
			for _, s := range tc.refuse {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Error("output written")
			}
		})
	}
}

// ToKohya of a PEFT LoHa or LoKr whose .alpha (scale·r) float32 cannot
// hold wrote .alpha = +Inf; refused as ToKohya refuses it for LoRA.
func TestToKohyaLycoAlphaOverflow(t *testing.T) {
	for _, tc := range []struct {
		name string
		loha bool
		spec testgen.Lyco
	}{
		{"loha", true, testgen.Lyco{Seed: 1, R: 4, Alpha: 1e39, Modules: []testgen.LycoModule{{Name: lyQ, In: 16, Out: 24}}}},
		{"lokr whole factors split (scale != 1)", false, testgen.Lyco{Seed: 5, R: 16, Alpha: 1e40, Modules: []testgen.LycoModule{{Name: lyQ, In: 16, Out: 24}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var err error
			if tc.loha {
				_, err = testgen.WriteLoHa(filepath.Join(dir, "src"), tc.spec)
			} else {
				_, err = testgen.WriteLoKr(filepath.Join(dir, "src"), tc.spec)
			}
			if err != nil {
				t.Fatal(err)
			}
			a := mustLoad(t, filepath.Join(dir, "src"))
			out := filepath.Join(dir, "k.safetensors")
			_, err = ToKohya(a, out, Options{})
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("err %v, want ErrRefused", err)
			}
			for _, s := range []string{lyQ, ".alpha", "float32 kohya .alpha cannot hold"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Error("output written")
			}
		})
	}
}

// ToMLX multiplies a module's scale over MLX's single scale into lora_b:
// a ratio float32 cannot hold, or a product beyond the dtype, was written
// as Inf (or a ratio below float32 as 0) and is refused.
func TestToMLXScaleOverflow(t *testing.T) {
	// q_proj gets alpha_pattern 1e300 (ratio 5e299 over v_proj's 2)
	ratio := ovLoad(t, safetensors.F32, `"lora_alpha": 4, "alpha_pattern": {"q_proj": 1e300}`, false)
	// F16 adapter, q_proj scale 2e6 over 2: lora_b·1e6 beyond F16
	f16 := ovLoad(t, safetensors.F16, `"lora_alpha": 4, "alpha_pattern": {"q_proj": 4e6}`, false)
	for _, tc := range []struct {
		name string
		a    *adapter.Adapter
		want []string
	}{
		{"ratio beyond float32", ratio, []string{"model.layers.0.self_attn.", "a factor float32 cannot hold"}},
		{"F16 product", f16, []string{"model.layers.0.self_attn.q_proj.lora_b", "beyond the range of F16"}},
	} {
		out := filepath.Join(t.TempDir(), "mlx")
		_, err := ToMLX(tc.a, out, Options{})
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("%s: err %v, want ErrRefused", tc.name, err)
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, s)
			}
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("%s: output written", tc.name)
		}
	}
}
