package inspect

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

// Summary is the stable report of `adaptool inspect PATH [--json]`. Field
// names are the JSON schema of SPEC.md §4; new fields may be added,
// none removed or renamed.
type Summary struct {
	Path string `json:"path"`
	// Container is "safetensors", "safetensors-sharded" or "gguf".
	Container string `json:"container"`
	// Format is the adapter dialect ("peft", "diffusers", "diffusers-legacy",
	// "kohya", "mlx", "unknown") or "checkpoint" for a sharded model.
	Format string `json:"format"`
	// Classification lists how the adapter changes the model (see Class*).
	Classification []Class            `json:"classification"`
	PeftType       string             `json:"peft_type"`
	BaseModel      string             `json:"base_model"`
	Architecture   string             `json:"architecture"`
	Files          []FileInfo         `json:"files"`
	Tensors        []TensorSummary    `json:"tensors"`
	Modules        []ModuleSummary    `json:"modules"`
	Metadata       map[string]string  `json:"metadata"`
	Totals         Totals             `json:"totals"`
	Layers         []int              `json:"layers"`
	ModuleTypes    map[string]int     `json:"module_types"`
	TargetMatches  []TargetMatch      `json:"target_matches,omitempty"`
	Hashes         map[string]*Hashes `json:"hashes,omitempty"`
	Warnings       []string           `json:"warnings"`
	// Error is the first error that kept the file from being read completely
	// (e.g. MetadataIncompleteBuffer on a truncated file); the header-level
	// fields are still filled where the header was readable.
	Error string `json:"error,omitempty"`

	err error
}

// Err returns the error recorded in Summary.Error, with its chain intact
// (errors.Is works with the safetensors sentinels).
func (s *Summary) Err() error { return s.err }

// FileInfo describes one safetensors file of the input.
type FileInfo struct {
	Path        string `json:"path"`
	HeaderBytes int64  `json:"header_bytes"`
	DataBytes   int64  `json:"data_bytes"`
	FileBytes   int64  `json:"file_bytes"`
	Tensors     int    `json:"tensors"`
	Error       string `json:"error,omitempty"`
}

// TensorSummary is one tensor as its header declares it.
type TensorSummary struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Bytes int64  `json:"bytes"`
	// File is the shard holding the tensor (sharded inputs only).
	File string `json:"file,omitempty"`
	// Quant is the quantization scheme the tensor belongs to, if recognized.
	Quant string `json:"quant,omitempty"`
	// Stats is filled with --stats.
	Stats *TensorStats `json:"stats,omitempty"`
}

// ModuleSummary is one adapter module.
type ModuleSummary struct {
	Name        string  `json:"name"`
	Kind        string  `json:"kind"`
	Rank        int     `json:"rank"`
	Alpha       float64 `json:"alpha"`
	Scale       float64 `json:"scale"`
	AlphaKnown  bool    `json:"alpha_known"`
	InFeatures  int     `json:"in_features"`
	OutFeatures int     `json:"out_features"`
	FanInFanOut bool    `json:"fan_in_fan_out"`
	Layer       int     `json:"layer"`
	// Block is the module path up to its first numeric segment
	// ("model.layers.3", "decoder.block.0", "up_blocks.1"); "" if none.
	Block      string      `json:"block"`
	ModuleType string      `json:"module_type"`
	Tensors    RoleTensors `json:"tensors,omitempty"`
	// Statistics filled with --stats.
	*ModuleStats

	statsRequested bool
}

