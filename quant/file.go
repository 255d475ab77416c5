package quant

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/atomicfile"
	"github.com/adaptool/adaptool/internal/provenance"
)

// Metadata keys written by QuantizeFile into __metadata__.
const (
	// MetaQuantization holds the Params JSON of the quantization.
	MetaQuantization = "adaptool.quantization"
	// MetaSourceDTypes holds a JSON object tensor → source dtype for the
	// layouts that do not record it (int8, FP8), so DequantizeFile restores it.
	MetaSourceDTypes = "adaptool.source_dtypes"
)

// FileOptions configures QuantizeFile.
type FileOptions struct {
	Params Params
	// Only selects the tensors to quantize by name; nil selects every 2-D
	// float tensor (F32, F16, BF16, F64).
	Only *regexp.Regexp
	// DryRun computes the report without writing anything.
	DryRun bool
	// Progress, when set, is called after each tensor of the analysis pass.
	Progress func(done, total int)
}

// DequantizeOptions configures DequantizeFile.
type DequantizeOptions struct {
	// DryRun computes the report without writing (or hashing) anything.
	DryRun bool
	// Progress, when set, is called after each quantized tensor is planned.
	Progress func(done, total int)
}

// TensorReport is the report line of one quantized tensor.
type TensorReport struct {
	Name        string   `json:"name"`
	Shape       []int    `json:"shape"`
	DType       string   `json:"dtype"`
	Scheme      Scheme   `json:"scheme"`
	Keys        []string `json:"keys"`
	BytesBefore int64    `json:"bytes_before"`
	BytesAfter  int64    `json:"bytes_after"`
	Stats
}

// Skipped is a tensor that matched the selection but was not quantized.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Report is the result of QuantizeFile (and, without errors, of
// DequantizeFile); its JSON form is the CLI's --json output.
type Report struct {
	Input   string         `json:"input"`
	Output  string         `json:"output,omitempty"`
	Params  Params         `json:"params"`
	DryRun  bool           `json:"dry_run"`
	Tensors []TensorReport `json:"tensors"`
	Skipped []Skipped      `json:"skipped"`
	LoRA    []LoRAError    `json:"lora"`
	// Totals over the quantized tensors, and over the whole file.
	BytesBefore     int64 `json:"bytes_before"`
	BytesAfter      int64 `json:"bytes_after"`
	FileBytesBefore int64 `json:"file_tensor_bytes_before"`
	FileBytesAfter  int64 `json:"file_tensor_bytes_after"`
}

// MarshalJSON writes SNR ±Inf (exact or all-zero tensors) as null, since
// JSON has no infinities.
func (s Stats) MarshalJSON() ([]byte, error) {
	type plain struct {
		RMSE        float64  `json:"rmse"`
		MaxAbsError float64  `json:"max_abs_error"`
		SNRdB       *float64 `json:"snr_db"`
	}
	p := plain{RMSE: s.RMSE, MaxAbsError: s.MaxAbsError}
	if !math.IsInf(s.SNRdB, 0) && !math.IsNaN(s.SNRdB) {
		v := s.SNRdB
		p.SNRdB = &v
	}
	return json.Marshal(p)
}

// MarshalJSON flattens the embedded Stats (whose own MarshalJSON would
// otherwise replace the whole object).
func (t TensorReport) MarshalJSON() ([]byte, error) {
	type base struct {
		Name        string   `json:"name"`
		Shape       []int    `json:"shape"`
		DType       string   `json:"dtype"`
		Scheme      Scheme   `json:"scheme"`
		Keys        []string `json:"keys"`
		BytesBefore int64    `json:"bytes_before"`
		BytesAfter  int64    `json:"bytes_after"`
		RMSE        float64  `json:"rmse"`
		MaxAbsError float64  `json:"max_abs_error"`
		SNRdB       *float64 `json:"snr_db"`
	}
	b := base{t.Name, t.Shape, t.DType, t.Scheme, t.Keys, t.BytesBefore, t.BytesAfter, t.RMSE, t.MaxAbsError, nil}
	if !math.IsInf(t.SNRdB, 0) && !math.IsNaN(t.SNRdB) {
		v := t.SNRdB
		b.SNRdB = &v
	}
	return json.Marshal(b)
}

