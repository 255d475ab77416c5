package ops

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/adaptool/adaptool/quant"
)

// Synthetic llama-like GGUF base: n_embd 256, 4 heads of 64, 2 KV heads,
// vocab 40, 2 layers.
const (
	gEmbd, gHeads, gKV, gVocab = 256, 4, 2, 40
	gHeadDim                   = gEmbd / gHeads
)

// ggufBaseTensor is one tensor of the synthetic base: ne (ggml order) and
// the type its 2-D weights are stored in.
type ggufBaseTensor struct {
	name string
	ne   []uint64
}

func ggufBaseSpecs() []ggufBaseTensor {
	s := []ggufBaseTensor{{"token_embd.weight", []uint64{gEmbd, gVocab}}}
	for _, l := range []string{"0", "1"} {
		s = append(s,
			ggufBaseTensor{"blk." + l + ".attn_norm.weight", []uint64{gEmbd}},
			ggufBaseTensor{"blk." + l + ".attn_q.weight", []uint64{gEmbd, gEmbd}},
			ggufBaseTensor{"blk." + l + ".attn_k.weight", []uint64{gEmbd, gKV * gHeadDim}},
			ggufBaseTensor{"blk." + l + ".attn_v.weight", []uint64{gEmbd, gKV * gHeadDim}},
			ggufBaseTensor{"blk." + l + ".attn_output.weight", []uint64{gEmbd, gEmbd}},
			ggufBaseTensor{"blk." + l + ".ffn_up.weight", []uint64{gEmbd, gEmbd}},
		)
	}
	return append(s, ggufBaseTensor{"output_norm.weight", []uint64{gEmbd}}, ggufBaseTensor{"output.weight", []uint64{gEmbd, gVocab}})
}

