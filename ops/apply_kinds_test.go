package ops

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/adaptool/adaptool/quant"
	"gonum.org/v1/gonum/mat"
)

// rawTensor is one adapter tensor written by writePEFTDir.
type rawTensor struct {
	name  string
	shape []int
	v     []float32
}

// writePEFTDir writes a PEFT adapter directory from raw tensors and a
// config, independently of format/adapter's writer.
func writePEFTDir(t *testing.T, dir string, cfg map[string]any, ts []rawTensor) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var st []safetensors.Tensor
	for _, r := range ts {
		st = append(st, safetensors.Tensor{Name: r.name, DType: safetensors.F32, Shape: r.shape, Data: safetensors.Float32Bytes(r.v)})
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), st, nil); err != nil {
		t.Fatal(err)
	}
}

func uniform(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.Float64()*2 - 1)
	}
	return v
}

// applyOne folds adapter ad into base and returns the output tensors.
func applyOne(t *testing.T, base, ad string, p ApplyParams) (map[string][]float64, *ApplyReport) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.safetensors")
	p.Base, p.Adapters, p.Verify = base, []AdapterScale{{ad, 1}}, true
	rep, err := Apply(p, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VerifyFailures != 0 || !rep.Verified {
		t.Fatalf("verify failed: %+v", rep.Modules)
	}
	return readAll64(t, out), rep
}

