package ops

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/adaptool/adaptool/internal/testgen"
)

// baseTensor is one tensor of a synthetic base checkpoint; Values holds
// what a reader gets back (already rounded to DType).
type baseTensor struct {
	Name   string
	DType  safetensors.DType
	Shape  []int
	Values []float64
}

func prodInts(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// newBase returns random base tensors rounded to their dtypes.
func newBase(seed uint64, specs []baseTensor) []baseTensor {
	r := rand.New(rand.NewPCG(seed, 99))
	for i := range specs {
		n := prodInts(specs[i].Shape)
		v32 := make([]float32, n)
		for j := range v32 {
			v32[j] = float32(r.NormFloat64())
		}
		specs[i].Values = make([]float64, n)
		if specs[i].DType == safetensors.F64 {
			for j := range v32 {
				specs[i].Values[j] = r.NormFloat64()
			}
			continue
		}
		b := make([]byte, n*specs[i].DType.Bits()/8)
		if err := safetensors.FromFloat32(b, v32, specs[i].DType); err != nil {
			panic(err)
		}
		if err := safetensors.ToFloat32(v32, b, specs[i].DType); err != nil {
			panic(err)
		}
		for j, x := range v32 {
			specs[i].Values[j] = float64(x)
		}
	}
	return specs
}

func baseTensors(specs []baseTensor) []safetensors.Tensor {
	var ts []safetensors.Tensor
	for _, s := range specs {
		var b []byte
		if s.DType == safetensors.F64 {
			b = make([]byte, 8*len(s.Values))
			encodeF64(b, s.Values)
		} else {
			v := make([]float32, len(s.Values))
			for i, x := range s.Values {
				v[i] = float32(x)
			}
			b = make([]byte, len(v)*s.DType.Bits()/8)
			if err := safetensors.FromFloat32(b, v, s.DType); err != nil {
				panic(err)
			}
		}
		ts = append(ts, safetensors.Tensor{Name: s.Name, DType: s.DType, Shape: s.Shape, Data: b})
	}
	return ts
}

func writeBase(t *testing.T, path string, specs []baseTensor) {
	t.Helper()
	if err := safetensors.WriteFile(path, baseTensors(specs), map[string]string{"format": "pt", "origin": "test"}); err != nil {
		t.Fatal(err)
	}
}

// dense returns scale·B·A (out×ink) in float64 from the generator's factors.
func dense(f *testgen.Factors, scale float64) []float64 {
	ink := f.In * prodInts(f.Kernel)
	d := make([]float64, f.Out*ink)
	for o := 0; o < f.Out; o++ {
		for k := 0; k < f.Rank; k++ {
			for i := 0; i < ink; i++ {
				d[o*ink+i] += scale * float64(f.B[o*f.Rank+k]) * float64(f.A[k*ink+i])
			}
		}
	}
	return d
}

func transposeF64(v []float64, rows, cols int) []float64 {
	t := make([]float64, len(v))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			t[j*rows+i] = v[i*cols+j]
		}
	}
	return t
}

// tolerance is the allowed |written − exact| for a tensor of dtype dt: one
// rounding to dt plus float32 accumulation.
func tolerance(dt safetensors.DType, exact float64) float64 {
	a := math.Abs(exact)
	switch dt {
	case safetensors.BF16:
		return a*0x1p-8 + 1e-6
	case safetensors.F16:
		return a*0x1p-11 + 0x1p-24 + 1e-6
	case safetensors.F64:
		return a*1e-14 + 1e-14
	}
	return a*4e-6 + 4e-6
}

func readAll64(t *testing.T, path string) map[string][]float64 {
	t.Helper()
	c, err := safetensors.OpenCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[string][]float64{}
	for _, n := range c.Names() {
		f, _ := c.Shard(n)
		v, err := readFloat64(f, n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = v
	}
	return out
}

func checkClose(t *testing.T, name string, dt safetensors.DType, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(got[i] - want[i]); !(d <= tolerance(dt, want[i])) {
			t.Fatalf("%s[%d] = %v, want %v (|d| = %g > %g)", name, i, got[i], want[i], d, tolerance(dt, want[i]))
		}
	}
}

