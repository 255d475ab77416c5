package main

// A systematic sweep of the CLI: every command, with representative flags,
// on every fixture of a set of small but adversarial inputs generated here
// (rank 0, rank 1, rank > min(out, in), 1×1 weights, conv and embedding
// LoRA, GPT-2 Conv1D fan_in_fan_out, all-zero lora_B, NaN/Inf, denormals,
// every float dtype, tensor-less files, odd names, kohya/diffusers/MLX
// files, a module present in only one of two merge inputs, differing ranks
// between merge inputs, and base/tuned checkpoints they fit).
//
// Every run must keep the project's promise — a correct result or a clear
// error, never a crash:
//   - the exit code is one of 0–4 and stderr holds no Go panic;
//   - a failure prints one "adaptool: …" line and leaves no output;
//   - no temporary file (".name.tmp-…") is ever left behind;
//   - the inputs are byte-identical afterwards;
//   - --json output is exactly one JSON document;
//   - exit 0 means the output exists (none with --dry-run), `validate`
//     finds no error the inputs did not already have, and `inspect` reads it;
//   - the same command run twice gives byte-identical outputs, stdout and
//     exit code (outputs carry provenance — input paths and sha256, the
//     version — which is the same for identical inputs and output paths);
//   - where the result is determined (scale, neg, add/sub, merges of
//     identical inputs, resize to a rank ≥ the input's, dialect and dtype
//     conversions, apply, extract, inspect --stats norms), the numbers agree
//     with a float64 recomputation from the fixture values, with the
//     tolerances stated next to each check.
//
// ADAPTOOL_SWEEP_KEEP=DIR keeps the fixtures and outputs in DIR;
// ADAPTOOL_SWEEP_RUN=REGEXP runs only the rows whose name matches.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// ---------------------------------------------------------------------------
// Writing and reading safetensors files independently of the package's
// writer (the values are encoded with safetensors.FromFloat32, whose
// conversions are tested against references in format/safetensors).

type swTensor struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

func swCount(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// swEncode encodes float64 values in a float dtype (F64 exactly, others
// through float32 with the package's round-to-nearest-even conversions).
func swEncode(dtype string, v []float64) []byte {
	if dtype == "F64" {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
		}
		return b
	}
	dt, err := safetensors.ParseDType(dtype)
	if err != nil {
		panic(err)
	}
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	b := make([]byte, len(v)*dt.Bits()/8)
	if err := safetensors.FromFloat32(b, f, dt); err != nil {
		panic(err)
	}
	return b
}

// swDecode decodes a float tensor to float64.
func swDecode(dtype string, b []byte) []float64 {
	switch dtype {
	case "F64":
		out := make([]float64, len(b)/8)
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return out
	case "F32":
		out := make([]float64, len(b)/4)
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		}
		return out
	case "BF16":
		out := make([]float64, len(b)/2)
		for i := range out {
			out[i] = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16))
		}
		return out
	}
	dt, err := safetensors.ParseDType(dtype)
	if err != nil {
		panic(err)
	}
	f := make([]float32, len(b)*8/dt.Bits())
	if err := safetensors.ToFloat32(f, b, dt); err != nil {
		panic(err)
	}
	out := make([]float64, len(f))
	for i, x := range f {
		out[i] = float64(x)
	}
	return out
}

func swT(name, dtype string, shape []int, v []float64) swTensor {
	if len(v) != swCount(shape) {
		panic(fmt.Sprintf("%s: %d values for shape %v", name, len(v), shape))
	}
	return swTensor{name, dtype, shape, swEncode(dtype, v)}
}

// swRandVals returns n seeded values in (-0.5, 0.5).
func swRandVals(seed uint64, n int) []float64 {
	r := rand.New(rand.NewPCG(seed, seed*31+7))
	v := make([]float64, n)
	for i := range v {
		v[i] = r.Float64() - 0.5
	}
	return v
}

func swRand(name, dtype string, seed uint64, shape ...int) swTensor {
	return swT(name, dtype, shape, swRandVals(seed, swCount(shape)))
}

