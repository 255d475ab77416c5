package ops

import (
	"crypto/sha256"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/adaptool/adaptool/quant"
)

// gaussian returns n values of N(0, sigma²).
func gaussian(seed uint64, n int, sigma float64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * sigma)
	}
	return v
}

// quantized returns the layout tensors of a weight quantized with p (an
// FP8 "scale_inv" layout renames weight_scale to weight_scale_inv).
func quantized(t *testing.T, name string, shape []int, src safetensors.DType, x []float32, p quant.Params, scaleInv bool) []safetensors.Tensor {
	t.Helper()
	q, err := quant.QuantizeTensor(name, shape, src, x, p)
	if err != nil {
		t.Fatal(err)
	}
	ts := q.Tensors
	if scaleInv {
		for i := range ts {
			if ts[i].Name == name+"_scale" {
				ts[i].Name = name + "_scale_inv"
			}
		}
	}
	return ts
}

// Folding a LoRA into quantized bases of every scheme: (a) every tensor
// outside the touched weight's layout is byte-identical, (b) the output
// dequantizes to exactly quantize(dequantize(W) + ΔW) with the same scheme,
// ΔW computed densely in float64 here, (c) the reported extra error equals
// a recomputation from those values, and --verify stays within its bound.
func TestApplyQuantizedBases(t *testing.T) {
	const (
		mod    = "model.layers.0.self_attn.q_proj"
		other  = "model.layers.0.self_attn.k_proj.weight"
		out    = 48
		in     = 64
		lambda = 0.01
	)
	cases := []struct {
		name     string
		p        quant.Params
		src      safetensors.DType
		scaleInv bool
		sharded  bool
	}{
		{"nf4", quant.Params{Scheme: quant.SchemeNF4}, safetensors.F32, false, false},
		{"nf4-double-quant-bf16", quant.Params{Scheme: quant.SchemeNF4, DoubleQuant: true}, safetensors.BF16, false, false},
		{"nf4-double-quant-sharded", quant.Params{Scheme: quant.SchemeNF4, DoubleQuant: true, BlockSize: 32}, safetensors.F16, false, true},
		{"fp4-128", quant.Params{Scheme: quant.SchemeFP4, BlockSize: 128}, safetensors.F32, false, false},
		{"fp4-double-quant", quant.Params{Scheme: quant.SchemeFP4, DoubleQuant: true}, safetensors.F16, false, false},
		{"int8-llm", quant.Params{Scheme: quant.SchemeInt8}, safetensors.F32, false, true},
		{"int8-channel-asym", quant.Params{Scheme: quant.SchemeInt8, Granularity: "channel", Asymmetric: true}, safetensors.F32, false, false},
		{"int8-group16", quant.Params{Scheme: quant.SchemeInt8, Granularity: "group:16"}, safetensors.F32, false, false},
		{"fp8-e4m3-tensor", quant.Params{Scheme: quant.SchemeFP8E4M3, Granularity: "tensor"}, safetensors.F32, false, false},
		{"fp8-e4m3-channel", quant.Params{Scheme: quant.SchemeFP8E4M3, Granularity: "channel"}, safetensors.F32, false, false},
		{"fp8-e4m3-block16-scale-inv", quant.Params{Scheme: quant.SchemeFP8E4M3, Granularity: "block:16"}, safetensors.F32, true, true},
		{"fp8-e5m2-block16", quant.Params{Scheme: quant.SchemeFP8E5M2, Granularity: "block:16"}, safetensors.F32, false, false},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			w := gaussian(uint64(ci)+1, out*in, 0.02)
			ts := quantized(t, mod+".weight", []int{out, in}, c.src, w, c.p, c.scaleInv)
			ts = append(ts, quantized(t, other, []int{out, in}, c.src, gaussian(100, out*in, 0.02), c.p, c.scaleInv)...)
			norm := gaussian(5, in, 1)
			ts = append(ts, safetensors.Tensor{Name: "model.norm.weight", DType: safetensors.F32, Shape: []int{in}, Data: safetensors.Float32Bytes(norm)})
			base := filepath.Join(dir, "model.safetensors")
			if c.sharded {
				base = filepath.Join(dir, "base")
				if err := safetensors.WriteCheckpoint(base, ts, nil, 2500); err != nil {
					t.Fatal(err)
				}
			} else if err := safetensors.WriteFile(base, ts, nil); err != nil {
				t.Fatal(err)
			}
			ad := filepath.Join(dir, "lora")
			res, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: uint64(ci) + 10, R: 4, Alpha: 8, Modules: []testgen.Module{{Name: mod, In: in, Out: out}}})
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, "merged.safetensors")
			if c.sharded {
				dst = filepath.Join(dir, "merged")
			}
			rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, lambda}}, Verify: true}, RunOptions{Output: dst})
			if err != nil {
				t.Fatal(err)
			}
			bc, err := safetensors.OpenCheckpoint(base)
			if err != nil {
				t.Fatal(err)
			}
			defer bc.Close()
			oc, err := safetensors.OpenCheckpoint(rep.Files[len(rep.Files)-1])
			if err != nil {
				t.Fatal(err)
			}
			defer oc.Close()
			bd, ok := quant.NewIndex(bc, bc.Names()).Weights[mod+".weight"]
			if !ok {
				t.Fatal("base weight not detected as quantized")
			}
			// (a) untouched tensors byte-identical (sha256 of their bytes).
			touched := map[string]bool{}
			for _, k := range bd.Keys {
				touched[k] = true
			}
			if len(oc.Names()) != len(bc.Names()) {
				t.Fatalf("output has %d tensors, base %d", len(oc.Names()), len(bc.Names()))
			}
			for _, n := range bc.Names() {
				a, _ := bc.Data(n)
				b, err := oc.Data(n)
				if err != nil {
					t.Fatal(err)
				}
				ti, _ := bc.Tensor(n)
				to, _ := oc.Tensor(n)
				if ti.DType != to.DType {
					t.Errorf("%s: dtype %s → %s", n, ti.DType, to.DType)
				}
				if !touched[n] && sha256.Sum256(a) != sha256.Sum256(b) {
					t.Errorf("untouched tensor %s changed", n)
				}
			}
			if c.sharded {
				files := map[string]bool{}
				for _, k := range bd.Keys {
					f, _ := bc.Shard(k)
					files[f.Name()] = true
				}
				if len(files) < 2 {
					t.Fatalf("the layout of %s is in %d shard(s); the case should split it", bd.Name, len(files))
				}
			}
			if rep.Quantized != 1 || rep.Touched != len(bd.Keys) || rep.Copied != len(bc.Names())-len(bd.Keys) {
				t.Fatalf("report: quantized %d touched %d copied %d (layout %v)", rep.Quantized, rep.Touched, rep.Copied, bd.Keys)
			}
			// (b) exact: dequantize(output) == roundtrip(quantize(W_deq + ΔW)).
			wdeq, shape, sdt, err := quant.Dequantize(bc, bd)
			if err != nil {
				t.Fatal(err)
			}
			if sdt != c.src && strings.HasPrefix(string(c.p.Scheme), "nf4") {
				t.Fatalf("recorded dtype %s, want %s", sdt, c.src)
			}
			f := res.Modules[mod]
			delta := dense(f, lambda*8.0/4)
			exact := make([]float64, len(wdeq))
			x32 := make([]float32, len(wdeq))
			var dd float64
			for i := range exact {
				exact[i] = float64(wdeq[i]) + delta[i]
				x32[i] = float32(exact[i])
				dd += delta[i] * delta[i]
			}
			p := c.p
			p.BlockSize = bd.Params.BlockSize
			ref, err := quant.QuantizeTensor(mod+".weight", shape, sdt, x32, p)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ref.RoundTrip()
			if err != nil {
				t.Fatal(err)
			}
			od, ok := quant.NewIndex(oc, oc.Names()).Weights[mod+".weight"]
			if !ok || od.Scheme != bd.Scheme || od.Layout != bd.Layout {
				t.Fatalf("output layout %+v, base %+v", od, bd)
			}
			got, _, gdt, err := quant.Dequantize(oc, od)
			if err != nil {
				t.Fatal(err)
			}
			if gdt != sdt {
				t.Errorf("output records dtype %s, base %s", gdt, sdt)
			}
			// The fold accumulates ΔW in float32, so a block's scale may
			// differ from the float64 reference's by an ulp; the codes must
			// be the same (TestApplyQuantizedExact has no such rounding).
			changed := 0
			for i := range want {
				if d := math.Abs(float64(got[i]) - float64(want[i])); d > 0x1p-21*math.Abs(float64(want[i])) {
					t.Fatalf("element %d: output %v, quantize(W_deq+ΔW) %v (exact %v)", i, got[i], want[i], exact[i])
				}
				if got[i] != wdeq[i] {
					changed++
				}
			}
			// (c) the reported extra error, recomputed from the values above.
			var se, me, sx float64
			for i, e := range exact {
				d := float64(got[i]) - e
				se += d * d
				me = max(me, math.Abs(d))
				sx += e * e
			}
			var mr *ApplyModule
			for i := range rep.Modules {
				if rep.Modules[i].Name == mod {
					mr = &rep.Modules[i]
				}
			}
			if len(mr.Tensors) != len(bd.Keys) {
				t.Errorf("module tensors %v, layout %v", mr.Tensors, bd.Keys)
			}
			rq := mr.Requant
			if rq == nil {
				t.Fatal("no requantization error reported")
			}
			n := float64(len(exact))
			near := func(what string, got, want, rel float64) {
				t.Helper()
				if math.Abs(got-want) > rel*math.Abs(want)+1e-12 {
					t.Errorf("%s = %.9g, recomputed %.9g", what, got, want)
				}
			}
			near("rmse", rq.RMSE, math.Sqrt(se/n), 1e-4)
			near("max_abs_error", rq.MaxAbs, me, 1e-4)
			near("delta_fro_norm", rq.DeltaFro, math.Sqrt(dd), 1e-5)
			near("rel_delta_error", *rq.RelDelta, math.Sqrt(se/dd), 1e-4)
			near("snr_db", *rq.SNRdB, 10*math.Log10(sx/se), 1e-5)
			near("values_changed", rq.ValuesChanged, float64(changed)/n, 1e-12)
			if rq.Scheme != string(c.p.Scheme) || rq.Tensor != mod+".weight" {
				t.Errorf("requant report %+v", rq)
			}
			// --verify: fold error = the requantization error, within the bound.
			v := mr.Verify
			if v == nil || !v.Quantized || v.Exceeded || rep.VerifyFailures != 0 || !rep.Verified {
				t.Fatalf("verify %+v failures %d", v, rep.VerifyFailures)
			}
			near("verify rel_fro_error", v.RelFro, math.Sqrt(se/sx), 1e-6)
			near("verify requant_rel_fro_error", v.RequantRelFro, math.Sqrt(se/sx), 1e-6)
			t.Logf("%s: rmse %.3g, rel to ΔW %.3g, snr %.1f dB, values changed %.3f, cosine %.3f", c.name, rq.RMSE, *rq.RelDelta, *rq.SNRdB, rq.ValuesChanged, *rq.Cosine)
		})
	}
}

