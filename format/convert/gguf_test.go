package convert

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/quant"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"github.com/x448/float16"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/internal/testgen"
)

// oracleTensors parses a GGUF file with github.com/gpustack/gguf-parser-go
// (independent of format/gguf) and decodes every tensor from the raw file
// bytes at the oracle's offsets: F32/F16/BF16 exactly, Q8_0 by the ggml block
// layout (d f16, 32 int8).
type oracleTensor struct {
	dims []uint64
	typ  string
	v    []float64
}

func oracleParse(t *testing.T, path string) (*parser.GGUFFile, map[string]oracleTensor) {
	t.Helper()
	o, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("oracle parse: %v", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	out := map[string]oracleTensor{}
	for _, ti := range o.TensorInfos {
		start := o.TensorDataStartOffset + int64(ti.Offset)
		b := raw[start : start+int64(ti.Bytes())]
		n := int(ti.Elements())
		v := make([]float64, n)
		switch ti.Type {
		case parser.GGMLTypeF32:
			for i := range v {
				v[i] = float64(math.Float32frombits(le.Uint32(b[4*i:])))
			}
		case parser.GGMLTypeF16:
			for i := range v {
				v[i] = float64(float16.Frombits(le.Uint16(b[2*i:])).Float32())
			}
		case parser.GGMLTypeBF16:
			for i := range v {
				v[i] = float64(math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16))
			}
		case parser.GGMLTypeQ8_0:
			for blk := 0; blk < n/32; blk++ {
				d := float64(float16.Frombits(le.Uint16(b[34*blk:])).Float32())
				for j := 0; j < 32; j++ {
					v[blk*32+j] = float64(int8(b[34*blk+2+j])) * d
				}
			}
		default:
			t.Fatalf("%s: unexpected type %v", ti.Name, ti.Type)
		}
		out[ti.Name] = oracleTensor{dims: ti.Dimensions, typ: ti.Type.String(), v: v}
	}
	return o, out
}

func kvString(t *testing.T, o *parser.GGUFFile, key string) string {
	kv, ok := o.Header.MetadataKV.Get(key)
	if !ok {
		t.Fatalf("key %s missing", key)
	}
	return kv.ValueString()
}

func kvAlpha(t *testing.T, o *parser.GGUFFile) float64 {
	kv, ok := o.Header.MetadataKV.Get("adapter.lora.alpha")
	if !ok {
		t.Fatal("adapter.lora.alpha missing")
	}
	return float64(kv.ValueFloat32())
}