// memSource is a Source over in-memory tensors.
type memSource map[string]safetensors.Tensor

// Tensor describes the named in-memory tensor.
func (m memSource) Tensor(name string) (safetensors.TensorInfo, bool) {
	t, ok := m[name]
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return safetensors.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Offsets: [2]int64{0, int64(len(t.Data))}}, true
}

// Data returns the named in-memory tensor's bytes.
func (m memSource) Data(name string) ([]byte, error) {
	t, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", safetensors.ErrTensorNotFound, name)
	}
	return t.Data, nil
}

// RoundTrip dequantizes q through the same reader path as files (Detect +
// Dequantize on its output tensors) and returns the float32 values.
func (q *Quantized) RoundTrip() ([]float32, error) {
	m := memSource{}
	names := make([]string, 0, len(q.Tensors))
	for _, t := range q.Tensors {
		m[t.Name] = t
		names = append(names, t.Name)
	}
	for _, d := range Detect(m, names) {
		if d.Name == q.Name {
			x, _, _, err := Dequantize(m, d)
			return x, err
		}
	}
	return nil, fmt.Errorf("%w: %s: quantized tensors not recognized", ErrLayout, q.Name)
}

// input is an opened QuantizeFile/DequantizeFile input.
type input struct {
	ck      *safetensors.Checkpoint
	dir     string // the input directory, or "" for a file
	single  string // the base name of the single safetensors file (dir input)
	names   []string
	meta    map[string]string
	srcPath string
}

func openInput(path string) (*input, error) {
	ck, err := safetensors.OpenCheckpoint(path)
	if err != nil {
		return nil, err
	}
	in := &input{ck: ck, names: ck.Names(), srcPath: path}
	if len(ck.Shards) > 0 {
		in.meta = ck.Shards[0].Metadata
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		in.dir = path
		if ck.Index == nil && len(ck.Shards) == 1 {
			in.single = filepath.Base(ck.Shards[0].Name())
		}
	} else if strings.HasSuffix(path, ".json") {
		in.dir = filepath.Dir(path)
	}
	return in, nil
}

// hashInputs starts hashing every input safetensors file (each shard of a
// checkpoint) in the background, so that the digests are ready by the time
// the output header is written without a serial pass over the input.
func (in *input) hashInputs() []*provenance.Pending {
	hs := make([]*provenance.Pending, len(in.ck.Shards))
	for i, f := range in.ck.Shards {
		hs[i] = provenance.HashAsync(f.Name())
	}
	return hs
}

// begin returns the empty report of a run over in and, unless dry, starts
// hashing the input files for provenance (the caller cancels the hashes
// with cancelHashes when done). A dry run's report has no output path.
func (in *input) begin(path, out string, dry bool) (*Report, []*provenance.Pending) {
	rep := &Report{Input: path, Output: out, DryRun: dry, Tensors: []TensorReport{}, Skipped: []Skipped{}, LoRA: []LoRAError{}}
	if dry {
		rep.Output = ""
		return rep, nil
	}
	return rep, in.hashInputs()
}

// cancelHashes stops the background hashes that are still running.
func cancelHashes(hs []*provenance.Pending) {
	for _, h := range hs {
		h.Cancel()
	}
}

// provenance waits for the input digests and adds the provenance record of
// op (SPEC §1: operation, params, sha256 of each input file) to meta,
// replacing any record of an earlier operation.
func (in *input) provenance(meta map[string]string, op string, params any, hs []*provenance.Pending) error {
	ins := make([]provenance.Input, len(hs))
	for i, h := range hs {
		sum, err := h.Wait()
		if err != nil {
			return fmt.Errorf("%s: hashing the input for provenance: %w", in.ck.Shards[i].Name(), err)
		}
		ins[i] = provenance.Input{Path: in.ck.Shards[i].Name(), SHA256: sum}
	}
	provenance.Merge(meta, provenance.Record(op, "", params, nil, nil, ins))
	return nil
}