// LoHa (plain and CP conv), LoKr (whole, low-rank and conv factors) and
// VeRA folded in, against the dense formulas written out here with plain
// index arithmetic (torch layouts).
func TestApplyLoHaLoKrVeRA(t *testing.T) {
	dir := t.TempDir()
	specs := newBase(21, []baseTensor{
		{Name: "model.q.weight", DType: safetensors.F32, Shape: []int{6, 5}},
		{Name: "model.conv.weight", DType: safetensors.F32, Shape: []int{4, 2, 3, 3}},
		{Name: "model.k.weight", DType: safetensors.F32, Shape: []int{6, 4}},
		{Name: "model.norm.weight", DType: safetensors.F32, Shape: []int{5}},
	})
	base := filepath.Join(dir, "model.safetensors")
	writeBase(t, base, specs)
	w := map[string][]float64{}
	for _, s := range specs {
		w[s.Name] = s.Values
	}
	r := rand.New(rand.NewPCG(3, 4))
	const P = "base_model.model."

	t.Run("loha", func(t *testing.T) {
		w1a, w1b, w2a, w2b := uniform(r, 6*2), uniform(r, 2*5), uniform(r, 6*2), uniform(r, 2*5)
		// CP conv: t (r,r,3,3), w_a (r,out=4), w_b (r,in=2).
		t1, c1a, c1b := uniform(r, 2*2*9), uniform(r, 2*4), uniform(r, 2*2)
		t2, c2a, c2b := uniform(r, 2*2*9), uniform(r, 2*4), uniform(r, 2*2)
		ad := filepath.Join(dir, "loha")
		writePEFTDir(t, ad, map[string]any{"peft_type": "LOHA", "r": 2, "alpha": 3, "target_modules": []string{"q", "conv"}}, []rawTensor{
			{P + "model.q.hada_w1_a", []int{6, 2}, w1a}, {P + "model.q.hada_w1_b", []int{2, 5}, w1b},
			{P + "model.q.hada_w2_a", []int{6, 2}, w2a}, {P + "model.q.hada_w2_b", []int{2, 5}, w2b},
			{P + "model.conv.hada_t1", []int{2, 2, 3, 3}, t1}, {P + "model.conv.hada_w1_a", []int{2, 4}, c1a}, {P + "model.conv.hada_w1_b", []int{2, 2}, c1b},
			{P + "model.conv.hada_t2", []int{2, 2, 3, 3}, t2}, {P + "model.conv.hada_w2_a", []int{2, 4}, c2a}, {P + "model.conv.hada_w2_b", []int{2, 2}, c2b},
		})
		got, rep := applyOne(t, base, ad, ApplyParams{})
		if rep.Applied != 2 {
			t.Fatalf("applied %d: %+v", rep.Applied, rep.Modules)
		}
		s := 3.0 / 2
		want := append([]float64(nil), w["model.q.weight"]...)
		for o := 0; o < 6; o++ {
			for i := 0; i < 5; i++ {
				var p1, p2 float64
				for k := 0; k < 2; k++ {
					p1 += float64(w1a[o*2+k]) * float64(w1b[k*5+i])
					p2 += float64(w2a[o*2+k]) * float64(w2b[k*5+i])
				}
				want[o*5+i] += s * p1 * p2
			}
		}
		checkClose(t, "loha q", safetensors.F32, got["model.q.weight"], want)
		// rebuild[o,n,h,v] = Σ_ab t[a,b,h,v]·wb[b,n]·wa[a,o]
		cp := func(tt, wa, wb []float32, o, n, h, v int) float64 {
			var x float64
			for a := 0; a < 2; a++ {
				for b := 0; b < 2; b++ {
					x += float64(tt[((a*2+b)*3+h)*3+v]) * float64(wb[b*2+n]) * float64(wa[a*4+o])
				}
			}
			return x
		}
		want = append([]float64(nil), w["model.conv.weight"]...)
		for o := 0; o < 4; o++ {
			for n := 0; n < 2; n++ {
				for h := 0; h < 3; h++ {
					for v := 0; v < 3; v++ {
						want[((o*2+n)*3+h)*3+v] += s * cp(t1, c1a, c1b, o, n, h, v) * cp(t2, c2a, c2b, o, n, h, v)
					}
				}
			}
		}
		checkClose(t, "loha conv (CP)", safetensors.F32, got["model.conv.weight"], want)
	})

	t.Run("lokr", func(t *testing.T) {
		// k: kron(w1 (2,2), w2_a (3,1)·w2_b (1,2)) = (6,4); conv: kron(w1 (2,1), w2 (2,2,3,3)) = (4,2,3,3).
		w1, w2a, w2b := uniform(r, 4), uniform(r, 3), uniform(r, 2)
		cw1, cw2 := uniform(r, 2), uniform(r, 2*2*9)
		ad := filepath.Join(dir, "lokr")
		writePEFTDir(t, ad, map[string]any{"peft_type": "LOKR", "r": 1, "alpha": 3, "target_modules": []string{"k", "conv"}}, []rawTensor{
			{P + "model.k.lokr_w1", []int{2, 2}, w1}, {P + "model.k.lokr_w2_a", []int{3, 1}, w2a}, {P + "model.k.lokr_w2_b", []int{1, 2}, w2b},
			{P + "model.conv.lokr_w1", []int{2, 1}, cw1}, {P + "model.conv.lokr_w2", []int{2, 2, 3, 3}, cw2},
		})
		got, _ := applyOne(t, base, ad, ApplyParams{})
		s := 3.0
		want := append([]float64(nil), w["model.k.weight"]...)
		for i := 0; i < 2; i++ {
			for j := 0; j < 2; j++ {
				for k := 0; k < 3; k++ {
					for l := 0; l < 2; l++ {
						want[(i*3+k)*4+j*2+l] += s * float64(w1[i*2+j]) * float64(w2a[k]) * float64(w2b[l])
					}
				}
			}
		}
		checkClose(t, "lokr k", safetensors.F32, got["model.k.weight"], want)
		// torch.kron(w1[:, :, None, None], w2)[i*2+k, j*2+l, h, v] = w1[i,j]·w2[k,l,h,v]
		want = append([]float64(nil), w["model.conv.weight"]...)
		for i := 0; i < 2; i++ {
			for k := 0; k < 2; k++ {
				for l := 0; l < 2; l++ {
					for hv := 0; hv < 9; hv++ {
						want[((i*2+k)*2+l)*9+hv] += s * float64(cw1[i]) * float64(cw2[(k*2+l)*9+hv])
					}
				}
			}
		}
		checkClose(t, "lokr conv", safetensors.F32, got["model.conv.weight"], want)
	})

	t.Run("vera", func(t *testing.T) {
		va, vb, lb, ld := uniform(r, 2*7), uniform(r, 8*2), uniform(r, 6), uniform(r, 2)
		mods := []rawTensor{{P + "model.q.vera_lambda_b", []int{6}, lb}, {P + "model.q.vera_lambda_d", []int{2}, ld}}
		ad := filepath.Join(dir, "vera")
		cfg := map[string]any{"peft_type": "VERA", "r": 2, "target_modules": []string{"q"}, "save_projection": true}
		writePEFTDir(t, ad, cfg, append([]rawTensor{{"base_model.vera_A", []int{2, 7}, va}, {"base_model.vera_B", []int{8, 2}, vb}}, mods...))
		got, _ := applyOne(t, base, ad, ApplyParams{})
		want := append([]float64(nil), w["model.q.weight"]...)
		for o := 0; o < 6; o++ {
			for i := 0; i < 5; i++ {
				for k := 0; k < 2; k++ {
					want[o*5+i] += float64(lb[o]) * float64(vb[o*2+k]) * float64(ld[k]) * float64(va[k*7+i])
				}
			}
		}
		checkClose(t, "vera q", safetensors.F32, got["model.q.weight"], want)
		// Without the shared projections: refused, nothing written.
		noProj := filepath.Join(dir, "vera-noproj")
		cfg["save_projection"] = false
		writePEFTDir(t, noProj, cfg, mods)
		out := filepath.Join(dir, "x.safetensors")
		rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{noProj, 1}}}, RunOptions{Output: out})
		if err == nil || rep.Refused != 1 {
			t.Fatalf("VeRA without projections: %v", err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatal("refused apply wrote output")
		}
	})
}

