package ops

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/adaptool/adaptool/svd"
)

// DefaultExtractRankCap is the sketch rank used with ExtractParams.Energy
// or Threshold when no Rank cap is given.
const DefaultExtractRankCap = 64

// ExtractParams describes extract: a LoRA from the difference of two
// checkpoints. Exactly one of Rank (fixed rank), Energy or Threshold
// chooses the rank; with Energy or Threshold, Rank caps it (default
// DefaultExtractRankCap).
type ExtractParams struct {
	Base  string `json:"base"`
	Tuned string `json:"tuned"`
	RankParams
	// Oversample and PowerIters tune the randomized SVD (defaults 10 and 2;
	// see svd.RandomizedOptions).
	Oversample int `json:"oversample,omitempty"`
	PowerIters int `json:"power_iters,omitempty"`
	// Seed makes the result reproducible; each module's sketch is seeded
	// with Seed and the module name.
	Seed uint64 `json:"seed"`
	// FanInFanOut declares 2-D weights stored (in, out) (GPT-2 Conv1D); the
	// output config then says fan_in_fan_out.
	FanInFanOut bool `json:"fan_in_fan_out,omitempty"`
}

func (p ExtractParams) validate() error {
	if err := p.RankParams.Validate(); err != nil {
		return err
	}
	if p.Base == "" || p.Tuned == "" {
		return fmt.Errorf("%w: extract needs a base and a tuned checkpoint", ErrParams)
	}
	if p.Rank == 0 && p.Energy == 0 && p.Threshold == 0 {
		return fmt.Errorf("%w: extract needs a rank or an energy (or threshold)", ErrParams)
	}
	if p.Oversample < 0 {
		return fmt.Errorf("%w: oversample %d", ErrParams, p.Oversample)
	}
	return nil
}

// embeddingName reports whether a weight looks like an embedding table
// (num_embeddings, dim), which PEFT adapts with lora_embedding_A/B: the
// usual names (embed_tokens, word/position/token_type embeddings, wte, wpe,
// T5's shared, embed_in, embed_positions, tok_embeddings) and anything
// ending in _embedding(s). GPT-NeoX's embed_out is a Linear head and is
// not matched.
func embeddingName(name string) bool {
	mod := strings.TrimSuffix(name, ".weight")
	last := mod[strings.LastIndex(mod, ".")+1:]
	switch last {
	case "wte", "wpe", "shared", "embed_tokens", "embed_in", "embed_positions", "tok_embeddings", "embeddings", "embedding":
		return true
	}
	return strings.HasSuffix(last, "_embeddings") || strings.HasSuffix(last, "_embedding")
}

// extractJob is one weight of both checkpoints.
type extractJob struct {
	name       string
	module     string
	kind       adapter.Kind
	rows, cols int // logical ΔW (out, in·k)
	in         int
	kernel     []int
	trans      bool // stored transposed (fan_in_fan_out, embedding)
}

