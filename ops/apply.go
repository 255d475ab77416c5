package ops

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/adaptool/adaptool/quant"
)

// AdapterScale is one adapter to fold into a base, with a multiplier applied
// to its deltas (1 = as trained).
type AdapterScale struct {
	Path  string  `json:"path"`
	Scale float64 `json:"scale"`
}

// ApplyParams describes apply: fold adapters into a base checkpoint.
type ApplyParams struct {
	// Base is a .safetensors file, a model.safetensors.index.json or a
	// directory holding one (see safetensors.OpenCheckpoint).
	Base string `json:"base"`
	// Adapters are applied in order; each may be a PEFT directory or any
	// file adapter.Load reads.
	Adapters []AdapterScale `json:"adapters"`
	// Verify re-reads the output and reports per-module error against a
	// float64 recomputation, and checks untouched tensors are identical.
	Verify bool `json:"verify,omitempty"`
	// KaSA selects how KaSA modules (lora_diag) are folded: "truncate"
	// (default, "" too) replaces W by its rank-(k−r) truncation
	// trunc(W) = W minus its r smallest singular triplets (k = min(out, in),
	// r the module's rank), as KaSA does to the base before training, then
	// adds ΔW = s·B·diag(d)·A (PEFT PR #3298); "truncate-repo" keeps
	// in − r components as the KaSA reference code does (nothing is dropped
	// when in ≥ out + r); "keep" adds ΔW to the untruncated W.
	KaSA string `json:"kasa,omitempty"`
	// Requantize (GGUF bases only) writes merged tensors of a quantized
	// type (quant.GGUFTypes: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) requantized to that
	// type with ggml's reference quantizer; by default they are written as
	// F16, as llama.cpp's export-lora does.
	Requantize bool `json:"requantize,omitempty"`
}

// ApplyError is the verification of one module: the written weights
// against the exact float64 result (the difference is the rounding to the
// tensor's dtype, plus float32 accumulation).
type ApplyError struct {
	MaxAbs float64 `json:"max_abs_error"`
	RelFro float64 `json:"rel_fro_error"` // ‖written − exact‖_F / ‖exact‖_F
	// Bound is what rounding explains: 2u + 1e-5 with u the unit roundoff
	// of the tensor's dtype (the largest over the module's tensors).
	Bound float64 `json:"bound"`
	// Exceeded is true when RelFro > Bound (counted in VerifyFailures).
	Exceeded bool `json:"exceeded,omitempty"`
	// Quantized is set for a quantized base weight: MaxAbs and RelFro
	// compare the dequantized output with the exact float64 W_deq + ΔW (the
	// fold error), RequantRelFro is the error of requantizing that exact
	// result independently with the same scheme and parameters, and
	// Bound = 1.01·RequantRelFro + 1e-6.
	Quantized     bool    `json:"quantized,omitempty"`
	RequantRelFro float64 `json:"requant_rel_fro_error,omitempty"`
}

// unitRoundoff returns 2^-p for a dtype with p significand bits.
func unitRoundoff(dt safetensors.DType) float64 {
	switch dt {
	case safetensors.F64:
		return 0x1p-53
	case safetensors.F16:
		return 0x1p-11
	case safetensors.BF16:
		return 0x1p-8
	case safetensors.F8E4M3:
		return 0x1p-4
	case safetensors.F8E5M2:
		return 0x1p-3
	}
	return 0x1p-24
}

// ApplyModule is one adapter module of an apply plan or result.
type ApplyModule struct {
	Adapter int    `json:"adapter"` // 1-based position in ApplyParams.Adapters
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	// Status: "applied" (delta folded in), "replaced" (modules_to_save
	// tensors replace the base's), "added" (saved tensors the base lacks),
	// "refused" (see Reason; nothing is written).
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Tensors are the base tensors the module writes.
	Tensors []string    `json:"tensors,omitempty"`
	Verify  *ApplyError `json:"verify,omitempty"`
	// Requant is set when the module's weight is quantized in the base:
	// the extra error of requantizing it (filled when run, not planned).
	Requant *RequantError `json:"requant,omitempty"`
}

// ApplyReport is the plan (dry run) or the result of Apply.
type ApplyReport struct {
	Operation string        `json:"operation"` // "apply"
	Params    ApplyParams   `json:"params"`
	Base      []InputInfo   `json:"base"`   // the base files (sha256 when run)
	Inputs    []InputInfo   `json:"inputs"` // the adapters
	Output    string        `json:"output,omitempty"`
	DryRun    bool          `json:"dry_run"`
	Modules   []ApplyModule `json:"modules"`
	Applied   int           `json:"applied"`
	Replaced  int           `json:"replaced"`
	Added     int           `json:"added"`
	Refused   int           `json:"refused"`
	// Touched counts base tensors recomputed, Copied those streamed
	// unchanged (byte-identical).
	Touched int `json:"tensors_touched"`
	Copied  int `json:"tensors_copied"`
	// Quantized counts the quantized base weights folded into (each
	// rewrites every tensor of its layout).
	Quantized int `json:"quantized_weights_touched"`
	// Bytes is the total tensor bytes written (or to be written).
	Bytes int64    `json:"bytes"`
	Files []string `json:"files,omitempty"` // output files, index last
	// Verified is true after a successful --verify: every module's error
	// is in Modules and every untouched tensor was byte-identical.
	Verified bool `json:"verified,omitempty"`
	// VerifyFailures counts modules whose error exceeds the rounding bound.
	VerifyFailures int      `json:"verify_failures,omitempty"`
	Warnings       []string `json:"warnings,omitempty"`
}

// Module operation kinds on one base tensor.
const (
	opLoRA      = iota // W += λ·s·B·A (logical frame)
	opDoRA             // W = m/‖W+Δ‖·(W+Δ) per logical row
	opIA3              // W ⊙ l (rows or columns)
	opBias             // b += λ·s·lora_B.bias
	opIA3Bias          // b ⊙ l
	opReplace          // tensor := saved tensor
	opDense            // W += λ·ΔW with ΔW dense (LoHa, LoKr, VeRA)
	opTruncate         // W := W minus its r smallest singular triplets (KaSA)
	opAddTensor        // tensor += λ·saved tensor (diff, diff_b)
)

// tensorOp is one module's change to one base tensor.
type tensorOp struct {
	kind   int
	ad     *adapter.Adapter
	mod    *adapter.Module
	lambda float64
	rep    int    // index into ApplyReport.Modules
	src    string // opReplace, opAddTensor: the adapter tensor
	drop   int    // opTruncate: singular triplets to drop
}

// tensorJob is everything applied to one base tensor.
type tensorJob struct {
	info safetensors.TensorInfo
	file *safetensors.File // nil for an added tensor
	ops  []tensorOp
	q    *qjob // set for every tensor of a quantized weight's layout
}

// baseIndex resolves adapter module names to base tensor names.
type baseIndex struct {
	names map[string]bool
	list  []string
}

