package ops

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

// tmod is one module of a synthetic PEFT adapter written by writePEFT.
type tmod struct {
	name  string
	l     *LowRank // Scale is the scale the config must resolve to (checked by the tests' math, not written)
	extra map[string][]float32
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	if err := safetensors.FromFloat32(b, v, safetensors.F32); err != nil {
		panic(err)
	}
	return b
}

// writePEFT writes a PEFT directory by hand: F32 tensors under
// base_model.model.<name>.lora_A.weight / lora_B.weight and the given config.
func writePEFT(t *testing.T, dir string, cfg map[string]any, mods []tmod) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, m := range mods {
		p := "base_model.model." + m.name
		if m.l != nil {
			ts = append(ts,
				safetensors.Tensor{Name: p + ".lora_A.weight", DType: safetensors.F32, Shape: []int{m.l.Rank, m.l.In}, Data: f32bytes(m.l.A)},
				safetensors.Tensor{Name: p + ".lora_B.weight", DType: safetensors.F32, Shape: []int{m.l.Out, m.l.Rank}, Data: f32bytes(m.l.B)})
		}
		for k, v := range m.extra {
			shape := []int{len(v)}
			if k == "ia3_l" {
				shape = []int{len(v), 1}
			}
			ts = append(ts, safetensors.Tensor{Name: p + "." + k, DType: safetensors.F32, Shape: shape, Data: f32bytes(v)})
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const (
	q0 = "model.layers.0.self_attn.q_proj"
	v0 = "model.layers.0.self_attn.v_proj"
	q1 = "model.layers.1.self_attn.q_proj"
	k1 = "model.layers.1.self_attn.k_proj"
)

// twoAdapters writes adapter 1 (r=4, α=8 ⇒ s=2; rank_pattern q1 → r=2 ⇒
// s=4) and adapter 2 (rsLoRA, r=8, α=16 ⇒ s=16/√8; k1 only here).
func twoAdapters(t *testing.T) (string, string, [][]tmod) {
	rng := rand.New(rand.NewPCG(1, 1))
	m1 := []tmod{
		{q0, randLowRank(rng, 16, 12, 4, 2, false), nil},
		{v0, randLowRank(rng, 16, 12, 4, 2, false), nil},
		{q1, randLowRank(rng, 16, 12, 2, 4, false), nil},
	}
	m2 := []tmod{
		{q0, randLowRank(rng, 16, 12, 8, 16/math.Sqrt(8), false), nil},
		{v0, randLowRank(rng, 16, 12, 8, 16/math.Sqrt(8), false), nil},
		{k1, randLowRank(rng, 16, 12, 8, 16/math.Sqrt(8), false), nil},
	}
	dir := t.TempDir()
	a := writePEFT(t, filepath.Join(dir, "a1"), map[string]any{
		"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": []string{"q_proj", "v_proj"},
		"rank_pattern": map[string]any{"model.layers.1.self_attn.q_proj": 2},
	}, m1)
	b := writePEFT(t, filepath.Join(dir, "a2"), map[string]any{
		"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_rslora": true, "target_modules": []string{"q_proj", "v_proj", "k_proj"},
	}, m2)
	return a, b, [][]tmod{m1, m2}
}

// inputsFor returns the per-input LowRank of module name (nil = absent).
func inputsFor(mods [][]tmod, name string) []*LowRank {
	out := make([]*LowRank, len(mods))
	for i, ms := range mods {
		for _, m := range ms {
			if m.name == name {
				out[i] = m.l
			}
		}
	}
	return out
}

// loadDeltas loads a written adapter and returns every module's s·B·D·A.
func loadDeltas(t *testing.T, dir string) (*adapter.Adapter, map[string][]float64) {
	t.Helper()
	a, err := adapter.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	out := map[string][]float64{}
	for _, m := range a.Modules {
		if !m.IsLowRank() {
			continue
		}
		f, err := a.Factors(m)
		if err != nil {
			t.Fatal(err)
		}
		d := f.Delta()
		out[m.Name] = to64(d)
	}
	return a, out
}

func TestMergeAdaptersSVDAndCat(t *testing.T) {
	a, b, mods := twoAdapters(t)
	w := []float64{1, -0.5}
	for _, method := range []string{"svd", "cat"} {
		out := filepath.Join(t.TempDir(), method)
		rep, err := Merge([]string{a, b}, MergeParams{Method: method, Weights: w}, RunOptions{Output: out})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Matched != 2 || rep.Partial != 2 {
			t.Errorf("%s: matched %d partial %d, want 2 and 2", method, rep.Matched, rep.Partial)
		}
		got, deltas := loadDeltas(t, out)
		if len(deltas) != 4 {
			t.Fatalf("%s: %d modules written, want 4", method, len(deltas))
		}
		for _, name := range []string{q0, v0, q1, k1} {
			in := inputsFor(mods, name)
			sum := refSum(in, w)
			var want []float64
			var k int
			if method == "cat" {
				want = sum
				for _, l := range in {
					if l != nil {
						k += l.Rank
					}
				}
			} else {
				k = maxRank(in)
				want, _, _ = denseTruncated(t, 16, 12, sum, k)
			}
			if e := relErr(deltas[name], want); e > 1e-6*10 {
				t.Errorf("%s %s: relative error %g", method, name, e)
			}
			if m := got.Module(name); m.Rank != k {
				t.Errorf("%s %s: rank %d, want %d", method, name, m.Rank, k)
			}
		}
		if got.Config == nil || got.Config.UseRSLoRA {
			t.Errorf("%s: output config %+v (want use_rslora false)", method, got.Config)
		}
		// Provenance.
		meta := got.Metadata
		if meta[MetaOperation] != "merge" || meta[MetaMethod] != method || meta[MetaWeights] != "[1,-0.5]" {
			t.Errorf("%s: provenance %v", method, meta)
		}
		var ins []struct{ Path, SHA256 string }
		if err := json.Unmarshal([]byte(meta[MetaInputs]), &ins); err != nil || len(ins) != 2 {
			t.Fatalf("inputs %q: %v", meta[MetaInputs], err)
		}
		data, _ := os.ReadFile(filepath.Join(a, "adapter_model.safetensors"))
		h := sha256.Sum256(data)
		if ins[0].SHA256 != hex.EncodeToString(h[:]) {
			t.Errorf("sha256 %s, want %x", ins[0].SHA256, h)
		}
	}
}

func TestMergeAdaptersElementwise(t *testing.T) {
	a, b, mods := twoAdapters(t)
	w := []float64{1, 0.5}
	out := filepath.Join(t.TempDir(), "ties")
	p := MergeParams{Method: "ties", Weights: w, ElementwiseParams: ElementwiseParams{Density: Float(0.3)}, RankParams: RankParams{Rank: 6}}
	if _, err := Merge([]string{a, b}, p, RunOptions{Output: out, Workers: 3}); err != nil {
		t.Fatal(err)
	}
	_, deltas := loadDeltas(t, out)
	for _, name := range []string{q0, v0, q1, k1} {
		var ps [][]float64
		var pw []float64
		for i, l := range inputsFor(mods, name) {
			if l != nil {
				ps = append(ps, refTopK(refDelta(l), 0.3))
				pw = append(pw, w[i])
			}
		}
		want, _, _ := denseTruncated(t, 16, 12, refTies(ps, pw, false), 6)
		if e := relErr(deltas[name], want); e > 1e-5 {
			t.Errorf("ties %s: relative error %g", name, e)
		}
	}
}

func TestMergeDryRunAndRefusal(t *testing.T) {
	a, b, _ := twoAdapters(t)
	out := filepath.Join(t.TempDir(), "none")
	rep, err := Merge([]string{a, b}, MergeParams{}, RunOptions{Output: out, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run wrote %s", out)
	}
	if len(rep.Unmatched) != 2 || rep.Unmatched[0] != k1 || rep.Unmatched[1] != q1 {
		t.Errorf("unmatched %v, want [%s %s]", rep.Unmatched, k1, q1)
	}
	want := map[string]string{q0: "matched", v0: "matched", q1: "partial", k1: "partial"}
	for _, m := range rep.Modules {
		if want[m.Name] != m.Status {
			t.Errorf("%s: status %s, want %s", m.Name, m.Status, want[m.Name])
		}
		if m.Name == q1 && (m.Rank != 2 || m.Bytes != int64(2*(16+12)*4)) {
			t.Errorf("q1 plan: rank %d bytes %d, want 2 and %d", m.Rank, m.Bytes, 2*(16+12)*4)
		}
	}
	// A DoRA input is refused with the module named, nothing written.
	rng := rand.New(rand.NewPCG(2, 2))
	mag := make([]float32, 16)
	for i := range mag {
		mag[i] = 1
	}
	d := writePEFT(t, filepath.Join(t.TempDir(), "dora"), map[string]any{"peft_type": "LORA", "r": 4, "lora_alpha": 4, "use_dora": true, "target_modules": []string{"q_proj"}},
		[]tmod{{q0, randLowRank(rng, 16, 12, 4, 1, false), map[string][]float32{"lora_magnitude_vector": mag}}})
	rep, err = Merge([]string{a, d}, MergeParams{}, RunOptions{Output: out})
	if !errors.Is(err, ErrUnsupported) || rep == nil || rep.Refused != 1 {
		t.Fatalf("DoRA merge: err %v, report %+v", err, rep)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused merge wrote %s", out)
	}
}

func TestNegateAndScaleAdapter(t *testing.T) {
	a, _, mods := twoAdapters(t)
	_, before := loadDeltas(t, a)
	out := filepath.Join(t.TempDir(), "neg")
	if _, err := NegateAdapter(a, false, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	got, after := loadDeltas(t, out)
	for name, d := range before {
		for i := range d {
			if after[name][i] != -d[i] {
				t.Fatalf("neg %s[%d] = %g, want %g exactly", name, i, after[name][i], -d[i])
			}
		}
	}
	if got.Metadata[MetaOperation] != "neg" {
		t.Errorf("provenance %v", got.Metadata)
	}
	out2 := filepath.Join(t.TempDir(), "x.safetensors")
	if _, err := ScaleAdapter(a, ScaleParams{By: 0.25}, RunOptions{Output: out2}); err != nil {
		t.Fatal(err)
	}
	// Reference: 0.25·s·B·A with the scale of the original config.
	cfg, _ := adapter.LoadConfig(filepath.Join(a, "adapter_config.json"))
	sc, err := adapter.Load(out2, adapter.WithConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for _, m := range sc.Modules {
		f, _ := sc.Factors(m)
		want := refDelta(inputsFor(mods[:1], m.Name)[0])
		for i := range want {
			want[i] *= 0.25
		}
		if e := relErr(to64(f.Delta()), want); e > 1e-6 {
			t.Errorf("scale %s: relative error %g", m.Name, e)
		}
	}
	// IA3: neg is 2 − l.
	ia := writePEFT(t, filepath.Join(t.TempDir(), "ia3"), map[string]any{"peft_type": "IA3", "target_modules": []string{"k_proj"}, "feedforward_modules": []string{}},
		[]tmod{{k1, nil, map[string][]float32{"ia3_l": {1, 0.5, 2, 1.25}}}})
	out3 := filepath.Join(t.TempDir(), "ia3neg")
	if _, err := NegateAdapter(ia, false, RunOptions{Output: out3}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(out3, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, _ := f.Float32("base_model.model." + k1 + ".ia3_l")
	checkVals(t, "ia3 neg", v, []float64{1, 1.5, 0, 0.75}, 0)
}

func TestResizeReweightPruneAdapter(t *testing.T) {
	a, _, mods := twoAdapters(t)
	out := filepath.Join(t.TempDir(), "resize")
	rep, err := ResizeAdapter(a, RankParams{Rank: 1}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	_, deltas := loadDeltas(t, out)
	for _, m := range rep.Modules {
		l := inputsFor(mods[:1], m.Name)[0]
		want, sv, tail := denseTruncated(t, 16, 12, refDelta(l), 1)
		if e := relErr(deltas[m.Name], want); e > 1e-5 {
			t.Errorf("resize %s: relative error %g", m.Name, e)
		}
		if m.Stats == nil || !near(m.Stats.FroError, tail, 1e-9*sv[0]) || m.Rank != 1 {
			t.Errorf("resize %s: report %+v, dense error %g", m.Name, m.Stats, tail)
		}
	}
	// Reweight to the KaSA layout: the file has lora_diag and reloads as
	// KaSA with ΔW = U·diag(σ/2)·Vᵀ.
	out = filepath.Join(t.TempDir(), "kasa")
	fn := ReweightParams{Layout: "kasa"}
	fn.Fn.Op, fn.Fn.Param = "shrink", 1
	if _, err := ReweightAdapter(a, fn, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	got, deltas := loadDeltas(t, out)
	for _, m := range got.Modules {
		if m.Kind != adapter.KindKaSA {
			t.Errorf("%s: kind %s, want kasa", m.Name, m.Kind)
		}
		want := refDelta(inputsFor(mods[:1], m.Name)[0])
		for i := range want {
			want[i] /= 2
		}
		if e := relErr(deltas[m.Name], want); e > 1e-5 {
			t.Errorf("reweight %s: relative error %g", m.Name, e)
		}
	}
	// Prune the lowest-norm third of the modules: exactly one of three.
	out = filepath.Join(t.TempDir(), "prune")
	rep, err = PruneAdapter(a, PruneParams{Rule: "module-fraction", Value: 0.34}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	norms := map[string]float64{}
	low := ""
	for _, m := range mods[0] {
		var s float64
		for _, v := range refDelta(m.l) {
			s += v * v
		}
		norms[m.name] = s
		if low == "" || s < norms[low] {
			low = m.name
		}
	}
	_, deltas = loadDeltas(t, out)
	if rep.Removed != 1 || deltas[low] != nil || len(deltas) != 2 {
		t.Fatalf("prune removed %d (want 1: %s), wrote %d modules", rep.Removed, low, len(deltas))
	}
	for _, m := range mods[0] {
		if m.name != low {
			if e := relErr(deltas[m.name], refDelta(m.l)); e > 1e-7 {
				t.Errorf("kept module %s changed: %g", m.name, e)
			}
		}
	}
}

// TestBiasAndDoRA: lora_B.bias is combined as Σ wᵢ·sᵢ·bᵢ by a merge; resize
// keeps a DoRA module's magnitude vector and truncates its delta.
func TestBiasAndDoRA(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	b1, b2 := randF32(rng, 16, 1), randF32(rng, 16, 1)
	l1, l2 := randLowRank(rng, 16, 12, 4, 2, false), randLowRank(rng, 16, 12, 4, 0.5, false)
	cfg := func(alpha int) map[string]any {
		return map[string]any{"peft_type": "LORA", "r": 4, "lora_alpha": alpha, "lora_bias": true, "target_modules": []string{"q_proj"}}
	}
	dir := t.TempDir()
	a := writePEFT(t, filepath.Join(dir, "a"), cfg(8), []tmod{{q0, l1, map[string][]float32{"lora_B.bias": b1}}})
	b := writePEFT(t, filepath.Join(dir, "b"), cfg(2), []tmod{{q0, l2, map[string][]float32{"lora_B.bias": b2}}})
	out := filepath.Join(dir, "cat")
	if _, err := Merge([]string{a, b}, MergeParams{Method: "cat", Weights: []float64{1, -2}}, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	got, err := adapter.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	f, err := got.Factors(got.Modules[0])
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 16)
	for i := range want {
		want[i] = 1*2*float64(b1[i]) - 2*0.5*float64(b2[i])
	}
	if f.Bias == nil || relErr(to64(f.Bias), want) > 1e-6 || f.Scale != 1 {
		t.Errorf("merged bias %v (scale %v), want %v", f.Bias, f.Scale, want)
	}

	mag := randF32(rng, 16, 1)
	d := writePEFT(t, filepath.Join(dir, "dora"), map[string]any{"peft_type": "LORA", "r": 4, "lora_alpha": 4, "use_dora": true, "target_modules": []string{"q_proj"}},
		[]tmod{{q0, l1, map[string][]float32{"lora_magnitude_vector": mag}}})
	out = filepath.Join(dir, "dora-r2")
	if _, err := ResizeAdapter(d, RankParams{Rank: 2}, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	got2, err := adapter.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got2.Close()
	m := got2.Modules[0]
	f2, err := got2.Factors(m)
	if err != nil {
		t.Fatal(err)
	}
	l1s := *l1
	l1s.Scale = 1 // α = r = 4
	wantD, _, _ := denseTruncated(t, 16, 12, refDelta(&l1s), 2)
	if m.Kind != adapter.KindDoRA || m.Rank != 2 || relErr(to64(f2.Delta()), wantD) > 1e-5 {
		t.Errorf("DoRA resize: kind %s rank %d error %g", m.Kind, m.Rank, relErr(to64(f2.Delta()), wantD))
	}
	checkVals(t, "magnitude", f2.Magnitude, to64(mag), 0)
}

// TestMergeIA3: (IA)³ vectors merge in l − 1 space, absent modules count as
// l = 1; --peft-compat gives PEFT's Σ wᵢ·lᵢ; ties runs on lᵢ − 1.
func TestMergeIA3(t *testing.T) {
	dir := t.TempDir()
	cfg := map[string]any{"peft_type": "IA3", "target_modules": []string{"k_proj", "v_proj"}, "feedforward_modules": []string{}}
	l1 := []float32{1, 0.5, 2, 1.25}
	l2 := []float32{0.75, 1.5, 1, 3}
	lk := []float32{2, 2, 0, 1}
	a := writePEFT(t, filepath.Join(dir, "a"), cfg, []tmod{{v0, nil, map[string][]float32{"ia3_l": l1}}})
	b := writePEFT(t, filepath.Join(dir, "b"), cfg, []tmod{{v0, nil, map[string][]float32{"ia3_l": l2}}, {k1, nil, map[string][]float32{"ia3_l": lk}}})
	read := func(out, name string) []float32 {
		t.Helper()
		ad, err := adapter.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		defer ad.Close()
		m := ad.Module(name)
		if m == nil || m.Kind != adapter.KindIA3 {
			t.Fatalf("%s: module %s missing or not IA3", out, name)
		}
		v, err := ad.File.Float32(m.Tensors[adapter.RoleIA3].Name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	w := []float64{1, 0.5}
	out := filepath.Join(dir, "sum")
	rep, err := Merge([]string{a, b}, MergeParams{Weights: w}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Matched != 1 || rep.Partial != 1 {
		t.Errorf("matched %d partial %d", rep.Matched, rep.Partial)
	}
	want := make([]float64, 4)
	wantK := make([]float64, 4)
	for i := range want {
		want[i] = 1 + (float64(l1[i]) - 1) + 0.5*(float64(l2[i])-1)
		wantK[i] = 1 + 0.5*(float64(lk[i])-1)
	}
	checkVals(t, "ia3 v", read(out, v0), want, 1e-7)
	checkVals(t, "ia3 k (absent in a)", read(out, k1), wantK, 1e-7)

	out = filepath.Join(dir, "compat")
	if _, err := Merge([]string{a, b}, MergeParams{Weights: w, PEFTCompat: true}, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i] = float64(l1[i]) + 0.5*float64(l2[i])
	}
	checkVals(t, "ia3 peft-compat", read(out, v0), want, 1e-7)

	out = filepath.Join(dir, "ties")
	if _, err := Merge([]string{a, b}, MergeParams{Method: "ties", Weights: w, ElementwiseParams: ElementwiseParams{Density: Float(0.5)}}, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	p1 := refTopK([]float64{0, -0.5, 1, 0.25}, 0.5)
	p2 := refTopK([]float64{-0.25, 0.5, 0, 2}, 0.5)
	tv := refTies([][]float64{p1, p2}, w, false)
	for i := range tv {
		tv[i]++
	}
	checkVals(t, "ia3 ties", read(out, v0), tv, 1e-7)
}