// swFile lays out a safetensors file (tensors in the order given, header
// padded with spaces to a multiple of 8).
func swFile(meta map[string]string, ts ...swTensor) []byte {
	var h strings.Builder
	h.WriteString("{")
	first := true
	if meta != nil {
		mb, _ := json.Marshal(meta)
		h.WriteString(`"__metadata__":` + string(mb))
		first = false
	}
	var data []byte
	for _, t := range ts {
		if !first {
			h.WriteString(",")
		}
		first = false
		nb, _ := json.Marshal(t.name)
		sb := []byte("[]")
		if len(t.shape) > 0 {
			sb, _ = json.Marshal(t.shape)
		}
		fmt.Fprintf(&h, `%s:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, nb, t.dtype, sb, len(data), len(data)+len(t.data))
		data = append(data, t.data...)
	}
	h.WriteString("}")
	hdr := h.String()
	for len(hdr)%8 != 0 {
		hdr += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	return append(append(b, hdr...), data...)
}

// swRead parses a safetensors file without the package's reader.
func swRead(path string) (map[string]string, map[string]swTensor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("%s: short file", path)
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return nil, nil, fmt.Errorf("%s: header length %d", path, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	data := b[8+n:]
	meta := map[string]string{}
	ts := map[string]swTensor{}
	for k, v := range hdr {
		if k == "__metadata__" {
			if err := json.Unmarshal(v, &meta); err != nil {
				return nil, nil, err
			}
			continue
		}
		var e struct {
			DType   string   `json:"dtype"`
			Shape   []int    `json:"shape"`
			Offsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %v", path, k, err)
		}
		if len(e.Offsets) != 2 || e.Offsets[1] > uint64(len(data)) || e.Offsets[0] > e.Offsets[1] {
			return nil, nil, fmt.Errorf("%s: %s: offsets %v", path, k, e.Offsets)
		}
		ts[k] = swTensor{k, e.DType, e.Shape, data[e.Offsets[0]:e.Offsets[1]]}
	}
	return meta, ts, nil
}

// ---------------------------------------------------------------------------
// Reference modules: the values written, in PEFT orientation, so that the
// numbers of every output can be recomputed in float64.

// swMod is one low-rank module of a fixture: ΔW = scale·B·A in the logical
// (out, in·∏k) frame.
type swMod struct {
	out, in, r int
	a, b       []float64 // A r×in, B out×r (values as stored, decoded)
	scale      float64
	base       string // the base tensor it targets in swBase ("" none)
	transposed bool   // the base tensor stores ΔWᵀ (fan_in_fan_out, embedding)
}

// delta returns ΔW (out×in, row-major) in float64.
func (m swMod) delta() []float64 {
	d := make([]float64, m.out*m.in)
	for i := 0; i < m.out; i++ {
		for k := 0; k < m.r; k++ {
			bk := m.b[i*m.r+k] * m.scale
			if bk == 0 {
				continue
			}
			for j := 0; j < m.in; j++ {
				d[i*m.in+j] += bk * m.a[k*m.in+j]
			}
		}
	}
	return d
}

func swFro(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// swDiff returns ‖x − λ·y‖_F.
func swDiff(x, y []float64, lambda float64) float64 {
	var s float64
	for i := range x {
		d := x[i] - lambda*y[i]
		s += d * d
	}
	return math.Sqrt(s)
}

// ---------------------------------------------------------------------------
// Fixtures.

const swPre = "base_model.model."

// The base model every adapter fixture is shaped for (F32, plus a BF16 copy).
var swBaseShapes = []struct {
	name  string
	shape []int
}{
	{"model.embed_tokens.weight", []int{16, 8}},
	{"model.layers.0.self_attn.q_proj.weight", []int{8, 8}},
	{"model.layers.0.self_attn.v_proj.weight", []int{4, 8}},
	{"model.layers.1.self_attn.q_proj.weight", []int{8, 8}},
	{"model.layers.0.mlp.gate.weight", []int{1, 1}},
	{"model.norm.weight", []int{8}},
	{"conv_in.weight", []int{6, 3, 3, 3}},
	{"transformer.h.0.attn.c_attn.weight", []int{8, 24}}, // GPT-2 Conv1D: (in, out)
}

const (
	swQ    = "model.layers.0.self_attn.q_proj"
	swV    = "model.layers.0.self_attn.v_proj"
	swQ1   = "model.layers.1.self_attn.q_proj"
	swOne  = "model.layers.0.mlp.gate"
	swConv = "conv_in"
	swEmb  = "model.embed_tokens"
	swAttn = "transformer.h.0.attn.c_attn"
)

// byNorm returns the fixture's modules keyed by their normalised names.
func (fx *swFixture) byNorm() map[string]swMod {
	m := make(map[string]swMod, len(fx.mods))
	for n, mod := range fx.mods {
		m[swNorm(n)] = mod
	}
	return m
}

// swFixture is one generated input.
type swFixture struct {
	name string
	path string
	pair string // the fixture merged with this one ("" = itself)
	// mods are the reference modules (nil: no value checks); keyed by module
	// name without base_model.model.
	mods map[string]swMod
	// exact: the fixture's values are finite and its modules all reference
	// modules, so value checks apply.
	exact bool
	dtype string // factor dtype
}

type swGen struct {
	t    *testing.T
	root string
	fx   map[string]*swFixture
	seed uint64
}

func (g *swGen) next() uint64 { g.seed += 2; return g.seed }

// pair returns lora_A (r×in) and lora_B (out×r) of a PEFT module, with the
// reference module (scale s).
func (g *swGen) pair(mod, dtype string, r, in, out int, s float64, base string, transposed bool) ([]swTensor, swMod) {
	sa, sb := g.next(), g.next()
	a := swRand(swPre+mod+".lora_A.weight", dtype, sa, r, in)
	b := swRand(swPre+mod+".lora_B.weight", dtype, sb, out, r)
	return []swTensor{a, b}, swMod{out: out, in: in, r: r, a: swDecode(dtype, a.data), b: swDecode(dtype, b.data), scale: s, base: base, transposed: transposed}
}

func loraConfig(r int, alpha float64, targets []string, extra map[string]any) map[string]any {
	c := map[string]any{"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets,
		"task_type": "CAUSAL_LM", "base_model_name_or_path": "sweep/tiny", "init_lora_weights": true}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func (g *swGen) peft(name string, cfg map[string]any, ts []swTensor, mods map[string]swMod, dtype string) *swFixture {
	dir := filepath.Join(g.root, name)
	writeFile(g.t, filepath.Join(dir, "adapter_model.safetensors"), swFile(map[string]string{"format": "pt"}, ts...))
	if cfg != nil {
		writeJSON(g.t, filepath.Join(dir, "adapter_config.json"), cfg)
	}
	f := &swFixture{name: name, path: dir, mods: mods, exact: mods != nil, dtype: dtype}
	g.fx[name] = f
	return f
}

// lora builds a plain PEFT LoRA adapter from (module, rank) pairs on the
// base's linear modules; r is the config's r, alpha its lora_alpha.
func (g *swGen) lora(name, dtype string, r int, alpha float64, ranks map[string]int) *swFixture {
	var ts []swTensor
	mods := map[string]swMod{}
	rp := map[string]any{}
	names := make([]string, 0, len(ranks))
	for m := range ranks {
		names = append(names, m)
	}
	sort.Strings(names)
	shape := map[string][2]int{swQ: {8, 8}, swV: {4, 8}, swQ1: {8, 8}, swOne: {1, 1}}
	for _, m := range names {
		k := ranks[m]
		oi := shape[m]
		s := alpha / float64(r)
		if k != r {
			rp[m] = k
			if k > 0 {
				s = alpha / float64(k)
			}
		}
		tt, mm := g.pair(m, dtype, k, oi[1], oi[0], s, m+".weight", false)
		ts = append(ts, tt...)
		mods[m] = mm
	}
	extra := map[string]any{}
	if len(rp) > 0 {
		extra["rank_pattern"] = rp
	}
	var targets []string
	for _, m := range names {
		t := m[strings.LastIndex(m, ".")+1:]
		if !slices.Contains(targets, t) {
			targets = append(targets, t)
		}
	}
	return g.peft(name, loraConfig(r, alpha, targets, extra), ts, mods, dtype)
}

func swFixtures(t *testing.T, root string) map[string]*swFixture {
	g := &swGen{t: t, root: root, fx: map[string]*swFixture{}, seed: 1000}

	// Every float dtype of the factors.
	for _, dt := range []string{"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"} {
		g.lora("dtype-"+strings.ToLower(dt), dt, 2, 4, map[string]int{swQ: 2, swV: 2, swQ1: 2})
	}
	// Ranks: all rank 1 (report once panicked on it), rank > min(out, in),
	// 1×1 weights.
	g.lora("rank1", "F32", 1, 1, map[string]int{swQ: 1, swV: 1, swQ1: 1})
	g.lora("rank-wide", "F32", 6, 3, map[string]int{swV: 6, swQ: 6})
	g.lora("one-by-one", "F32", 2, 2, map[string]int{swOne: 2})
	g.lora("one-by-one-r1", "F32", 1, 8, map[string]int{swOne: 1})

	// Rank 0 (AdaLoRA prunes modules to rank 0): mixed with others, and
	// every module rank 0.
	g.lora("rank0-mixed", "F32", 2, 4, map[string]int{swQ: 0, swV: 2, swQ1: 2})
	g.lora("rank0-all", "F32", 2, 4, map[string]int{swQ: 0, swV: 0})
	g.lora("rank0-bf16", "BF16", 2, 2, map[string]int{swQ: 0, swV: 2})
	// AdaLoRA with a module pruned to rank 0 (lora_A (0,in), lora_E (0,1),
	// lora_B (out,0); no .weight suffix).
	{
		var ts []swTensor
		mods := map[string]swMod{}
		for _, m := range []struct {
			name    string
			k       int
			out, in int
		}{{swQ, 0, 8, 8}, {swV, 2, 4, 8}, {swQ1, 1, 8, 8}} {
			a := swRand(swPre+m.name+".lora_A", "F32", g.next(), m.k, m.in)
			b := swRand(swPre+m.name+".lora_B", "F32", g.next(), m.out, m.k)
			e := swRand(swPre+m.name+".lora_E", "F32", g.next(), m.k, 1)
			ts = append(ts, a, b, e)
			// Fold E into A for the reference: ΔW = s·B·diag(E)·A.
			av, ev := swDecode("F32", a.data), swDecode("F32", e.data)
			for i := 0; i < m.k; i++ {
				for j := 0; j < m.in; j++ {
					av[i*m.in+j] *= ev[i]
				}
			}
			mods[m.name] = swMod{out: m.out, in: m.in, r: m.k, a: av, b: swDecode("F32", b.data), scale: 8 / (4 + 1e-5), base: m.name + ".weight"}
		}
		g.peft("adalora-rank0", map[string]any{"peft_type": "ADALORA", "r": 4, "init_r": 4, "target_r": 2, "lora_alpha": 8,
			"target_modules": []string{"q_proj", "v_proj"}, "task_type": "CAUSAL_LM"}, ts, mods, "F32")
	}

	// A scale beyond float32's range: ΔW overflows float32 although each
	// factor is small.
	g.lora("huge-scale", "F32", 2, 1e39, map[string]int{swQ: 2, swV: 2}).exact = false

	// DoRA with a rank-0 module: its magnitude still rescales the base.
	{
		tq, _ := g.pair(swQ, "F32", 2, 8, 8, 2, "", false)
		tv, _ := g.pair(swV, "F32", 0, 8, 4, 2, "", false)
		ts := append(tq, tv...)
		ts = append(ts, swT(swPre+swQ+".lora_magnitude_vector", "F32", []int{8}, swRandVals(g.next(), 8)),
			swT(swPre+swV+".lora_magnitude_vector", "F32", []int{4}, swRandVals(g.next(), 4)))
		g.peft("dora-rank0", loraConfig(2, 4, []string{"q_proj", "v_proj"}, map[string]any{"use_dora": true}), ts, nil, "F32")
	}

	// Conv LoRA, embedding LoRA, GPT-2 Conv1D with fan_in_fan_out.
	{
		var ts []swTensor
		mods := map[string]swMod{}
		a := swRand(swPre+swConv+".lora_A.weight", "F32", g.next(), 2, 3, 3, 3)
		b := swRand(swPre+swConv+".lora_B.weight", "F32", g.next(), 6, 2, 1, 1)
		ts = append(ts, a, b)
		mods[swConv] = swMod{out: 6, in: 27, r: 2, a: swDecode("F32", a.data), b: swDecode("F32", b.data), scale: 2, base: swConv + ".weight"}
		g.peft("conv", loraConfig(2, 4, []string{"conv_in"}, nil), ts, mods, "F32")
	}
	{
		// lora_embedding_A (r, num_embeddings), lora_embedding_B (dim, r);
		// the base (num, dim) receives (B·A)ᵀ.
		a := swRand(swPre+swEmb+".lora_embedding_A", "F32", g.next(), 2, 16)
		b := swRand(swPre+swEmb+".lora_embedding_B", "F32", g.next(), 8, 2)
		g.peft("embedding", loraConfig(2, 4, []string{"embed_tokens"}, nil), []swTensor{a, b},
			map[string]swMod{swEmb: {out: 8, in: 16, r: 2, a: swDecode("F32", a.data), b: swDecode("F32", b.data), scale: 2, base: swEmb + ".weight", transposed: true}}, "F32")
	}
	{
		ts, m := g.pair(swAttn, "F32", 2, 8, 24, 2, swAttn+".weight", true)
		g.peft("gpt2-fifo", loraConfig(2, 4, []string{"c_attn"}, map[string]any{"fan_in_fan_out": true}), ts, map[string]swMod{swAttn: m}, "F32")
	}

	// All-zero lora_B (an untrained adapter).
	{
		ts, m := g.pair(swQ, "F32", 2, 8, 8, 2, swQ+".weight", false)
		ts[1] = swT(ts[1].name, "F32", []int{8, 2}, make([]float64, 16))
		m.b = make([]float64, 16)
		g.peft("zero-b", loraConfig(2, 4, []string{"q_proj"}, nil), ts, map[string]swMod{swQ: m}, "F32")
	}

	// NaN in a lora_A, +Inf in a lora_B, and -Inf in F16.
	{
		tq, _ := g.pair(swQ, "F32", 2, 8, 8, 2, "", false)
		binary.LittleEndian.PutUint32(tq[0].data[4:], math.Float32bits(float32(math.NaN())))
		tv, _ := g.pair(swV, "F32", 2, 8, 4, 2, "", false)
		binary.LittleEndian.PutUint32(tv[1].data[0:], math.Float32bits(float32(math.Inf(1))))
		g.peft("nan-inf", loraConfig(2, 4, []string{"q_proj", "v_proj"}, nil), append(tq, tv...), nil, "F32")
		t16, _ := g.pair(swQ, "F16", 2, 8, 8, 2, "", false)
		binary.LittleEndian.PutUint16(t16[1].data[2:], 0xfc00) // -Inf
		g.peft("inf-f16", loraConfig(2, 4, []string{"q_proj"}, nil), t16, nil, "F16")
	}

	// Denormals: F32 lora_A with subnormal values, an F16 adapter whose
	// values are F16 subnormals, a BF16 one with BF16 subnormals.
	for _, d := range []struct {
		dt   string
		tiny float64
	}{{"F32", 1e-40}, {"F16", 3e-6}, {"BF16", 1e-39}} {
		mods := map[string]swMod{}
		var ts []swTensor
		for i, m := range []string{swQ, swV} {
			out := 8
			if m == swV {
				out = 4
			}
			av := swRandVals(g.next(), 2*8)
			for j := range av {
				if j%2 == i%2 {
					av[j] *= d.tiny
				}
			}
			a := swT(swPre+m+".lora_A.weight", d.dt, []int{2, 8}, av)
			b := swRand(swPre+m+".lora_B.weight", d.dt, g.next(), out, 2)
			ts = append(ts, a, b)
			mods[m] = swMod{out: out, in: 8, r: 2, a: swDecode(d.dt, a.data), b: swDecode(d.dt, b.data), scale: 2, base: m + ".weight"}
		}
		g.peft("denormal-"+strings.ToLower(d.dt), loraConfig(2, 4, []string{"q_proj", "v_proj"}, nil), ts, mods, d.dt)
	}

	// No tensors at all: a PEFT directory and a bare file with metadata only.
	g.peft("empty", loraConfig(2, 4, []string{"q_proj"}, nil), nil, nil, "F32").exact = false
	g.fx["empty-file"] = &swFixture{name: "empty-file", path: writeFile(t, filepath.Join(root, "empty-file.safetensors"),
		swFile(map[string]string{"format": "pt", "note": "metadata only"}))}

	// Names with unicode, spaces and extra dots.
	{
		var ts []swTensor
		mods := map[string]swMod{}
		for _, m := range []string{"模型.层.0.注意力", "model.layers.0.self attn.q proj", "model..layers.0.v.proj.", "emoji.🙂.x"} {
			tt, mm := g.pair(m, "F32", 2, 4, 4, 2, "", false)
			ts = append(ts, tt...)
			mods[m] = mm
		}
		g.peft("odd-names", loraConfig(2, 4, []string{"注意力", "q proj", "proj.", "x"}, nil), ts, mods, "F32")
	}

	// Merge partners: a module present in one input only; differing ranks.
	g.lora("part-a", "F32", 2, 4, map[string]int{swQ: 2, swV: 2})
	g.lora("part-b", "F32", 2, 4, map[string]int{swQ: 2, swQ1: 2}).pair = ""
	g.fx["part-a"].pair = "part-b"
	g.lora("rank-a", "F32", 2, 4, map[string]int{swQ: 2, swV: 2})
	g.lora("rank-b", "F32", 4, 4, map[string]int{swQ: 4, swV: 1})
	g.fx["rank-a"].pair = "rank-b"
	g.fx["rank0-mixed"].pair = "rank1"

	// kohya (lora_down/lora_up/.alpha), with a rank-0 module.
	{
		var ts []swTensor
		mods := map[string]swMod{}
		for _, m := range []struct {
			name    string
			k       int
			out, in int
			alpha   float64
		}{{"lora_unet_conv_in", 0, 6, 27, 1}, {"lora_unet_down_blocks_0_attentions_0_proj_in", 2, 8, 8, 1}, {"lora_te_text_model_encoder_layers_0_self_attn_q_proj", 1, 8, 8, 4}} {
			d := swRand(m.name+".lora_down.weight", "F16", g.next(), m.k, m.in)
			u := swRand(m.name+".lora_up.weight", "F16", g.next(), m.out, m.k)
			if m.name == "lora_unet_conv_in" {
				d = swRand(m.name+".lora_down.weight", "F16", g.next(), 0, 3, 3, 3)
				u = swRand(m.name+".lora_up.weight", "F16", g.next(), 6, 0, 1, 1)
			}
			ts = append(ts, d, u, swT(m.name+".alpha", "F16", nil, []float64{m.alpha}))
			s := 0.0
			if m.k > 0 {
				s = m.alpha / float64(m.k)
			}
			mods[m.name] = swMod{out: m.out, in: m.in, r: m.k, a: swDecode("F16", d.data), b: swDecode("F16", u.data), scale: s}
		}
		f := &swFixture{name: "kohya", path: writeFile(t, filepath.Join(root, "kohya.safetensors"),
			swFile(map[string]string{"ss_network_module": "networks.lora", "ss_network_dim": "2"}, ts...)), mods: mods, exact: true, dtype: "F16"}
		g.fx[f.name] = f
	}
	// diffusers (unet.-prefixed lora_A/lora_B, no config: alpha unknown).
	{
		var ts []swTensor
		mods := map[string]swMod{}
		for _, m := range []struct {
			name string
			k    int
		}{{"unet.down_blocks.0.attentions.0.proj_in", 2}, {"unet.down_blocks.0.attentions.0.proj_out", 0}, {"unet.mid_block.attentions.0.proj_in", 1}} {
			a := swRand(m.name+".lora_A.weight", "BF16", g.next(), m.k, 8)
			b := swRand(m.name+".lora_B.weight", "BF16", g.next(), 8, m.k)
			ts = append(ts, a, b)
			mods[m.name] = swMod{out: 8, in: 8, r: m.k, a: swDecode("BF16", a.data), b: swDecode("BF16", b.data), scale: 1}
		}
		f := &swFixture{name: "diffusers", path: writeFile(t, filepath.Join(root, "diffusers.safetensors"), swFile(nil, ts...)), mods: mods, exact: true, dtype: "BF16"}
		g.fx[f.name] = f
	}
	// MLX-LM: a directory with a training config, and a bare file; lora_a
	// (in, r), lora_b (r, out); a rank-0 and a rank-1 module.
	{
		var ts []swTensor
		mods := map[string]swMod{}
		for _, m := range []struct {
			name    string
			k       int
			out, in int
		}{{swQ, 2, 8, 8}, {swV, 0, 4, 8}, {swQ1, 1, 8, 8}} {
			a := swRand(m.name+".lora_a", "F32", g.next(), m.in, m.k)
			b := swRand(m.name+".lora_b", "F32", g.next(), m.k, m.out)
			ts = append(ts, a, b)
			av, bv := swDecode("F32", a.data), swDecode("F32", b.data)
			mods[m.name] = swMod{out: m.out, in: m.in, r: m.k, a: swTranspose(av, m.in, m.k), b: swTranspose(bv, m.k, m.out), scale: 10, base: m.name + ".weight"}
		}
		dir := filepath.Join(root, "mlx")
		writeFile(t, filepath.Join(dir, "adapters.safetensors"), swFile(nil, ts...))
		writeJSON(t, filepath.Join(dir, "adapter_config.json"), map[string]any{"fine_tune_type": "lora", "num_layers": 2,
			"lora_parameters": map[string]any{"rank": 2, "scale": 10.0, "dropout": 0.0, "keys": []string{"self_attn.q_proj", "self_attn.v_proj"}}})
		g.fx["mlx"] = &swFixture{name: "mlx", path: dir, mods: mods, exact: true, dtype: "F32"}
		g.fx["mlx-bare"] = &swFixture{name: "mlx-bare", path: writeFile(t, filepath.Join(root, "mlx-bare.safetensors"), swFile(nil, ts...))}
	}

	// Checkpoints: the base (F32 and BF16) and tuned models for extract.
	g.fx["base"] = &swFixture{name: "base", path: swBaseFile(t, filepath.Join(root, "base", "model.safetensors"), "F32", nil)}
	g.fx["base-bf16"] = &swFixture{name: "base-bf16", path: swBaseFile(t, filepath.Join(root, "base-bf16", "model.safetensors"), "BF16", nil)}
	g.fx["tuned"] = &swFixture{name: "tuned", path: swBaseFile(t, filepath.Join(root, "tuned", "model.safetensors"), "F32", swPlanted)}
	g.fx["tuned-nan"] = &swFixture{name: "tuned-nan", path: swBaseFile(t, filepath.Join(root, "tuned-nan", "model.safetensors"), "F32",
		func(name string, v []float64) {
			if name == swQ+".weight" {
				v[3] = math.NaN()
			}
		})}
	return g.fx
}

func swTranspose(x []float64, rows, cols int) []float64 {
	out := make([]float64, len(x))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = x[i*cols+j]
		}
	}
	return out
}

// swBaseValues returns the base model's values (before rounding to a dtype).
func swBaseValues(name string, n int) []float64 {
	h := sha256.Sum256([]byte(name))
	return swRandVals(binary.LittleEndian.Uint64(h[:]), n)
}

// swPlantedDelta is the rank-2 change the tuned checkpoint adds to
// q_proj, a rank-1 change to the 1×1 weight and to the conv kernel; every
// other tensor is unchanged.
func swPlantedDelta(name string) (swMod, bool) {
	switch name {
	case swQ + ".weight":
		return swMod{out: 8, in: 8, r: 2, a: swRandVals(7001, 16), b: swRandVals(7002, 16), scale: 0.25}, true
	case swOne + ".weight":
		return swMod{out: 1, in: 1, r: 1, a: []float64{0.5}, b: []float64{0.25}, scale: 1}, true
	case swConv + ".weight":
		return swMod{out: 6, in: 27, r: 1, a: swRandVals(7003, 27), b: swRandVals(7004, 6), scale: 0.5}, true
	}
	return swMod{}, false
}

func swPlanted(name string, v []float64) {
	if m, ok := swPlantedDelta(name); ok {
		for i, d := range m.delta() {
			v[i] += d
		}
	}
}

func swBaseFile(t *testing.T, path, dtype string, edit func(string, []float64)) string {
	var ts []swTensor
	for _, b := range swBaseShapes {
		v := swBaseValues(b.name, swCount(b.shape))
		if edit != nil {
			edit(b.name, v)
		}
		ts = append(ts, swT(b.name, dtype, b.shape, v))
	}
	return writeFile(t, path, swFile(map[string]string{"format": "pt"}, ts...))
}

// ---------------------------------------------------------------------------
// Commands.

// swCmd is one command line run on every fixture. In args, $in is the
// fixture, $pair its merge partner, $base the base checkpoint, $out (with
// a suffix) the output path inside the row's own directory.
type swCmd struct {
	name string
	args []string
	// pre: command lines run first (for example pack before unpack); when
	// one fails the row is skipped: that failure is covered by its own row.
	pre [][]string
	// outputs: the paths written on success ("$out…"), checked to exist
	// (and with no --dry-run, validated and inspected).
	outputs []string
	// noValidate: the output is not an adapter or checkpoint (HTML, PNG).
	noValidate bool
	// check computes the expected numbers (run only on exit 0).
	check func(c *swCtx)
}

func swCommands() []swCmd {
	dir := []string{"$out"}
	st := []string{"$out.safetensors"}
	return []swCmd{
		{name: "inspect", args: []string{"inspect", "$in"}},
		{name: "inspect-json", args: []string{"inspect", "--json", "$in"}},
		{name: "inspect-stats", args: []string{"inspect", "--stats", "--hashes", "--json", "$in"}, check: swCheckStats},
		{name: "validate", args: []string{"validate", "--json", "$in"}},
		{name: "check", args: []string{"check", "--json", "--base", "$base", "$in"}},
		{name: "diff", args: []string{"diff", "--json", "$in", "$in"}, check: swCheckDiffSelf},
		{name: "diff-dense-pair", args: []string{"diff", "--dense", "--json", "$in", "$pair"}},
		{name: "report", args: []string{"report", "--json", "$in", "-o", "$out.html", "--png", "$out-png"}, outputs: []string{"$out.html"}, noValidate: true, check: swCheckReport},
		{name: "report-dry-run", args: []string{"report", "--dry-run", "--json", "$in", "--base", "$base"}},

		{name: "merge-svd", args: []string{"merge", "--weights", "0.5,0.5", "$in", "$in", "-o", "$out"}, outputs: dir, check: swCheckScaled(1, "$out", "F32")},
		{name: "merge-svd-pair", args: []string{"merge", "--json", "--rank", "8", "$in", "$pair", "-o", "$out"}, outputs: dir, check: swCheckSum(1, 1, "$out")},
		{name: "merge-svd-energy", args: []string{"merge", "--energy", "0.9", "--rank", "1", "$in", "$pair", "-o", "$out"}, outputs: dir},
		{name: "merge-cat", args: []string{"merge", "-m", "cat", "--weights", "1,2", "$in", "$in", "-o", "$out", "--dtype", "bf16"}, outputs: dir, check: swCheckScaled(3, "$out", "BF16")},
		{name: "merge-ta-pair", args: []string{"merge", "-m", "task_arithmetic", "--rank", "8", "--weights", "1,-1", "$in", "$pair", "-o", "$out"}, outputs: dir, check: swCheckSum(1, -1, "$out")},
		{name: "merge-linear", args: []string{"merge", "-m", "linear", "$in", "$in", "-o", "$out"}, outputs: dir},
		{name: "merge-ties-pair", args: []string{"merge", "-m", "ties", "--density", "0.5", "$in", "$pair", "-o", "$out"}, outputs: dir},
		{name: "merge-dare", args: []string{"merge", "-m", "dare_ties", "--density", "0.7", "--seed", "5", "$in", "$pair", "-o", "$out"}, outputs: dir},
		{name: "merge-magprune", args: []string{"merge", "-m", "magnitude_prune_svd", "--density", "1", "$in", "$in", "-o", "$out"}, outputs: dir, check: swCheckScaled(2, "$out", "F32")},
		{name: "merge-factor-space", args: []string{"merge", "-m", "ties", "--factor-space", "$in", "$in", "-o", "$out"}, outputs: dir},
		{name: "merge-dry-run", args: []string{"merge", "--dry-run", "--json", "$in", "$pair", "-o", "$out"}},
		{name: "add", args: []string{"add", "$in", "$in", "-o", "$out"}, outputs: dir, check: swCheckScaled(2, "$out", "F32")},
		{name: "sub", args: []string{"sub", "$in", "$in", "-o", "$out", "--json"}, outputs: dir, check: swCheckScaled(0, "$out", "F32")},
		{name: "sub-pair", args: []string{"sub", "$in", "$pair", "-o", "$out"}, outputs: dir, check: swCheckSum(1, -1, "$out")},
		{name: "neg", args: []string{"neg", "$in", "-o", "$out"}, outputs: dir, check: swCheckScaled(-1, "$out", "F64")},
		{name: "scale", args: []string{"scale", "--by", "-2", "$in", "-o", "$out", "--json"}, outputs: dir, check: swCheckScaled(-2, "$out", "F64")},
		{name: "scale-file", args: []string{"scale", "--by", "0.5", "$in", "-o", "$out.safetensors"}, outputs: st},
		{name: "scale-dry-run", args: []string{"scale", "--by", "3", "--dry-run", "--json", "$in", "-o", "$out"}},
		{name: "resize", args: []string{"resize", "--rank", "8", "$in", "-o", "$out"}, outputs: dir, check: swCheckScaled(1, "$out", "F32")},
		{name: "resize-1", args: []string{"resize", "--rank", "1", "--json", "$in", "-o", "$out"}, outputs: dir},
		{name: "resize-energy", args: []string{"resize", "--energy", "0.5", "$in", "-o", "$out", "--dtype", "f16"}, outputs: dir},
		{name: "reweight", args: []string{"reweight", "--fn", "scale:2", "$in", "-o", "$out"}, outputs: dir, check: swCheckScaled(2, "$out", "F32")},
		{name: "reweight-kasa", args: []string{"reweight", "--fn", "truncate:1", "--layout", "kasa", "$in", "-o", "$out"}, outputs: dir},
		{name: "reweight-soft", args: []string{"reweight", "--fn", "soft:0.01", "--json", "$in", "-o", "$out"}, outputs: dir},
		{name: "prune-top", args: []string{"prune", "--ranks", "top:1", "$in", "-o", "$out"}, outputs: dir},
		{name: "prune-fraction", args: []string{"prune", "--ranks", "module-fraction:0.5", "--json", "$in", "-o", "$out"}, outputs: dir},
		{name: "apply", args: []string{"apply", "--base", "$base", "--adapter", "$in:0.5", "--verify", "--json", "-o", "$out.safetensors"}, outputs: st, check: swCheckApply(0.5, "$out.safetensors", "F32")},
		{name: "apply-bf16", args: []string{"apply", "--base", "$base_bf16", "--adapter", "$in", "-o", "$out.safetensors"}, outputs: st, check: swCheckApply(1, "$out.safetensors", "BF16")},
		{name: "apply-dry-run", args: []string{"apply", "--dry-run", "--json", "--base", "$base", "--adapter", "$in", "-o", "$out.safetensors"}},
		{name: "extract", args: []string{"extract", "--base", "$base", "--tuned", "$in", "--rank", "2", "-o", "$out"}, outputs: dir, check: swCheckExtract("$out")},
		{name: "extract-energy", args: []string{"extract", "--base", "$in", "--tuned", "$tuned", "--energy", "0.99", "--json", "-o", "$out"}, outputs: dir},
		{name: "quantize-nf4", args: []string{"quantize", "--scheme", "nf4", "--double-quant", "$in", "-o", "$out"}, outputs: dir},
		{name: "quantize-int8", args: []string{"quantize", "--scheme", "int8", "--json", "$in", "-o", "$out"}, outputs: dir},
		{name: "quantize-fp8", args: []string{"quantize", "--scheme", "fp8-e5m2", "--granularity", "channel", "$in", "-o", "$out"}, outputs: dir},
		{name: "dequantize", pre: [][]string{{"quantize", "--scheme", "int8", "$in", "-o", "$rowdir/q"}}, args: []string{"dequantize", "$rowdir/q", "-o", "$out"}, outputs: dir,
			check: swCheckApprox("$out", 0.05)},
		{name: "dequantize-plain", args: []string{"dequantize", "--json", "$in", "-o", "$out"}, outputs: dir},
		{name: "convert-f32", args: []string{"convert", "--dtype", "f32", "$in", "-o", "$out"}, outputs: dir, check: swCheckApprox("$out", 1e-7)},
		{name: "convert-f16", args: []string{"convert", "--dtype", "f16", "$in", "-o", "$out"}, outputs: dir},
		{name: "convert-bf16", args: []string{"convert", "--dtype", "bf16", "--json", "$in", "-o", "$out"}, outputs: dir},
		{name: "convert-f8", args: []string{"convert", "--dtype", "f8_e4m3", "$in", "-o", "$out"}, outputs: dir},
		{name: "convert-dry-run", args: []string{"convert", "--dtype", "f16", "--dry-run", "--json", "$in", "-o", "$out"}},
		{name: "to-peft", args: []string{"convert", "--to", "peft", "$in", "-o", "$out"}, outputs: dir, check: swCheckApprox("$out", 0)},
		{name: "to-diffusers", args: []string{"convert", "--to", "diffusers", "$in", "-o", "$out.safetensors"}, outputs: st, check: swCheckApprox("$out.safetensors", 0)},
		{name: "to-kohya", args: []string{"convert", "--to", "kohya", "--json", "$in", "-o", "$out.safetensors"}, outputs: st, check: swCheckApprox("$out.safetensors", 0)},
		{name: "to-mlx", args: []string{"convert", "--to", "mlx", "$in", "-o", "$out"}, outputs: dir, check: swCheckApprox("$out", 0)},
		{name: "to-gguf", args: []string{"convert", "--to", "gguf", "--arch", "qwen2", "$in", "-o", "$out.gguf"}, outputs: []string{"$out.gguf"}},
		{name: "to-gguf-f16", args: []string{"convert", "--to", "gguf", "--arch", "qwen2", "--outtype", "f16", "$in", "-o", "$out.gguf"}, outputs: []string{"$out.gguf"}},
		{name: "to-peft-dry-run", args: []string{"convert", "--to", "peft", "--dry-run", "--json", "$in", "-o", "$out"}},
		{name: "pack", args: []string{"pack", "--json", "$in", "-o", "$out.atz"}, outputs: []string{"$out.atz"}},
		{name: "unpack", pre: [][]string{{"pack", "$in", "-o", "$rowdir/p.atz"}}, args: []string{"unpack", "$rowdir/p.atz", "-o", "$out"}, outputs: dir, check: swCheckUnpack},
	}
}

// ---------------------------------------------------------------------------
// Expected outcomes. Beyond the invariants every row keeps, the well-formed
// adapter fixtures must succeed on every command except the documented
// refusals listed here (first match wins); the rank-0-only adapter is
// refused wherever the output would be an adapter with no module.

type swExpect struct {
	row    *regexp.Regexp
	code   int    // -1: any
	stderr string // substring of stderr
}

var swExpectations = []swExpect{
	// Reading commands and extract (an adapter is no tuned checkpoint) have
	// their own rows' invariants only.
	{regexp.MustCompile(`/(validate|check|extract|extract-energy)$`), -1, ""},
	// No fixture holds a quantized tensor: dequantize refuses, saying so.
	{regexp.MustCompile(`/dequantize-plain$`), 4, "holds no quantized tensors (nothing to dequantize"},
	// Every transform of an adapter whose every module has rank 0 would
	// write an adapter without modules: refused, saying why.
	{regexp.MustCompile(`^rank0-all/(merge-.*|add|sub|sub-pair|resize.*|reweight.*|prune-.*|to-.*)$`), 4, "rank 0"},
	{regexp.MustCompile(`^rank0-all/quantize-.*$`), 4, "no tensor qualifies"},
	// A rank-0 DoRA module still rescales the base by its magnitude: apply
	// folds it; outputs that would drop it refuse.
	{regexp.MustCompile(`^dora-rank0/(resize.*|reweight|reweight-soft|prune-top|to-peft|to-kohya|to-peft-dry-run)$`), 4, "rank-0 DoRA"},
	{regexp.MustCompile(`^dora-rank0/apply(-bf16|-dry-run)?$`), 0, ""},
	// A scale beyond float32: results that overflow their dtype, and a
	// kohya alpha float32 cannot hold, are refused, never written as Inf.
	{regexp.MustCompile(`^huge-scale/(merge-cat|resize-energy|reweight-kasa)$`), 4, "overflows"},
	{regexp.MustCompile(`^huge-scale/to-kohya$`), 4, "cannot hold"},
	// AdaLoRA converts only to GGUF (SPEC §8.3).
	{regexp.MustCompile(`^adalora-rank0/to-(peft|diffusers|kohya|mlx|peft-dry-run)$`), 4, "adalora"},
	// The KaSA layout is for Linear layers; MLX has no conv LoRA; kohya and
	// diffusers have no embedding LoRA; GGUF takes llama.cpp's modules.
	{regexp.MustCompile(`^(conv|embedding|kohya)/reweight-kasa$`), 4, "Linear layers only"},
	{regexp.MustCompile(`^(conv|kohya|diffusers)/to-mlx$`), 4, "no mlx representation"},
	{regexp.MustCompile(`^embedding/to-(diffusers|kohya)$`), 4, "representation"},
	{regexp.MustCompile(`^(conv|kohya|diffusers|gpt2-fifo|odd-names|one-by-one|one-by-one-r1)/to-gguf$`), 4, ""},
	// Modules whose names match no base tensor.
	{regexp.MustCompile(`^(kohya|diffusers|odd-names)/apply(-bf16|-dry-run)?$`), 4, "no base tensor"},
	// quantize skips 4-D and F8 tensors: with nothing to quantize it refuses.
	{regexp.MustCompile(`^(conv|dtype-f8_e4m3|dtype-f8_e5m2)/quantize-.*$`), 4, "no tensor qualifies"},
	// NaN/Inf in an adapter's own values is a bad input for apply too
	// (exit 2, as for the merges), naming the file, module and tensor.
	{regexp.MustCompile(`^(nan-inf|inf-f16)/apply(-bf16)?$`), 2, "adapter_model.safetensors: module model.layers.0.self_attn."},
	// A delta of finite factors that overflows float32 is refused as an
	// overflow (naming the file: TestMergeOverflowNamesFile).
	{regexp.MustCompile(`^huge-scale/merge-(ties-pair|dare|magprune)$`), 4, "the computed delta overflows float32"},
	{regexp.MustCompile(`^huge-scale/apply-bf16$`), 4, "not finite in BF16"},
	{regexp.MustCompile(`^huge-scale/to-gguf-f16$`), 4, "F16 (at most 65504"},
	// DoRA refusals say why the operation at hand refuses them.
	{regexp.MustCompile(`^dora-rank0/prune-fraction$`), 4, "the module is DoRA: module-fraction ranks modules by ‖ΔW‖_F"},
	{regexp.MustCompile(`^dora-rank0/reweight-kasa$`), 4, "the module is DoRA: the KaSA layout"},
	{regexp.MustCompile(`^(conv|kohya|diffusers|gpt2-fifo|odd-names|one-by-one|one-by-one-r1)/to-gguf-f16$`), 4, ""},
	// Every other command on a well-formed adapter succeeds.
	{regexp.MustCompile(`^(dtype-.*|rank1|rank-wide|rank-a|rank-b|one-by-one.*|rank0-.*|adalora-rank0|conv|embedding|gpt2-fifo|zero-b|denormal-.*|part-.*|kohya|diffusers|mlx|mlx-bare|odd-names)/`), 0, ""},
}

func swExpected(row string) (swExpect, bool) {
	for _, e := range swExpectations {
		if e.row.MatchString(row) {
			return e, true
		}
	}
	return swExpect{}, false
}

// ---------------------------------------------------------------------------
// Value checks.

// swCtx is what a value check sees: the row, its fixture, the path
// substitution and the command's stdout.
type swCtx struct {
	t      *testing.T
	row    string
	fx     *swFixture
	fxs    map[string]*swFixture
	sub    func(string) string
	stdout string
}

func (c *swCtx) Errorf(format string, a ...any) {
	c.t.Helper()
	c.t.Errorf("%s: %s", c.row, fmt.Sprintf(format, a...))
}

func (c *swCtx) Fatalf(format string, a ...any) {
	c.t.Helper()
	c.t.Errorf("%s: %s", c.row, fmt.Sprintf(format, a...))
	panic(swAbort{})
}

func (c *swCtx) Helper() { c.t.Helper() }

type swAbort struct{}

// swTB is the part of testing.TB the value checks use.
type swTB interface {
	Helper()
	Errorf(format string, a ...any)
	Fatalf(format string, a ...any)
}

// swTol returns the unit roundoff of a dtype.
func swTol(dtype string) float64 {
	switch dtype {
	case "F64":
		return 0x1p-53
	case "F32":
		return 0x1p-24
	case "F16":
		return 0x1p-11
	case "BF16":
		return 0x1p-8
	case "F8_E4M3":
		return 0x1p-4
	case "F8_E5M2":
		return 0x1p-3
	}
	return 1
}

// swLoad reads the low-rank modules of an adapter (PEFT directory,
// diffusers/kohya/MLX file or directory) with a reader of its own: module
// name (normalised: no base_model.model., dots as in the input, kohya
// underscores kept) → ΔW reference.
func swLoad(t swTB, path string) map[string]swMod {
	t.Helper()
	if ps := swAdapterPaths([]string{path}); len(ps) != 1 || ps[0] != path {
		all := map[string]swMod{}
		for _, p := range ps {
			for k, v := range swLoad(t, p) {
				all[k] = v
			}
		}
		return all
	}
	file := path
	var cfg map[string]any
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		for _, n := range []string{"adapter_model.safetensors", "adapters.safetensors", "pytorch_lora_weights.safetensors"} {
			if _, err := os.Stat(filepath.Join(path, n)); err == nil {
				file = filepath.Join(path, n)
				break
			}
		}
		if file == path {
			if m, _ := filepath.Glob(filepath.Join(path, "*.safetensors")); len(m) == 1 {
				file = m[0]
			}
		}
		if b, err := os.ReadFile(filepath.Join(path, "adapter_config.json")); err == nil {
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
	}
	meta, ts, err := swRead(file)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if cfg == nil && meta["lora_adapter_metadata"] != "" {
		if err := json.Unmarshal([]byte(meta["lora_adapter_metadata"]), &cfg); err != nil {
			t.Fatalf("%s: lora_adapter_metadata: %v", file, err)
		}
	}
	mods := map[string]swMod{}
	type ab struct{ a, b, alpha, e *swTensor }
	pairs := map[string]*ab{}
	get := func(n string) *ab {
		if pairs[n] == nil {
			pairs[n] = &ab{}
		}
		return pairs[n]
	}
	// suffix → the slot it fills ('a', 'b', alpha '@', lora_E 'e'); MLX keys
	// are lora_a/lora_b. Longer suffixes first.
	slots := []struct {
		suffix string
		slot   byte
	}{
		{".lora_A.weight", 'a'}, {".lora_B.weight", 'b'}, {".lora_embedding_A", 'a'}, {".lora_embedding_B", 'b'},
		{".lora_down.weight", 'a'}, {".lora_up.weight", 'b'}, {".alpha", '@'}, {".lora_a", 'a'}, {".lora_b", 'b'},
		{".lora_A", 'a'}, {".lora_B", 'b'}, {".lora_E", 'e'}, // AdaLoRA
	}
	mlx := false
	for n := range ts {
		tt := ts[n]
		if strings.HasSuffix(n, ".lora_diag") || strings.HasSuffix(n, ".lora_magnitude_vector") {
			t.Fatalf("%s: swLoad does not read %s", file, n)
		}
		for _, sl := range slots {
			mod, ok := strings.CutSuffix(n, sl.suffix)
			if !ok {
				continue
			}
			p := get(mod)
			switch sl.slot {
			case 'a':
				p.a = &tt
			case 'b':
				p.b = &tt
			case '@':
				p.alpha = &tt
			case 'e':
				p.e = &tt
			}
			mlx = mlx || sl.suffix == ".lora_a" || sl.suffix == ".lora_b"
			break
		}
	}
	for name, p := range pairs {
		if p.a == nil || p.b == nil {
			continue
		}
		av, bv := swDecode(p.a.dtype, p.a.data), swDecode(p.b.dtype, p.b.data)
		var r, in, out int
		if mlx {
			in, r = p.a.shape[0], p.a.shape[1]
			out = p.b.shape[1]
			av, bv = swTranspose(av, in, r), swTranspose(bv, r, out)
		} else {
			r = p.a.shape[0]
			in = swCount(p.a.shape[1:])
			out = p.b.shape[0]
		}
		if p.e != nil { // AdaLoRA: fold diag(E) into A
			ev := swDecode(p.e.dtype, p.e.data)
			for k := 0; k < r; k++ {
				for j := 0; j < in; j++ {
					av[k*in+j] *= ev[k]
				}
			}
		}
		mod := strings.TrimPrefix(name, swPre)
		s := 1.0
		switch {
		case p.alpha != nil:
			s = swDecode(p.alpha.dtype, p.alpha.data)[0] / float64(r)
		case mlx && cfg != nil:
			lp, _ := cfg["lora_parameters"].(map[string]any)
			s, _ = lp["scale"].(float64)
		case cfg != nil && cfg["peft_type"] == "ADALORA":
			s = cfg["lora_alpha"].(float64) / (cfg["init_r"].(float64) + 1e-5)
		case cfg != nil:
			// diffusers: patterns are matched without the component
			// prefix; a pipeline save packs one config per component as
			// "<component>.<field>".
			c, path := cfg, mod
			for _, comp := range []string{"unet", "text_encoder", "text_encoder_2", "transformer"} {
				if strings.HasPrefix(mod, comp+".") && meta["lora_adapter_metadata"] != "" {
					path = strings.TrimPrefix(mod, comp+".")
					if _, ok := cfg[comp+".r"]; ok {
						c = map[string]any{}
						for k, v := range cfg {
							if rest, ok := strings.CutPrefix(k, comp+"."); ok {
								c[rest] = v
							}
						}
					}
				}
			}
			s = swPEFTScale(c, path, r)
		}
		mods[mod] = swMod{out: out, in: in, r: r, a: av, b: bv, scale: s}
	}
	return mods
}

// swPEFTScale resolves alpha/r as PEFT ≥ 0.15 does for the patterns our
// outputs write (keys tested as ^(?:.*\.)?(?:KEY)$; JSON order matters
// only when two keys match, which anchored full paths never do).
func swPEFTScale(cfg map[string]any, mod string, r int) float64 {
	num := func(v any) float64 { f, _ := v.(float64); return f }
	rr, alpha := num(cfg["r"]), num(cfg["lora_alpha"])
	match := func(pat map[string]any) (float64, bool) {
		keys := make([]string, 0, len(pat))
		for k := range pat {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if re, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`); err == nil && re.MatchString(mod) {
				return num(pat[k]), true
			}
		}
		return 0, false
	}
	if p, ok := cfg["rank_pattern"].(map[string]any); ok {
		if v, ok := match(p); ok {
			rr = v
		}
	}
	if p, ok := cfg["alpha_pattern"].(map[string]any); ok {
		if v, ok := match(p); ok {
			alpha = v
		}
	}
	if int(rr) != r && r > 0 {
		rr = float64(r) // our fixtures' outputs always agree; keep the shapes' rank otherwise
	}
	if rs, _ := cfg["use_rslora"].(bool); rs {
		return alpha / math.Sqrt(rr)
	}
	return alpha / rr
}