// encodeAs encodes float32 values as a ggml type with the package's and
// quant's encoders (the base bytes; what they decode to is the reference).
func encodeAs(t *testing.T, v []float32, typ gguf.GGMLType) []byte {
	t.Helper()
	if qt := quant.GGUFType(typ); qt.BlockSize() != 0 {
		b := make([]byte, len(v)/qt.BlockSize()*qt.TypeSize())
		if err := quant.QuantizeGGUF(b, v, qt); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := gguf.Encode(v, typ)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeGGUFBase writes the synthetic base with its 2-D weights in typ (1-D
// norms in F32) and returns the decoded values of every tensor and the raw
// bytes.
func writeGGUFBase(t *testing.T, path string, typ gguf.GGMLType, seed uint64) (map[string][]float64, map[string][]byte) {
	t.Helper()
	return writeGGUFBaseMixed(t, path, func(string) gguf.GGMLType { return typ }, seed)
}

// kMix gives the 2-D weights of the synthetic base the k-quant types of a
// llama.cpp Q2_K/Q3_K_M/Q5_K_M-style mix: every type of the family appears
// on a touched tensor (attn_q/attn_k/attn_v/ffn_up/token_embd) and on an
// untouched one (attn_output, output).
func kMix(name string) gguf.GGMLType {
	switch {
	case strings.HasSuffix(name, "attn_q.weight"):
		return gguf.Q2_K
	case strings.HasSuffix(name, "attn_k.weight"):
		return gguf.Q3_K
	case strings.HasSuffix(name, "attn_v.weight"), name == "output.weight":
		return gguf.Q5_K
	case strings.HasSuffix(name, "ffn_up.weight"):
		return gguf.Q4_K
	case name == "blk.0.attn_output.weight":
		return gguf.Q2_K
	case name == "blk.1.attn_output.weight":
		return gguf.Q3_K
	}
	return gguf.Q6_K // token_embd
}

// writeGGUFBaseMixed is writeGGUFBase with the type of each 2-D weight
// given by typeOf(name).
func writeGGUFBaseMixed(t *testing.T, path string, typeOf func(string) gguf.GGMLType, seed uint64) (map[string][]float64, map[string][]byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	vals, raw := map[string][]float64{}, map[string][]byte{}
	var ts []gguf.Tensor
	for _, s := range ggufBaseSpecs() {
		n := 1
		for _, d := range s.ne {
			n *= int(d)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.05)
		}
		tt := typeOf(s.name)
		if len(s.ne) == 1 {
			tt = gguf.F32
		}
		b := encodeAs(t, v, tt)
		dec, err := gguf.Decode(b, tt, int64(n))
		if err != nil {
			t.Fatal(err)
		}
		vals[s.name] = f64(dec)
		raw[s.name] = b
		ts = append(ts, gguf.Tensor{Name: s.name, Type: tt, Dims: s.ne, Data: b})
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.name", Value: gguf.String("tiny")},
		{Key: "llama.embedding_length", Value: gguf.Uint32(gEmbd)},
		{Key: "llama.attention.head_count", Value: gguf.Uint32(gHeads)},
		{Key: "llama.attention.head_count_kv", Value: gguf.Uint32(gKV)},
		{Key: "general.file_type", Value: gguf.Uint32(7)},
		{Key: "tokenizer.ggml.tokens", Value: gguf.Array(gguf.TypeString, []string{"a", "b"})},
	}
	if err := gguf.WriteFile(path, kv, ts); err != nil {
		t.Fatal(err)
	}
	return vals, raw
}

// ggufLoRA is a hand-written llama.cpp GGUF LoRA adapter: per base tensor,
// lora_a and lora_b as stored (row-major over the reversed ne).
type ggufLoRA struct {
	alpha float32
	rank  int
	a, b  map[string][]float32
}

// writeGGUFLoRA writes a GGUF LoRA for blk.0.attn_q, blk.1.ffn_up and
// token_embd (lora_a flipped: ne [r, vocab]).
func writeGGUFLoRA(t *testing.T, path string, seed uint64) *ggufLoRA {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	g := &ggufLoRA{alpha: 8, rank: 4, a: map[string][]float32{}, b: map[string][]float32{}}
	r := uint64(g.rank)
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
		}
		return v
	}
	var ts []gguf.Tensor
	add := func(base string, neA, neB []uint64) {
		a, b := fill(int(neA[0]*neA[1])), fill(int(neB[0]*neB[1]))
		g.a[base], g.b[base] = a, b
		ts = append(ts,
			gguf.Tensor{Name: base + ".lora_a", Type: gguf.F32, Dims: neA, Data: encodeAs(t, a, gguf.F32)},
			gguf.Tensor{Name: base + ".lora_b", Type: gguf.F32, Dims: neB, Data: encodeAs(t, b, gguf.F32)})
	}
	add("blk.0.attn_q.weight", []uint64{gEmbd, r}, []uint64{r, gEmbd})
	add("blk.1.ffn_up.weight", []uint64{gEmbd, r}, []uint64{r, gEmbd})
	add("token_embd.weight", []uint64{r, gVocab}, []uint64{r, gEmbd})
	// a norm vector, which llama.cpp ignores
	ts = append(ts, gguf.Tensor{Name: "blk.0.attn_norm.weight", Type: gguf.F32, Dims: []uint64{gEmbd}, Data: encodeAs(t, fill(gEmbd), gguf.F32)})
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.type", Value: gguf.String("adapter")},
		{Key: "adapter.type", Value: gguf.String("lora")},
		{Key: "adapter.lora.alpha", Value: gguf.Float32(g.alpha)},
	}
	if err := gguf.WriteFile(path, kv, ts); err != nil {
		t.Fatal(err)
	}
	return g
}

// addGGUFLoRARef adds λ·(alpha/r)·ΔW of a GGUF LoRA to want, ΔW computed
// as llama.cpp's export-lora defines it on the stored arrays.
func addGGUFLoRARef(want map[string][]float64, g *ggufLoRA, lambda float64) {
	s := lambda * float64(g.alpha) / float64(g.rank)
	r := g.rank
	for name, a := range g.a {
		b := g.b[name]
		w := want[name]
		if name == "token_embd.weight" {
			// a stored (vocab, r), b stored (embd, r): ΔW[v][e] = Σ a[v][k]·b[e][k]
			for v := 0; v < gVocab; v++ {
				for e := 0; e < gEmbd; e++ {
					var d float64
					for k := 0; k < r; k++ {
						d += float64(a[v*r+k]) * float64(b[e*r+k])
					}
					w[v*gEmbd+e] += s * d
				}
			}
			continue
		}
		out, in := len(b)/r, len(a)/r
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				var d float64
				for k := 0; k < r; k++ {
					d += float64(b[o*r+k]) * float64(a[k*in+i])
				}
				w[o*in+i] += s * d
			}
		}
	}
}