// KaSA: the base loses its r smallest singular triplets, then ΔW =
// s·B·diag(d)·A is added ("keep": ΔW only; "truncate-repo": in − r
// components kept, so a wide weight keeps them all). The bases are built
// from known SVDs, so the truncations are known without computing one.
func TestApplyKaSA(t *testing.T) {
	dir := t.TempDir()
	const r = 2
	rng := rand.New(rand.NewPCG(8, 9))
	orth := func(n, k int) *mat.Dense {
		x := mat.NewDense(n, k, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < k; j++ {
				x.Set(i, j, rng.NormFloat64())
			}
		}
		var qr mat.QR
		qr.Factorize(x)
		var q mat.Dense
		qr.QTo(&q)
		return mat.DenseCopyOf(q.Slice(0, n, 0, k))
	}
	// known returns U·diag(σ)·Vᵀ (out×in) and its truncation to `keep` terms.
	known := func(out, in int, sigma []float64, keep int) (full, trunc []float64) {
		k := len(sigma)
		u, v := orth(out, k), orth(in, k)
		full, trunc = make([]float64, out*in), make([]float64, out*in)
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				for j := 0; j < k; j++ {
					x := sigma[j] * u.At(o, j) * v.At(i, j)
					full[o*in+i] += x
					if j < keep {
						trunc[o*in+i] += x
					}
				}
			}
		}
		return full, trunc
	}
	tallFull, tallTrunc := known(6, 5, []float64{5, 4, 3, 0.5, 0.25}, 3) // out 6, in 5: k = 5
	wideFull, wideTrunc := known(3, 6, []float64{4, 2, 0.5}, 1)          // out 3, in 6: k = 3
	base := filepath.Join(dir, "model.safetensors")
	writeBase(t, base, []baseTensor{
		{Name: "model.q.weight", DType: safetensors.F64, Shape: []int{6, 5}, Values: tallFull},
		{Name: "model.w.weight", DType: safetensors.F64, Shape: []int{3, 6}, Values: wideFull},
	})
	ad := filepath.Join(dir, "kasa")
	res, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 4, R: r, Alpha: 4, KaSA: true, Modules: []testgen.Module{{Name: "model.q", In: 5, Out: 6}, {Name: "model.w", In: 6, Out: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	delta := func(mod string) []float64 {
		f := res.Modules[mod]
		d := make([]float64, f.Out*f.In)
		for o := 0; o < f.Out; o++ {
			for i := 0; i < f.In; i++ {
				for k := 0; k < r; k++ {
					d[o*f.In+i] += 2 * float64(f.B[o*r+k]) * float64(f.Diag[k]) * float64(f.A[k*f.In+i])
				}
			}
		}
		return d
	}
	for _, c := range []struct {
		mode       string
		tall, wide []float64
	}{
		{"", tallTrunc, wideTrunc},
		{"truncate", tallTrunc, wideTrunc},
		{"truncate-repo", tallTrunc, wideFull}, // wide: in − r = 4 ≥ 3 components kept
		{"keep", tallFull, wideFull},
	} {
		got, rep := applyOne(t, base, ad, ApplyParams{KaSA: c.mode})
		if rep.Applied != 2 || rep.Modules[0].Kind != "kasa" {
			t.Fatalf("%q: %+v", c.mode, rep.Modules)
		}
		for name, w := range map[string][]float64{"model.q": c.tall, "model.w": c.wide} {
			d := delta(name)
			for i := range d {
				if want := w[i] + d[i]; math.Abs(got[name+".weight"][i]-want) > 1e-12 {
					t.Fatalf("kasa %q %s[%d] = %v, want %v", c.mode, name, i, got[name+".weight"][i], want)
				}
			}
		}
	}
	if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1}}, KaSA: "bogus"}, RunOptions{DryRun: true}); err == nil {
		t.Fatal("--kasa bogus accepted")
	}
}