// swNorm maps a module name to a dialect-free key: no base_model.model.,
// component or kohya prefix, dots and spaces as underscores.
func swNorm(name string) string {
	name = strings.TrimPrefix(name, swPre)
	for _, p := range []string{"lora_unet_", "lora_te_", "lycoris_", "unet.", "text_encoder."} {
		name = strings.TrimPrefix(name, p)
	}
	return strings.NewReplacer(".", "_", " ", "_").Replace(name)
}

// swCompare checks that got has ΔW = Σ λᵢ·ΔWᵢ for each module of the
// references, within tol·(Σ|λᵢ|‖ΔWᵢ‖) + a tiny absolute slack. Modules of
// rank 0 (or ΔW = 0 in the sum) may be absent from got; every module of
// got must be in the references.
func swCompare(t swTB, what string, got map[string]swMod, refs []map[string]swMod, lambdas []float64, tol float64) {
	t.Helper()
	gotN := map[string]swMod{}
	for n, m := range got {
		gotN[swNorm(n)] = m
	}
	want := map[string][]float64{}
	scaleOf := map[string]float64{}
	shape := map[string][2]int{}
	for i, ref := range refs {
		for n, m := range ref {
			k := swNorm(n)
			if want[k] == nil {
				want[k] = make([]float64, m.out*m.in)
				shape[k] = [2]int{m.out, m.in}
			}
			d := m.delta()
			for j := range d {
				want[k][j] += lambdas[i] * d[j]
			}
			scaleOf[k] += math.Max(math.Abs(lambdas[i]), 1) * swFro(d)
		}
	}
	for k, w := range want {
		g, ok := gotN[k]
		if !ok {
			if swFro(w) != 0 {
				t.Errorf("%s: module %s missing from the output (‖ΔW‖ = %g)", what, k, swFro(w))
			}
			continue
		}
		if g.out != shape[k][0] || g.in != shape[k][1] {
			t.Errorf("%s: module %s is %d×%d, want %d×%d", what, k, g.out, g.in, shape[k][0], shape[k][1])
			continue
		}
		e := swDiff(g.delta(), w, 1)
		if bound := tol*scaleOf[k] + 1e-30; e > bound {
			t.Errorf("%s: module %s: ‖ΔW − ΔW_ref‖ = %.3g > %.3g (‖ΔW_ref‖ = %.3g)", what, k, e, bound, swFro(w))
		}
	}
	for k := range gotN {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected module %s in the output", what, k)
		}
	}
}