func sha(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// LoRA (linear in F32 and BF16, Conv1D fan_in_fan_out, embedding, conv) and
// lora_bias folded into a single-file base; untouched tensors byte-identical.
func TestApplyLoRAKinds(t *testing.T) {
	dir := t.TempDir()
	specs := newBase(1, []baseTensor{
		{Name: "model.layers.0.self_attn.q_proj.weight", DType: safetensors.F32, Shape: []int{6, 5}},
		{Name: "model.layers.0.self_attn.q_proj.bias", DType: safetensors.F32, Shape: []int{6}},
		{Name: "model.layers.0.self_attn.v_proj.weight", DType: safetensors.BF16, Shape: []int{4, 5}},
		{Name: "model.layers.0.self_attn.v_proj.bias", DType: safetensors.BF16, Shape: []int{4}},
		{Name: "model.embed_tokens.weight", DType: safetensors.F16, Shape: []int{7, 5}},
		{Name: "model.conv.weight", DType: safetensors.F32, Shape: []int{3, 2, 2, 2}},
		{Name: "model.norm.weight", DType: safetensors.F32, Shape: []int{5}},
		{Name: "model.up.weight", DType: safetensors.F16, Shape: []int{3, 3}},
	})
	base := filepath.Join(dir, "model.safetensors")
	writeBase(t, base, specs)
	ad := filepath.Join(dir, "lora")
	res, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 7, R: 3, Alpha: 6, LoRABias: true, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.q_proj", In: 5, Out: 6},
		{Name: "model.layers.0.self_attn.v_proj", In: 5, Out: 4, Rank: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ad2 := filepath.Join(dir, "lora2")
	res2, err := testgen.WriteLoRA(ad2, testgen.LoRA{Seed: 8, R: 3, Alpha: 6, Modules: []testgen.Module{
		{Name: "model.embed_tokens", In: 7, Out: 5, Embedding: true},
		{Name: "model.conv", In: 2, Out: 3, Kernel: []int{2, 2}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "merged.safetensors")
	const lambda = 0.75
	rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, lambda}, {ad2, lambda}}, Verify: true}, RunOptions{Output: out})
	if err != nil {
		t.Fatalf("Apply: %v (report %+v)", err, rep)
	}
	got := readAll64(t, out)
	want := map[string][]float64{}
	for _, s := range specs {
		want[s.Name] = append([]float64(nil), s.Values...)
	}
	addTo := func(name string, d []float64) {
		for i := range d {
			want[name][i] += d[i]
		}
	}
	// The config's r (3) sets the scale even where the tensors have rank 2,
	// as PEFT does.
	scale := func(int) float64 { return lambda * 6 / 3 }
	q := res.Modules["model.layers.0.self_attn.q_proj"]
	addTo("model.layers.0.self_attn.q_proj.weight", dense(q, scale(3)))
	v := res.Modules["model.layers.0.self_attn.v_proj"]
	addTo("model.layers.0.self_attn.v_proj.weight", dense(v, scale(2)))
	e := res2.Modules["model.embed_tokens"]
	addTo("model.embed_tokens.weight", transposeF64(dense(e, scale(3)), 5, 7)) // (dim,num)ᵀ
	addTo("model.conv.weight", dense(res2.Modules["model.conv"], scale(3)))
	for _, m := range []struct {
		name string
		f    *testgen.Factors
		r    int
	}{{"model.layers.0.self_attn.q_proj", q, 3}, {"model.layers.0.self_attn.v_proj", v, 2}} {
		b := make([]float64, len(m.f.Bias))
		for i, x := range m.f.Bias {
			b[i] = scale(m.r) * float64(x)
		}
		addTo(m.name+".bias", b)
	}
	for _, s := range specs {
		checkClose(t, s.Name, s.DType, got[s.Name], want[s.Name])
	}
	// Untouched tensors byte-identical, dtypes kept, metadata kept + provenance.
	bf, _ := safetensors.Open(base)
	defer bf.Close()
	of, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	for _, n := range []string{"model.norm.weight", "model.up.weight"} {
		a, _ := bf.Data(n)
		b, _ := of.Data(n)
		if !bytes.Equal(a, b) {
			t.Errorf("untouched %s differs", n)
		}
	}
	for _, s := range specs {
		if ti, _ := of.Tensor(s.Name); ti.DType != s.DType {
			t.Errorf("%s: dtype %s, want %s", s.Name, ti.DType, s.DType)
		}
	}
	if of.Metadata["origin"] != "test" || of.Metadata[MetaOperation] != "apply" {
		t.Errorf("metadata %v", of.Metadata)
	}
	var inputs []struct{ Path, SHA256 string }
	json.Unmarshal([]byte(of.Metadata[MetaInputs]), &inputs)
	if len(inputs) != 3 || inputs[0].SHA256 != sha(t, base) || inputs[1].SHA256 != sha(t, filepath.Join(ad, "adapter_model.safetensors")) {
		t.Errorf("provenance inputs %v", inputs)
	}
	if !rep.Verified || rep.VerifyFailures != 0 || rep.Applied != 4 || rep.Touched != 6 || rep.Copied != 2 {
		t.Fatalf("report: verified %v applied %d touched %d copied %d", rep.Verified, rep.Applied, rep.Touched, rep.Copied)
	}
	for _, m := range rep.Modules {
		if m.Verify == nil || m.Verify.RelFro > 4e-3 || m.Verify.Exceeded {
			t.Errorf("module %s verify %+v", m.Name, m.Verify)
		}
	}
}

// GPT-2 Conv1D: the base stores (in, out) and receives (s·B·A)ᵀ.
func TestApplyFanInFanOut(t *testing.T) {
	dir := t.TempDir()
	specs := newBase(2, []baseTensor{{Name: "transformer.h.0.attn.c_attn.weight", DType: safetensors.F32, Shape: []int{4, 9}}})
	base := filepath.Join(dir, "model.safetensors")
	writeBase(t, base, specs)
	ad := filepath.Join(dir, "lora")
	res, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 3, R: 2, Alpha: 4, FanInFanOut: true,
		Modules: []testgen.Module{{Name: "transformer.h.0.attn.c_attn", In: 4, Out: 9}}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1}}}, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	got := readAll64(t, filepath.Join(out, "model.safetensors"))["transformer.h.0.attn.c_attn.weight"]
	d := transposeF64(dense(res.Modules["transformer.h.0.attn.c_attn"], 2), 9, 4)
	want := specs[0].Values
	for i := range want {
		want[i] += d[i]
	}
	checkClose(t, "c_attn", safetensors.F32, got, want)
}