func newBaseIndex(names []string) *baseIndex {
	ix := &baseIndex{names: make(map[string]bool, len(names)), list: names}
	for _, n := range names {
		ix.names[n] = true
	}
	return ix
}

var kohyaPrefixes = []string{"lora_unet_", "lora_te1_", "lora_te2_", "lora_te3_", "lora_te_", "lora_transformer_"}

// find returns the base tensor for module.role: the exact name; else the
// only base name ending in "."+module.role (base saved with an extra
// prefix); else the name with leading components of module dropped
// (adapter saved with an extra prefix, e.g. diffusers "unet."); else, for
// kohya names, the only base name whose underscore form matches.
func (ix *baseIndex) find(module, role string) string {
	want := module + "." + role
	if ix.names[want] {
		return want
	}
	var hits []string
	for _, n := range ix.list {
		if strings.HasSuffix(n, "."+want) {
			hits = append(hits, n)
		}
	}
	if len(hits) == 1 {
		return hits[0]
	}
	parts := strings.Split(module, ".")
	for i := 1; i < len(parts); i++ {
		if c := strings.Join(parts[i:], ".") + "." + role; ix.names[c] {
			return c
		}
	}
	for _, p := range kohyaPrefixes {
		rest, ok := strings.CutPrefix(module, p)
		if !ok {
			continue
		}
		hits = hits[:0]
		for _, n := range ix.list {
			stem, ok := strings.CutSuffix(n, "."+role)
			if !ok {
				continue
			}
			u := strings.ReplaceAll(stem, ".", "_")
			if u == rest || strings.HasSuffix(u, "_"+rest) {
				hits = append(hits, n)
			}
		}
		if len(hits) == 1 {
			return hits[0]
		}
	}
	return ""
}

// convertible reports whether a base dtype can be recomputed in floating
// point and written back in the same dtype. FP8 and int8 weights are
// excluded: their codes are not the weights without their scales, so they
// are folded only as part of a recognized quantized layout (quant.Detect).
func convertible(dt safetensors.DType) bool {
	switch dt {
	case safetensors.F64, safetensors.F32, safetensors.F16, safetensors.BF16:
		return true
	}
	return false
}

// transposed reports whether the base stores the module's logical
// (Out, In·k) matrix transposed: Conv1D (fan_in_fan_out) and embeddings.
func transposed(m *adapter.Module) bool {
	return m.FanInFanOut || m.Kind == adapter.KindLoRAEmbedding
}

// logicalDims returns the module's logical (rows, cols) = (Out, In·∏Kernel).
func logicalDims(m *adapter.Module) (int, int) {
	ink := m.InFeatures
	for _, k := range m.Kernel {
		ink *= k
	}
	return m.OutFeatures, ink
}

// frame returns the logical (rows, cols) of module m on base tensor t. An
// IA3 vector tells only one dimension, so its frame comes from the base
// shape: (shape[0], rest), or the transpose for fan_in_fan_out.
func frame(m *adapter.Module, t safetensors.TensorInfo) (int, int) {
	if !shapeFromBase(m) {
		return logicalDims(m)
	}
	if len(t.Shape) < 2 {
		return 0, 0
	}
	rows, cols := t.Shape[0], int(t.NumElements())/max(t.Shape[0], 1)
	if m.FanInFanOut {
		rows, cols = cols, rows
	}
	return rows, cols
}

// shapeFromBase reports whether m's logical frame comes from the base
// tensor's shape: IA3 vectors tell one dimension only, VeRA modules do not
// record in_features, LoKr modules not the conv kernel.
func shapeFromBase(m *adapter.Module) bool {
	return m.Kind == adapter.KindIA3 || m.Kind == adapter.KindLoKr || m.Kind == adapter.KindVeRA
}

// checkWeight checks that base tensor t can hold m's logical matrix.
func checkWeight(t safetensors.TensorInfo, m *adapter.Module) string {
	if m.Kind == adapter.KindLoKr || m.Kind == adapter.KindVeRA {
		if !convertible(t.DType) {
			return fmt.Sprintf("base tensor %s is %s, which cannot be recomputed in floating point", t.Name, t.DType)
		}
		if len(t.Shape) < 2 || (m.FanInFanOut && len(t.Shape) != 2) {
			return fmt.Sprintf("base tensor %s has shape %v, want a matrix (fan_in_fan_out=%v)", t.Name, t.Shape, m.FanInFanOut)
		}
		return ""
	}
	if m.Kind == adapter.KindIA3 {
		rows, cols := frame(m, t)
		want, have := m.OutFeatures, rows
		if m.Feedforward {
			want, have = m.InFeatures, cols
		}
		if rows == 0 || want != have {
			return fmt.Sprintf("base tensor %s has shape %v, the IA3 vector has %d values (feedforward=%v, fan_in_fan_out=%v)",
				t.Name, t.Shape, want, m.Feedforward, m.FanInFanOut)
		}
		if !convertible(t.DType) {
			return fmt.Sprintf("base tensor %s is %s, which cannot be recomputed in floating point", t.Name, t.DType)
		}
		return ""
	}
	out, ink := logicalDims(m)
	if out <= 0 || ink <= 0 {
		return fmt.Sprintf("module dimensions unknown (out %d, in %d)", out, ink)
	}
	if !convertible(t.DType) {
		return fmt.Sprintf("base tensor %s is %s and not part of a recognized quantized layout (FP8/int8 weights need their weight_scale, SCB or weight_scale_inv tensor)", t.Name, t.DType)
	}
	if t.NumElements() != int64(out)*int64(ink) || len(t.Shape) < 2 {
		return fmt.Sprintf("base tensor %s has shape %v, the module needs %d×%d", t.Name, t.Shape, out, ink)
	}
	lead := out
	if transposed(m) {
		lead = m.InFeatures
	}
	if t.Shape[0] != lead {
		return fmt.Sprintf("base tensor %s has shape %v, the module needs %d rows (fan_in_fan_out=%v)", t.Name, t.Shape, lead, m.FanInFanOut)
	}
	return ""
}

