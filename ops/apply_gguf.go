package ops

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/convert"
	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

// IsGGUFBase reports whether apply treats path as a GGUF (llama.cpp) file:
// it starts with the GGUF magic or its extension is .gguf.
func IsGGUFBase(path string) bool {
	return gguf.IsGGUF(path) || strings.EqualFold(filepath.Ext(path), ".gguf")
}

// ggufOp is one module's change to one base tensor in the tensor's stored
// (row-major) frame: W[i][j] += Scale·Σ_k L[i][k]·R[k][j], L rows×r, R r×cols.
type ggufOp struct {
	l, r  []float32
	rank  int
	scale float64
	rep   int // index of the module in ApplyReport.Modules
	// what names the module and its adapter file in error messages.
	what string
}

// ggufJob is one touched base tensor.
type ggufJob struct {
	info gguf.TensorInfo
	out  gguf.GGMLType
	ops  []ggufOp
}

// ggufMergeType returns the type a merged tensor of base type t is written
// in: F32, F16 and BF16 keep theirs; the block types of package quant
// (quant.GGUFTypes: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K) are written as F16 (as llama.cpp's export-lora does) or, with
// requantize, in their own type. ok is false for every other type (Q8_K,
// the IQ and TQ types, MXFP4, integers, F64).
func ggufMergeType(t gguf.GGMLType, requantize bool) (gguf.GGMLType, bool) {
	switch t {
	case gguf.F32, gguf.F16, gguf.BF16:
		return t, true
	}
	if quant.GGUFType(t).BlockSize() == 0 {
		return 0, false
	}
	if requantize {
		return t, true
	}
	return gguf.F16, true
}

// ggufMergeableTypes lists the base types ggufMergeType accepts: "F32,
// F16, BF16, Q4_0, …" with the block types in quant.GGUFTypes order.
func ggufMergeableTypes() string {
	names := []string{"F32", "F16", "BF16"}
	for _, t := range quant.GGUFTypes {
		names = append(names, t.String())
	}
	return strings.Join(names, ", ")
}