// doraRef applies W' = m/‖W+Δ‖·(W+Δ) per row (W out×in).
func doraRef(w, d []float64, mag []float32, out, in int) {
	for o := 0; o < out; o++ {
		var ss float64
		for i := 0; i < in; i++ {
			w[o*in+i] += d[o*in+i]
			ss += w[o*in+i] * w[o*in+i]
		}
		g := float64(mag[o]) / math.Sqrt(ss)
		for i := 0; i < in; i++ {
			w[o*in+i] *= g
		}
	}
}

// A LoRA then a DoRA adapter on the same sharded base, in F64 and BF16:
// the DoRA norm is taken from the weight as it stands before the DoRA
// adapter; the index is rewritten.
func TestApplyDoRASequentialSharded(t *testing.T) {
	dir := t.TempDir()
	specs := newBase(3, []baseTensor{
		{Name: "model.a.weight", DType: safetensors.F64, Shape: []int{5, 4}},
		{Name: "model.b.weight", DType: safetensors.BF16, Shape: []int{6, 4}},
		{Name: "model.c.weight", DType: safetensors.F32, Shape: []int{16, 16}},
		{Name: "model.d.weight", DType: safetensors.F32, Shape: []int{7, 4}},
	})
	baseDir := filepath.Join(dir, "base")
	if err := safetensors.WriteCheckpoint(baseDir, baseTensors(specs), nil, 200); err != nil {
		t.Fatal(err)
	}
	l1 := filepath.Join(dir, "lora")
	r1, err := testgen.WriteLoRA(l1, testgen.LoRA{Seed: 4, R: 2, Alpha: 2, Modules: []testgen.Module{
		{Name: "model.a", In: 4, Out: 5}, {Name: "model.b", In: 4, Out: 6}, {Name: "model.d", In: 4, Out: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	l2 := filepath.Join(dir, "dora")
	r2, err := testgen.WriteLoRA(l2, testgen.LoRA{Seed: 5, R: 4, Alpha: 8, RSLoRA: true, DoRA: true, Modules: []testgen.Module{
		{Name: "model.a", In: 4, Out: 5}, {Name: "model.b", In: 4, Out: 6}, {Name: "model.d", In: 4, Out: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "merged")
	rep, err := Apply(ApplyParams{Base: baseDir, Adapters: []AdapterScale{{l1, 1}, {l2, 0.5}}, Verify: true}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) < 3 || !strings.HasSuffix(rep.Files[3], safetensors.IndexFileName) {
		t.Fatalf("files %v", rep.Files)
	}
	got := readAll64(t, out)
	for _, s := range []baseTensor{specs[0], specs[1], specs[3]} {
		mod := strings.TrimSuffix(s.Name, ".weight")
		w := append([]float64(nil), s.Values...)
		d1 := dense(r1.Modules[mod], 1)
		for i := range w {
			w[i] += d1[i]
		}
		f2 := r2.Modules[mod]
		doraRef(w, dense(f2, 0.5*8/math.Sqrt(4)), f2.Magnitude, f2.Out, f2.In)
		checkClose(t, s.Name, s.DType, got[s.Name], w)
	}
	// Untouched, in its own shard, byte-identical.
	c, _ := safetensors.OpenCheckpoint(out)
	defer c.Close()
	b0, _ := safetensors.OpenCheckpoint(baseDir)
	defer b0.Close()
	x, _ := c.Data("model.c.weight")
	y, _ := b0.Data("model.c.weight")
	if !bytes.Equal(x, y) || c.DeclaredTotalSize != c.TotalSize {
		t.Fatal("untouched tensor or total_size differs")
	}
}

// IA3: rows (and bias) or, for feed-forward modules, columns.
func TestApplyIA3(t *testing.T) {
	dir := t.TempDir()
	specs := newBase(6, []baseTensor{
		{Name: "enc.k.weight", DType: safetensors.F32, Shape: []int{3, 4}},
		{Name: "enc.k.bias", DType: safetensors.F32, Shape: []int{3}},
		{Name: "enc.wi.weight", DType: safetensors.F16, Shape: []int{5, 4}},
		{Name: "enc.wi.bias", DType: safetensors.F16, Shape: []int{5}},
	})
	base := filepath.Join(dir, "model.safetensors")
	writeBase(t, base, specs)
	ad := filepath.Join(dir, "ia3")
	res, err := testgen.WriteIA3(ad, 8, []testgen.IA3Module{{Name: "enc.k", In: 4, Out: 3}, {Name: "enc.wi", In: 4, Out: 5, Feedforward: true}}, false)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "o.safetensors")
	if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1}}}, RunOptions{Output: out}); err != nil {
		t.Fatal(err)
	}
	got := readAll64(t, out)
	lk, lw := res.Modules["enc.k"].IA3, res.Modules["enc.wi"].IA3
	wk := specs[0].Values
	for o := 0; o < 3; o++ {
		for i := 0; i < 4; i++ {
			wk[o*4+i] *= float64(lk[o])
		}
		specs[1].Values[o] *= float64(lk[o])
	}
	ww := specs[2].Values
	for o := 0; o < 5; o++ {
		for i := 0; i < 4; i++ {
			ww[o*4+i] *= float64(lw[i])
		}
	}
	for _, s := range specs {
		checkClose(t, s.Name, s.DType, got[s.Name], s.Values) // enc.wi.bias untouched
	}
	if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 2}}}, RunOptions{Output: out}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("IA3 with scale 2: %v", err)
	}
}