func writeJSON(t *testing.T, dir, body string) string {
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// llamaPermutedRow is llama.cpp's LlamaModel.permute written as numpy does
// it: reshape(n_head, 2, d/2, cols).swapaxes(1, 2).reshape — the new row at
// (h, i, j) holds the old row at (h, j, i).
func llamaPermutedRow(newRow, out, nHead int) int {
	d := out / nHead
	h, rem := newRow/d, newRow%d
	i, j := rem/2, rem%2
	return h*d + j*(d/2) + i
}

func TestGGUFLlamaOracle(t *testing.T) {
	corpus := corpusDir(t)
	src := filepath.Join(corpus, "llama32-1b-qv")
	a, err := adapter.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dir := t.TempDir()
	base, err := LoadBase(writeJSON(t, dir, `{"architectures":["LlamaForCausalLM"],"num_attention_heads":32,"num_key_value_heads":8,"num_hidden_layers":16,"tie_word_embeddings":true}`))
	if err != nil {
		t.Fatal(err)
	}
	// without head counts the q/k permutation cannot be done
	if _, err := ToGGUF(a, filepath.Join(dir, "x.gguf"), GGUFOptions{Arch: "llama"}); !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), "--base-config") {
		t.Fatalf("no base: %v", err)
	}
	for _, outtype := range []string{"f32", "f16", "bf16", "q8_0"} {
		t.Run(outtype, func(t *testing.T) {
			out := filepath.Join(dir, outtype+".gguf")
			res, err := ToGGUF(a, out, GGUFOptions{Arch: "llama", OutType: outtype, Base: base})
			if err != nil {
				t.Fatal(err)
			}
			if res.Baked || res.Alpha == nil || *res.Alpha != 32 {
				t.Errorf("alpha %v baked %v, want 32 unbaked", res.Alpha, res.Baked)
			}
			o, ts := oracleParse(t, out)
			if kvString(t, o, "general.type") != "adapter" || kvString(t, o, "adapter.type") != "lora" || kvString(t, o, "general.architecture") != "llama" {
				t.Fatal("adapter KV wrong")
			}
			if kvAlpha(t, o) != 32 {
				t.Errorf("oracle alpha %v", kvAlpha(t, o))
			}
			if len(ts) != 64 {
				t.Fatalf("%d tensors, want 64", len(ts))
			}
			// tolerance per stored type, relative to the tensor's absmax
			tol := map[string]float64{"F32": 0, "F16": 0x1p-11, "BF16": 0x1p-8, "Q8_0": 1.0/254 + 0x1p-11} // Q8_0: half a step d/2 plus d's own f16 rounding
			for _, m := range a.Modules {
				f, err := a.Factors(m)
				if err != nil {
					t.Fatal(err)
				}
				layer := strings.Split(m.Name, ".")[2]
				proj := map[string]string{"q_proj": "attn_q", "v_proj": "attn_v"}[m.Name[strings.LastIndexByte(m.Name, '.')+1:]]
				name := "blk." + layer + "." + proj + ".weight"
				la, lb := ts[name+".lora_a"], ts[name+".lora_b"]
				if la.v == nil || lb.v == nil {
					t.Fatalf("%s: %s missing", m.Name, name)
				}
				if la.dims[0] != uint64(f.In) || la.dims[1] != 8 || lb.dims[0] != 8 || lb.dims[1] != uint64(f.Out) {
					t.Fatalf("%s: ne %v / %v", name, la.dims, lb.dims)
				}
				wantA, wantB := map[string]string{"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}[outtype], ""
				wantB = wantA
				if outtype == "q8_0" {
					wantB = "F16" // ne[0] = r = 8 is not a multiple of 32
				}
				if la.typ != wantA || lb.typ != wantB {
					t.Errorf("%s: types %s/%s, want %s/%s", name, la.typ, lb.typ, wantA, wantB)
				}
				check := func(what string, got []float64, want func(i int) float64, typ string) {
					var amax float64
					for i := range got {
						amax = math.Max(amax, math.Abs(want(i)))
					}
					for i := range got {
						if d := math.Abs(got[i] - want(i)); d > tol[typ]*amax {
							t.Fatalf("%s %s[%d] = %v, want %v (tol %g)", name, what, i, got[i], want(i), tol[typ]*amax)
						}
					}
				}
				check("lora_a", la.v, func(i int) float64 { return float64(f.A[i]) }, la.typ)
				r := f.Rank
				check("lora_b", lb.v, func(i int) float64 {
					row, k := i/r, i%r
					if proj == "attn_q" {
						row = llamaPermutedRow(row, f.Out, 32)
					}
					return float64(f.B[row*r+k])
				}, lb.typ)
			}
		})
	}
}