// applyGGUF is Apply for a GGUF base model (see Apply).
func applyGGUF(p ApplyParams, o RunOptions) (*ApplyReport, error) {
	base, err := gguf.Open(p.Base)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	if _, split := base.Get("split.count"); split {
		return nil, fmt.Errorf("%w: %s: split GGUF models are not supported (as llama.cpp's export-lora)", ErrUnsupported, p.Base)
	}
	arch, _ := base.String("general.architecture")
	rep := &ApplyReport{Operation: "apply", Params: p, Output: o.Output, DryRun: o.DryRun,
		Base: []InputInfo{{Path: p.Base, Weights: p.Base, Modules: len(base.Tensors)}}}
	jobs := map[string]*ggufJob{}
	addOp := func(tensor string, op ggufOp) {
		op.rep = len(rep.Modules) // the module is appended right after its op
		j := jobs[tensor]
		if j == nil {
			info, _ := base.Tensor(tensor)
			j = &ggufJob{info: info}
			jobs[tensor] = j
		}
		j.ops = append(j.ops, op)
	}
	for ai, as := range p.Adapters {
		var info InputInfo
		var err error
		if IsGGUFBase(as.Path) {
			info, err = planGGUFAdapter(base, arch, as, ai, rep, addOp)
		} else {
			info, err = planPEFTIntoGGUF(base, arch, as, ai, p, o, rep, addOp)
		}
		if err != nil {
			return rep, err
		}
		rep.Inputs = append(rep.Inputs, info)
	}
	for _, m := range rep.Modules {
		switch m.Status {
		case "applied":
			rep.Applied++
		case "refused":
			rep.Refused++
		}
	}
	toF16 := false
	var typeErr error
	for _, t := range base.Tensors {
		j := jobs[t.Name]
		if j == nil {
			rep.Copied++
			rep.Bytes += t.Size()
			continue
		}
		rep.Touched++
		out, ok := ggufMergeType(t.Type, p.Requantize)
		if !ok {
			if typeErr == nil {
				typeErr = fmt.Errorf("%w: %s: tensor %q: base type %s cannot be merged (%s)", ErrUnsupported, p.Base, t.Name, t.Type, ggufMergeableTypes())
			}
			continue
		}
		j.out = out
		if out != t.Type {
			toF16 = true
		}
		if out == t.Type && quant.GGUFType(t.Type).BlockSize() != 0 {
			rep.Quantized++ // requantized to its own type
		}
		rep.Bytes += gguf.TensorInfo{Dims: t.Dims, Type: out}.Size()
	}
	if rep.Refused > 0 {
		return rep, rep.refusedModules()
	}
	if len(jobs) == 0 {
		return rep, fmt.Errorf("%w: the adapters change no base tensor", ErrIncompatible)
	}
	if typeErr != nil {
		return rep, typeErr
	}
	if toF16 {
		rep.Warnings = append(rep.Warnings, "merged tensors of quantized types were written as F16 (as llama.cpp's export-lora does; --requantize keeps their type) and general.file_type set to 1 (mostly F16)")
	}
	if o.DryRun {
		return rep, nil
	}
	if o.Output == "" {
		return rep, fmt.Errorf("%w: no output path", ErrParams)
	}

	if rep.Base[0].SHA256, err = fileSHA256(p.Base); err != nil {
		return rep, err
	}
	for i := range rep.Inputs {
		if rep.Inputs[i].SHA256, err = fileSHA256(rep.Inputs[i].Weights); err != nil {
			return rep, err
		}
	}
	meta := provenance("apply", "", p, nil, nil, append(append([]InputInfo(nil), rep.Base...), rep.Inputs...))
	kv := make([]gguf.KV, 0, len(base.KV)+len(meta))
	set := func(key string, v gguf.Value) {
		for i := range kv {
			if kv[i].Key == key {
				kv[i].Value = v
				return
			}
		}
		kv = append(kv, gguf.KV{Key: key, Value: v})
	}
	kv = append(kv, base.KV...)
	if toF16 {
		set("general.file_type", gguf.Uint32(1))
	}
	for _, k := range sortedMetaKeys(meta) {
		set(k, gguf.String(meta[k]))
	}

	total, done := len(jobs), 0
	tensors := make([]gguf.Tensor, 0, len(base.Tensors))
	for _, t := range base.Tensors {
		j := jobs[t.Name]
		if j == nil {
			tensors = append(tensors, gguf.Tensor{Name: t.Name, Type: t.Type, Dims: t.Dims, WriteTo: func(w io.Writer) error {
				b, err := base.Data(t.Name)
				if err != nil {
					return err
				}
				_, err = w.Write(b)
				return err
			}})
			continue
		}
		tensors = append(tensors, gguf.Tensor{Name: t.Name, Type: j.out, Dims: t.Dims, WriteTo: func(w io.Writer) error {
			b, stats, err := mergeGGUFTensor(base, j)
			if err != nil {
				return err
			}
			for _, op := range j.ops {
				if mr := &rep.Modules[op.rep]; mr.Requant == nil && stats != nil {
					mr.Requant = stats
				}
			}
			done++
			if o.Progress != nil {
				o.Progress(done, total)
			}
			_, err = w.Write(b)
			return err
		}})
	}
	out := o.Output
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		out = filepath.Join(out, filepath.Base(p.Base))
	}
	if err := gguf.WriteFile(out, kv, tensors); err != nil {
		return rep, err
	}
	rep.Files = []string{out}
	if p.Verify {
		if err := verifyGGUF(rep, base, jobs); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// verifyGGUF re-reads the output: untouched tensors must be byte-identical
// to the base; each touched tensor is recomputed in float64 (element by
// element) and compared with what was written, as verifyApply does.
func verifyGGUF(rep *ApplyReport, base *gguf.File, jobs map[string]*ggufJob) error {
	out, err := gguf.Open(rep.Files[0])
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer out.Close()
	for _, t := range base.Tensors {
		j := jobs[t.Name]
		if j == nil {
			if err := checkUntouched(t.Name, base, out); err != nil {
				return err
			}
			continue
		}
		w0, err := base.Float32(t.Name)
		if err != nil {
			return err
		}
		cols := int(t.Dims[0])
		exact := make([]float64, len(w0))
		for i := range exact {
			e := float64(w0[i])
			row, col := i/cols, i%cols
			for _, op := range j.ops {
				var d float64
				for k := 0; k < op.rank; k++ {
					d += float64(op.l[row*op.rank+k]) * float64(op.r[k*cols+col])
				}
				e += op.scale * d
			}
			exact[i] = e
		}
		got, err := out.Float32(t.Name)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		maxAbs, rel := compare64(got, exact)
		v := ApplyError{MaxAbs: maxAbs, RelFro: rel}
		if qt := quant.GGUFType(j.out); qt.BlockSize() != 0 {
			x := make([]float32, len(exact))
			for i, e := range exact {
				x[i] = float32(e)
			}
			b := make([]byte, gguf.TensorInfo{Dims: t.Dims, Type: j.out}.Size())
			back := make([]float32, len(x))
			if err := quant.QuantizeGGUF(b, x, qt); err != nil {
				return err
			}
			if err := quant.DequantizeGGUF(back, b, qt); err != nil {
				return err
			}
			_, v.RequantRelFro = compare64(back, exact)
			v.Quantized, v.Bound = true, 1.01*v.RequantRelFro+1e-6
		} else {
			v.Bound = 2*unitRoundoff(map[gguf.GGMLType]safetensors.DType{gguf.F32: safetensors.F32, gguf.F16: safetensors.F16, gguf.BF16: safetensors.BF16}[j.out]) + 1e-5
		}
		for _, op := range j.ops {
			mr := &rep.Modules[op.rep]
			if mr.Verify == nil {
				mr.Verify = &ApplyError{}
			}
			mr.Verify.MaxAbs = max(mr.Verify.MaxAbs, v.MaxAbs)
			mr.Verify.RelFro = max(mr.Verify.RelFro, v.RelFro)
			mr.Verify.Bound = max(mr.Verify.Bound, v.Bound)
			mr.Verify.RequantRelFro = max(mr.Verify.RequantRelFro, v.RequantRelFro)
			mr.Verify.Quantized = mr.Verify.Quantized || v.Quantized
		}
	}
	for i := range rep.Modules {
		if v := rep.Modules[i].Verify; v != nil && !(v.RelFro <= v.Bound) {
			v.Exceeded = true
			rep.VerifyFailures++
		}
	}
	rep.Verified = true
	return nil
}

// sortedMetaKeys returns the keys of m in sorted order.
func sortedMetaKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// mergeGGUFTensor reads a touched base tensor, adds every op in float64,
// rounds once to float32 and encodes the result in j.out. When j.out is a
// block type (requantization) it also returns the requantization error.
func mergeGGUFTensor(base *gguf.File, j *ggufJob) ([]byte, *RequantError, error) {
	w32, err := base.Float32(j.info.Name)
	if err != nil {
		return nil, nil, err
	}
	cols := int(j.info.Dims[0])
	rows := len(w32) / cols
	w := make([]float64, len(w32))
	bad := 0
	for i, v := range w32 {
		w[i] = float64(v)
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			bad++
		}
	}
	qt := quant.GGUFType(j.out)
	if qt.BlockSize() == 0 {
		w32 = nil
	}
	for _, op := range j.ops {
		row := make([]float64, cols)
		for i := 0; i < rows; i++ {
			clear(row)
			for k := 0; k < op.rank; k++ {
				lik := float64(op.l[i*op.rank+k])
				if lik == 0 {
					continue
				}
				rk := op.r[k*cols : (k+1)*cols]
				for c, x := range rk {
					row[c] += lik * float64(x)
				}
			}
			wi := w[i*cols : (i+1)*cols]
			for c := range wi {
				wi[c] += op.scale * row[c]
			}
		}
	}
	res := make([]float32, len(w))
	for i, v := range w {
		res[i] = float32(v)
	}
	// The adapters' factors are finite (checked when planned), so more
	// non-finite values than the base had is an overflow of the result in
	// the written type (F16 above 65504, a block scale beyond F16): refused.
	overflow := func(after int) error {
		var what []string
		for _, op := range j.ops {
			if !slices.Contains(what, op.what) {
				what = append(what, op.what)
			}
		}
		return fmt.Errorf("%w: %s: tensor %q: applying %s leaves %d value(s) that are not finite in %s (%d in the base): the result overflows (the adapters' values are finite; use a smaller --adapter scale)",
			ErrIncompatible, base.Name(), j.info.Name, strings.Join(what, ", "), after-bad, j.out, bad)
	}
	if qt.BlockSize() == 0 {
		limit := float32(math.MaxFloat32)
		switch j.out {
		case gguf.F16:
			limit = finiteLimit(safetensors.F16)
		case gguf.BF16:
			limit = finiteLimit(safetensors.BF16)
		}
		if after := countBeyond32(res, limit); after > bad {
			return nil, nil, overflow(after)
		}
		b, err := gguf.Encode(res, j.out)
		return b, nil, err
	}
	if after := countNonFinite32(res); after > bad {
		return nil, nil, overflow(after)
	}
	b := make([]byte, gguf.TensorInfo{Dims: j.info.Dims, Type: j.out}.Size())
	if err := quant.QuantizeGGUF(b, res, qt); err != nil {
		return nil, nil, err
	}
	back := make([]float32, len(res))
	if err := quant.DequantizeGGUF(back, b, qt); err != nil {
		return nil, nil, err
	}
	if after := countNonFinite32(back); after > bad {
		return nil, nil, overflow(after)
	}
	d := quant.Detected{Name: j.info.Name, Scheme: quant.Scheme(strings.ToLower(j.out.String())), Layout: "gguf"}
	stats := requantStats(d, quant.ErrorStats(res, back), w32, res, back)
	stats.Params.Scheme = d.Scheme
	return b, stats, nil
}