// llamaRow returns the Hugging Face row that lands on llama.cpp row n of a
// q/k projection with nHead heads (convert_hf_to_gguf's permute: reshape
// (nHead, 2, d/2, in), swap axes 1 and 2).
func llamaRow(n, out, nHead int) int {
	d := out / nHead
	h, rem := n/d, n%d
	i, j := rem/2, rem%2 // new index within the head: (i, j) of shape (d/2, 2)
	return h*d + j*(d/2) + i
}

// addPEFTRef adds λ·s·ΔW of the PEFT modules to want in llama.cpp's frame.
func addPEFTRef(want map[string][]float64, gen *testgen.Result, scale, lambda float64) {
	for name, f := range gen.Modules {
		d := f.RefDelta(scale * lambda) // Out × In (HF frame)
		switch {
		case name == "model.embed_tokens":
			w := want["token_embd.weight"] // (vocab, embd) = ΔWᵀ
			for v := 0; v < f.In; v++ {
				for e := 0; e < f.Out; e++ {
					w[v*f.Out+e] += d[e*f.In+v]
				}
			}
		default:
			layer := strings.Split(name, ".")[2]
			proj := name[strings.LastIndex(name, ".")+1:]
			tensor := map[string]string{"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "up_proj": "ffn_up"}[proj]
			w := want["blk."+layer+"."+tensor+".weight"]
			for o := 0; o < f.Out; o++ {
				src := o
				if proj == "q_proj" {
					src = llamaRow(o, f.Out, gHeads)
				} else if proj == "k_proj" {
					src = llamaRow(o, f.Out, gKV)
				}
				for i := 0; i < f.In; i++ {
					w[o*f.In+i] += d[src*f.In+i]
				}
			}
		}
	}
}

func TestLlamaRowIsPermute(t *testing.T) {
	// 2 heads of 4: rows (h, half, i) → (h, i, half): 0 2 1 3 | 4 6 5 7
	want := []int{0, 2, 1, 3, 4, 6, 5, 7}
	for n, w := range want {
		if got := llamaRow(n, 8, 2); got != w {
			t.Fatalf("llamaRow(%d) = %d, want %d", n, got, w)
		}
	}
}

func TestApplyGGUF(t *testing.T) {
	dir := t.TempDir()
	peft, err := testgen.WriteLoRA(filepath.Join(dir, "peft"), testgen.LoRA{
		Seed: 11, R: 8, Alpha: 16,
		Modules: []testgen.Module{
			{Name: "model.layers.0.self_attn.q_proj", In: gEmbd, Out: gEmbd},
			{Name: "model.layers.0.self_attn.k_proj", In: gEmbd, Out: gKV * gHeadDim},
			{Name: "model.layers.1.self_attn.v_proj", In: gEmbd, Out: gKV * gHeadDim},
			{Name: "model.layers.1.self_attn.q_proj", In: gEmbd, Out: gEmbd},
			{Name: "model.layers.1.mlp.up_proj", In: gEmbd, Out: gEmbd},
			{Name: "model.embed_tokens", In: gVocab, Out: gEmbd, Embedding: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	const peftScale = 16.0 / 8
	lora := filepath.Join(dir, "lora.gguf")
	gl := writeGGUFLoRA(t, lora, 5)
	touched := map[string]bool{"token_embd.weight": true, "blk.0.attn_q.weight": true, "blk.0.attn_k.weight": true,
		"blk.1.attn_v.weight": true, "blk.1.attn_q.weight": true, "blk.1.ffn_up.weight": true}

	cases := []struct {
		name       string
		typ, out   gguf.GGMLType // out 0: each tensor's base type
		requantize bool
		peft, ggl  float64 // λ of each adapter (0: not given)
		fileType   uint32
		mix        func(string) gguf.GGMLType // per-tensor base types instead of typ
	}{
		{"f32 both", gguf.F32, gguf.F32, false, 1, 0.5, 7, nil},
		{"f16 peft", gguf.F16, gguf.F16, false, 1.5, 0, 7, nil},
		{"bf16 gguf", gguf.BF16, gguf.BF16, false, 0, 1, 7, nil},
		{"q8_0 both → f16", gguf.Q8_0, gguf.F16, false, 1, -0.5, 1, nil},
		{"q4_k both → f16", gguf.Q4_K, gguf.F16, false, 1, 1, 1, nil},
		{"q4_k requantize", gguf.Q4_K, gguf.Q4_K, true, 1, 1, 7, nil},
		{"q6_k requantize", gguf.Q6_K, gguf.Q6_K, true, 1, 0, 7, nil},
		{"q4_0 requantize", gguf.Q4_0, gguf.Q4_0, true, 0, 2, 7, nil},
		{"q2_k requantize", gguf.Q2_K, gguf.Q2_K, true, 1, 1, 7, nil},
		{"q3_k requantize", gguf.Q3_K, gguf.Q3_K, true, 1, 0.5, 7, nil},
		{"q5_k requantize", gguf.Q5_K, gguf.Q5_K, true, 0.5, 1, 7, nil},
		{"q5_k → f16", gguf.Q5_K, gguf.F16, false, 1, 1, 1, nil},
		{"k-quant mix requantize", 0, 0, true, 1, 1, 7, kMix},
		{"k-quant mix → f16", 0, gguf.F16, false, 1, -1, 1, kMix},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			basePath := filepath.Join(dir, c.name+".gguf")
			typeOf := c.mix
			if typeOf == nil {
				typeOf = func(string) gguf.GGMLType { return c.typ }
			}
			vals, raw := writeGGUFBaseMixed(t, basePath, typeOf, uint64(ci+1))
			p := ApplyParams{Base: basePath, Requantize: c.requantize, Verify: true}
			want := map[string][]float64{}
			for k, v := range vals {
				want[k] = append([]float64(nil), v...)
			}
			if c.peft != 0 {
				p.Adapters = append(p.Adapters, AdapterScale{Path: peft.Dir, Scale: c.peft})
				addPEFTRef(want, peft, peftScale, c.peft)
			}
			if c.ggl != 0 {
				p.Adapters = append(p.Adapters, AdapterScale{Path: lora, Scale: c.ggl})
				addGGUFLoRARef(want, gl, c.ggl)
			}
			out := filepath.Join(dir, c.name+"-out.gguf")
			rep, err := Apply(p, RunOptions{Output: out})
			if err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			base, err := gguf.Open(basePath)
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			if len(f.Tensors) != len(base.Tensors) {
				t.Fatalf("%d tensors, base has %d", len(f.Tensors), len(base.Tensors))
			}
			nTouched, maxErr := 0, 0.0
			for i, bt := range base.Tensors {
				ot := f.Tensors[i]
				if ot.Name != bt.Name {
					t.Fatalf("tensor %d is %q, base has %q", i, ot.Name, bt.Name)
				}
				data, err := f.Data(ot.Name)
				if err != nil {
					t.Fatal(err)
				}
				isTouched := touched[bt.Name] && want[bt.Name] != nil && changed(want[bt.Name], vals[bt.Name])
				if !isTouched {
					if ot.Type != bt.Type || !bytes.Equal(data, raw[bt.Name]) {
						t.Errorf("%s: untouched tensor not byte-identical", bt.Name)
					}
					continue
				}
				nTouched++
				outType := c.out
				if outType == 0 {
					outType = bt.Type
				}
				if ot.Type != outType {
					t.Fatalf("%s: written as %s, want %s", bt.Name, ot.Type, outType)
				}
				w := want[bt.Name]
				got, err := gguf.Decode(data, ot.Type, ot.NumElements())
				if err != nil {
					t.Fatal(err)
				}
				switch outType {
				case gguf.F32:
					for k, g := range got {
						e := math.Abs(float64(g) - w[k])
						maxErr = math.Max(maxErr, e)
						if e > 0x1p-24*math.Abs(w[k])*(1+1e-9) {
							t.Fatalf("%s[%d] = %v, exact %v: more than float32 rounding", bt.Name, k, g, w[k])
						}
					}
				default:
					// F16/BF16 exactly the reference rounded (float64 → float32 →
					// type, RNE); block types: exactly quant's quantization of
					// the float32-rounded reference (byte-identical to ggml).
					ref := make([]float32, len(w))
					for k := range w {
						ref[k] = float32(w[k])
					}
					if exp := encodeAs(t, ref, outType); !bytes.Equal(exp, data) {
						t.Fatalf("%s: %s bytes differ from the rounded reference", bt.Name, outType)
					}
					for k, g := range got {
						maxErr = math.Max(maxErr, math.Abs(float64(g)-w[k]))
					}
				}
			}
			t.Logf("%s: %d tensors merged, max |written − exact| = %.3g", c.name, nTouched, maxErr)
			// requantization error per module: RMSE of the written (dequantized)
			// tensor against the float32-rounded exact result
			for _, m := range rep.Modules {
				if (m.Requant != nil) != c.requantize {
					t.Fatalf("module %s: requant %+v", m.Name, m.Requant)
				}
				if m.Requant == nil {
					continue
				}
				got, err := f.Float32(m.Requant.Tensor)
				if err != nil {
					t.Fatal(err)
				}
				var se float64
				for k, g := range got {
					e := float64(g) - float64(float32(want[m.Requant.Tensor][k]))
					se += e * e
				}
				rmse := math.Sqrt(se / float64(len(got)))
				if math.Abs(rmse-m.Requant.RMSE) > 1e-9*rmse || m.Requant.Scheme != strings.ToLower(f.Tensors[tensorIndex(f, m.Requant.Tensor)].Type.String()) || m.Requant.Cosine == nil {
					t.Fatalf("module %s: requant %+v, rmse %v", m.Name, m.Requant, rmse)
				}
			}
			if !rep.Verified || rep.VerifyFailures != 0 {
				t.Fatalf("verified %v, %d failures", rep.Verified, rep.VerifyFailures)
			}
			for _, m := range rep.Modules {
				if v := m.Verify; v == nil || v.Quantized != c.requantize || !(v.RelFro <= v.Bound) || v.MaxAbs > maxErr*(1+1e-6) {
					t.Fatalf("module %s: verify %+v (max error %g)", m.Name, m.Verify, maxErr)
				}
			}
			if c.requantize && rep.Quantized != nTouched {
				t.Fatalf("quantized_weights_touched %d, want %d", rep.Quantized, nTouched)
			}
			if nTouched == 0 || rep.Touched != nTouched || rep.Copied != len(base.Tensors)-nTouched {
				t.Fatalf("touched %d, report touched %d copied %d", nTouched, rep.Touched, rep.Copied)
			}
			// metadata: every base key kept (file_type per the rule), provenance added
			for _, kv := range base.KV {
				v, ok := f.Get(kv.Key)
				if !ok {
					t.Fatalf("key %s lost", kv.Key)
				}
				if kv.Key == "general.file_type" {
					if v.X.(uint32) != c.fileType {
						t.Fatalf("general.file_type %v, want %d", v.X, c.fileType)
					}
				} else if v.String() != kv.Value.String() {
					t.Fatalf("key %s: %v, base %v", kv.Key, v, kv.Value)
				}
			}
			if op, _ := f.String("adaptool.operation"); op != "apply" {
				t.Fatalf("adaptool.operation %q", op)
			}
			if ignored := strings.Contains(strings.Join(rep.Warnings, "\n"), "not lora_a/lora_b ignored (as llama.cpp does): blk.0.attn_norm.weight"); ignored != (c.ggl != 0) {
				t.Fatalf("warnings %q", rep.Warnings)
			}
			if in, _ := f.String("adaptool.inputs"); !strings.Contains(in, rep.Base[0].SHA256) || rep.Base[0].SHA256 == "" {
				t.Fatalf("adaptool.inputs %q lacks the base hash", in)
			}
		})
	}
}

// tensorIndex returns the index of the tensor name in f.Tensors.
func tensorIndex(f *gguf.File, name string) int {
	for i, t := range f.Tensors {
		if t.Name == name {
			return i
		}
	}
	return -1
}

// changed reports whether any value differs.
func changed(a, b []float64) bool {
	for i := range a {
		if a[i] != b[i] {
			return true
		}
	}
	return false
}

func TestApplyGGUFRefusals(t *testing.T) {
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base.gguf")
	writeGGUFBase(t, basePath, gguf.F16, 3)
	unmatched, err := testgen.WriteLoRA(filepath.Join(dir, "unmatched"), testgen.LoRA{Seed: 2, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.q_proj", In: gEmbd, Out: gEmbd},
		{Name: "model.layers.7.self_attn.v_proj", In: gEmbd, Out: gKV * gHeadDim},
		{Name: "model.layers.0.self_attn.rotary", In: gEmbd, Out: gEmbd},
	}})
	if err != nil {
		t.Fatal(err)
	}
	shape, err := testgen.WriteLoRA(filepath.Join(dir, "shape"), testgen.LoRA{Seed: 2, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.v_proj", In: gEmbd, Out: 64},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// a base whose q is IQ4_XS (no merge path) and an adapter touching it
	iq := filepath.Join(dir, "iq4xs.gguf")
	if err := gguf.WriteFile(iq, []gguf.KV{{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "llama.attention.head_count", Value: gguf.Uint32(gHeads)}},
		[]gguf.Tensor{{Name: "blk.0.attn_q.weight", Type: gguf.IQ4_XS, Dims: []uint64{gEmbd, gEmbd}, Data: make([]byte, gEmbd*136)}}); err != nil {
		t.Fatal(err)
	}
	q, err := testgen.WriteLoRA(filepath.Join(dir, "q"), testgen.LoRA{Seed: 4, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.q_proj", In: gEmbd, Out: gEmbd}}})
	if err != nil {
		t.Fatal(err)
	}
	otherArch := filepath.Join(dir, "phi.gguf")
	if err := gguf.WriteFile(otherArch, []gguf.KV{{Key: "general.architecture", Value: gguf.String("phi3")},
		{Key: "general.type", Value: gguf.String("adapter")}, {Key: "adapter.type", Value: gguf.String("lora")}}, nil); err != nil {
		t.Fatal(err)
	}
	lone := filepath.Join(dir, "lone.gguf")
	if err := gguf.WriteFile(lone, []gguf.KV{{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.type", Value: gguf.String("adapter")}, {Key: "adapter.type", Value: gguf.String("lora")}},
		[]gguf.Tensor{
			{Name: "blk.0.attn_q.weight.lora_a", Type: gguf.F32, Dims: []uint64{gEmbd, 2}, Data: make([]byte, gEmbd*2*4)},
			{Name: "blk.9.attn_q.weight.lora_a", Type: gguf.F32, Dims: []uint64{gEmbd, 2}, Data: make([]byte, gEmbd*2*4)},
			{Name: "blk.9.attn_q.weight.lora_b", Type: gguf.F32, Dims: []uint64{2, gEmbd}, Data: make([]byte, gEmbd*2*4)},
		}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, base, adapter string
		want                error
		in                  []string
	}{
		{"unmatched modules listed", basePath, unmatched.Dir, ErrUnsupported, []string{"model.layers.7.self_attn.v_proj", "no base tensor blk.7.attn_v.weight", "rotary"}},
		{"shape mismatch", basePath, shape.Dir, ErrUnsupported, []string{"blk.0.attn_v.weight", "[256 64]"}},
		{"unsupported base type", iq, q.Dir, ErrUnsupported, []string{"iq4xs.gguf", "blk.0.attn_q.weight", "IQ4_XS", "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"}},
		{"gguf lora unpaired and unmatched", basePath, lone, ErrUnsupported, []string{"2 module(s)", "blk.0.attn_q (lora_a or lora_b missing)", "blk.9.attn_q (no base tensor blk.9.attn_q.weight)"}},
		{"adapter arch mismatch", basePath, otherArch, ErrIncompatible, []string{"phi3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.gguf")
			_, err := Apply(ApplyParams{Base: c.base, Adapters: []AdapterScale{{Path: c.adapter, Scale: 1}}}, RunOptions{Output: out})
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			for _, s := range c.in {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q lacks %q", err, s)
				}
			}
			if gguf.IsGGUF(out) {
				t.Fatal("output written despite the refusal")
			}
		})
	}
}