// Apply folds the adapters into the base checkpoint and writes the result
// (a GGUF base, IsGGUFBase, is handled as llama.cpp's export-lora does:
// GGUF LoRA adapters or adapters mapped to llama.cpp names, one tensor at a
// time in float64, F32/F16/BF16 kept, quantized tensors written as F16 or,
// with Requantize, in their own type; metadata kept plus provenance keys)
// to o.Output with the base's layout: a single base file gives one file
// (o.Output, or o.Output/<base name> when o.Output is a directory); a
// sharded base gives the same shard files plus a rewritten index in the
// o.Output directory. Tensors are processed one at a time, so memory stays
// bounded by a few tensors: untouched tensors are streamed unchanged
// (byte-identical) from the base, touched ones are recomputed in float32
// (float64 for F64) from the base bytes and rounded once to their own dtype
// (round to nearest even).
//
// Per module kind (ΔW = λ·s·B·A in the module's logical (out, in·k) frame,
// transposed back for fan_in_fan_out and embeddings):
//   - LoRA, LoRA conv, LoRA embedding, AdaLoRA (B·diag(E)·A): W += ΔW;
//     lora_bias: b += λ·s·b_B;
//   - KaSA (B·diag(d)·A): W = trunc(W) + ΔW, trunc dropping the base's r
//     smallest singular triplets (ApplyParams.KaSA "keep": W += ΔW);
//   - LoHa, LoKr, VeRA: W += λ·ΔW with the dense delta of each method
//     (VeRA needs the shared vera_A/vera_B in the file);
//   - DoRA: W = (m/‖W+ΔW‖)·(W+ΔW), the norm taken per logical row of the
//     weight as it stands before this adapter (PEFT's unmerged-base rule);
//   - IA3: W ⊙ l over rows (and b ⊙ l) or, for feed-forward modules, over
//     columns; only λ = 1 is defined;
//   - modules_to_save (full modules): the saved tensors replace the base's
//     (same shape, converted to the base dtype) or, when the base lacks
//     them, are added;
//   - prompt/prefix and incomplete modules, MLX expert modules, and modules
//     whose base tensor is missing or has another shape are refused, and
//     nothing is written.
//
// Quantized base weights (quant.Detect: bitsandbytes NF4/FP4 with or
// without double quantization, LLM.int8, compressed-tensors int8, FP8 with
// weight_scale or weight_scale_inv) are folded through quant.Fold:
// dequantized to float32, changed as above, requantized with the same
// scheme and parameters; only the tensors of the touched weights' layouts
// are rewritten. Each such module's report carries the requantization
// error (RequantError). FP8 tensors without a scale tensor are refused.
//
// A result with more NaN/Inf values than the base tensor fails. Each output
// file keeps the base file's __metadata__ plus provenance (operation, the
// parameters, sha256 of every base file and adapter weights file). With
// DryRun only the plan is returned.
func Apply(p ApplyParams, o RunOptions) (*ApplyReport, error) {
	if p.Base == "" || len(p.Adapters) == 0 {
		return nil, fmt.Errorf("%w: apply needs a base and at least one adapter", ErrParams)
	}
	if o.DType != "" {
		return nil, fmt.Errorf("%w: apply keeps each tensor's dtype (--dtype is not accepted)", ErrParams)
	}
	if o.Output == "" && !o.DryRun {
		return nil, fmt.Errorf("%w: no output path", ErrParams)
	}
	for i, a := range p.Adapters {
		if !(a.Scale == a.Scale) || math.IsInf(a.Scale, 0) {
			return nil, fmt.Errorf("%w: adapter %d scale %v", ErrParams, i+1, a.Scale)
		}
	}
	if IsGGUFBase(p.Base) {
		return applyGGUF(p, o)
	}
	if p.Requantize {
		return nil, fmt.Errorf("%w: --requantize applies to GGUF bases only", ErrParams)
	}
	ck, err := safetensors.OpenCheckpoint(p.Base)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	paths := make([]string, len(p.Adapters))
	for i, a := range p.Adapters {
		paths[i] = a.Path
	}
	in, err := open(paths, o, !o.DryRun)
	if err != nil {
		return nil, err
	}
	defer in.close()

	rep := &ApplyReport{Operation: "apply", Params: p, Inputs: in.infos, Output: o.Output, DryRun: o.DryRun}
	for _, f := range ck.Shards {
		info := InputInfo{Path: f.Name(), Weights: f.Name(), Modules: len(f.Tensors)}
		rep.Base = append(rep.Base, info)
	}
	for _, a := range in.ads {
		rep.Warnings = append(rep.Warnings, a.Warnings...)
	}

	switch p.KaSA {
	case "", "truncate", "truncate-repo", "keep":
	default:
		return nil, fmt.Errorf("%w: --kasa %q (want truncate, truncate-repo or keep)", ErrParams, p.KaSA)
	}
	names := ck.Names()
	ix := newBaseIndex(names)
	pl := &planner{ix: ix, ck: ck, qix: quant.NewIndex(ck, names), jobs: map[string]*tensorJob{}, kasa: p.KaSA}
	jobs := pl.jobs
	for ai, a := range in.ads {
		lambda := p.Adapters[ai].Scale
		for _, m := range a.Modules {
			mr := ApplyModule{Adapter: ai + 1, Name: m.Name, Kind: string(m.Kind), Status: "applied"}
			ri := len(rep.Modules)
			reason := pl.module(a, m, lambda, ri, &mr)
			if reason != "" {
				mr.Status, mr.Reason, mr.Tensors = "refused", reason, nil
			}
			rep.Modules = append(rep.Modules, mr)
		}
	}
	added := pl.added
	// Modules whose plan failed must not leave ops behind.
	for _, j := range jobs {
		j.ops = slices.DeleteFunc(j.ops, func(op tensorOp) bool { return rep.Modules[op.rep].Status == "refused" })
	}
	for name, j := range jobs {
		if len(j.ops) == 0 && (j.q == nil || len(j.q.w.ops) == 0) {
			delete(jobs, name)
		}
	}
	qjobs := map[*qjob]bool{}
	for _, j := range jobs {
		if j.q != nil {
			qjobs[j.q] = true
		}
	}
	for q := range qjobs {
		q.left = len(q.d.Keys)
	}
	rep.Quantized = len(qjobs)
	added = slices.DeleteFunc(added, func(n string) bool { return jobs[n] == nil })
	for _, m := range rep.Modules {
		switch m.Status {
		case "applied":
			rep.Applied++
		case "replaced":
			rep.Replaced++
		case "added":
			rep.Added++
		case "refused":
			rep.Refused++
		}
	}
	for _, t := range ck.Tensors() {
		if jobs[t.Name] != nil {
			rep.Touched++
		} else {
			rep.Copied++
		}
		rep.Bytes += t.Size()
	}
	for _, n := range added {
		rep.Bytes += jobs[n].info.Size()
	}
	if pl.err != nil {
		return rep, pl.err
	}
	if rep.Refused > 0 {
		return rep, rep.refusedModules()
	}
	if len(jobs) == 0 {
		return rep, fmt.Errorf("%w: the adapters change no base tensor", ErrIncompatible)
	}
	if o.DryRun {
		return rep, nil
	}
	// An adapter whose own values are NaN or ±Inf is a bad input (exit 2),
	// found before anything is written, as in the merges; a non-finite
	// result is then an overflow (overflowErr).
	for _, a := range in.ads {
		for _, m := range a.Modules {
			if err := checkFinite(a, m); err != nil {
				return rep, err
			}
		}
	}
	cache := &foldCache{limit: foldCacheBytes}
	for q := range qjobs {
		if err := q.prepare(cache); err != nil {
			return rep, err
		}
		for k, sh := range q.shapes {
			t, _ := ck.Tensor(k)
			rep.Bytes += int64(prodShape(sh))*int64(t.DType.Bits())/8 - t.Size()
		}
	}

	// Provenance: hashes of the base files and the adapters.
	for i := range rep.Base {
		if rep.Base[i].SHA256, err = fileSHA256(rep.Base[i].Weights); err != nil {
			return rep, err
		}
	}
	meta := provenance("apply", "", p, nil, nil, append(append([]InputInfo(nil), rep.Base...), in.infos...))

	total := len(jobs)
	done := 0
	tick := func() {
		done++
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	tensorsOf := func(f *safetensors.File, extra []string) ([]safetensors.Tensor, error) {
		var ts []safetensors.Tensor
		for _, t := range f.Tensors {
			j := jobs[t.Name]
			if j == nil {
				c, err := f.CopyTensor(t.Name)
				if err != nil {
					return nil, err
				}
				ts = append(ts, c)
				continue
			}
			if j.q != nil {
				ts = append(ts, j.q.keyTensor(j.info, cache, tick))
				continue
			}
			ts = append(ts, j.tensor(tick))
		}
		for _, n := range extra {
			ts = append(ts, jobs[n].tensor(tick))
		}
		return ts, nil
	}
	withMeta := func(f *safetensors.File) map[string]string {
		m := make(map[string]string, len(f.Metadata)+len(meta))
		for k, v := range f.Metadata {
			m[k] = v
		}
		for k, v := range meta {
			m[k] = v
		}
		return m
	}
	if ck.Index == nil {
		out := o.Output
		if st, err := os.Stat(out); err == nil && st.IsDir() {
			out = filepath.Join(out, filepath.Base(ck.Shards[0].Name()))
		}
		ts, err := tensorsOf(ck.Shards[0], added)
		if err != nil {
			return rep, err
		}
		if err := safetensors.WriteFile(out, ts, withMeta(ck.Shards[0])); err != nil {
			return rep, err
		}
		rep.Files = []string{out}
	} else {
		if err := os.MkdirAll(o.Output, 0o755); err != nil {
			return rep, err
		}
		idx := &safetensors.Index{Metadata: map[string]any{}, WeightMap: map[string]string{}}
		for k, v := range ck.Index.Metadata {
			idx.Metadata[k] = v
		}
		for k, v := range ck.Index.WeightMap {
			idx.WeightMap[k] = v
		}
		for i, f := range ck.Shards {
			var extra []string
			if i == len(ck.Shards)-1 {
				extra = added
			}
			name := filepath.Base(f.Name())
			for _, n := range extra {
				idx.WeightMap[n] = name
			}
			ts, err := tensorsOf(f, extra)
			if err != nil {
				return rep, err
			}
			out := filepath.Join(o.Output, name)
			if err := safetensors.WriteFile(out, ts, withMeta(f)); err != nil {
				return rep, err
			}
			rep.Files = append(rep.Files, out)
		}
		idx.Metadata["total_size"] = rep.Bytes
		out := filepath.Join(o.Output, safetensors.IndexFileName)
		if err := safetensors.WriteIndex(out, idx); err != nil {
			return rep, err
		}
		rep.Files = append(rep.Files, out)
	}
	for q := range qjobs {
		if q.stats == nil {
			continue
		}
		for _, op := range q.w.ops {
			if mr := &rep.Modules[op.rep]; mr.Requant == nil {
				mr.Requant = q.stats
			}
		}
	}
	if p.Verify {
		if err := verifyApply(rep, ck, jobs, added); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// planner records the tensor operations of the modules.
type planner struct {
	ix    *baseIndex
	ck    *safetensors.Checkpoint
	qix   *quant.Index
	jobs  map[string]*tensorJob
	added []string // names of added tensors, in order
	kasa  string
	// err is the first malformed quantized layout met (an input error,
	// returned instead of the refusals).
	err error
}

// job returns the job of base tensor name, creating it (and, for a
// quantized weight, the jobs of every tensor of its layout).
func (pl *planner) job(name string) *tensorJob {
	j := pl.jobs[name]
	if j != nil {
		return j
	}
	info, _ := pl.ck.Tensor(name)
	f, _ := pl.ck.Shard(name)
	j = &tensorJob{info: info, file: f}
	pl.jobs[name] = j
	if d, ok := pl.qix.Weights[name]; ok {
		li, _ := logicalInfo(pl.ck, d)
		q := &qjob{d: d, src: pl.ck, info: li, w: j}
		j.q = q
		for _, k := range d.Keys {
			if k == name {
				continue
			}
			ki, _ := pl.ck.Tensor(k)
			kf, _ := pl.ck.Shard(k)
			pl.jobs[k] = &tensorJob{info: ki, file: kf, q: q}
		}
	}
	return j
}

// weightInfo returns the description of base tensor n as the modules see
// it: for a quantized weight its logical shape (dtype F32), else the
// tensor itself. A tensor that belongs to a quantized layout without being
// its weight is refused.
func (pl *planner) weightInfo(n string) (safetensors.TensorInfo, bool, string) {
	if d, ok := pl.qix.Weights[n]; ok {
		li, err := logicalInfo(pl.ck, d)
		if err != nil {
			if pl.err == nil {
				pl.err = err
			}
			return li, true, fmt.Sprintf("quantized base weight %s (%s): %v", n, d.Layout, err)
		}
		return li, true, ""
	}
	t, _ := pl.ck.Tensor(n)
	if w, ok := pl.qix.Owner[n]; ok {
		return t, false, fmt.Sprintf("base tensor %s belongs to the quantized weight %s", n, w)
	}
	return t, false, ""
}

// module records the tensor operations of one module and returns a
// refusal reason ("" when accepted).
func (pl *planner) module(a *adapter.Adapter, m *adapter.Module, lambda float64, ri int, mr *ApplyModule) string {
	ix, jobs := pl.ix, pl.jobs
	if m.Experts > 0 {
		return "MLX SwitchLinear (experts) modules are not supported"
	}
	weight := func() (safetensors.TensorInfo, string) {
		n := ix.find(m.Name, "weight")
		if n == "" {
			return safetensors.TensorInfo{}, fmt.Sprintf("no base tensor %s.weight", m.Name)
		}
		t, _, why := pl.weightInfo(n)
		if why != "" {
			return t, why
		}
		return t, checkWeight(t, m)
	}
	bias := func() (safetensors.TensorInfo, string) {
		n := ix.find(m.Name, "bias")
		if n == "" {
			return safetensors.TensorInfo{}, fmt.Sprintf("no base tensor %s.bias", m.Name)
		}
		t, q, why := pl.weightInfo(n)
		if why != "" {
			return t, why
		}
		if q || !convertible(t.DType) {
			return t, fmt.Sprintf("base tensor %s is %s", t.Name, t.DType)
		}
		if t.NumElements() != int64(m.OutFeatures) {
			return t, fmt.Sprintf("base tensor %s has shape %v, want %d elements", t.Name, t.Shape, m.OutFeatures)
		}
		return t, ""
	}
	add := func(name string, kind int) {
		j := pl.job(name)
		j.ops = append(j.ops, tensorOp{kind: kind, ad: a, mod: m, lambda: lambda, rep: ri})
		if j.q != nil {
			// A quantized weight: every tensor of its layout is rewritten.
			for _, k := range j.q.d.Keys {
				if !slices.Contains(mr.Tensors, k) {
					mr.Tensors = append(mr.Tensors, k)
				}
			}
			return
		}
		mr.Tensors = append(mr.Tensors, name)
	}
	switch m.Kind {
	case adapter.KindLoRA, adapter.KindLoRAConv, adapter.KindLoRAEmbedding, adapter.KindAdaLoRA, adapter.KindDoRA, adapter.KindKaSA:
		t, why := weight()
		if why != "" {
			return why
		}
		kind := opLoRA
		if m.Kind == adapter.KindDoRA {
			kind = opDoRA
			if _, ok := m.Tensors[adapter.RoleMagnitude]; !ok {
				return "DoRA module without a magnitude vector"
			}
		}
		if m.Kind == adapter.KindKaSA && pl.kasa != "keep" {
			if len(t.Shape) != 2 {
				return fmt.Sprintf("KaSA truncation needs a 2-D base weight, %s has shape %v", t.Name, t.Shape)
			}
			k := min(m.OutFeatures, m.InFeatures)
			drop := m.Rank
			if pl.kasa == "truncate-repo" {
				// juyongjiang/KaSA keeps in_features − r components.
				drop = max(0, k-(m.InFeatures-m.Rank))
			}
			if drop >= k {
				return fmt.Sprintf("KaSA rank %d leaves nothing of the %v base weight %s", m.Rank, t.Shape, t.Name)
			}
			if drop > 0 {
				j := pl.job(t.Name)
				j.ops = append(j.ops, tensorOp{kind: opTruncate, ad: a, mod: m, lambda: lambda, rep: ri, drop: drop})
			}
		}
		if _, ok := m.Tensors[adapter.RoleLoRABias]; ok {
			b, why := bias()
			if why != "" {
				return "lora_bias: " + why
			}
			add(t.Name, kind)
			add(b.Name, opBias)
			return ""
		}
		add(t.Name, kind)
	case adapter.KindDiff:
		// Elementwise in the base's own layout: the shapes must be equal.
		for _, r := range []struct{ role, suffix string }{{adapter.RoleDiff, "weight"}, {adapter.RoleDiffBias, "bias"}} {
			d, ok := m.Tensors[r.role]
			if !ok {
				continue
			}
			n := ix.find(m.Name, r.suffix)
			if n == "" {
				return fmt.Sprintf("no base tensor %s.%s", m.Name, r.suffix)
			}
			t, q, why := pl.weightInfo(n)
			if why != "" {
				return why
			}
			if !q && !convertible(t.DType) {
				return fmt.Sprintf("base tensor %s is %s, which cannot be recomputed in floating point", t.Name, t.DType)
			}
			if !slices.Equal(t.Shape, d.Shape) {
				return fmt.Sprintf("%s has shape %v, the base tensor %s %v", d.Name, d.Shape, t.Name, t.Shape)
			}
			add(t.Name, opAddTensor)
			ops := pl.job(t.Name).ops
			ops[len(ops)-1].src = d.Name
		}
	case adapter.KindLoHa, adapter.KindLoKr, adapter.KindVeRA:
		t, why := weight()
		if why != "" {
			return why
		}
		if why := checkDense(a, m, t); why != "" {
			return why
		}
		add(t.Name, opDense)
	case adapter.KindIA3:
		if lambda != 1 {
			return fmt.Sprintf("IA3 vectors scale the weights; a scale of %v is not defined", lambda)
		}
		if _, ok := m.Tensors[adapter.RoleIA3]; !ok {
			return "IA3 module without ia3_l"
		}
		t, why := weight()
		if why != "" {
			return why
		}
		add(t.Name, opIA3)
		if !m.Feedforward {
			if b, why := bias(); why == "" {
				add(b.Name, opIA3Bias)
			}
		}
	case adapter.KindFull:
		if lambda != 1 {
			return fmt.Sprintf("modules_to_save tensors replace the base's; a scale of %v is not defined", lambda)
		}
		roles := make([]string, 0, len(m.Tensors))
		for r := range m.Tensors {
			roles = append(roles, r)
		}
		sort.Strings(roles)
		status := ""
		for _, role := range roles {
			src := m.Tensors[role]
			n := ix.find(m.Name, role)
			if n == "" {
				// Not in the base: added under the module's name.
				n = m.Name + "." + role
				if jobs[n] == nil {
					pl.added = append(pl.added, n)
				}
				j := pl.job(n)
				j.info = safetensors.TensorInfo{Name: n, DType: src.DType, Shape: src.Shape}
				j.file = nil
				j.ops = append(j.ops, tensorOp{kind: opReplace, ad: a, mod: m, lambda: 1, rep: ri, src: src.Name})
				mr.Tensors = append(mr.Tensors, n)
				if status == "" {
					status = "added"
				}
				continue
			}
			t, q, why := pl.weightInfo(n)
			if why != "" {
				return why
			}
			if !slices.Equal(t.Shape, src.Shape) {
				return fmt.Sprintf("saved tensor %s has shape %v, base tensor %s has %v", src.Name, src.Shape, n, t.Shape)
			}
			if !q && !convertible(t.DType) && t.DType != src.DType {
				return fmt.Sprintf("base tensor %s is %s and the saved tensor %s", n, t.DType, src.DType)
			}
			j := pl.job(n)
			j.ops = append(j.ops, tensorOp{kind: opReplace, ad: a, mod: m, lambda: 1, rep: ri, src: src.Name})
			if j.q != nil {
				mr.Tensors = append(mr.Tensors, j.q.d.Keys...)
			} else {
				mr.Tensors = append(mr.Tensors, n)
			}
			status = "replaced"
		}
		if status == "" {
			return "modules_to_save module without tensors"
		}
		mr.Status = status
	case adapter.KindPrompt, adapter.KindPrefix:
		return "prompt/prefix embeddings are inputs to the model, not weight changes; they cannot be merged"
	default:
		return fmt.Sprintf("module kind %s is not supported by apply", m.Kind)
	}
	return ""
}

// tensor returns the streaming Tensor that computes j when written.
func (j *tensorJob) tensor(tick func()) safetensors.Tensor {
	return safetensors.Tensor{
		Name:  j.info.Name,
		DType: j.info.DType,
		Shape: slices.Clone(j.info.Shape),
		WriteTo: func(w io.Writer) error {
			b, err := j.compute()
			if err != nil {
				return err
			}
			tick()
			_, err = w.Write(b)
			return err
		},
	}
}

// compute returns the new bytes of the tensor in its dtype.
func (j *tensorJob) compute() ([]byte, error) {
	dt := j.info.DType
	n := int(j.info.NumElements())
	// A replacement (the only op of an added tensor) may come first.
	var base []byte
	if j.file != nil {
		var err error
		if base, err = j.file.TensorData(j.info); err != nil {
			return nil, err
		}
	}
	out := make([]byte, j.info.Size())
	if dt == safetensors.F64 {
		w := make([]float64, n)
		if base != nil {
			decodeF64(w, base)
		}
		before := countNonFinite64(w)
		for _, op := range j.ops {
			if err := applyOp64(w, j.info, op); err != nil {
				return nil, err
			}
		}
		if n := countNonFinite64(w); n > before {
			return nil, overflowErr(j.info.Name, dt, n-before, j.ops)
		}
		encodeF64(out, w)
		return out, nil
	}
	if !convertible(dt) && !(len(j.ops) == 1 && j.ops[0].kind == opReplace) {
		return nil, fmt.Errorf("%w: %s is %s", ErrUnsupported, j.info.Name, dt)
	}
	w := make([]float32, n)
	if base != nil && convertible(dt) {
		if err := safetensors.ToFloat32(w, base, dt); err != nil {
			return nil, err
		}
	}
	// Values beyond the dtype's range (F16 above 65504, BF16 beyond
	// float32) would be written as ±Inf: count them as non-finite.
	limit := finiteLimit(dt)
	before := countBeyond32(w, limit)
	for _, op := range j.ops {
		if op.kind == opReplace && !convertible(dt) {
			// Same non-float dtype: copy the saved bytes.
			src, err := op.ad.File.Data(op.src)
			if err != nil {
				return nil, err
			}
			copy(out, src)
			return out, nil
		}
		if err := applyOp32(w, j.info, op); err != nil {
			return nil, err
		}
	}
	if n := countBeyond32(w, limit); n > before {
		return nil, overflowErr(j.info.Name, dt, n-before, j.ops)
	}
	if err := safetensors.FromFloat32(out, w, dt); err != nil {
		return nil, err
	}
	return out, nil
}

// moduleFactors returns B (with AdaLoRA's E folded in), A and the
// effective scale λ·s.
func moduleFactors(op tensorOp) (f *adapter.Factors, b []float32, scale float64, err error) {
	f, err = op.ad.Factors(op.mod)
	if err != nil {
		return nil, nil, 0, err
	}
	b = f.B
	if f.E != nil || f.Diag != nil {
		d := f.E
		if d == nil {
			d = f.Diag
		}
		b = slices.Clone(f.B)
		for o := 0; o < f.Out; o++ {
			for k := 0; k < f.Rank; k++ {
				b[o*f.Rank+k] *= d[k]
			}
		}
	}
	return f, b, op.lambda * f.Scale, nil
}

func readVec(op tensorOp, role string, n int) ([]float32, error) {
	t, ok := op.mod.Tensors[role]
	if !ok {
		return nil, fmt.Errorf("%w: module %s has no %s", ErrIncompatible, op.mod.Name, role)
	}
	v, err := op.ad.File.Float32(t.Name)
	if err != nil {
		return nil, err
	}
	if len(v) != n {
		return nil, fmt.Errorf("%w: %s has %d values, want %d", ErrIncompatible, t.Name, len(v), n)
	}
	return v, nil
}

// transpose32 returns the cols×rows transpose of a rows×cols matrix.
func transpose32(dst, src []float32, rows, cols int) {
	const blk = 32
	for i0 := 0; i0 < rows; i0 += blk {
		for j0 := 0; j0 < cols; j0 += blk {
			for i := i0; i < min(i0+blk, rows); i++ {
				for j := j0; j < min(j0+blk, cols); j++ {
					dst[j*rows+i] = src[i*cols+j]
				}
			}
		}
	}
}

func transpose64(dst, src []float64, rows, cols int) {
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			dst[j*rows+i] = src[i*cols+j]
		}
	}
}

// addend reads the adapter tensor an opAddTensor adds to the n values of
// base tensor info.
func addend(op tensorOp, info safetensors.TensorInfo, n int) ([]float32, error) {
	v, err := op.ad.File.Float32(op.src)
	if err != nil {
		return nil, err
	}
	if len(v) != n {
		return nil, fmt.Errorf("%w: %s has %d values, %s %d", ErrIncompatible, op.src, len(v), info.Name, n)
	}
	return v, nil
}

// applyOp32 applies one operation to the float32 tensor w.
func applyOp32(w []float32, info safetensors.TensorInfo, op tensorOp) error {
	m := op.mod
	switch op.kind {
	case opReplace:
		v, err := op.ad.File.Float32(op.src)
		if err != nil {
			return err
		}
		if len(v) != len(w) {
			return fmt.Errorf("%w: %s has %d values, %s %d", ErrIncompatible, op.src, len(v), info.Name, len(w))
		}
		copy(w, v)
		return nil
	case opBias:
		f, err := op.ad.Factors(m)
		if err != nil {
			return err
		}
		if len(f.Bias) != len(w) {
			return fmt.Errorf("%w: lora_B.bias of %s has %d values, %s %d", ErrIncompatible, m.Name, len(f.Bias), info.Name, len(w))
		}
		kernels.Axpy(float32(op.lambda*f.Scale), f.Bias, w)
		return nil
	case opIA3Bias:
		l, err := readVec(op, adapter.RoleIA3, len(w))
		if err != nil {
			return err
		}
		kernels.Mul(w, l)
		return nil
	case opAddTensor:
		v, err := addend(op, info, len(w))
		if err != nil {
			return err
		}
		kernels.Axpy(float32(op.lambda), v, w)
		return nil
	}
	rows, cols := frame(m, info)
	l := w
	if transposed(m) {
		l = make([]float32, len(w))
		transpose32(l, w, cols, rows)
	}
	switch op.kind {
	case opDense:
		d, err := denseDelta(op.ad, m, rows, cols)
		if err != nil {
			return err
		}
		for i, x := range d {
			l[i] = float32(float64(l[i]) + op.lambda*x)
		}
	case opTruncate:
		w64 := make([]float64, len(l))
		for i, x := range l {
			w64[i] = float64(x)
		}
		if err := truncate64(w64, rows, cols, op.drop); err != nil {
			return fmt.Errorf("%s: %w", info.Name, err)
		}
		for i, x := range w64 {
			l[i] = float32(x)
		}
	case opLoRA, opDoRA:
		f, b, s, err := moduleFactors(op)
		if err != nil {
			return err
		}
		if f.Out != rows || f.InK() != cols {
			return fmt.Errorf("%w: module %s factors are %d×%d, the base %d×%d", ErrIncompatible, m.Name, f.Out, f.InK(), rows, cols)
		}
		if op.kind == opLoRA {
			kernels.RankUpdate(l, rows, cols, float32(s), b, f.A, f.Rank)
			break
		}
		mag, err := readVec(op, adapter.RoleMagnitude, rows)
		if err != nil {
			return err
		}
		kernels.RankUpdate(l, rows, cols, float32(s), b, f.A, f.Rank)
		for o := 0; o < rows; o++ {
			row := l[o*cols : (o+1)*cols]
			n := math.Sqrt(kernels.SumSquares(row))
			kernels.Scale(float32(float64(mag[o])/n), row)
		}
	case opIA3:
		if m.Feedforward {
			v, err := readVec(op, adapter.RoleIA3, cols)
			if err != nil {
				return err
			}
			for o := 0; o < rows; o++ {
				kernels.Mul(l[o*cols:(o+1)*cols], v)
			}
		} else {
			v, err := readVec(op, adapter.RoleIA3, rows)
			if err != nil {
				return err
			}
			for o := 0; o < rows; o++ {
				kernels.Scale(v[o], l[o*cols:(o+1)*cols])
			}
		}
	}
	if transposed(m) {
		transpose32(w, l, rows, cols)
	}
	return nil
}

// applyOp64 is applyOp32 in float64 (F64 tensors and verification).
func applyOp64(w []float64, info safetensors.TensorInfo, op tensorOp) error {
	m := op.mod
	vec := func(v []float32) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	switch op.kind {
	case opReplace:
		v, err := readFloat64(op.ad.File, op.src)
		if err != nil {
			return err
		}
		if len(v) != len(w) {
			return fmt.Errorf("%w: %s has %d values, %s %d", ErrIncompatible, op.src, len(v), info.Name, len(w))
		}
		copy(w, v)
		return nil
	case opBias:
		f, err := op.ad.Factors(m)
		if err != nil {
			return err
		}
		if len(f.Bias) != len(w) {
			return fmt.Errorf("%w: lora_B.bias of %s has %d values, %s %d", ErrIncompatible, m.Name, len(f.Bias), info.Name, len(w))
		}
		for i, x := range f.Bias {
			w[i] += op.lambda * f.Scale * float64(x)
		}
		return nil
	case opIA3Bias:
		l, err := readVec(op, adapter.RoleIA3, len(w))
		if err != nil {
			return err
		}
		for i, x := range l {
			w[i] *= float64(x)
		}
		return nil
	case opAddTensor:
		v, err := addend(op, info, len(w))
		if err != nil {
			return err
		}
		for i, x := range v {
			w[i] += op.lambda * float64(x)
		}
		return nil
	}
	rows, cols := frame(m, info)
	l := w
	if transposed(m) {
		l = make([]float64, len(w))
		transpose64(l, w, cols, rows)
	}
	switch op.kind {
	case opDense:
		d, err := denseDelta(op.ad, m, rows, cols)
		if err != nil {
			return err
		}
		for i, x := range d {
			l[i] += op.lambda * x
		}
	case opTruncate:
		if err := truncate64(l, rows, cols, op.drop); err != nil {
			return fmt.Errorf("%s: %w", info.Name, err)
		}
	case opLoRA, opDoRA:
		f, err := op.ad.Factors(m)
		if err != nil {
			return err
		}
		if f.Out != rows || f.InK() != cols {
			return fmt.Errorf("%w: module %s factors are %d×%d, the base %d×%d", ErrIncompatible, m.Name, f.Out, f.InK(), rows, cols)
		}
		s := op.lambda * f.Scale
		d := f.E
		if d == nil {
			d = f.Diag
		}
		row := make([]float64, cols)
		for o := 0; o < rows; o++ {
			clear(row)
			for k := 0; k < f.Rank; k++ {
				c := float64(f.B[o*f.Rank+k])
				if d != nil {
					c *= float64(d[k])
				}
				for i, x := range f.A[k*cols : (k+1)*cols] {
					row[i] += c * float64(x)
				}
			}
			lr := l[o*cols : (o+1)*cols]
			for i := range lr {
				lr[i] += s * row[i]
			}
		}
		if op.kind == opDoRA {
			mag, err := readVec(op, adapter.RoleMagnitude, rows)
			if err != nil {
				return err
			}
			for o := 0; o < rows; o++ {
				lr := l[o*cols : (o+1)*cols]
				var ss float64
				for _, x := range lr {
					ss += x * x
				}
				g := float64(mag[o]) / math.Sqrt(ss)
				for i := range lr {
					lr[i] *= g
				}
			}
		}
	case opIA3:
		n := rows
		if m.Feedforward {
			n = cols
		}
		v32, err := readVec(op, adapter.RoleIA3, n)
		if err != nil {
			return err
		}
		v := vec(v32)
		for o := 0; o < rows; o++ {
			for i := 0; i < cols; i++ {
				if m.Feedforward {
					l[o*cols+i] *= v[i]
				} else {
					l[o*cols+i] *= v[o]
				}
			}
		}
	}
	if transposed(m) {
		transpose64(w, l, rows, cols)
	}
	return nil
}

func decodeF64(dst []float64, src []byte) {
	for i := range dst {
		dst[i] = math.Float64frombits(uint64(src[8*i]) | uint64(src[8*i+1])<<8 | uint64(src[8*i+2])<<16 | uint64(src[8*i+3])<<24 |
			uint64(src[8*i+4])<<32 | uint64(src[8*i+5])<<40 | uint64(src[8*i+6])<<48 | uint64(src[8*i+7])<<56)
	}
}

func encodeF64(dst []byte, src []float64) {
	for i, x := range src {
		u := math.Float64bits(x)
		for k := range 8 {
			dst[8*i+k] = byte(u >> (8 * k))
		}
	}
}

// readFloat64 reads any convertible tensor as float64 (F64 exactly).
func readFloat64(f *safetensors.File, name string) ([]float64, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%w: %s: no tensor %s", ErrIncompatible, f.Name(), name)
	}
	if t.DType == safetensors.F64 {
		b, err := f.Data(name)
		if err != nil {
			return nil, err
		}
		v := make([]float64, len(b)/8)
		decodeF64(v, b)
		return v, nil
	}
	v32, err := f.Float32(name)
	if err != nil {
		return nil, err
	}
	v := make([]float64, len(v32))
	for i, x := range v32 {
		v[i] = float64(x)
	}
	return v, nil
}