// planGGUFAdapter plans a llama.cpp GGUF LoRA adapter: every
// "<tensor>.lora_a"/".lora_b" pair changes the base tensor <tensor> by
// scale·lora_b·lora_a (token_embd: lora_a is stored flipped), scale =
// λ·alpha/r with r = lora_b.ne[0] (λ when alpha is 0), as export-lora.
func planGGUFAdapter(base *gguf.File, arch string, as AdapterScale, ai int, rep *ApplyReport, addOp func(string, ggufOp)) (InputInfo, error) {
	f, err := gguf.Open(as.Path)
	if err != nil {
		return InputInfo{}, err
	}
	defer f.Close()
	info := InputInfo{Path: as.Path, Weights: as.Path, Dialect: string(adapter.DialectGGUF)}
	if t, _ := f.String("general.type"); t != "adapter" {
		return info, fmt.Errorf("%w: %s: general.type is %q, want \"adapter\" (a GGUF LoRA adapter)", ErrIncompatible, as.Path, t)
	}
	if t, _ := f.String("adapter.type"); t != "lora" {
		return info, fmt.Errorf("%w: %s: adapter.type is %q, want \"lora\"", ErrIncompatible, as.Path, t)
	}
	if a, _ := f.String("general.architecture"); a != arch {
		return info, fmt.Errorf("%w: %s: adapter architecture %q, base %s is %q", ErrIncompatible, as.Path, a, base.Name(), arch)
	}
	alpha := 0.0
	if v, ok := f.Get("adapter.lora.alpha"); ok {
		alpha, _ = v.Float64()
	}
	var mods []string
	seen := map[string]bool{}
	var ignored []string
	for _, t := range f.Tensors {
		n := strings.TrimSuffix(strings.TrimSuffix(t.Name, ".lora_a"), ".lora_b")
		if n == t.Name {
			ignored = append(ignored, t.Name)
			continue
		}
		if !seen[n] {
			seen[n] = true
			mods = append(mods, n)
		}
	}
	if len(ignored) > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: %d tensor(s) that are not lora_a/lora_b ignored (as llama.cpp does): %s", as.Path, len(ignored), strings.Join(ignored, ", ")))
	}
	for _, name := range mods {
		mr := ApplyModule{Adapter: ai + 1, Name: strings.TrimSuffix(name, ".weight"), Kind: string(adapter.KindLoRA), Status: "applied", Tensors: []string{name}}
		info.Modules++
		reason, err := func() (string, error) {
			ta, okA := f.Tensor(name + ".lora_a")
			tb, okB := f.Tensor(name + ".lora_b")
			if !okA || !okB {
				return "lora_a or lora_b missing", nil
			}
			bt, ok := base.Tensor(name)
			if !ok {
				return "no base tensor " + name, nil
			}
			if len(ta.Dims) != 2 || len(tb.Dims) != 2 || len(bt.Dims) != 2 {
				return fmt.Sprintf("not 2-D (lora_a %v, lora_b %v, base %v)", ta.Dims, tb.Dims, bt.Dims), nil
			}
			rank := int(tb.Dims[0])
			emb := strings.HasPrefix(name, "token_embd")
			// non-embedding: lora_a ne [in, r], lora_b ne [r, out], base ne [in, out]
			// token_embd:    lora_a ne [r, vocab], lora_b ne [r, embd], base ne [embd, vocab]
			okShape := ta.Dims[1] == tb.Dims[0] && ta.Dims[0] == bt.Dims[0] && tb.Dims[1] == bt.Dims[1]
			if emb {
				okShape = ta.Dims[0] == tb.Dims[0] && ta.Dims[1] == bt.Dims[1] && tb.Dims[1] == bt.Dims[0]
			}
			if !okShape || rank == 0 {
				return fmt.Sprintf("shapes lora_a ne %v, lora_b ne %v do not fit base ne %v", ta.Dims, tb.Dims, bt.Dims), nil
			}
			a, err := f.Float32(ta.Name)
			if err != nil {
				return "", err
			}
			b, err := f.Float32(tb.Name)
			if err != nil {
				return "", err
			}
			// An adapter whose own values are NaN or ±Inf is a bad input
			// (exit 2), as in the merges, not an overflow of the result.
			for _, x := range []struct {
				name string
				v    []float32
			}{{ta.Name, a}, {tb.Name, b}} {
				for i, v := range x.v {
					if v-v != 0 {
						return "", fmt.Errorf("%w: %s: module %s: tensor %s: %v at index %d", ErrNonFinite, as.Path, mr.Name, x.name, v, i)
					}
				}
			}
			scale := as.Scale
			if alpha != 0 {
				scale = as.Scale * alpha / float64(rank)
			}
			op := ggufOp{rank: rank, scale: scale, what: fmt.Sprintf("module %s of %s", mr.Name, as.Path)}
			if emb {
				// ΔW[v][e] = Σ_k a[v][k]·b[e][k]
				op.l, op.r = a, transposeF32(b, int(tb.Dims[1]), rank)
			} else {
				// ΔW[o][i] = Σ_k b[o][k]·a[k][i]
				op.l, op.r = b, a
			}
			addOp(name, op)
			return "", nil
		}()
		if err != nil {
			return info, err
		}
		if reason != "" {
			mr.Status, mr.Reason, mr.Tensors = "refused", reason, nil
		}
		rep.Modules = append(rep.Modules, mr)
	}
	return info, nil
}