// modules_to_save replace base tensors (converted to the base dtype) or are
// added when the base lacks them.
func TestApplyModulesToSave(t *testing.T) {
	dir := t.TempDir()
	specs := newBase(9, []baseTensor{
		{Name: "classifier.weight", DType: safetensors.BF16, Shape: []int{2, 3}},
		{Name: "model.q.weight", DType: safetensors.F32, Shape: []int{3, 3}},
	})
	base := filepath.Join(dir, "model.safetensors")
	writeBase(t, base, specs)
	ad := filepath.Join(dir, "lora")
	res, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 10, R: 1, Alpha: 1, Modules: []testgen.Module{{Name: "model.q", In: 3, Out: 3}},
		Full: map[string][]int{"classifier.weight": {2, 3}, "classifier.bias": {2}}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "o.safetensors")
	rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1}}, Verify: true}, RunOptions{Output: out})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll64(t, out)
	checkClose(t, "classifier.weight", safetensors.BF16, got["classifier.weight"], f64(res.Full["classifier.weight"]))
	checkClose(t, "classifier.bias", safetensors.F32, got["classifier.bias"], f64(res.Full["classifier.bias"]))
	f, _ := safetensors.Open(out)
	defer f.Close()
	if ti, _ := f.Tensor("classifier.weight"); ti.DType != safetensors.BF16 {
		t.Errorf("replaced tensor dtype %s", ti.DType)
	}
	if rep.Replaced != 1 || len(f.Tensors) != 3 {
		t.Errorf("replaced %d, added %d, %d tensors", rep.Replaced, rep.Added, len(f.Tensors))
	}
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// Refusals and dry runs write nothing.
func TestApplyPlanAndRefusals(t *testing.T) {
	dir := t.TempDir()
	specs := newBase(11, []baseTensor{{Name: "model.q.weight", DType: safetensors.F32, Shape: []int{3, 3}}})
	base := filepath.Join(dir, "model.safetensors")
	writeBase(t, base, specs)
	good := filepath.Join(dir, "good")
	testgen.WriteLoRA(good, testgen.LoRA{Seed: 1, R: 1, Modules: []testgen.Module{{Name: "model.q", In: 3, Out: 3}}})
	out := filepath.Join(dir, "o.safetensors")
	rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{good, 1}}}, RunOptions{Output: out, DryRun: true})
	if err != nil || rep.Applied != 1 || rep.Touched != 1 || rep.Bytes != 36 {
		t.Fatalf("dry run: %v %+v", err, rep)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("dry run wrote output")
	}
	cases := []struct {
		name string
		spec testgen.LoRA
	}{
		{"module missing in base", testgen.LoRA{Seed: 1, R: 1, Modules: []testgen.Module{{Name: "model.q", In: 3, Out: 3}, {Name: "model.k", In: 3, Out: 3}}}},
		{"shape mismatch", testgen.LoRA{Seed: 1, R: 1, Modules: []testgen.Module{{Name: "model.q", In: 4, Out: 3}}}},
		{"KaSA rank leaves nothing to truncate", testgen.LoRA{Seed: 1, R: 3, KaSA: true, Modules: []testgen.Module{{Name: "model.q", In: 3, Out: 3}}}},
		{"lora_bias without base bias", testgen.LoRA{Seed: 1, R: 1, LoRABias: true, Modules: []testgen.Module{{Name: "model.q", In: 3, Out: 3}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ad := filepath.Join(t.TempDir(), "a")
			if _, err := testgen.WriteLoRA(ad, c.spec); err != nil {
				t.Fatal(err)
			}
			rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1}}}, RunOptions{Output: out})
			if !errors.Is(err, ErrUnsupported) || rep == nil || rep.Refused == 0 {
				t.Fatalf("error %v, report %+v", err, rep)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatal("refused apply wrote output")
			}
		})
	}
	// An FP8 base without scales (its codes are not the weights).
	f8 := filepath.Join(dir, "f8.safetensors")
	if err := safetensors.WriteFile(f8, []safetensors.Tensor{{Name: "model.q.weight", DType: safetensors.F8E4M3, Shape: []int{3, 3}, Data: make([]byte, 9)}}, nil); err != nil {
		t.Fatal(err)
	}
	if rep, err := Apply(ApplyParams{Base: f8, Adapters: []AdapterScale{{good, 1}}}, RunOptions{Output: out}); !errors.Is(err, ErrUnsupported) || rep.Refused != 1 {
		t.Fatalf("FP8 base: %v", err)
	}
	if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{good, 1}}}, RunOptions{Output: out, DType: "bf16"}); !errors.Is(err, ErrParams) {
		t.Fatalf("--dtype accepted: %v", err)
	}
}