// With dyadic factors (k/64) and a power-of-two scale the float32 fold
// adds exactly representable products, rounding once, so the output is
// bit-for-bit quantize(dequantize(W) + ΔW) of the float64 reference.
func TestApplyQuantizedExact(t *testing.T) {
	const out, in = 16, 64
	rng := rand.New(rand.NewPCG(5, 5))
	dy := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.IntN(17)-8) / 64
		}
		return v
	}
	for _, p := range []quant.Params{{Scheme: quant.SchemeNF4}, {Scheme: quant.SchemeInt8}, {Scheme: quant.SchemeFP8E4M3, Granularity: "channel"}} {
		t.Run(string(p.Scheme), func(t *testing.T) {
			dir := t.TempDir()
			ts := quantized(t, "model.q.weight", []int{out, in}, safetensors.F32, gaussian(9, out*in, 0.02), p, false)
			base := filepath.Join(dir, "model.safetensors")
			if err := safetensors.WriteFile(base, ts, nil); err != nil {
				t.Fatal(err)
			}
			a, b := dy(in), dy(out)
			ad := filepath.Join(dir, "lora")
			writePEFTDir(t, ad, map[string]any{"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": []string{"q"}}, []rawTensor{
				{"base_model.model.model.q.lora_A.weight", []int{1, in}, a}, {"base_model.model.model.q.lora_B.weight", []int{out, 1}, b},
			})
			dst := filepath.Join(dir, "out.safetensors")
			if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1.0 / 16}}}, RunOptions{Output: dst}); err != nil {
				t.Fatal(err)
			}
			bc, _ := safetensors.OpenCheckpoint(base)
			defer bc.Close()
			oc, _ := safetensors.OpenCheckpoint(dst)
			defer oc.Close()
			d := quant.NewIndex(bc, bc.Names()).Weights["model.q.weight"]
			w0, shape, dt, err := quant.Dequantize(bc, d)
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, len(w0))
			for o := 0; o < out; o++ {
				for i := 0; i < in; i++ {
					x[o*in+i] = float32(float64(w0[o*in+i]) + float64(b[o])*float64(a[i])/16)
				}
			}
			p.BlockSize = d.Params.BlockSize
			ref, err := quant.QuantizeTensor("model.q.weight", shape, dt, x, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, rt := range ref.Tensors {
				gotB, err := oc.Data(rt.Name)
				if err != nil {
					t.Fatal(err)
				}
				if string(gotB) != string(rt.Data) {
					t.Fatalf("%s differs from quantize(W_deq+ΔW)", rt.Name)
				}
			}
		})
	}
}