// planPEFTIntoGGUF plans an adapter adapter.Load reads: its modules are
// mapped to llama.cpp tensors as `convert --to gguf` maps them, with the
// head counts and tied embeddings taken from the base's metadata.
func planPEFTIntoGGUF(base *gguf.File, arch string, as AdapterScale, ai int, p ApplyParams, o RunOptions, rep *ApplyReport, addOp func(string, ggufOp)) (InputInfo, error) {
	a, err := adapter.Load(as.Path, o.Load...)
	if err != nil {
		return InputInfo{}, err
	}
	defer a.Close()
	info := InputInfo{Path: as.Path, Weights: a.WeightsPath, Dialect: string(a.Dialect), Modules: len(a.Modules)}
	cfg := map[string]any{}
	if _, ok := base.Tensor("output.weight"); !ok {
		cfg["tie_word_embeddings"] = true
	} else {
		cfg["tie_word_embeddings"] = false
	}
	for key, field := range map[string]string{"head_count": "num_attention_heads", "head_count_kv": "num_key_value_heads"} {
		if v, ok := base.Get(arch + ".attention." + key); ok {
			if x, ok := v.Float64(); ok {
				cfg[field] = x
			}
		}
	}
	pairs, refused, warns, err := convert.GGUFPairs(a, convert.GGUFOptions{Arch: arch, Base: convert.NewBaseConfig(base.Name(), cfg)})
	for _, w := range warns {
		rep.Warnings = append(rep.Warnings, as.Path+": "+w)
	}
	if err != nil {
		if errors.Is(err, convert.ErrRefused) || errors.Is(err, convert.ErrUnmapped) || errors.Is(err, convert.ErrOptions) {
			return info, fmt.Errorf("%w: %s into GGUF base %s: %w", ErrUnsupported, as.Path, base.Name(), err)
		}
		return info, err
	}
	for _, r := range refused {
		name, reason, _ := strings.Cut(r, " (")
		rep.Modules = append(rep.Modules, ApplyModule{Adapter: ai + 1, Name: name, Status: "refused", Reason: strings.TrimSuffix(reason, ")")})
	}
	for _, pr := range pairs {
		mr := ApplyModule{Adapter: ai + 1, Name: pr.Module, Kind: string(pr.Kind), Status: "applied", Tensors: []string{pr.Tensor}}
		bt, ok := base.Tensor(pr.Tensor)
		rows, cols := pr.Out, pr.In
		if pr.Embedding {
			rows, cols = pr.In, pr.Out
		}
		switch {
		case !ok:
			mr.Reason = "no base tensor " + pr.Tensor
		case len(bt.Dims) != 2 || int(bt.Dims[0]) != cols || int(bt.Dims[1]) != rows:
			mr.Reason = fmt.Sprintf("base %s has ne %v, the module needs [%d %d]", pr.Tensor, bt.Dims, cols, rows)
		case pr.Kind == adapter.KindKaSA && p.KaSA != "keep":
			mr.Reason = "KaSA into a GGUF base: only --kasa keep is supported"
		}
		if mr.Reason != "" {
			mr.Status, mr.Tensors = "refused", nil
			rep.Modules = append(rep.Modules, mr)
			continue
		}
		if m := moduleNamed(a, pr.Module); m != nil {
			if err := checkFinite(a, m); err != nil {
				return info, err
			}
		}
		op := ggufOp{rank: pr.Rank, scale: as.Scale * pr.Scale, what: fmt.Sprintf("module %s of %s", pr.Module, a.WeightsPath)}
		if pr.Embedding {
			// stored (in, out) = (B·A)ᵀ = Aᵀ·Bᵀ
			op.l, op.r = transposeF32(pr.A, pr.Rank, pr.In), transposeF32(pr.B, pr.Out, pr.Rank)
		} else {
			op.l, op.r = pr.B, pr.A
		}
		addOp(pr.Tensor, op)
		rep.Modules = append(rep.Modules, mr)
	}
	return info, nil
}

// moduleNamed returns the module of a called name (nil when none).
func moduleNamed(a *adapter.Adapter, name string) *adapter.Module {
	for _, m := range a.Modules {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// transposeF32 returns the transpose of the rows×cols matrix x.
func transposeF32(x []float32, rows, cols int) []float32 {
	t := make([]float32, len(x))
	transpose32(t, x, rows, cols)
	return t
}