// MarshalJSON writes the module; with --stats, a module that has no
// low-rank delta to analyse (full, prompt, incomplete, LoHa, ...) still
// carries the keys delta_fro_norm, effective_rank and stable_rank as null and
// singular_values as [], so every entry has the same shape.
//
// JSON has no NaN or Inf: a non-finite alpha or scale (a kohya .alpha of
// Inf or NaN, an alpha beyond float32) is written as null.
func (m ModuleSummary) MarshalJSON() ([]byte, error) {
	type plain ModuleSummary // no methods: default encoding, embedded fields promoted
	var b []byte
	var err error
	if st := m.ModuleStats; st != nil && st.FullSize {
		// the module's own keys, then the statistics with their nulls
		m.ModuleStats, m.statsRequested = nil, false
		if b, err = m.MarshalJSON(); err != nil {
			return nil, err
		}
		sv := st.SingularValues
		if sv == nil {
			sv = []float64{}
		}
		sb, err := json.Marshal(fullSizeJSON{DeltaFroNorm: st.DeltaFroNorm, SingularValues: sv, VectorNorm: st.VectorNorm, Note: st.Note})
		if err != nil {
			return nil, err
		}
		return append(append(b[:len(b)-1], ','), sb[1:]...), nil
	}
	if finite(m.Alpha) && finite(m.Scale) {
		b, err = json.Marshal(plain(m))
	} else {
		b, err = json.Marshal(struct {
			plain
			Alpha *float64 `json:"alpha"`
			Scale *float64 `json:"scale"`
		}{plain(m), finiteOrNil(m.Alpha), finiteOrNil(m.Scale)})
	}
	if err != nil || m.ModuleStats != nil || !m.statsRequested || len(b) < 2 {
		return b, err
	}
	return append(b[:len(b)-1], `,"delta_fro_norm":null,"singular_values":[],"effective_rank":null,"stable_rank":null}`...), nil
}

// ModuleStats are the per-module statistics of --stats.
type ModuleStats struct {
	NormA          float64   `json:"norm_a"`
	NormB          float64   `json:"norm_b"`
	DeltaFroNorm   float64   `json:"delta_fro_norm"`
	SingularValues []float64 `json:"singular_values"`
	EffectiveRank  float64   `json:"effective_rank"`
	StableRank     float64   `json:"stable_rank"`
	Rank90         int       `json:"rank_energy_90"`
	Rank99         int       `json:"rank_energy_99"`
	// VectorNorm is ‖l‖ for IA3 vectors and ‖m‖ for DoRA magnitudes.
	VectorNorm float64 `json:"vector_norm,omitempty"`
	// Note explains a statistic that is not the plain ΔW (DoRA, IA3, ...).
	Note string `json:"note,omitempty"`
	// FullSize marks the statistics of a full-size additive delta (kind
	// "diff": ΔW is the stored tensor, W += diff): DeltaFroNorm is its
	// norm, and NormA, NormB, EffectiveRank, StableRank, Rank90 and Rank99
	// are not computed (null in JSON; SingularValues is empty).
	FullSize bool `json:"-"`
}

// fullSizeJSON is the JSON of FullSize statistics, in the order of
// ModuleStats' keys.
type fullSizeJSON struct {
	NormA          *float64  `json:"norm_a"`
	NormB          *float64  `json:"norm_b"`
	DeltaFroNorm   float64   `json:"delta_fro_norm"`
	SingularValues []float64 `json:"singular_values"`
	EffectiveRank  *float64  `json:"effective_rank"`
	StableRank     *float64  `json:"stable_rank"`
	Rank90         *int      `json:"rank_energy_90"`
	Rank99         *int      `json:"rank_energy_99"`
	VectorNorm     float64   `json:"vector_norm,omitempty"`
	Note           string    `json:"note,omitempty"`
}

// Totals are the per-input totals.
type Totals struct {
	Tensors    int            `json:"tensors"`
	Parameters int64          `json:"parameters"`
	Bytes      int64          `json:"bytes"`
	DTypes     map[string]int `json:"dtypes"`
	Modules    int            `json:"modules"`
	Kinds      map[string]int `json:"kinds"`
	// DeltaFroNorm is sqrt(Σ‖ΔW‖²) over the modules (--stats only).
	DeltaFroNorm float64 `json:"delta_fro_norm,omitempty"`
}

// TargetMatch counts how many modules a target_modules entry matches.
type TargetMatch struct {
	Entry   string `json:"entry"`
	Regex   bool   `json:"regex"`
	Matches int    `json:"matches"`
	// Against says what was matched: "adapter" (the adapter's own modules)
	// or "base" (the base model's modules, in check).
	Against string `json:"against"`
}

// Options selects the optional, data-reading parts of a summary.
type Options struct {
	// Stats reads tensor data: per-tensor statistics and per-module
	// spectra. Without it only headers (and adapter_config.json) are read.
	Stats bool
	// Hashes computes sha256 of the files and kohya's sshs hashes (reads
	// every byte of every file).
	Hashes bool
	// Progress, if set, is called after each tensor or module with
	// (done, total) while statistics are computed.
	Progress func(done, total int)
}