// The base found under another prefix (diffusers "unet." module names
// against a bare UNet file).
func TestBaseIndexFind(t *testing.T) {
	ix := newBaseIndex([]string{"down_blocks.0.attn.to_q.weight", "model.layers.0.q.weight", "text_model.encoder.layers.0.self_attn.k_proj.weight"})
	cases := map[string]string{
		"unet.down_blocks.0.attn.to_q": "down_blocks.0.attn.to_q.weight",
		"layers.0.q":                   "model.layers.0.q.weight",
		"model.layers.0.q":             "model.layers.0.q.weight",
		"lora_te_text_model_encoder_layers_0_self_attn_k_proj": "text_model.encoder.layers.0.self_attn.k_proj.weight",
		"model.layers.1.q": "",
	}
	for mod, want := range cases {
		if got := ix.find(mod, "weight"); got != want {
			t.Errorf("find(%q) = %q, want %q", mod, got, want)
		}
	}
}

// BenchmarkApply folds a rank-16 LoRA into eight 1024×1024 BF16 weights
// (bytes = base tensor bytes read + written).
func BenchmarkApply(b *testing.B) {
	dir := b.TempDir()
	var specs []baseTensor
	var mods []testgen.Module
	for i := range 8 {
		name := "model.layers." + string(rune('0'+i)) + ".q_proj"
		specs = append(specs, baseTensor{Name: name + ".weight", DType: safetensors.BF16, Shape: []int{1024, 1024}})
		mods = append(mods, testgen.Module{Name: name, In: 1024, Out: 1024})
	}
	specs = newBase(1, specs)
	base := filepath.Join(dir, "model.safetensors")
	if err := safetensors.WriteFile(base, baseTensors(specs), nil); err != nil {
		b.Fatal(err)
	}
	ad := filepath.Join(dir, "lora")
	if _, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 1, R: 16, Modules: mods}); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out.safetensors")
	b.SetBytes(2 * 8 * 1024 * 1024 * 2)
	for b.Loop() {
		if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1}}}, RunOptions{Output: out}); err != nil {
			b.Fatal(err)
		}
	}
}