// A quantized bias or a layout tensor named as a module target is refused,
// and so is an FP8 weight without its scale (checked in
// TestApplyPlanAndRefusals); a dry run plans a quantized fold without
// writing.
func TestApplyQuantizedPlan(t *testing.T) {
	dir := t.TempDir()
	const mod = "model.q"
	ts := quantized(t, mod+".weight", []int{8, 16}, safetensors.F32, gaussian(1, 128, 0.02), quant.Params{Scheme: quant.SchemeNF4}, false)
	base := filepath.Join(dir, "model.safetensors")
	if err := safetensors.WriteFile(base, ts, nil); err != nil {
		t.Fatal(err)
	}
	ad := filepath.Join(dir, "lora")
	if _, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 3, R: 2, Modules: []testgen.Module{{Name: mod, In: 16, Out: 8}}}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out.safetensors")
	rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1}}}, RunOptions{Output: dst, DryRun: true})
	if err != nil || rep.Quantized != 1 || rep.Touched != len(ts) || rep.Applied != 1 {
		t.Fatalf("dry run: %v %+v", err, rep)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("dry run wrote output")
	}
	// Wrong logical shape: the quant_state says 8×16, the LoRA is 8×12.
	bad := filepath.Join(dir, "bad")
	if _, err := testgen.WriteLoRA(bad, testgen.LoRA{Seed: 3, R: 2, Modules: []testgen.Module{{Name: mod, In: 12, Out: 8}}}); err != nil {
		t.Fatal(err)
	}
	if rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{bad, 1}}}, RunOptions{Output: dst}); err == nil || rep.Refused != 1 {
		t.Fatalf("shape mismatch accepted: %v", err)
	}
}