// swCheckScaled: the output's ΔW is λ times the input's, per module
// (tolerance: 8 unit roundoffs of the coarser of the input dtype and F32
// relative to ‖ΔW‖, a bound for one rounding of each factor product term
// and the exact SVD's float64 arithmetic).
func swCheckScaled(lambda float64, out, outDType string) func(*swCtx) {
	return func(c *swCtx) {
		t, fx, sub := c, c.fx, c.sub
		if !fx.exact {
			return
		}
		got := swLoad(t, sub(out))
		tol := 8 * math.Max(swTol(fx.dtype), swTol(outDType))
		swCompare(t, "ΔW", got, []map[string]swMod{fx.mods}, []float64{lambda}, tol)
	}
}

// swCheckSum: ΔW_out = λ₁·ΔW_in + λ₂·ΔW_pair.
func swCheckSum(l1, l2 float64, out string) func(*swCtx) {
	return func(c *swCtx) {
		t, fx, fxs, sub := c, c.fx, c.fxs, c.sub
		p := fxs[fx.name]
		if fx.pair != "" {
			p = fxs[fx.pair]
		}
		if !fx.exact || !p.exact {
			return
		}
		got := swLoad(t, sub(out))
		tol := 8 * math.Max(math.Max(swTol(fx.dtype), swTol(p.dtype)), 0x1p-24)
		swCompare(t, "ΔW", got, []map[string]swMod{fx.mods, p.mods}, []float64{l1, l2}, tol)
	}
}