// collectAfter is the tensor count from which Summarize collects the
// garbage of the header parse as soon as the file is open. The parse of a
// header of N bytes leaves ~1.4·N of it (the header bytes themselves, the
// entries before sorting); when the collector runs on its own it may mark
// while they are still live and then let the heap grow to twice that, so
// that `adaptool inspect` of a 600,000-tensor header (83 MB) peaked
// anywhere from 339 to 392 MB (max RSS, 10 runs); collected here, 335 MB
// every time, no slower (the collection replaces one the runtime would
// have run).
const collectAfter = 100_000

// Summarize inspects a safetensors file, an adapter directory, a sharded
// checkpoint (directory or *.index.json) or, when format/gguf supports it,
// a GGUF file. Without opts.Stats only headers are read, so the cost does
// not depend on the data size. It returns (nil, err) when path cannot be
// resolved (missing, no weights file, bad index); otherwise a summary, and
// when part of the input is unreadable or inconsistent (a truncated file, a
// shard missing a tensor) the first such error too, also in Summary.Error.
func Summarize(path string, opts Options) (*Summary, error) {
	l, err := resolveLayout(path)
	if err != nil {
		return nil, err
	}
	s := &Summary{Path: path, Metadata: map[string]string{}, ModuleTypes: map[string]int{}, Layers: []int{}, Modules: []ModuleSummary{}, Tensors: []TensorSummary{}, Warnings: []string{}}
	if l.kind == "gguf" {
		return summarizeGGUF(s, l.files[0], opts)
	}
	s.Container = "safetensors"
	if l.kind == "sharded" {
		s.Container = "safetensors-sharded"
	}
	if len(l.files) == 1 && l.kind != "sharded" {
		// Parse the header once: the open, fully validated file serves the
		// header listing, the adapter model and --stats. A file Open rejects
		// (truncated data, bad header, ...) takes the header-only path
		// below, which reports it as before.
		if f, err := safetensors.Open(l.files[0]); err == nil {
			l.opened = f
			defer f.Close()
			if len(f.Tensors) >= collectAfter {
				runtime.GC() // the parse's garbage: see collectAfter
			}
		}
	}
	hs := readHeaders(l)
	s.Files = hs.files
	s.Tensors = hs.tensors
	if hs.meta != nil {
		s.Metadata = hs.meta
	}
	for _, e := range hs.errs {
		s.Warnings = append(s.Warnings, e.Error())
	}
	if ferr := firstFormatError(hs.errs); ferr != nil {
		s.err = ferr
		s.Error = ferr.Error()
	}
	s.fillTotals()
	s.Classification = classifyTensors(s.Tensors)
	markQuantized(s, hs)
	if l.kind == "sharded" {
		s.Format = "checkpoint"
	} else {
		s.Format = "unknown"
		if err := s.fillAdapter(path, l, opts); err != nil && s.err == nil {
			s.err = err
			s.Error = err.Error()
		}
	}
	if opts.Stats && s.err == nil {
		if err := s.fillTensorStats(l, opts); err != nil {
			s.err = err
			s.Error = err.Error()
		}
	}
	if opts.Hashes {
		s.Hashes = map[string]*Hashes{}
		for _, f := range l.files {
			h, err := HashFile(f, s.Metadata)
			if err != nil {
				s.Warnings = append(s.Warnings, err.Error())
				if h != nil {
					s.Hashes[filepath.Base(f)] = h
				}
				continue
			}
			s.Hashes[filepath.Base(f)] = h
			s.Warnings = append(s.Warnings, h.Mismatches()...)
		}
	}
	s.fillLayers()
	s.Warnings = dedupe(s.Warnings)
	s.nonNil()
	return s, s.err
}

// nonNil makes every list of the schema an empty JSON array rather than null.
func (s *Summary) nonNil() {
	if s.Tensors == nil {
		s.Tensors = []TensorSummary{}
	}
	if s.Modules == nil {
		s.Modules = []ModuleSummary{}
	}
	if s.Classification == nil {
		s.Classification = []Class{}
	}
	if s.Files == nil {
		s.Files = []FileInfo{}
	}
	if s.Warnings == nil {
		s.Warnings = []string{}
	}
	if s.Layers == nil {
		s.Layers = []int{}
	}
}