// checkRequantized checks that quantized weight name of the output is
// quantize(exact) with the base's scheme, up to a one-ulp difference of a
// block scale (the fold computes in float32, exact is float64).
func checkRequantized(t *testing.T, bc, oc *safetensors.Checkpoint, name string, exact []float64) {
	t.Helper()
	d := quant.NewIndex(bc, bc.Names()).Weights[name]
	p, shape, dt, err := quant.Full(bc, d)
	if err != nil {
		t.Fatal(err)
	}
	if d.Layout == "bitsandbytes-int8" {
		p.Granularity = ""
	}
	x := make([]float32, len(exact))
	for i, v := range exact {
		x[i] = float32(v)
	}
	q, err := quant.QuantizeTensor(name, shape, dt, x, p)
	if err != nil {
		t.Fatal(err)
	}
	want, err := q.RoundTrip()
	if err != nil {
		t.Fatal(err)
	}
	od, ok := quant.NewIndex(oc, oc.Names()).Weights[name]
	if !ok {
		t.Fatalf("%s: not quantized in the output", name)
	}
	got, _, _, err := quant.Dequantize(oc, od)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(float64(got[i])-float64(want[i])) > 0x1p-21*math.Abs(float64(want[i])) {
			t.Fatalf("%s[%d] = %v, quantize(exact) %v (exact %v)", name, i, got[i], want[i], exact[i])
		}
	}
}