func countNonFinite32(v []float32) int { return countBeyond32(v, math.MaxFloat32) }

// countBeyond32 counts the NaNs and the values of magnitude above limit.
func countBeyond32(v []float32, limit float32) int {
	n := 0
	for _, x := range v {
		if !(x <= limit && x >= -limit) {
			n++
		}
	}
	return n
}

// overflowErr reports that folding ops into the base tensor name left n
// more values that are not finite in dt than the base had. The adapters'
// own values were checked (checkFinite), so this is an overflow of the
// result: a refusal (exit 4), never written as ±Inf.
func overflowErr(name string, dt safetensors.DType, n int, ops []tensorOp) error {
	var mods []string
	for _, op := range ops {
		if op.mod == nil || op.ad == nil {
			continue
		}
		s := fmt.Sprintf("module %s of %s", op.mod.Name, op.ad.WeightsPath)
		if !slices.Contains(mods, s) {
			mods = append(mods, s)
		}
	}
	return fmt.Errorf("%w: applying %s to %s leaves %d value(s) that are not finite in %s: the result overflows the base dtype (the adapters' values are finite; use a smaller --adapter scale)",
		ErrIncompatible, strings.Join(mods, ", "), name, n, dt)
}

func countNonFinite64(v []float64) int {
	n := 0
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			n++
		}
	}
	return n
}