// swCheckApprox: the output's ΔW equals the input's within rel (0: the
// rounding of the input dtype, 8u).
func swCheckApprox(out string, rel float64) func(*swCtx) {
	return func(c *swCtx) {
		t, fx, sub := c, c.fx, c.sub
		if !fx.exact {
			return
		}
		if rel == 0 {
			rel = 8 * swTol(fx.dtype)
		}
		swCompare(t, "ΔW", swLoad(t, sub(out)), []map[string]swMod{fx.mods}, []float64{1}, rel)
	}
}

// swCheckStats: inspect --stats reports ‖ΔW‖_F of every reference module
// within 1e-5 relative (float64 Gram matrices of the stored factors).
func swCheckStats(c *swCtx) {
	t, fx, stdout := c, c.fx, c.stdout
	if !fx.exact {
		return
	}
	var doc struct {
		Modules []struct {
			Name  string   `json:"name"`
			Rank  int      `json:"rank"`
			Norm  *float64 `json:"delta_fro_norm"`
			Sigma []float64
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v", err)
	}
	byName := fx.byNorm()
	for _, m := range doc.Modules {
		ref, ok := byName[swNorm(m.Name)]
		if !ok {
			continue
		}
		want := swFro(ref.delta())
		if m.Rank != ref.r {
			t.Errorf("module %s: rank %d, want %d", m.Name, m.Rank, ref.r)
		}
		if m.Norm == nil {
			t.Errorf("module %s: delta_fro_norm null, want %g", m.Name, want)
			continue
		}
		if math.Abs(*m.Norm-want) > 1e-5*want+1e-300 {
			t.Errorf("module %s: delta_fro_norm %g, want %g", m.Name, *m.Norm, want)
		}
	}
}

// swCheckDiffSelf: an adapter compared with itself has cosine 1 and
// relative distance 0 wherever ΔW ≠ 0.
func swCheckDiffSelf(c *swCtx) {
	t, fx, stdout := c, c.fx, c.stdout
	if !fx.exact {
		return
	}
	var doc struct {
		Modules []struct {
			Name   string   `json:"name"`
			Cosine *float64 `json:"cosine"`
			Dist   *float64 `json:"relative_distance"`
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v", err)
	}
	byName := fx.byNorm()
	for _, m := range doc.Modules {
		ref, ok := byName[swNorm(m.Name)]
		if !ok || swFro(ref.delta()) == 0 {
			continue
		}
		if m.Cosine == nil || math.Abs(*m.Cosine-1) > 1e-6 || m.Dist == nil || *m.Dist > 1e-6 {
			t.Errorf("module %s: cosine %v distance %v, want 1 and 0", m.Name, swPtr(m.Cosine), swPtr(m.Dist))
		}
	}
}

func swPtr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// swCheckApply: every base tensor a reference module targets is
// W + λ·ΔW (ΔWᵀ for transposed frames) within 2u of the base dtype
// relative to |W + λΔW| element-wise plus 1e-6·‖ΔW‖_max; every other
// tensor is byte-identical to the base (so a rank-0 module leaves its
// weight unchanged).
func swCheckApply(lambda float64, out, dtype string) func(*swCtx) {
	return func(c *swCtx) {
		t, fx, fxs, sub := c, c.fx, c.fxs, c.sub
		if !fx.exact {
			return
		}
		base := fxs["base"]
		if dtype == "BF16" {
			base = fxs["base-bf16"]
		}
		_, bt, err := swRead(base.path)
		if err != nil {
			t.Fatalf("%v", err)
		}
		_, ot, err := swRead(sub(out))
		if err != nil {
			t.Fatalf("%v", err)
		}
		touched := map[string][]float64{}
		for _, m := range fx.mods {
			if m.base == "" {
				t.Fatalf("apply succeeded but the fixture has a module without base tensor")
			}
			d := m.delta()
			if m.transposed {
				d = swTranspose(d, m.out, m.in)
			}
			if touched[m.base] == nil {
				touched[m.base] = make([]float64, len(d))
			}
			for i := range d {
				touched[m.base][i] += lambda * d[i]
			}
		}
		u := swTol(dtype)
		for name, b := range bt {
			o, ok := ot[name]
			if !ok {
				t.Errorf("output lacks %s", name)
				continue
			}
			d, isTouched := touched[name]
			if !isTouched || swFro(d) == 0 {
				if !bytes.Equal(o.data, b.data) || o.dtype != b.dtype {
					t.Errorf("%s: not byte-identical to the base (ΔW = 0)", name)
				}
				continue
			}
			w, got := swDecode(b.dtype, b.data), swDecode(o.dtype, o.data)
			var dmax float64
			for _, x := range d {
				dmax = math.Max(dmax, math.Abs(x))
			}
			for i := range w {
				want := w[i] + d[i]
				if e := math.Abs(got[i] - want); e > 2*u*math.Abs(want)+1e-6*dmax {
					t.Errorf("%s[%d] = %g, want %g (error %g)", name, i, got[i], want, e)
					break
				}
			}
		}
	}
}

// swCheckExtract: on the tuned checkpoint, extract --rank 2 recovers the
// planted deltas (rank ≤ 2) to 1e-4 of their norm; nothing else is
// extracted.
func swCheckExtract(out string) func(*swCtx) {
	return func(c *swCtx) {
		t, fx, sub := c, c.fx, c.sub
		if fx.name != "tuned" {
			return
		}
		ref := map[string]swMod{}
		for _, b := range swBaseShapes {
			if m, ok := swPlantedDelta(b.name); ok {
				ref[strings.TrimSuffix(b.name, ".weight")] = m
			}
		}
		swCompare(t, "extracted ΔW", swLoad(t, sub(out)), []map[string]swMod{ref}, []float64{1}, 1e-4)
	}
}

// swCheckReport: the report lists PNG files that exist, and an HTML page
// that is one self-contained document.
func swCheckReport(c *swCtx) {
	var doc struct {
		HTML string   `json:"html"`
		PNG  []string `json:"png"`
	}
	if err := json.Unmarshal([]byte(c.stdout), &doc); err != nil {
		c.Fatalf("report --json: %v", err)
	}
	for _, p := range doc.PNG {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			c.Errorf("report lists %s, which is not a PNG file (%v)", p, err)
		}
	}
	b, err := os.ReadFile(c.sub("$out.html"))
	if err != nil || !bytes.Contains(b, []byte("<html")) || bytes.Contains(b, []byte("<script")) {
		c.Errorf("report HTML missing or not self-contained (%v)", err)
	}
}

// swCheckUnpack: unpack gives back the input's bytes.
func swCheckUnpack(c *swCtx) {
	t, fx, sub := c, c.fx, c.sub
	in, out := swTreeHashes(c.t, fx.path), swTreeHashes(c.t, sub("$out"))
	if len(in) != len(out) {
		t.Errorf("unpack: %d files, input has %d", len(out), len(in))
	}
	for rel, h := range in {
		if out[rel] != h {
			t.Errorf("unpack: %s differs from the input", rel)
		}
	}
}

// ---------------------------------------------------------------------------
// The sweep.

// swTreeHashes returns the sha256 of every regular file under path (a file
// or a directory), keyed by the path relative to it; none when path does
// not exist.
func swTreeHashes(t *testing.T, path string) map[string]string {
	t.Helper()
	m := map[string]string{}
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return m
	}
	for p, h := range treeHashes(t, path) {
		rel, _ := filepath.Rel(path, p)
		m[rel] = h
	}
	return m
}