// DoRA, IA3 and modules_to_save into quantized weights (NF4, FP8
// per-channel, int8 compressed-tensors), each against its dense formula on
// the dequantized base, requantized with the base's scheme.
func TestApplyQuantizedOtherKinds(t *testing.T) {
	dir := t.TempDir()
	var ts []safetensors.Tensor
	for _, q := range []struct {
		name  string
		shape []int
		p     quant.Params
	}{
		{"model.q.weight", []int{8, 16}, quant.Params{Scheme: quant.SchemeNF4, BlockSize: 32}},
		{"model.v.weight", []int{8, 16}, quant.Params{Scheme: quant.SchemeFP8E4M3, Granularity: "channel"}},
		{"score.weight", []int{4, 16}, quant.Params{Scheme: quant.SchemeInt8, Granularity: "channel"}},
	} {
		ts = append(ts, quantized(t, q.name, q.shape, safetensors.F32, gaussian(uint64(len(ts)), prodShape(q.shape), 0.5), q.p, false)...)
	}
	base := filepath.Join(dir, "model.safetensors")
	if err := safetensors.WriteFile(base, ts, nil); err != nil {
		t.Fatal(err)
	}
	bc, err := safetensors.OpenCheckpoint(base)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	bix := quant.NewIndex(bc, bc.Names())
	deq := func(name string) []float64 {
		v, _, _, err := quant.Dequantize(bc, bix.Weights[name])
		if err != nil {
			t.Fatal(err)
		}
		return f64(v)
	}
	dora := filepath.Join(dir, "dora")
	dres, err := testgen.WriteLoRA(dora, testgen.LoRA{Seed: 2, R: 2, Alpha: 2, DoRA: true, Modules: []testgen.Module{{Name: "model.q", In: 16, Out: 8}}})
	if err != nil {
		t.Fatal(err)
	}
	mts := filepath.Join(dir, "mts")
	mres, err := testgen.WriteLoRA(mts, testgen.LoRA{Seed: 4, Full: map[string][]int{"score.weight": {4, 16}}})
	if err != nil {
		t.Fatal(err)
	}
	ia3 := filepath.Join(dir, "ia3")
	ires, err := testgen.WriteIA3(ia3, 3, []testgen.IA3Module{{Name: "model.v", In: 16, Out: 8}}, false)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.safetensors")
	rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{dora, 0.1}, {ia3, 1}, {mts, 1}}, Verify: true}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Quantized != 3 || rep.Applied != 2 || rep.Replaced != 1 || rep.VerifyFailures != 0 {
		t.Fatalf("report: quantized %d applied %d replaced %d verify failures %d: %+v", rep.Quantized, rep.Applied, rep.Replaced, rep.VerifyFailures, rep.Modules)
	}
	oc, err := safetensors.OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	// DoRA: W' = m/‖W+ΔW‖_row·(W+ΔW) with the dequantized W.
	f := dres.Modules["model.q"]
	q := deq("model.q.weight")
	doraRef(q, dense(f, 0.1*1), f.Magnitude, 8, 16)
	checkRequantized(t, bc, oc, "model.q.weight", q)
	// IA3: rows scaled by l.
	v := deq("model.v.weight")
	for o := 0; o < 8; o++ {
		for i := 0; i < 16; i++ {
			v[o*16+i] *= float64(ires.Modules["model.v"].IA3[o])
		}
	}
	checkRequantized(t, bc, oc, "model.v.weight", v)
	// modules_to_save: the saved tensor, quantized like the base.
	checkRequantized(t, bc, oc, "score.weight", f64(mres.Full["score.weight"]))
	for _, m := range rep.Modules {
		if m.Requant == nil || m.Verify == nil || !m.Verify.Quantized {
			t.Errorf("%s: requant %+v verify %+v", m.Name, m.Requant, m.Verify)
		}
	}
}