// Real adapters from the corpus folded into synthetic bases of the shapes
// they target: a GPT-2 Conv1D (fan_in_fan_out) LoRA whose rank exceeds the
// layer width, and an AdaLoRA with a modules_to_save classifier. The
// expected weights come from the adapter package's own dense ΔW
// (Factors.Delta), independent of apply's code.
func TestApplyCorpus(t *testing.T) {
	root := corpusDir(t)
	for _, name := range []string{"tinygpt2-r4-gt-dim", "berttiny-adalora-tokcls"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, name)
			a, err := adapter.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			var specs []baseTensor
			for _, m := range a.Modules {
				switch {
				case m.Kind == adapter.KindFull:
					for role, tr := range m.Tensors {
						specs = append(specs, baseTensor{Name: m.Name + "." + role, DType: safetensors.BF16, Shape: tr.Shape})
					}
				case m.FanInFanOut:
					specs = append(specs, baseTensor{Name: m.Name + ".weight", DType: safetensors.F32, Shape: []int{m.InFeatures, m.OutFeatures}})
				default:
					specs = append(specs, baseTensor{Name: m.Name + ".weight", DType: safetensors.F32, Shape: []int{m.OutFeatures, m.InFeatures}})
				}
			}
			specs = append(specs, baseTensor{Name: "untouched.weight", DType: safetensors.F16, Shape: []int{3, 5}})
			specs = newBase(77, specs)
			tmp := t.TempDir()
			base := filepath.Join(tmp, "model.safetensors")
			writeBase(t, base, specs)
			out := filepath.Join(tmp, "merged.safetensors")
			rep, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{dir, 1}}, Verify: true}, RunOptions{Output: out})
			if err != nil {
				t.Fatal(err)
			}
			if rep.VerifyFailures != 0 || rep.Refused != 0 || rep.Copied != 1 {
				t.Fatalf("report: %d verify failures, %d refused, %d copied", rep.VerifyFailures, rep.Refused, rep.Copied)
			}
			got := readAll64(t, out)
			for _, s := range specs {
				mod, role := s.Name[:strings.LastIndex(s.Name, ".")], s.Name[strings.LastIndex(s.Name, ".")+1:]
				m := a.Module(mod)
				want := append([]float64(nil), s.Values...)
				switch {
				case m == nil:
				case m.Kind == adapter.KindFull:
					v, err := a.File.Float32(m.Tensors[role].Name)
					if err != nil {
						t.Fatal(err)
					}
					want = f64(v)
				default:
					f, err := a.Factors(m)
					if err != nil {
						t.Fatal(err)
					}
					d := f64(f.Delta())
					if m.FanInFanOut {
						d = transposeF64(d, f.Out, f.In)
					}
					for i := range want {
						want[i] += d[i]
					}
				}
				checkClose(t, s.Name, s.DType, got[s.Name], want)
			}
		})
	}
}