// verifyApply re-reads the written output: every touched tensor is
// recomputed in float64 from the base and the adapters and compared with
// what was written (errors recorded per module, the worst of its tensors);
// every untouched tensor must be byte-identical to the base.
func verifyApply(rep *ApplyReport, base *safetensors.Checkpoint, jobs map[string]*tensorJob, added []string) error {
	var outPath string
	if base.Index == nil {
		outPath = rep.Files[0]
	} else {
		outPath = rep.Files[len(rep.Files)-1]
	}
	out, err := safetensors.OpenCheckpoint(outPath)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer out.Close()
	for _, t := range base.Tensors() {
		if jobs[t.Name] != nil {
			continue
		}
		if err := checkUntouched(t.Name, base, out); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(jobs))
	for n := range jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	var outIx *quant.Index
	for _, n := range names {
		j := jobs[n]
		if j.q != nil {
			if j.q.w != j {
				continue // the weight key verifies the whole layout
			}
			if outIx == nil {
				outIx = quant.NewIndex(out, out.Names())
			}
			if err := verifyQuant(rep, j.q, out, outIx); err != nil {
				return err
			}
			continue
		}
		exact := make([]float64, j.info.NumElements())
		if j.file != nil {
			v, err := readFloat64(j.file, n)
			if err != nil {
				return err
			}
			copy(exact, v)
		}
		for _, op := range j.ops {
			if err := applyOp64(exact, j.info, op); err != nil {
				return err
			}
		}
		got, err := readFloat64Checkpoint(out, n)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		var maxAbs, diff2, norm2 float64
		for i, e := range exact {
			d := math.Abs(got[i] - e)
			if got[i] == e { // equal infinities
				d = 0
			}
			maxAbs = max(maxAbs, d)
			diff2 += d * d
			norm2 += e * e
		}
		rel := 0.0
		if norm2 > 0 {
			rel = math.Sqrt(diff2 / norm2)
		} else if diff2 > 0 {
			rel = math.Inf(1)
		}
		for _, op := range j.ops {
			mr := &rep.Modules[op.rep]
			if mr.Verify == nil {
				mr.Verify = &ApplyError{}
			}
			mr.Verify.MaxAbs = max(mr.Verify.MaxAbs, maxAbs)
			mr.Verify.RelFro = max(mr.Verify.RelFro, rel)
			mr.Verify.Bound = max(mr.Verify.Bound, 2*unitRoundoff(j.info.DType)+1e-5)
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

// verifyQuant checks one quantized weight of the output: its dequantized
// values against the exact float64 W_deq + ΔW (the fold error), and the
// error of requantizing that exact result independently with the same
// scheme and parameters (the requantization error), which bounds it.
func verifyQuant(rep *ApplyReport, q *qjob, out *safetensors.Checkpoint, outIx *quant.Index) error {
	d := q.d
	w0, shape, dt, err := quant.Dequantize(q.src, d)
	if err != nil {
		return err
	}
	exact := make([]float64, len(w0))
	for i, x := range w0 {
		exact[i] = float64(x)
	}
	w0 = nil
	for _, op := range q.w.ops {
		if err := applyOp64(exact, q.info, op); err != nil {
			return err
		}
	}
	od, ok := outIx.Weights[d.Name]
	if !ok || od.Scheme != d.Scheme || od.Layout != d.Layout {
		return fmt.Errorf("%w: verify: the output's %s is not a %s %s weight", ErrIncompatible, d.Name, d.Layout, d.Scheme)
	}
	got, _, _, err := quant.Dequantize(out, od)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	p, _, _, err := quant.Full(q.src, d)
	if err != nil {
		return err
	}
	if d.Layout == "bitsandbytes-int8" {
		p.Granularity = ""
	}
	x32 := make([]float32, len(exact))
	for i, x := range exact {
		x32[i] = float32(x)
	}
	qt, err := quant.QuantizeTensor(d.Name, shape, dt, x32, p)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	rt, err := qt.RoundTrip()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	maxAbs, rel := compare64(got, exact)
	_, relQ := compare64(rt, exact)
	for _, op := range q.w.ops {
		mr := &rep.Modules[op.rep]
		if mr.Verify == nil {
			mr.Verify = &ApplyError{}
		}
		v := mr.Verify
		v.Quantized = true
		v.MaxAbs = max(v.MaxAbs, maxAbs)
		v.RelFro = max(v.RelFro, rel)
		v.RequantRelFro = max(v.RequantRelFro, relQ)
		v.Bound = max(v.Bound, 1.01*relQ+1e-6)
	}
	return nil
}

// compare64 returns max |got − exact| and ‖got − exact‖_F/‖exact‖_F.
func compare64(got []float32, exact []float64) (float64, float64) {
	var maxAbs, diff2, norm2 float64
	for i, e := range exact {
		d := math.Abs(float64(got[i]) - e)
		maxAbs = max(maxAbs, d)
		diff2 += d * d
		norm2 += e * e
	}
	switch {
	case norm2 > 0:
		return maxAbs, math.Sqrt(diff2 / norm2)
	case diff2 > 0:
		return maxAbs, math.Inf(1)
	}
	return maxAbs, 0
}

func readFloat64Checkpoint(c *safetensors.Checkpoint, name string) ([]float64, error) {
	f, ok := c.Shard(name)
	if !ok {
		return nil, fmt.Errorf("%w: output has no tensor %s", ErrIncompatible, name)
	}
	return readFloat64(f, name)
}

// refusedModules is the error of an apply that refuses rep.Refused modules,
// naming the first five with their reasons.
func (rep *ApplyReport) refusedModules() error {
	var names []string
	for _, m := range rep.Modules {
		if m.Status == "refused" {
			names = append(names, fmt.Sprintf("%s (%s)", m.Name, m.Reason))
		}
	}
	more := ""
	if len(names) > 5 {
		more = fmt.Sprintf(" and %d more", len(names)-5)
		names = names[:5]
	}
	return fmt.Errorf("%w: apply refuses %d module(s): %s%s", ErrUnsupported, rep.Refused, strings.Join(names, "; "), more)
}

// tensorData is what --verify reads from a base and an output: a
// safetensors checkpoint or a GGUF file.
type tensorData interface {
	Data(name string) ([]byte, error)
}

// checkUntouched is --verify's rule for a tensor no adapter touched: its
// bytes in out equal the base's.
func checkUntouched(name string, base, out tensorData) error {
	a, err := base.Data(name)
	if err != nil {
		return err
	}
	b, err := out.Data(name)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if !bytes.Equal(a, b) {
		return fmt.Errorf("%w: verify: untouched tensor %s differs from the base", ErrIncompatible, name)
	}
	return nil
}