// A real fan_in_fan_out adapter (GPT-2 Conv1D, corpus) folded into a base
// whose weights are NF4 with double quantization: each weight is
// quantize(dequantize(W) + ΔWᵀ).
func TestApplyCorpusQuantized(t *testing.T) {
	dir := filepath.Join(corpusDir(t), "tinygpt2-r4-gt-dim")
	a, err := adapter.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var ts []safetensors.Tensor
	for i, m := range a.Modules {
		if m.Kind == adapter.KindFull || !m.FanInFanOut {
			continue
		}
		shape := []int{m.InFeatures, m.OutFeatures}
		ts = append(ts, quantized(t, m.Name+".weight", shape, safetensors.F16, gaussian(uint64(i), prodShape(shape), 0.02), quant.Params{Scheme: quant.SchemeNF4, DoubleQuant: true}, false)...)
	}
	if len(ts) == 0 {
		t.Fatal("no fan_in_fan_out modules in the corpus adapter")
	}
	tmp := t.TempDir()
	base := filepath.Join(tmp, "model.safetensors")
	if err := safetensors.WriteFile(base, ts, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "merged.safetensors")
	rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{dir, 0.01}}, Verify: true}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VerifyFailures != 0 || rep.Quantized == 0 {
		t.Fatalf("report: %d verify failures, %d quantized", rep.VerifyFailures, rep.Quantized)
	}
	bc, _ := safetensors.OpenCheckpoint(base)
	defer bc.Close()
	oc, _ := safetensors.OpenCheckpoint(out)
	defer oc.Close()
	bix := quant.NewIndex(bc, bc.Names())
	for _, m := range a.Modules {
		d, ok := bix.Weights[m.Name+".weight"]
		if !ok {
			continue
		}
		w, _, _, err := quant.Dequantize(bc, d)
		if err != nil {
			t.Fatal(err)
		}
		f, err := a.Factors(m)
		if err != nil {
			t.Fatal(err)
		}
		exact := f64(w)
		delta := transposeF64(f64(f.Delta()), f.Out, f.In) // stored (in, out)
		for i := range exact {
			exact[i] += 0.01 * delta[i]
		}
		checkRequantized(t, bc, oc, m.Name+".weight", exact)
	}
}

