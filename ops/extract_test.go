package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"gonum.org/v1/gonum/mat"
)

// lowRank returns a random rows×cols matrix of rank r (float64).
func lowRank(r *rand.Rand, rows, cols, rank int) []float64 {
	b := make([]float64, rows*rank)
	a := make([]float64, rank*cols)
	for i := range b {
		b[i] = r.NormFloat64()
	}
	for i := range a {
		a[i] = r.NormFloat64()
	}
	d := make([]float64, rows*cols)
	for i := 0; i < rows; i++ {
		for k := 0; k < rank; k++ {
			for j := 0; j < cols; j++ {
				d[i*cols+j] += b[i*rank+k] * a[k*cols+j]
			}
		}
	}
	return d
}

// tunedFrom returns the tuned specs: base + the stored-layout delta for the
// named tensors, rounded to float32.
func tunedFrom(base []baseTensor, deltas map[string][]float64) []baseTensor {
	out := make([]baseTensor, len(base))
	for i, s := range base {
		out[i] = baseTensor{Name: s.Name, DType: s.DType, Shape: s.Shape, Values: make([]float64, len(s.Values))}
		for j, v := range s.Values {
			if d, ok := deltas[s.Name]; ok {
				v += d[j]
			}
			out[i].Values[j] = float64(float32(v))
		}
	}
	return out
}

// extracted returns the dense logical ΔW (out×in·k) of every module of the
// written adapter, from its factors.
func extracted(t *testing.T, dir string) (map[string][]float64, *adapter.Adapter) {
	t.Helper()
	a, err := adapter.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for _, m := range a.Modules {
		f, err := a.Factors(m)
		if err != nil {
			t.Fatal(err)
		}
		ink := f.InK()
		d := make([]float64, f.Out*ink)
		for o := 0; o < f.Out; o++ {
			for k := 0; k < f.Rank; k++ {
				for i := 0; i < ink; i++ {
					d[o*ink+i] += f.Scale * float64(f.B[o*f.Rank+k]) * float64(f.A[k*ink+i])
				}
			}
		}
		out[m.Name] = d
	}
	return out, a
}

func relErrF64(got, want []float64) float64 {
	var d2, n2 float64
	for i := range want {
		d2 += (got[i] - want[i]) * (got[i] - want[i])
		n2 += want[i] * want[i]
	}
	return math.Sqrt(d2 / n2)
}

func writeCk(t *testing.T, path string, specs []baseTensor) {
	t.Helper()
	if err := safetensors.WriteFile(path, baseTensors(specs), nil); err != nil {
		t.Fatal(err)
	}
}

// Exactly low-rank differences are recovered for linear, embedding and conv
// weights; unchanged weights are skipped; changed non-weights are warned.
func TestExtractExactLowRank(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(31, 32))
	base := newBase(30, []baseTensor{
		{Name: "model.q.weight", DType: safetensors.F32, Shape: []int{8, 6}},
		{Name: "model.embed_tokens.weight", DType: safetensors.F32, Shape: []int{10, 4}},
		{Name: "model.conv.weight", DType: safetensors.F32, Shape: []int{5, 3, 2, 2}},
		{Name: "model.same.weight", DType: safetensors.F32, Shape: []int{4, 4}},
		{Name: "model.norm.weight", DType: safetensors.F32, Shape: []int{6}},
	})
	dq := lowRank(r, 8, 6, 2)
	de := lowRank(r, 4, 10, 2) // logical (dim, num)
	dc := lowRank(r, 5, 12, 2)
	tuned := tunedFrom(base, map[string][]float64{
		"model.q.weight": dq, "model.embed_tokens.weight": transposeF64(de, 4, 10), "model.conv.weight": dc,
		"model.norm.weight": {1, 0, 0, 0, 0, 0},
	})
	bp, tp := filepath.Join(dir, "base.safetensors"), filepath.Join(dir, "tuned.safetensors")
	writeCk(t, bp, base)
	writeCk(t, tp, tuned)
	out := filepath.Join(dir, "out")
	rep, err := Extract(ExtractParams{Base: bp, Tuned: tp, RankParams: RankParams{Rank: 2}, Seed: 1}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	got, a := extracted(t, out)
	defer a.Close()
	for name, want := range map[string][]float64{"model.q": dq, "model.embed_tokens": de, "model.conv": dc} {
		if e := relErrF64(got[name], want); e > 1e-5 {
			t.Errorf("%s: relative error %g", name, e)
		}
	}
	kinds := map[string]adapter.Kind{}
	for _, m := range a.Modules {
		kinds[m.Name] = m.Kind
	}
	if kinds["model.embed_tokens"] != adapter.KindLoRAEmbedding || kinds["model.conv"] != adapter.KindLoRAConv || kinds["model.q"] != adapter.KindLoRA || len(a.Modules) != 3 {
		t.Errorf("kinds %v", kinds)
	}
	if rep.Removed != 1 || rep.Matched != 3 {
		t.Errorf("removed %d matched %d", rep.Removed, rep.Matched)
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "model.norm.weight") {
		t.Errorf("no warning for the changed norm: %v", rep.Warnings)
	}
	if a.Metadata[MetaOperation] != "extract" || a.Metadata[MetaSeed] != "1" {
		t.Errorf("metadata %v", a.Metadata)
	}
	// Same seed, same bytes.
	out2 := filepath.Join(dir, "out2")
	if _, err := Extract(ExtractParams{Base: bp, Tuned: tp, RankParams: RankParams{Rank: 2}, Seed: 1}, RunOptions{Output: out2}); err != nil {
		t.Fatal(err)
	}
	x, _ := os.ReadFile(filepath.Join(out, "adapter_model.safetensors"))
	y, _ := os.ReadFile(filepath.Join(out2, "adapter_model.safetensors"))
	if !bytes.Equal(x, y) {
		t.Error("same seed gave different files")
	}
}