// write writes tensors to out: a single file for a file input, else a
// directory holding the same file name (single-file directories such as
// PEFT adapters) or a sharded checkpoint, plus copies of the input
// directory's other regular files (configs, tokenizer, README).
func (in *input) write(out string, tensors []safetensors.Tensor, meta map[string]string) error {
	if in.dir == "" {
		if st, err := os.Stat(out); err == nil && st.IsDir() {
			out = filepath.Join(out, filepath.Base(in.srcPath))
		}
		return safetensors.WriteFile(out, tensors, meta)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var err error
	if in.single != "" {
		err = safetensors.WriteFile(filepath.Join(out, in.single), tensors, meta)
	} else {
		err = safetensors.WriteCheckpoint(out, tensors, meta, 0)
	}
	if err != nil {
		return err
	}
	return copyOtherFiles(in.dir, out)
}

// copyOtherFiles copies the regular files of dir that are not safetensors
// data or indexes into out (atomically each, skipping same-path copies).
func copyOtherFiles(dir, out string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(n, ".safetensors") || strings.HasSuffix(n, ".safetensors.index.json") || strings.HasPrefix(n, ".") {
			continue
		}
		src, dst := filepath.Join(dir, n), filepath.Join(out, n)
		if a, err1 := filepath.Abs(src); err1 == nil {
			if b, err2 := filepath.Abs(dst); err2 == nil && a == b {
				continue
			}
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return atomicfile.WriteFrom(dst, f)
}

// isFloat reports whether dt is a float dtype QuantizeFile quantizes.
func isFloat(dt safetensors.DType) bool {
	switch dt {
	case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
		return true
	}
	return false
}

// quantCache holds the most recently quantized tensor, so the writer's
// callbacks for the several output tensors of one source recompute it at
// most once per dtype group (memory stays bounded by one tensor).
type quantCache struct {
	mu sync.Mutex
	q  *Quantized
	ck *safetensors.Checkpoint
	p  Params
}

func (c *quantCache) get(name string) (*Quantized, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.q != nil && c.q.Name == name {
		return c.q, nil
	}
	ti, _ := c.ck.Tensor(name)
	x, err := c.ck.Float32(name)
	if err != nil {
		return nil, err
	}
	q, err := QuantizeTensor(name, ti.Shape, ti.DType, x, c.p)
	if err != nil {
		return nil, err
	}
	c.q = q
	return q, nil
}

// QuantizeFile quantizes the selected tensors of a safetensors file, a
// PEFT adapter directory or a (sharded) checkpoint into out, streaming one
// tensor at a time, and reports the error of each tensor and, for LoRA
// factor pairs, of their product. Unselected tensors are copied
// byte-identically. Output is written atomically through
// format/safetensors (a file for a file, else a directory).
//
// Memory is bounded by a few tensors: an analysis pass quantizes each
// selected tensor once for the report, and the writer requantizes a tensor
// when its output tensors are written (at most twice, as the canonical
// writer groups tensors by dtype).
//
// The output's __metadata__ keeps the input's, with adaptool.quantization
// (p as JSON) and the provenance record (SPEC §1): adaptool.operation
// "quantize", adaptool.params = p, adaptool.inputs = the path and sha256 of
// each input safetensors file, hashed in the background during the
// analysis pass.
func QuantizeFile(path, out string, opt FileOptions) (*Report, error) {
	p, err := opt.Params.Normalize()
	if err != nil {
		return nil, err
	}
	in, err := openInput(path)
	if err != nil {
		return nil, err
	}
	defer in.ck.Close()
	rep, hs := in.begin(path, out, opt.DryRun)
	defer cancelHashes(hs)
	rep.Params = p
	detected := Detect(in.ck, in.names)
	quantizedKey := map[string]Scheme{}
	for _, d := range detected {
		for _, k := range d.Keys {
			quantizedKey[k] = d.Scheme
		}
	}
	existing := map[string]bool{}
	for _, n := range in.names {
		existing[n] = true
	}
	var selected []string
	for _, n := range in.names {
		ti, _ := in.ck.Tensor(n)
		rep.FileBytesBefore += ti.Size()
		match := opt.Only == nil && len(ti.Shape) == 2 && isFloat(ti.DType)
		if opt.Only != nil {
			match = opt.Only.MatchString(n)
		}
		if !match {
			continue
		}
		switch {
		case quantizedKey[n] != "":
			rep.Skipped = append(rep.Skipped, Skipped{n, "already quantized (" + string(quantizedKey[n]) + ")"})
		case !isFloat(ti.DType):
			rep.Skipped = append(rep.Skipped, Skipped{n, "dtype " + ti.DType.String() + " is not a float type"})
		case ti.NumElements() == 0:
			rep.Skipped = append(rep.Skipped, Skipped{n, "empty tensor"})
		case fitErr(ti.Shape, p) != nil:
			rep.Skipped = append(rep.Skipped, Skipped{n, fitErr(ti.Shape, p).Error()})
		default:
			selected = append(selected, n)
		}
	}
	if len(selected) == 0 {
		// Writing a copy with nothing quantized is never what was asked:
		// refused (also with DryRun, whose report then shows the plan),
		// saying why no tensor qualifies.
		return rep, nothingToQuantize(in, path, p, opt, rep, detected)
	}
	isSel := map[string]bool{}
	for _, n := range selected {
		isSel[n] = true
	}
	// Output keys must not collide with tensors that stay.
	for _, n := range selected {
		for _, k := range Keys(n, p)[1:] {
			if existing[k] && !isSel[k] {
				return nil, fmt.Errorf("%w: %s: quantizing %q would write %q, which already exists", ErrLayout, path, n, k)
			}
		}
	}
	// Analysis pass: quantize, round-trip, report; keep only the output
	// tensor descriptions (and the small quant_state JSON).
	specs := map[string][]safetensors.Tensor{}
	srcDTypes := map[string]string{}
	for i, n := range selected {
		ti, _ := in.ck.Tensor(n)
		x, err := in.ck.Float32(n)
		if err != nil {
			return nil, err
		}
		q, err := QuantizeTensor(n, ti.Shape, ti.DType, x, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		y, err := q.RoundTrip()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		tr := TensorReport{Name: n, Shape: slices.Clone(ti.Shape), DType: ti.DType.String(), Scheme: p.Scheme,
			Keys: Keys(n, p), BytesBefore: ti.Size(), BytesAfter: q.Bytes(), Stats: ErrorStats(x, y)}
		rep.Tensors = append(rep.Tensors, tr)
		rep.BytesBefore += tr.BytesBefore
		rep.BytesAfter += tr.BytesAfter
		var sp []safetensors.Tensor
		for _, t := range q.Tensors {
			s := safetensors.Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape}
			if strings.Contains(t.Name, suffixQuantStatePrefx) {
				s.Data = t.Data
			}
			sp = append(sp, s)
		}
		specs[n] = sp
		if p.Scheme != SchemeNF4 && p.Scheme != SchemeFP4 {
			srcDTypes[n] = ti.DType.String()
		}
		if opt.Progress != nil {
			opt.Progress(i+1, len(selected))
		}
	}
	// LoRA product errors, from the factors' round trips.
	for _, lp := range loraPairs(in.names) {
		if !isSel[lp.a] || !isSel[lp.b] {
			continue
		}
		le, ok, err := loraPairError(in.ck, lp, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if ok {
			rep.LoRA = append(rep.LoRA, le)
		}
	}
	rep.FileBytesAfter = rep.FileBytesBefore - rep.BytesBefore + rep.BytesAfter
	if opt.DryRun {
		return rep, nil
	}
	cache := &quantCache{ck: in.ck, p: p}
	var tensors []safetensors.Tensor
	for _, n := range in.names {
		sp, ok := specs[n]
		if !ok {
			t, err := in.ck.CopyTensor(n)
			if err != nil {
				return nil, err
			}
			tensors = append(tensors, t)
			continue
		}
		for _, s := range sp {
			if s.Data != nil {
				tensors = append(tensors, s)
				continue
			}
			src, key := n, s.Name
			s.WriteTo = func(w io.Writer) error {
				q, err := cache.get(src)
				if err != nil {
					return err
				}
				for _, t := range q.Tensors {
					if t.Name == key {
						_, err := w.Write(t.Data)
						return err
					}
				}
				return fmt.Errorf("%w: %s: output %q vanished", ErrLayout, src, key)
			}
			tensors = append(tensors, s)
		}
	}
	meta := safetensors.DefaultMetadata(in.meta)
	pj, _ := json.Marshal(p)
	meta[MetaQuantization] = string(pj)
	if len(srcDTypes) > 0 {
		if old, ok := in.meta[MetaSourceDTypes]; ok {
			var prev map[string]string
			if json.Unmarshal([]byte(old), &prev) == nil {
				for k, v := range prev {
					if _, ok := srcDTypes[k]; !ok && existing[k] {
						srcDTypes[k] = v
					}
				}
			}
		}
		sj, _ := json.Marshal(srcDTypes)
		meta[MetaSourceDTypes] = string(sj)
	}
	if err := in.provenance(meta, "quantize", p, hs); err != nil {
		return nil, err
	}
	if err := in.write(out, tensors, meta); err != nil {
		return nil, err
	}
	return rep, nil
}

// nothingToQuantize returns the ErrNothing error of a QuantizeFile run
// whose selection is empty: it says why no tensor of the input qualifies
// (at most three examples per reason).
func nothingToQuantize(in *input, path string, p Params, opt FileOptions, rep *Report, detected []Detected) error {
	if len(in.names) == 0 {
		return fmt.Errorf("%w: %s holds no tensors (nothing to quantize)", ErrNothing, path)
	}
	var reasons []string
	group := func(what string, names []string) {
		if len(names) == 0 {
			return
		}
		ex := names[:min(3, len(names))]
		more := ""
		if len(names) > len(ex) {
			more = fmt.Sprintf(" and %d more", len(names)-len(ex))
		}
		reasons = append(reasons, fmt.Sprintf("%d %s (%s%s)", len(names), what, strings.Join(ex, ", "), more))
	}
	if opt.Only != nil {
		if len(rep.Skipped) == 0 {
			return fmt.Errorf("%w: %s: --only %q matches none of its %d tensors (nothing to quantize)", ErrNothing, path, opt.Only.String(), len(in.names))
		}
		var ex []string
		for _, sk := range rep.Skipped {
			ex = append(ex, sk.Name+": "+sk.Reason)
		}
		group("selected by --only "+strconv.Quote(opt.Only.String())+" cannot be quantized", ex)
		return fmt.Errorf("%w: %s: no tensor to quantize with %s: %s", ErrNothing, path, p.Scheme, strings.Join(reasons, "; "))
	}
	// Quantized layouts are listed by their weight, their other keys not at all.
	byScheme := map[string][]string{}
	quantized := map[string]bool{}
	for _, d := range detected {
		byScheme[string(d.Scheme)] = append(byScheme[string(d.Scheme)], d.Name)
		for _, k := range d.Keys {
			quantized[k] = true
		}
	}
	var notMatrix []string
	byDType := map[string][]string{}
	for _, n := range in.names {
		ti, _ := in.ck.Tensor(n)
		switch {
		case quantized[n]:
		case !isFloat(ti.DType):
			byDType[ti.DType.String()] = append(byDType[ti.DType.String()], n)
		case len(ti.Shape) != 2:
			notMatrix = append(notMatrix, fmt.Sprintf("%s %v", n, ti.Shape))
		}
	}
	dts := make([]string, 0, len(byDType))
	for dt := range byDType {
		dts = append(dts, dt)
	}
	sort.Strings(dts)
	for _, dt := range dts {
		group("tensor(s) of dtype "+dt+", which is not F32/F16/BF16/F64", byDType[dt])
	}
	group("float tensor(s) that are not 2-D", notMatrix)
	schemes := make([]string, 0, len(byScheme))
	for sc := range byScheme {
		schemes = append(schemes, sc)
	}
	sort.Strings(schemes)
	for _, sc := range schemes {
		group("weight(s) already quantized as "+sc, byScheme[sc])
	}
	var skipped []string
	for _, sk := range rep.Skipped {
		if !quantized[sk.Name] { // listed with their layout above
			skipped = append(skipped, sk.Name+": "+sk.Reason)
		}
	}
	group("2-D float tensor(s) skipped", skipped)
	hint := ""
	if len(notMatrix) > 0 {
		hint = " (--only REGEX selects tensors by name, whatever their rank)"
	}
	return fmt.Errorf("%w: %s: no tensor qualifies for %s quantization, which by default takes every 2-D F32/F16/BF16/F64 tensor: %s%s",
		ErrNothing, path, p.Scheme, strings.Join(reasons, "; "), hint)
}

// fitErr reports why a tensor's shape does not fit the granularity of p.
func fitErr(shape []int, p Params) error {
	if p.Granularity == "" || p.Scheme == SchemeNF4 || p.Scheme == SchemeFP4 {
		return nil
	}
	g, err := ParseGranularity(p.Granularity)
	if err != nil {
		return err
	}
	rows, cols := matrixShape(shape)
	_, err = g.ScaleShape(rows, cols)
	return err
}

// loraPairError round-trips both factors of a LoRA pair and measures the
// product error; ok is false when the shapes do not form a product.
func loraPairError(ck *safetensors.Checkpoint, lp loraPair, p Params) (LoRAError, bool, error) {
	ta, _ := ck.Tensor(lp.a)
	tb, _ := ck.Tensor(lp.b)
	ra, ca := matrixShape(ta.Shape)
	rb, cb := matrixShape(tb.Shape)
	rt := func(n string, ti safetensors.TensorInfo) ([]float32, []float32, error) {
		x, err := ck.Float32(n)
		if err != nil {
			return nil, nil, err
		}
		q, err := QuantizeTensor(n, ti.Shape, ti.DType, x, p)
		if err != nil {
			return nil, nil, err
		}
		y, err := q.RoundTrip()
		return x, y, err
	}
	var le LoRAError
	// MLX: a is in×r and b r×out, ΔWᵀ = a·b (a plays B's role, b A's);
	// PEFT: a is r×in and b out×r.
	if (lp.mlx && ca != rb) || (!lp.mlx && ra != cb) {
		return le, false, nil
	}
	a, aq, err := rt(lp.a, ta)
	if err != nil {
		return le, false, err
	}
	b, bq, err := rt(lp.b, tb)
	if err != nil {
		return le, false, err
	}
	if lp.mlx {
		le = LoRAProductError(b, bq, a, aq, ca, cb, ra)
		le.RelErrorA, le.RelErrorB = le.RelErrorB, le.RelErrorA
		le.RelErrorFactorA, le.RelErrorFactorB = le.RelErrorFactorB, le.RelErrorFactorA
		le.Worse = map[string]string{"A": "B", "B": "A"}[le.Worse]
	} else {
		le = LoRAProductError(a, aq, b, bq, ra, ca, rb)
	}
	le.Module, le.A, le.B = lp.module, lp.a, lp.b
	return le, true, nil
}

// DequantizeParams is the adaptool.params record of DequantizeFile: the
// schemes found in the input and, when the input records it (an adaptool
// quantize output), its adaptool.quantization parameters.
type DequantizeParams struct {
	Schemes      []Scheme        `json:"schemes"`
	Quantization json.RawMessage `json:"quantization,omitempty"`
}

// DequantizeFile replaces every quantized tensor of a file, adapter
// directory or checkpoint (see Detect) by its float values, in the dtype
// the layout or the adaptool metadata records (else F32), streaming one
// tensor at a time; other tensors are copied byte-identically. The report
// lists the tensors with bytes before and after (no error figures).
// The output's __metadata__ drops adaptool.quantization and records
// adaptool.operation "dequantize", adaptool.params (DequantizeParams) and
// the path and sha256 of each input safetensors file. With opt.DryRun the
// report is computed from the headers alone and nothing is written or
// hashed.
func DequantizeFile(path, out string, opt DequantizeOptions) (*Report, error) {
	in, err := openInput(path)
	if err != nil {
		return nil, err
	}
	defer in.ck.Close()
	detected := Detect(in.ck, in.names)
	if len(detected) == 0 {
		// A valid input the operation does not apply to: refused, so that
		// neither a wrong path (the unquantized original) nor a layout
		// adaptool does not read (GPTQ, AWQ, ...) passes for a dequantized
		// copy.
		return nil, fmt.Errorf("%w: %s holds no quantized tensors (nothing to dequantize: no bitsandbytes NF4/FP4/LLM.int8 or compressed-tensors int8/FP8 layout was found)", ErrNothing, path)
	}
	rep, hs := in.begin(path, out, opt.DryRun)
	defer cancelHashes(hs)
	dp := DequantizeParams{Schemes: []Scheme{}}
	for _, d := range detected {
		if !slices.Contains(dp.Schemes, d.Scheme) {
			dp.Schemes = append(dp.Schemes, d.Scheme)
		}
	}
	slices.Sort(dp.Schemes)
	if q, ok := in.meta[MetaQuantization]; ok && json.Valid([]byte(q)) {
		dp.Quantization = json.RawMessage(q)
	}
	srcDTypes := map[string]string{}
	if s, ok := in.meta[MetaSourceDTypes]; ok {
		_ = json.Unmarshal([]byte(s), &srcDTypes)
	}
	owner := map[string]int{}
	for i, d := range detected {
		for _, k := range d.Keys {
			owner[k] = i
		}
	}
	outs := make([]safetensors.Tensor, len(detected))
	for i, d := range detected {
		_, shape, dt, err := Full(in.ck, d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if d.Layout != "bitsandbytes" {
			if s, ok := srcDTypes[d.Name]; ok {
				if v, err := safetensors.ParseDType(s); err == nil && isFloat(v) {
					dt = v
				}
			}
		}
		var before int64
		for _, k := range d.Keys {
			ti, _ := in.ck.Tensor(k)
			before += ti.Size()
		}
		d := d
		t := safetensors.Tensor{Name: d.Name, DType: dt, Shape: shape}
		t.WriteTo = func(w io.Writer) error {
			x, _, _, err := Dequantize(in.ck, d)
			if err != nil {
				return err
			}
			b := make([]byte, t.Size())
			if err := safetensors.FromFloat32(b, x, t.DType); err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		}
		outs[i] = t
		rep.Tensors = append(rep.Tensors, TensorReport{Name: d.Name, Shape: shape, DType: dt.String(), Scheme: d.Scheme,
			Keys: d.Keys, BytesBefore: before, BytesAfter: t.Size()})
		rep.BytesBefore += before
		rep.BytesAfter += t.Size()
		if opt.Progress != nil {
			opt.Progress(i+1, len(detected))
		}
	}
	var tensors []safetensors.Tensor
	done := map[int]bool{}
	for _, n := range in.names {
		ti, _ := in.ck.Tensor(n)
		rep.FileBytesBefore += ti.Size()
		if i, ok := owner[n]; ok {
			if !done[i] {
				done[i] = true
				tensors = append(tensors, outs[i])
			}
			continue
		}
		t, err := in.ck.CopyTensor(n)
		if err != nil {
			return nil, err
		}
		tensors = append(tensors, t)
	}
	rep.FileBytesAfter = rep.FileBytesBefore - rep.BytesBefore + rep.BytesAfter
	sort.Slice(rep.Tensors, func(i, j int) bool { return rep.Tensors[i].Name < rep.Tensors[j].Name })
	if opt.DryRun {
		return rep, nil
	}
	meta := safetensors.DefaultMetadata(in.meta)
	delete(meta, MetaQuantization)
	delete(meta, MetaSourceDTypes)
	if err := in.provenance(meta, "dequantize", dp, hs); err != nil {
		return nil, err
	}
	if err := in.write(out, tensors, meta); err != nil {
		return nil, err
	}
	return rep, nil
}

// IsInputError reports whether err is about a bad input — an inconsistent
// quantized layout (ErrLayout) or NaN/Inf in the data (ErrNonFinite) —
// rather than a failed or refused operation (ErrNothing is a refusal).
func IsInputError(err error) bool { return errors.Is(err, ErrLayout) || errors.Is(err, ErrNonFinite) }