// Without room to keep fold results, each layout tensor is folded again
// when written: the output is the same bytes.
func TestApplyQuantizedNoCache(t *testing.T) {
	dir := t.TempDir()
	var ts []safetensors.Tensor
	var mods []testgen.Module
	for i, p := range []quant.Params{{Scheme: quant.SchemeNF4, DoubleQuant: true}, {Scheme: quant.SchemeInt8}, {Scheme: quant.SchemeFP8E5M2, Granularity: "block:16"}} {
		name := "model.layers." + string(rune('0'+i)) + ".q"
		ts = append(ts, quantized(t, name+".weight", []int{32, 48}, safetensors.BF16, gaussian(uint64(i), 32*48, 0.02), p, false)...)
		mods = append(mods, testgen.Module{Name: name, In: 48, Out: 32})
	}
	base := filepath.Join(dir, "model.safetensors")
	if err := safetensors.WriteFile(base, ts, nil); err != nil {
		t.Fatal(err)
	}
	ad := filepath.Join(dir, "lora")
	if _, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 6, R: 4, Modules: mods}); err != nil {
		t.Fatal(err)
	}
	run := func(out string) string {
		if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 0.01}}}, RunOptions{Output: out}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cached := run(filepath.Join(dir, "a.safetensors"))
	old := foldCacheBytes
	foldCacheBytes = 0
	defer func() { foldCacheBytes = old }()
	if run(filepath.Join(dir, "b.safetensors")) != cached {
		t.Fatal("refolding per tensor changed the output")
	}
}

// verifyApply flags a quantized output that does not carry the update (the
// base's own codes written back) and one whose untouched tensor changed.
func TestApplyVerifyDetectsBadQuantizedOutput(t *testing.T) {
	dir := t.TempDir()
	const mod = "model.q"
	ts := quantized(t, mod+".weight", []int{16, 32}, safetensors.F32, gaussian(2, 512, 0.02), quant.Params{Scheme: quant.SchemeNF4}, false)
	ts = append(ts, quantized(t, "model.k.weight", []int{16, 32}, safetensors.F32, gaussian(3, 512, 0.02), quant.Params{Scheme: quant.SchemeNF4}, false)...)
	base := filepath.Join(dir, "model.safetensors")
	if err := safetensors.WriteFile(base, ts, nil); err != nil {
		t.Fatal(err)
	}
	ad := filepath.Join(dir, "lora")
	if _, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 3, R: 2, Modules: []testgen.Module{{Name: mod, In: 32, Out: 16}}}); err != nil {
		t.Fatal(err)
	}
	ck, err := safetensors.OpenCheckpoint(base)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	in, err := open([]string{ad}, RunOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	verify := func(out []safetensors.Tensor) (*ApplyReport, error) {
		path := filepath.Join(t.TempDir(), "out.safetensors")
		if err := safetensors.WriteFile(path, out, nil); err != nil {
			t.Fatal(err)
		}
		pl := &planner{ix: newBaseIndex(ck.Names()), ck: ck, qix: quant.NewIndex(ck, ck.Names()), jobs: map[string]*tensorJob{}}
		rep := &ApplyReport{Files: []string{path}, Modules: make([]ApplyModule, 1)}
		if why := pl.module(in.ads[0], in.ads[0].Modules[0], 1, 0, &rep.Modules[0]); why != "" {
			t.Fatal(why)
		}
		return rep, verifyApply(rep, ck, pl.jobs, nil)
	}
	// The base itself as "output": ΔW is missing.
	rep, err := verify(ts)
	if err != nil {
		t.Fatal(err)
	}
	if v := rep.Modules[0].Verify; rep.VerifyFailures != 1 || v == nil || !v.Exceeded || !(v.RelFro > 10*v.Bound) {
		t.Fatalf("missing update not flagged: %+v", rep.Modules[0].Verify)
	}
	// An untouched quantized weight changed: an error.
	bad := append([]safetensors.Tensor(nil), ts...)
	for i := range bad {
		if bad[i].Name == "model.k.weight" {
			b := append([]byte(nil), bad[i].Data...)
			b[0] ^= 0x11
			bad[i].Data = b
		}
	}
	if _, err := verify(bad); err == nil || !strings.Contains(err.Error(), "model.k.weight") {
		t.Fatalf("changed untouched tensor: %v", err)
	}
}