// Extract computes, for every weight present in both checkpoints with the
// same shape, ΔW = tuned − base (in float32, one tensor at a time) and a
// rank-k approximation by randomized SVD (Halko–Martinsson–Tropp with
// oversampling and power iterations), split as B = U√Σ, A = √ΣVᵀ with
// scale 1, and writes them as a PEFT LoRA directory (per-module ranks in
// rank_pattern). 2-D weights become LoRA Linear modules (fan_in_fan_out
// when declared), 4-D weights LoRA conv modules, embedding tables
// (see embeddingName) LoRA embedding modules.
// Unchanged weights are skipped ("removed", reason "unchanged"); tensors
// that changed but are not weights (biases, norms), or that exist in one
// checkpoint only, or have other shapes, are reported as warnings and not
// written. Stats per module: kept energy Σ_{i≤k}σᵢ²/‖ΔW‖²_F and the exact
// Frobenius error √(‖ΔW‖² − Σ_{i≤k}σᵢ²) of the written factors.
func Extract(p ExtractParams, o RunOptions) (*Report, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	dt, err := outDType(o.DType)
	if err != nil {
		return nil, err
	}
	if o.Output == "" && !o.DryRun {
		return nil, fmt.Errorf("%w: no output directory", ErrParams)
	}
	base, err := safetensors.OpenCheckpoint(p.Base)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	tuned, err := safetensors.OpenCheckpoint(p.Tuned)
	if err != nil {
		return nil, err
	}
	defer tuned.Close()
	rep := &Report{Operation: "extract", Params: p, Output: o.Output, DType: dt.String(), DryRun: o.DryRun}
	for _, c := range []*safetensors.Checkpoint{base, tuned} {
		for _, f := range c.Shards {
			info := InputInfo{Path: f.Name(), Weights: f.Name(), Modules: len(f.Tensors)}
			if !o.DryRun {
				if info.SHA256, err = fileSHA256(f.Name()); err != nil {
					return nil, err
				}
			}
			rep.Inputs = append(rep.Inputs, info)
		}
	}
	var jobs []extractJob
	for _, bt := range base.Tensors() {
		tt, ok := tuned.Tensor(bt.Name)
		if !ok {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s is only in the base checkpoint", bt.Name))
			continue
		}
		if !slices.Equal(bt.Shape, tt.Shape) {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s has shape %v in the base and %v in the tuned checkpoint; skipped", bt.Name, bt.Shape, tt.Shape))
			continue
		}
		isWeight := strings.HasSuffix(bt.Name, ".weight") && (len(bt.Shape) == 2 || len(bt.Shape) == 4) &&
			convertible(bt.DType) && convertible(tt.DType) && bt.NumElements() > 0
		if !isWeight {
			same, err := sameBytes(base, tuned, bt.Name)
			if err != nil {
				return nil, err
			}
			if !same {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s (%s %v) changed but is not a weight matrix; its change is not in the adapter", bt.Name, bt.DType, bt.Shape))
			}
			continue
		}
		j := extractJob{name: bt.Name, module: strings.TrimSuffix(bt.Name, ".weight"), kind: adapter.KindLoRA}
		switch {
		case len(bt.Shape) == 4:
			j.kind, j.rows, j.in, j.kernel = adapter.KindLoRAConv, bt.Shape[0], bt.Shape[1], slices.Clone(bt.Shape[2:])
			j.cols = int(bt.NumElements()) / bt.Shape[0]
		case embeddingName(bt.Name):
			j.kind, j.rows, j.cols, j.in, j.trans = adapter.KindLoRAEmbedding, bt.Shape[1], bt.Shape[0], bt.Shape[0], true
		case p.FanInFanOut:
			j.rows, j.cols, j.in, j.trans = bt.Shape[1], bt.Shape[0], bt.Shape[0], true
		default:
			j.rows, j.cols, j.in = bt.Shape[0], bt.Shape[1], bt.Shape[1]
		}
		jobs = append(jobs, j)
	}
	for _, tt := range tuned.Tensors() {
		if _, ok := base.Tensor(tt.Name); !ok {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s is only in the tuned checkpoint; not in the adapter", tt.Name))
		}
	}
	sketch := p.Rank
	if p.Energy > 0 || p.Threshold > 0 {
		if sketch == 0 {
			sketch = DefaultExtractRankCap
		}
	}
	rep.Modules = make([]ModuleReport, len(jobs))
	for i, j := range jobs {
		k := min(sketch, j.rows, j.cols)
		rep.Modules[i] = ModuleReport{Name: j.module, Kind: string(j.kind), Status: "matched", Out: j.rows, In: j.cols,
			Rank: k, Bytes: lowRankBytes(k, j.rows, j.cols, dt, 0)}
	}
	if len(jobs) == 0 {
		rep.count()
		return rep, fmt.Errorf("%w: no weight matrix present in both checkpoints", ErrIncompatible)
	}
	if o.DryRun {
		rep.count()
		return rep, nil
	}
	outMods := make([]*adapter.OutModule, len(jobs))
	var warnMu sync.Mutex
	err = runPool(len(jobs), o.Workers, o.Progress, func(i int) error {
		j, mr := jobs[i], &rep.Modules[i]
		delta, err := tuned.Float32(j.name)
		if err != nil {
			return err
		}
		b, err := base.Float32(j.name)
		if err != nil {
			return err
		}
		// A checkpoint's own NaN/Inf is a bad input (exit 2), named with
		// its file; a difference of finite weights that is not finite is
		// an overflow (exit 4).
		for _, x := range []struct {
			c *safetensors.Checkpoint
			v []float32
		}{{base, b}, {tuned, delta}} {
			for k, v := range x.v {
				if v-v != 0 {
					file := ""
					if f, ok := x.c.Shard(j.name); ok {
						file = f.Name() + ": "
					}
					return fmt.Errorf("%w: %stensor %s: %v at index %d", ErrNonFinite, file, j.name, v, k)
				}
			}
		}
		kernels.Sub(delta, b)
		if countNonFinite32(delta) > 0 {
			return fmt.Errorf("%w: %s: the difference of the tuned and base weights overflows float32", ErrIncompatible, j.name)
		}
		norm2 := kernels.SumSquares(delta)
		if norm2 == 0 {
			mr.Status, mr.Reason, mr.Rank, mr.Bytes = "removed", "unchanged", 0, 0
			return nil
		}
		l := delta
		if j.trans {
			l = make([]float32, len(delta))
			transpose32(l, delta, j.cols, j.rows)
		}
		h := fnv.New64a()
		h.Write([]byte(j.name))
		d, err := svd.Randomized(svd.Matrix32{Rows: j.rows, Cols: j.cols, Data: l},
			min(sketch, j.rows, j.cols), svd.RandomizedOptions{Oversample: p.Oversample, PowerIters: p.PowerIters, Seed: p.Seed ^ h.Sum64()})
		if err != nil {
			return fmt.Errorf("%s: %w", j.name, err)
		}
		sig := d.Values()
		k := min(sketch, len(sig))
		switch {
		case p.Energy > 0:
			var cum float64
			k = len(sig)
			for i, s := range sig {
				cum += s * s
				if cum >= p.Energy*norm2 {
					k = i + 1
					break
				}
			}
			if cum < p.Energy*norm2 {
				warnMu.Lock()
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: energy %.4g not reached within rank %d (kept %.4g)", j.module, p.Energy, len(sig), cum/norm2))
				warnMu.Unlock()
			}
		case p.Threshold > 0:
			k = d.RankForThreshold(p.Threshold)
		}
		k = max(1, k)
		var kept float64
		for _, s := range sig[:k] {
			kept += s * s
		}
		bf, af := d.Split(k)
		mr.Rank = k
		mr.Bytes = lowRankBytes(k, j.rows, j.cols, dt, 0)
		mr.Stats = &ModuleStats{Rank: k, Energy: math.Min(1, kept/norm2), FroError: math.Sqrt(math.Max(0, norm2-kept)), Norm: math.Sqrt(norm2)}
		outMods[i] = &adapter.OutModule{Name: j.module, Kind: j.kind, Rank: k, In: j.in, Out: j.rows, Kernel: j.kernel, Scale: 1, A: af, B: bf}
		return nil
	})
	rep.count()
	if err != nil {
		return rep, err
	}
	var mods []adapter.OutModule
	for _, m := range outMods {
		if m != nil {
			mods = append(mods, *m)
		}
	}
	if len(mods) == 0 {
		return rep, fmt.Errorf("%w: the checkpoints have identical weights", ErrIncompatible)
	}
	seed := p.Seed
	meta := provenance("extract", "randomized_svd", p, nil, &seed, rep.Inputs)
	return rep, adapter.WritePEFT(o.Output, &adapter.Output{Modules: mods, DType: dt, Metadata: meta, FanInFanOut: p.FanInFanOut})
}

// sameBytes reports whether a tensor has identical bytes in both checkpoints.
func sameBytes(a, b *safetensors.Checkpoint, name string) (bool, error) {
	x, err := a.Data(name)
	if err != nil {
		return false, err
	}
	y, err := b.Data(name)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}