func TestGGUFBloomGPT2(t *testing.T) {
	corpus := corpusDir(t)
	dir := t.TempDir()
	// BLOOM-560m: 16 heads, fused query_key_value rows reordered to q|k|v
	a, err := adapter.Load(filepath.Join(corpus, "bloom560m-r10-alpha1"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	base, _ := LoadBase(writeJSON(t, dir, `{"n_head":16,"hidden_size":1024,"n_layer":24}`))
	out := filepath.Join(dir, "bloom.gguf")
	if _, err := ToGGUF(a, out, GGUFOptions{Arch: "bloom", Base: base}); err != nil {
		t.Fatal(err)
	}
	o, ts := oracleParse(t, out)
	if kvString(t, o, "general.architecture") != "bloom" || kvAlpha(t, o) != 1 {
		t.Fatalf("bloom kv: arch %s alpha %v", kvString(t, o, "general.architecture"), kvAlpha(t, o))
	}
	m := a.Module("transformer.h.3.self_attention.query_key_value")
	if m == nil {
		t.Fatal("module missing")
	}
	f, _ := a.Factors(m)
	lb := ts["blk.3.attn_qkv.weight.lora_b"]
	if len(lb.v) != 3072*10 || lb.dims[0] != 10 || lb.dims[1] != 3072 {
		t.Fatalf("qkv lora_b ne %v", lb.dims)
	}
	// old row (head h, part t, i) → new row (part t, head h, i); d = 64
	for h := 0; h < 16; h++ {
		for part := 0; part < 3; part++ {
			for i := 0; i < 64; i++ {
				newRow, oldRow := part*1024+h*64+i, h*192+part*64+i
				for k := 0; k < 10; k++ {
					if lb.v[newRow*10+k] != float64(f.B[oldRow*10+k]) {
						t.Fatalf("reorder: row %d col %d", newRow, k)
					}
				}
			}
		}
	}
	if _, ok := ts["blk.3.ffn_up.weight.lora_a"]; !ok && a.Module("transformer.h.3.mlp.dense_h_to_4h") != nil {
		t.Error("ffn_up missing")
	}

	// GPT-2 (Conv1D, fan_in_fan_out): PEFT factors are already in the
	// (out,in) frame, so lora_a ne = [in, r] with no transpose.
	g, err := adapter.Load(filepath.Join(corpus, "gpt2-clm-r8-fanin"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	out = filepath.Join(dir, "gpt2.gguf")
	if _, err := ToGGUF(g, out, GGUFOptions{Arch: "gpt2"}); err != nil {
		t.Fatal(err)
	}
	_, ts = oracleParse(t, out)
	qa, qb := ts["blk.0.attn_qkv.weight.lora_a"], ts["blk.0.attn_qkv.weight.lora_b"]
	if qa.dims[0] != 768 || qa.dims[1] != 8 || qb.dims[0] != 8 || qb.dims[1] != 2304 {
		t.Errorf("gpt2 attn_qkv ne %v %v", qa.dims, qb.dims)
	}
	if d := ts["blk.0.ffn_down.weight.lora_a"].dims; len(d) != 2 || d[0] != 3072 {
		t.Errorf("gpt2 ffn_down lora_a ne %v", d)
	}
}

// Mixed ranks and rsLoRA: no single alpha fits, so each module's scale is
// baked into its lora_b and alpha = 0 (runtime scale = user scale).
func TestGGUFMixedRankBaked(t *testing.T) {
	dir := t.TempDir()
	gen, err := testgen.WriteLoRA(filepath.Join(dir, "in"), testgen.LoRA{
		Seed: 7, R: 8, Alpha: 16, RSLoRA: true,
		Modules: []testgen.Module{
			{Name: "model.layers.0.self_attn.v_proj", In: 64, Out: 32},
			{Name: "model.layers.0.self_attn.o_proj", In: 64, Out: 64, Rank: 4},
			{Name: "model.layers.1.mlp.down_proj", In: 96, Out: 64, Rank: 2},
		},
		RankPattern: []testgen.KV{{Key: "o_proj", Value: 4}, {Key: "down_proj", Value: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := adapter.Load(gen.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	out := filepath.Join(dir, "mixed.gguf")
	res, err := ToGGUF(a, out, GGUFOptions{Arch: "qwen2", OutType: "f32"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Baked || *res.Alpha != 0 || !strings.Contains(strings.Join(res.Warnings, "\n"), "baked") && !strings.Contains(strings.Join(res.Warnings, "\n"), "multiplied into its lora_b") {
		t.Fatalf("baked %v alpha %v warnings %q", res.Baked, *res.Alpha, res.Warnings)
	}
	o, ts := oracleParse(t, out)
	if kvAlpha(t, o) != 0 {
		t.Fatalf("alpha %v", kvAlpha(t, o))
	}
	names := map[string]string{
		"model.layers.0.self_attn.v_proj": "blk.0.attn_v", "model.layers.0.self_attn.o_proj": "blk.0.attn_output",
		"model.layers.1.mlp.down_proj": "blk.1.ffn_down",
	}
	for mod, base := range names {
		gf := gen.Modules[mod]
		s := 16 / math.Sqrt(float64(gf.Rank)) // rsLoRA: alpha/√r, computed here
		la, lb := ts[base+".weight.lora_a"], ts[base+".weight.lora_b"]
		if lb.dims[0] != uint64(gf.Rank) {
			t.Fatalf("%s rank %d", base, lb.dims[0])
		}
		// llama.cpp with alpha = 0: ΔW = user_scale · lora_b · lora_a
		for o := 0; o < gf.Out; o++ {
			for i := 0; i < gf.In; i++ {
				var got, want, mag float64
				for k := 0; k < gf.Rank; k++ {
					got += lb.v[o*gf.Rank+k] * la.v[k*gf.In+i]
					p := float64(gf.B[o*gf.Rank+k]) * float64(gf.A[k*gf.In+i])
					want += p
					mag += math.Abs(p)
				}
				want *= s
				// lora_b = float32(s·B): one float32 rounding per term
				if math.Abs(got-want) > 0x1p-23*mag*s {
					t.Fatalf("%s ΔW[%d,%d] = %v, want %v", base, o, i, got, want)
				}
			}
		}
	}
}

func TestGGUFRefusals(t *testing.T) {
	dir := t.TempDir()
	lm, err := testgen.WriteLoRA(filepath.Join(dir, "lm"), testgen.LoRA{Seed: 1, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.v_proj", In: 32, Out: 32}, {Name: "lm_head", In: 32, Out: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	full, err := testgen.WriteLoRA(filepath.Join(dir, "full"), testgen.LoRA{Seed: 2,
		Modules: []testgen.Module{{Name: "model.layers.0.self_attn.v_proj", In: 32, Out: 32}},
		Full:    map[string][]int{"model.embed_tokens.weight": {100, 32}}})
	if err != nil {
		t.Fatal(err)
	}
	emb, err := testgen.WriteLoRA(filepath.Join(dir, "emb"), testgen.LoRA{Seed: 3,
		Modules: []testgen.Module{{Name: "model.embed_tokens", In: 100, Out: 32, Embedding: true}}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dir, arch string
		want      error
		in        string
	}{
		{lm.Dir, "gemma", ErrRefused, "tie_word_embeddings"},
		{full.Dir, "qwen2", ErrRefused, "embed_tokens"},
		{lm.Dir, "falcon", ErrOptions, "--arch"},
	}
	for _, c := range cases {
		a, err := adapter.Load(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ToGGUF(a, filepath.Join(dir, "o.gguf"), GGUFOptions{Arch: c.arch})
		a.Close()
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.in) {
			t.Errorf("%s/%s: err %v, want %v containing %q", filepath.Base(c.dir), c.arch, err, c.want, c.in)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "o.gguf")); err == nil {
		t.Error("a refused conversion left a file behind")
	}
	// lm_head is allowed when the base does not tie (qwen2 default) → output
	a, _ := adapter.Load(lm.Dir)
	defer a.Close()
	out := filepath.Join(dir, "lm.gguf")
	if _, err := ToGGUF(a, out, GGUFOptions{Arch: "qwen2"}); err != nil {
		t.Fatal(err)
	}
	_, ts := oracleParse(t, out)
	if _, ok := ts["output.weight.lora_b"]; !ok {
		t.Error("output.weight.lora_b missing")
	}
	// token_embd: lora_a flipped to ne [r, n_vocab]; lora_b ne [r, n_embd]
	e, _ := adapter.Load(emb.Dir)
	defer e.Close()
	out = filepath.Join(dir, "emb.gguf")
	if _, err := ToGGUF(e, out, GGUFOptions{Arch: "llama"}); err != nil {
		t.Fatal(err)
	}
	_, ts = oracleParse(t, out)
	gf := emb.Modules["model.embed_tokens"]
	la, lb := ts["token_embd.weight.lora_a"], ts["token_embd.weight.lora_b"]
	if la.dims[0] != 8 || la.dims[1] != 100 || lb.dims[0] != 8 || lb.dims[1] != 32 {
		t.Fatalf("token_embd ne %v %v", la.dims, lb.dims)
	}
	// lora_a torch (n_vocab, r) = Aᵀ: element [tok, k] = A[k, tok]
	for tok := 0; tok < 100; tok++ {
		for k := 0; k < 8; k++ {
			if la.v[tok*8+k] != float64(gf.A[k*100+tok]) {
				t.Fatalf("token_embd lora_a[%d,%d]", tok, k)
			}
		}
	}
}

// format/gguf's own Q8_0 encoder (used by the gguf package tests) and the
// quant package's ggml-reference Q8_0 (used by ToGGUF) must agree byte for
// byte.
func TestQ8_0AgreesWithQuant(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	v := make([]float32, 32*257)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(6)-3)))
	}
	for i := 0; i < 32; i++ { // one block of halves, one of zeros
		v[i] = float32(i) - 15.5
		v[32+i] = 0
	}
	mine, err := gguf.Encode(v, gguf.Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := make([]byte, len(mine))
	if err := quant.QuantizeGGUF(theirs, v, quant.GGUFQ8_0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mine, theirs) {
		for i := range mine {
			if mine[i] != theirs[i] {
				t.Fatalf("Q8_0 bytes differ at %d (block %d)", i, i/34)
			}
		}
	}
}

// PEFT → GGUF (f32) → PEFT reproduces ΔW exactly: the permutation and QKV
// reorder are undone, names map back, alpha/r gives back the scale.
func TestGGUFRoundTripToPEFT(t *testing.T) {
	corpus := corpusDir(t)
	dir := t.TempDir()
	cases := []struct{ entry, arch, cfg string }{
		{"llama32-1b-qv", "llama", `{"num_attention_heads":32,"num_key_value_heads":8,"tie_word_embeddings":true}`},
		{"bloom560m-r10-alpha1", "bloom", `{"n_head":16}`},
		{"gpt2-clm-r8-fanin", "gpt2", `{}`},
	}
	for _, c := range cases {
		src := filepath.Join(corpus, c.entry)
		a, err := adapter.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(dir, c.entry+".json")
		os.WriteFile(cfgPath, []byte(c.cfg), 0o644)
		base, _ := LoadBase(cfgPath)
		g := filepath.Join(dir, c.entry+".gguf")
		_, err = ToGGUF(a, g, GGUFOptions{Arch: c.arch, Base: base})
		a.Close()
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, c.entry+"-back")
		if _, err := GGUFToPEFT(g, out, Options{Base: base}, ""); err != nil {
			t.Fatal(err)
		}
		sameDeltas(t, c.entry+" peft→gguf→peft", deltas(t, src), deltas(t, out))
	}
}