func (s *Summary) fillTotals() {
	s.Totals.DTypes = map[string]int{}
	s.Totals.Kinds = map[string]int{}
	for _, t := range s.Tensors {
		s.Totals.Tensors++
		s.Totals.Bytes += t.Bytes
		n := int64(1)
		for _, d := range t.Shape {
			n *= int64(d)
		}
		s.Totals.Parameters += n
		s.Totals.DTypes[t.DType]++
	}
}

func (s *Summary) fillLayers() {
	seen := map[int]bool{}
	s.Totals.Modules = len(s.Modules)
	for _, m := range s.Modules {
		s.Totals.Kinds[m.Kind]++
		if m.Layer >= 0 && !seen[m.Layer] {
			seen[m.Layer] = true
			s.Layers = append(s.Layers, m.Layer)
		}
		s.ModuleTypes[m.ModuleType]++
	}
	sort.Ints(s.Layers)
}

func dedupe(w []string) []string {
	seen := map[string]bool{}
	out := w[:0]
	for _, x := range w {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// fillTensorStats streams every tensor's data once (bounded memory).
func (s *Summary) fillTensorStats(l *layout, opts Options) error {
	idx := map[string]int{}
	for i, t := range s.Tensors {
		idx[t.Name] = i
	}
	done := 0
	for _, p := range l.files {
		f, own := l.opened, false
		if f == nil || p != l.files[0] {
			var err error
			if f, err = safetensors.Open(p); err != nil {
				return err
			}
			own = true
		}
		for _, t := range f.Tensors {
			raw, err := f.TensorData(t)
			if err != nil {
				if own {
					f.Close()
				}
				return err
			}
			st, err := StatsOf(t.Name, t.DType.String(), raw)
			if err != nil {
				s.Warnings = append(s.Warnings, fmt.Sprintf("%s: %v", filepath.Base(p), err))
				continue
			}
			if i, ok := idx[t.Name]; ok {
				nested := st
				nested.Name, nested.DType = "", "" // already on the tensor entry
				s.Tensors[i].Stats = &nested
			}
			if st.NaN > 0 || st.Inf > 0 {
				s.Warnings = append(s.Warnings, fmt.Sprintf("tensor %q has %d NaN and %d Inf values", t.Name, st.NaN, st.Inf))
			}
			done++
			if opts.Progress != nil {
				opts.Progress(done, len(s.Tensors))
			}
		}
		if own {
			if err := f.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

// markQuantized labels the tensors of quantized weights with quant.Detect
// (header only): the weight key gets the scheme ("nf4", "int8",
// "fp8-e4m3", ...), its companion keys (absmax, SCB, weight_scale, ...)
// the scheme with an "-aux" suffix.
func markQuantized(s *Summary, hdr quant.Header) {
	// quant.Detect finds a scheme only from a name holding
	// ".quant_state.bitsandbytes__" or a tensor of dtype I8, F8_E4M3 or
	// F8_E5M2, each independently of the other names: handing it just those
	// (in order) gives the same detections without a header lookup per
	// tensor (TestQuantCandidates).
	var cand []string
	for i := range s.Tensors {
		if t := &s.Tensors[i]; quantCandidate(t.Name, t.DType) {
			cand = append(cand, t.Name)
		}
	}
	if len(cand) == 0 {
		return
	}
	var idx map[string]int
	for _, d := range quant.Detect(hdr, cand) {
		if idx == nil {
			idx = make(map[string]int, len(s.Tensors))
			for i, t := range s.Tensors {
				idx[t.Name] = i
			}
		}
		for j, k := range d.Keys {
			i, ok := idx[k]
			if !ok {
				continue
			}
			if j == 0 {
				s.Tensors[i].Quant = string(d.Scheme)
			} else {
				s.Tensors[i].Quant = string(d.Scheme) + "-aux"
			}
		}
	}
}

// quantCandidate reports whether quant.Detect can find a scheme starting
// from tensor name of dtype dt.
func quantCandidate(name, dt string) bool {
	switch dt {
	case "I8", "F8_E4M3", "F8_E5M2":
		return true
	}
	return strings.Contains(name, ".quant_state.bitsandbytes__")
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// finiteOrNil returns &f, or nil (JSON null) when f is NaN or ±Inf.
func finiteOrNil(f float64) *float64 {
	if !finite(f) {
		return nil
	}
	return &f
}