// Energy picks per-module ranks from known singular values; the ranks go to
// rank_pattern.
func TestExtractEnergy(t *testing.T) {
	dir := t.TempDir()
	base := newBase(40, []baseTensor{
		{Name: "m.a.weight", DType: safetensors.F32, Shape: []int{12, 10}},
		{Name: "m.b.weight", DType: safetensors.BF16, Shape: []int{6, 9}},
	})
	// ΔW = Σ σᵢ e_{π(i)} e_{ρ(i)}ᵀ: singular values known exactly.
	spec := func(rows, cols int, sig []float64, pi, rho []int) []float64 {
		d := make([]float64, rows*cols)
		for i, s := range sig {
			d[pi[i]*cols+rho[i]] = s
		}
		return d
	}
	da := spec(12, 10, []float64{8, 4, 2, 1, 0.5}, []int{3, 0, 7, 11, 5}, []int{9, 2, 0, 4, 6})
	db := spec(6, 9, []float64{4, 0.25}, []int{1, 4}, []int{8, 3})
	tuned := tunedFrom(base, map[string][]float64{"m.a.weight": da, "m.b.weight": db})
	// The BF16 base cannot hold base+Δ exactly: store the tuned b in F32.
	tuned[1].DType = safetensors.F32
	bp, tp := filepath.Join(dir, "b.safetensors"), filepath.Join(dir, "t.safetensors")
	writeCk(t, bp, base)
	writeCk(t, tp, tuned)
	out := filepath.Join(dir, "out")
	rep, err := Extract(ExtractParams{Base: bp, Tuned: tp, RankParams: RankParams{Energy: 0.95}, Seed: 7}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		rank         int
		energy, fro2 float64
	}{
		"m.a": {3, 84 / 85.25, 1.25}, // 64+16+4 of 85.25
		"m.b": {1, 16 / 16.0625, 0.0625},
	}
	for _, m := range rep.Modules {
		w := want[m.Name]
		if m.Rank != w.rank || m.Stats == nil || math.Abs(m.Stats.Energy-w.energy) > 1e-6 || math.Abs(m.Stats.FroError-math.Sqrt(w.fro2)) > 1e-5 {
			t.Errorf("%s: rank %d stats %+v, want rank %d energy %v fro %v", m.Name, m.Rank, m.Stats, w.rank, w.energy, math.Sqrt(w.fro2))
		}
	}
	cfg, err := os.ReadFile(filepath.Join(out, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		R           int            `json:"r"`
		RankPattern map[string]int `json:"rank_pattern"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.RankPattern) != 1 {
		t.Errorf("rank_pattern %v (r %d), want one entry for the module that differs", c.RankPattern, c.R)
	}
	_, a := extracted(t, out)
	defer a.Close()
	for _, m := range a.Modules {
		if m.Rank != want[m.Name].rank {
			t.Errorf("%s reloaded with rank %d", m.Name, m.Rank)
		}
	}
}

// A full-rank difference: the rank-k error is close to the optimum of the
// dense SVD (Eckart–Young), and the reported error is the true one.
func TestExtractNearOptimal(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(50, 51))
	const rows, cols, k = 40, 30, 5
	base := newBase(52, []baseTensor{{Name: "w.weight", DType: safetensors.F32, Shape: []int{rows, cols}}})
	// Decaying spectrum: low rank plus noise.
	d := lowRank(r, rows, cols, k)
	for i := range d {
		d[i] += 0.3 * r.NormFloat64()
	}
	tuned := tunedFrom(base, map[string][]float64{"w.weight": d})
	bp, tp := filepath.Join(dir, "b.safetensors"), filepath.Join(dir, "t.safetensors")
	writeCk(t, bp, base)
	writeCk(t, tp, tuned)
	// The delta the files actually hold (float32 rounding of base+Δ).
	exact := make([]float64, rows*cols)
	for i := range exact {
		exact[i] = tuned[0].Values[i] - base[0].Values[i]
	}
	var sv mat.SVD
	if !sv.Factorize(mat.NewDense(rows, cols, exact), mat.SVDNone) {
		t.Fatal("gonum SVD failed")
	}
	sigma := sv.Values(nil)
	var opt2 float64
	for _, s := range sigma[k:] {
		opt2 += s * s
	}
	out := filepath.Join(dir, "out")
	rep, err := Extract(ExtractParams{Base: bp, Tuned: tp, RankParams: RankParams{Rank: k}, PowerIters: 2, Seed: 3}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	got, a := extracted(t, out)
	defer a.Close()
	var e2 float64
	for i, v := range got["w"] {
		e2 += (v - exact[i]) * (v - exact[i])
	}
	if math.Sqrt(e2) > 1.02*math.Sqrt(opt2) {
		t.Errorf("rank-%d error %g, optimum %g", k, math.Sqrt(e2), math.Sqrt(opt2))
	}
	if fe := rep.Modules[0].Stats.FroError; math.Abs(fe-math.Sqrt(e2)) > 1e-3*math.Sqrt(e2) {
		t.Errorf("reported error %g, true %g", fe, math.Sqrt(e2))
	}
}

// fan_in_fan_out: weights stored (in, out); the adapter says so and its
// ΔW (out×in) is the transpose of the stored difference.
func TestExtractFanInFanOut(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(60, 61))
	base := newBase(62, []baseTensor{{Name: "h.0.attn.c_attn.weight", DType: safetensors.F32, Shape: []int{6, 9}}})
	dl := lowRank(r, 9, 6, 2) // logical (out 9, in 6)
	tuned := tunedFrom(base, map[string][]float64{"h.0.attn.c_attn.weight": transposeF64(dl, 9, 6)})
	bp, tp := filepath.Join(dir, "b.safetensors"), filepath.Join(dir, "t.safetensors")
	writeCk(t, bp, base)
	writeCk(t, tp, tuned)
	out := filepath.Join(dir, "out")
	if _, err := Extract(ExtractParams{Base: bp, Tuned: tp, RankParams: RankParams{Rank: 2}, FanInFanOut: true}, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	got, a := extracted(t, out)
	defer a.Close()
	if !a.Modules[0].FanInFanOut || a.Modules[0].InFeatures != 6 || a.Modules[0].OutFeatures != 9 {
		t.Fatalf("module %+v", a.Modules[0])
	}
	if e := relErrF64(got["h.0.attn.c_attn"], dl); e > 1e-5 {
		t.Errorf("relative error %g", e)
	}
}

func TestExtractParamsAndPlan(t *testing.T) {
	dir := t.TempDir()
	base := newBase(70, []baseTensor{{Name: "a.weight", DType: safetensors.F32, Shape: []int{4, 3}}})
	bp := filepath.Join(dir, "b.safetensors")
	writeCk(t, bp, base)
	out := filepath.Join(dir, "out")
	if _, err := Extract(ExtractParams{Base: bp, Tuned: bp}, RunOptions{Output: out}); !errors.Is(err, ErrParams) {
		t.Errorf("no rank: %v", err)
	}
	if _, err := Extract(ExtractParams{Base: bp, Tuned: bp, RankParams: RankParams{Rank: 2}}, RunOptions{Output: out}); !errors.Is(err, ErrIncompatible) {
		t.Errorf("identical checkpoints: %v", err)
	}
	rep, err := Extract(ExtractParams{Base: bp, Tuned: bp, RankParams: RankParams{Rank: 8}}, RunOptions{DryRun: true})
	if err != nil || len(rep.Modules) != 1 || rep.Modules[0].Rank != 3 || rep.Modules[0].Bytes != 4*3*(4+3) {
		t.Errorf("dry run: %v %+v", err, rep)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("output written")
	}
}

// BenchmarkExtract: one 1024×1024 F32 difference at rank 16 (q = 2, p = 10).
func BenchmarkExtract(b *testing.B) {
	dir := b.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	base := newBase(3, []baseTensor{{Name: "w.weight", DType: safetensors.F32, Shape: []int{1024, 1024}}})
	d := lowRank(r, 1024, 1024, 16)
	for i := range d {
		d[i] += 0.01 * r.NormFloat64()
	}
	tuned := tunedFrom(base, map[string][]float64{"w.weight": d})
	bp, tp := filepath.Join(dir, "b.safetensors"), filepath.Join(dir, "t.safetensors")
	if err := safetensors.WriteFile(bp, baseTensors(base), nil); err != nil {
		b.Fatal(err)
	}
	if err := safetensors.WriteFile(tp, baseTensors(tuned), nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Extract(ExtractParams{Base: bp, Tuned: tp, RankParams: RankParams{Rank: 16}}, RunOptions{Output: filepath.Join(dir, "out")}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEmbeddingName(t *testing.T) {
	for name, want := range map[string]bool{
		"model.embed_tokens.weight": true, "bert.embeddings.word_embeddings.weight": true, "transformer.wte.weight": true,
		"shared.weight": true, "gpt_neox.embed_in.weight": true, "gpt_neox.embed_out.weight": false, "lm_head.weight": false,
		"model.layers.0.self_attn.q_proj.weight": false, "decoder.embed_positions.weight": true,
	} {
		if got := embeddingName(name); got != want {
			t.Errorf("embeddingName(%q) = %v", name, got)
		}
	}
}