// swTemps returns the names under dir that look like unfinished
// temporary outputs.
func swTemps(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(d.Name(), ".") || strings.Contains(d.Name(), ".tmp")) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// swAdapterPaths returns the adapters among outputs: a directory without
// a .safetensors file of its own stands for its subdirectories (convert
// --to peft writes one PEFT directory per component).
func swAdapterPaths(outputs []string) []string {
	var out []string
	for _, p := range outputs {
		st, err := os.Stat(p)
		if err != nil || !st.IsDir() {
			out = append(out, p)
			continue
		}
		if m, _ := filepath.Glob(filepath.Join(p, "*.safetensors")); len(m) > 0 {
			out = append(out, p)
			continue
		}
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out
}

// swJSON checks that s is exactly one JSON document.
func swJSON(s string) error {
	dec := json.NewDecoder(strings.NewReader(s))
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("more than one JSON document")
	}
	return nil
}

// swErrorRules runs validate --json on path and returns its error rules
// (nil, false when validate cannot read it).
func swErrorRules(path string) (map[string]bool, int, string) {
	var out, errb bytes.Buffer
	code := run([]string{"adaptool", "validate", "--json", path}, &out, &errb)
	if code != 0 && code != 1 {
		return nil, code, errb.String()
	}
	var doc struct {
		Findings []struct {
			Severity string `json:"severity"`
			Rule     string `json:"rule"`
			Tensor   string `json:"tensor"`
			Message  string `json:"message"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		return nil, -1, err.Error()
	}
	rules := map[string]bool{}
	for _, f := range doc.Findings {
		if f.Severity == "error" {
			rules[f.Rule] = true
		}
	}
	return rules, code, out.String()
}

func TestSweep(t *testing.T) {
	root := t.TempDir()
	if d := os.Getenv("ADAPTOOL_SWEEP_KEEP"); d != "" {
		root = d
		os.RemoveAll(root)
	}
	fxRoot := filepath.Join(root, "fixtures")
	fxs := swFixtures(t, fxRoot)
	before := swTreeHashes(t, fxRoot)
	var only *regexp.Regexp
	if s := os.Getenv("ADAPTOOL_SWEEP_RUN"); s != "" {
		only = regexp.MustCompile(s)
	}

	// Input error rules, so that an output is only blamed for new errors.
	inRules := map[string]map[string]bool{}
	for name, fx := range fxs {
		r, _, _ := swErrorRules(fx.path)
		inRules[name] = r
	}

	names := make([]string, 0, len(fxs))
	for n := range fxs {
		names = append(names, n)
	}
	sort.Strings(names)
	cmds := swCommands()
	outcomes := map[string]int{} // command → fixtures ok
	for _, name := range names {
		fx := fxs[name]
		// Sequential: run() is a whole process's main, and urfave/cli's
		// shared help/version flags are written by every App it builds.
		t.Run(name, func(t *testing.T) {
			for _, c := range cmds {
				row := name + "/" + c.name
				if only != nil && !only.MatchString(row) {
					continue
				}
				code := swRun(t, row, filepath.Join(root, "runs", name, c.name), fx, fxs, c, inRules)
				if code == 0 {
					outcomes[c.name]++
				}
			}
		})
	}
	t.Cleanup(func() {
		if after := swTreeHashes(t, fxRoot); len(after) != len(before) {
			t.Errorf("fixtures: %d files before, %d after", len(before), len(after))
		} else {
			for p, h := range before {
				if after[p] != h {
					t.Errorf("input %s was modified", p)
				}
			}
		}
		if p := os.Getenv("ADAPTOOL_SWEEP_LOG"); p != "" {
			sort.Strings(swLog.rows)
			os.WriteFile(p, []byte(strings.Join(swLog.rows, "\n")+"\n"), 0o644)
		}
		if testing.Verbose() {
			var lines []string
			for _, c := range cmds {
				lines = append(lines, fmt.Sprintf("%-20s %d/%d fixtures exit 0", c.name, outcomes[c.name], len(fxs)))
			}
			t.Log("sweep:\n" + strings.Join(lines, "\n"))
		}
	})
}

// swRun runs one row (twice) and checks every invariant; it returns the
// exit code.
func swRun(t *testing.T, row, rowdir string, fx *swFixture, fxs map[string]*swFixture, c swCmd, inRules map[string]map[string]bool) int {
	t.Helper()
	if err := os.MkdirAll(rowdir, 0o755); err != nil {
		t.Fatal(err)
	}
	pair := fx
	if fx.pair != "" {
		pair = fxs[fx.pair]
	}
	sub := func(s string) string {
		r := strings.NewReplacer("$in", fx.path, "$pair", pair.path, "$base_bf16", fxs["base-bf16"].path, "$base", fxs["base"].path,
			"$tuned", fxs["tuned"].path, "$out", filepath.Join(rowdir, "out"), "$rowdir", rowdir)
		return r.Replace(s)
	}
	argv := func(args []string) []string {
		out := []string{"adaptool"}
		for _, a := range args {
			out = append(out, sub(a))
		}
		writes := false
		for _, a := range args {
			writes = writes || a == "-o"
		}
		if writes {
			out = append(out, "--no-sync")
		}
		return out
	}
	for _, p := range c.pre {
		var o, e bytes.Buffer
		if code := run(argv(p), &o, &e); code != 0 {
			return -1
		}
	}
	inputs := []string{fx.path, pair.path, fxs["base"].path, fxs["base-bf16"].path, fxs["tuned"].path}
	hashIn := map[string]map[string]string{}
	for _, p := range inputs {
		hashIn[p] = swTreeHashes(t, p)
	}
	args := argv(c.args)
	dry := false
	wantJSON := false
	for _, a := range c.args {
		dry = dry || a == "--dry-run"
		wantJSON = wantJSON || a == "--json"
	}
	var outPaths []string
	for i, a := range c.args {
		if (a == "-o" || a == "--png") && i+1 < len(c.args) {
			outPaths = append(outPaths, sub(c.args[i+1]))
		}
	}

	runOnce := func() (int, string, string) {
		var o, e bytes.Buffer
		code := run(args, &o, &e)
		return code, o.String(), e.String()
	}
	code, stdout, stderr := runOnce()
	swLogRow(row, code, stderr)
	rowFailed := false
	fail := func(format string, a ...any) {
		t.Helper()
		rowFailed = true
		t.Errorf("%s: %s\n  args: %q\n  exit %d, stderr: %s", row, fmt.Sprintf(format, a...), args[1:], code, strings.TrimSpace(stderr))
	}
	if code < 0 || code > 4 {
		fail("exit code outside 0–4")
	}
	if e, ok := swExpected(row); ok && e.code >= 0 && (code != e.code || !strings.Contains(stderr, e.stderr)) {
		fail("want exit %d with %q on stderr", e.code, e.stderr)
	}
	for _, bad := range []string{"panic", "goroutine ", "runtime error", "SIGSEGV"} {
		if strings.Contains(stderr, bad) || strings.Contains(stdout, "goroutine ") {
			fail("stderr shows a crash (%q)", bad)
		}
	}
	if code != 0 {
		if !strings.HasPrefix(stderr, "adaptool: ") && code != 1 {
			fail("a failure must print one 'adaptool: …' line")
		}
		if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 0 && code != 1 {
			fail("stderr has %d lines", n+1)
		}
	}
	if tmp := swTemps(rowdir); len(tmp) > 0 {
		fail("temporary files left: %v", tmp)
	}
	for _, p := range inputs {
		after := swTreeHashes(t, p)
		for rel, h := range hashIn[p] {
			if after[rel] != h {
				fail("input %s/%s modified", p, rel)
			}
		}
	}
	if wantJSON && (code == 0 || stdout != "") {
		if err := swJSON(stdout); err != nil {
			fail("--json output is not one JSON document: %v\n%s", err, stdout)
		}
	}
	for _, p := range outPaths {
		_, err := os.Stat(p)
		switch {
		case code == 0 && !dry && err != nil:
			fail("exit 0 but no output %s", p)
		case (code != 0 || dry) && err == nil:
			fail("output %s exists after exit %d (dry-run %v)", p, code, dry)
		}
	}
	for _, p := range c.outputs {
		if _, err := os.Stat(sub(p)); code == 0 && !dry && err != nil {
			fail("exit 0 but no %s", sub(p))
		}
	}

	// Outputs: validated (no error the inputs did not have) and readable.
	if code == 0 && !dry && !c.noValidate {
		allowed := map[string]bool{}
		for k := range inRules[fx.name] {
			allowed[k] = true
		}
		for k := range inRules[pair.name] {
			allowed[k] = true
		}
		for _, p := range swAdapterPaths(outPaths) {
			rules, vcode, detail := swErrorRules(p)
			if rules == nil {
				fail("validate cannot read the output %s: exit %d %s", p, vcode, detail)
				continue
			}
			for r := range rules {
				if !allowed[r] {
					fail("validate finds a new error %q in the output %s:\n%s", r, p, detail)
				}
			}
			var o, e bytes.Buffer
			if ic := run([]string{"adaptool", "inspect", "--json", p}, &o, &e); ic != 0 {
				fail("inspect cannot read the output %s: exit %d %s", p, ic, e.String())
			}
		}
	}
	if code == 0 && c.check != nil && !rowFailed {
		func() {
			defer func() {
				if r := recover(); r != nil {
					if _, ok := r.(swAbort); !ok {
						fail("value check panicked: %v", r)
					}
				}
			}()
			c.check(&swCtx{t: t, row: row, fx: fx, fxs: fxs, sub: sub, stdout: stdout})
		}()
	}

	// Determinism: the same command again, on the same paths.
	first := map[string]map[string]string{}
	for _, p := range outPaths {
		first[p] = swTreeHashes(t, p)
		os.RemoveAll(p)
	}
	code2, stdout2, stderr2 := runOnce()
	if code2 != code {
		fail("second run exits %d (stderr %s)", code2, stderr2)
	}
	if swStable(stdout2) != swStable(stdout) {
		fail("second run prints another stdout:\n%s\n---\n%s", stdout, stdout2)
	}
	for _, p := range outPaths {
		again := swTreeHashes(t, p)
		if len(again) != len(first[p]) {
			fail("second run writes %d files, first %d", len(again), len(first[p]))
		}
		for rel, h := range first[p] {
			if again[rel] != h {
				fail("second run writes another %s/%s", p, rel)
			}
		}
	}
	return code
}

var swLog struct {
	sync.Mutex
	rows []string
}

// swLogRow records one outcome for ADAPTOOL_SWEEP_LOG.
func swLogRow(row string, code int, stderr string) {
	line, _, _ := strings.Cut(stderr, "\n")
	swLog.Lock()
	swLog.rows = append(swLog.rows, fmt.Sprintf("%s\t%d\t%s", row, code, line))
	swLog.Unlock()
}

// swStable removes the parts of a report that legitimately differ from
// run to run: wall-clock durations.
var swDuration = regexp.MustCompile(`("(?:elapsed|duration|seconds|time|mb_per_s)[a-z_]*": *)[0-9.e+-]+|[0-9.]+ ?(?:ms|µs|s|MB/s)\b`)

func swStable(s string) string { return swDuration.ReplaceAllString(s, "$1#") }
