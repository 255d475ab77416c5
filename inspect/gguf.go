package inspect

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/adaptool/adaptool/svd"
)

// summarizeGGUF fills a summary from a GGUF file through gguf.Open and
// File.Summary (header only). A llama.cpp LoRA adapter's lora_a/lora_b pairs become
// modules (r = lora_a ne[1], scale = adapter.lora.alpha/r, 1 without alpha,
// as llama.cpp applies it); with opts.Stats the tensors are decoded for
// value statistics and the pairs analysed like any other LoRA module.
func summarizeGGUF(s *Summary, path string, opts Options) (*Summary, error) {
	s.Container = "gguf"
	f, err := gguf.Open(path)
	if err != nil {
		s.err = err
		s.Error = err.Error()
		return s, err
	}
	g := f.Summary()
	// header_bytes: everything before the (aligned) data section
	s.Files = []FileInfo{{Path: path, HeaderBytes: f.DataOffset, DataBytes: g.DataBytes, FileBytes: f.FileSize, Tensors: g.TensorCount}}
	f.Close()
	s.Metadata = g.Metadata
	s.Architecture = g.Architecture
	s.Format = "gguf"
	if g.Type == "adapter" {
		s.Format = "gguf-" + g.AdapterType
		if g.AdapterType == "lora" {
			s.PeftType = "LORA"
		}
	}
	names := make([]string, 0, len(g.Tensors))
	dims := map[string][]uint64{}
	for _, t := range g.Tensors {
		shape := make([]int, len(t.Dims))
		for i, d := range t.Dims { // ggml ne order → row-major shape
			shape[len(t.Dims)-1-i] = int(d)
		}
		s.Tensors = append(s.Tensors, TensorSummary{Name: t.Name, DType: t.Type, Shape: shape, Bytes: t.Bytes})
		names = append(names, t.Name)
		dims[t.Name] = t.Dims
	}
	for _, p := range g.Problems {
		s.Warnings = append(s.Warnings, "gguf: "+p)
	}
	if g.Type == "adapter" {
		s.Modules = ggufModules(dims, g.LoraAlpha)
	}
	s.fillTotals()
	s.Classification = classify(names)
	if opts.Stats {
		if err := ggufStats(s, path, opts); err != nil {
			s.err = err
			s.Error = err.Error()
		}
	}
	s.fillLayers()
	s.nonNil()
	return s, s.err
}

// ggufModules pairs <base>.lora_a (ne [in, r]) with <base>.lora_b (ne [r, out]).
func ggufModules(dims map[string][]uint64, alpha *float64) []ModuleSummary {
	var mods []ModuleSummary
	var bases []string
	for n := range dims {
		if b, ok := strings.CutSuffix(n, ".lora_a"); ok {
			bases = append(bases, b)
		}
	}
	sort.Strings(bases)
	for _, b := range bases {
		da, db := dims[b+".lora_a"], dims[b+".lora_b"]
		if len(da) != 2 || len(db) != 2 || da[1] != db[0] || da[1] == 0 || da[1] > math.MaxInt32 || da[0] > math.MaxInt32 || db[1] > math.MaxInt32 {
			continue // gguf.Summarize reports the problem
		}
		m := ModuleSummary{Name: b, Kind: "lora", Rank: int(da[1]), InFeatures: int(da[0]), OutFeatures: int(db[1]),
			Layer: LayerOf(b), Block: BlockOf(b), ModuleType: ModuleType(strings.TrimSuffix(b, ".weight")),
			Tensors: RoleTensors{{"lora_A", b + ".lora_a"}, {"lora_B", b + ".lora_b"}}, Scale: 1}
		if alpha != nil && *alpha != 0 {
			m.Alpha, m.AlphaKnown = *alpha, true
			m.Scale = *alpha / float64(m.Rank)
		}
		mods = append(mods, m)
	}
	if mods == nil {
		mods = []ModuleSummary{}
	}
	return mods
}

// ggufDType maps the ggml types stored as plain floats to safetensors dtype names.
var ggufDType = map[string]string{"F32": "F32", "F16": "F16", "BF16": "BF16", "F64": "F64", "I8": "I8", "I16": "I16", "I32": "I32", "I64": "I64"}

func ggufStats(s *Summary, path string, opts Options) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for i := range s.Tensors {
		t := &s.Tensors[i]
		var st TensorStats
		if dt, ok := ggufDType[t.DType]; ok {
			raw, err := f.Data(t.Name)
			if err != nil {
				return err
			}
			st, err = StatsOf(t.Name, dt, raw)
			if err != nil {
				s.Warnings = append(s.Warnings, err.Error())
				continue
			}
		} else {
			// block-quantized: decoded values (denormals counted as float32)
			v, err := f.Float32(t.Name)
			if err != nil {
				s.Warnings = append(s.Warnings, err.Error())
				continue
			}
			st = fromKernel(t.Name, "F32", kernels.StatsF32(v))
		}
		st.Name, st.DType = "", ""
		t.Stats = &st
		if opts.Progress != nil {
			opts.Progress(i+1, len(s.Tensors))
		}
	}
	var sumSq float64
	for i := range s.Modules {
		m := &s.Modules[i]
		m.statsRequested = true
		a, errA := f.Float32(m.Tensors.Get("lora_A"))
		b, errB := f.Float32(m.Tensors.Get("lora_B"))
		if errA != nil || errB != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("module %q: %v", m.Name, firstErr(errA, errB)))
			continue
		}
		if finiteCount(a) != len(a) || finiteCount(b) != len(b) {
			s.Warnings = append(s.Warnings, fmt.Sprintf("module %q: NaN or Inf in lora_a/lora_b", m.Name))
			continue
		}
		lr := svd.LowRank{Out: m.OutFeatures, In: m.InFeatures, Rank: m.Rank, A: a, B: b, Scale: m.Scale}
		st, err := lowRankStats(lr)
		if err != nil {
			s.Warnings = append(s.Warnings, fmt.Sprintf("module %q: %v", m.Name, err))
			continue
		}
		m.ModuleStats = st
		sumSq += st.DeltaFroNorm * st.DeltaFroNorm
	}
	s.Totals.DeltaFroNorm = math.Sqrt(sumSq)
	return nil
}
