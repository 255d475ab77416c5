package inspect

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/adaptool/adaptool/svd"
)

// Scale bounds outside which a module's scale is reported as unusual: PEFT
// scales are alpha/r (typically 0.1–4), MLX uses 10–20.
const (
	ScaleHigh = 64.0
	ScaleLow  = 1.0 / 1024
)

// fillAdapter fills the adapter-level fields of a single-file or directory
// input: config fields, the modules of format/adapter, the target-match
// counts, warnings and, with opts.Stats, the module statistics.
func (s *Summary) fillAdapter(path string, l *layout, opts Options) error {
	cfg := s.fillConfig(l)
	defer s.architectureFromMetadata()
	if s.err != nil {
		// the header is readable but the data is not (truncated): modules
		// need the full file, the header-level report stands alone
		return nil
	}
	var lopts []adapter.LoadOption
	if l.opened != nil {
		lopts = append(lopts, adapter.WithFile(l.opened)) // used when Load resolves the same weights file
	}
	var (
		names      []string
		incomplete []string
		modWarns   []string // after the adapter's own warnings
		plain      = true   // every module whole tensors
	)
	var arena RoleTensors
	summarize := func(m *adapter.Module) {
		s.Modules = append(s.Modules, moduleSummary(m, &arena))
		names = append(names, m.Name)
		modWarns = append(modWarns, moduleWarnings(m)...)
		if m.Kind == adapter.KindIncomplete {
			incomplete = append(incomplete, m.Name)
		}
		if m.Kind != adapter.KindFull {
			plain = false
		}
	}
	if !opts.Stats {
		// Without statistics the modules are only summarized: take each as
		// Load resolves it, so that every module's tensor map never exists
		// at once (a 300,000-module header: ~190 MB).
		lopts = append(lopts, adapter.WithModuleFunc(func(m *adapter.Module, i, n int) bool {
			if i == 0 {
				names = make([]string, 0, n)
				s.Modules = make([]ModuleSummary, 0, n)
			}
			summarize(m)
			return false
		}))
	}
	a, err := adapter.Load(path, lopts...)
	if err != nil {
		if errors.Is(err, adapter.ErrNoAdapter) {
			s.Warnings = append(s.Warnings, err.Error())
			return nil
		}
		return err
	}
	defer a.Close()
	if opts.Stats {
		names = make([]string, 0, len(a.Modules))
		s.Modules = make([]ModuleSummary, 0, len(a.Modules))
		for _, m := range a.Modules {
			summarize(m)
		}
	}
	s.Format = string(a.Dialect)
	if a.Config == nil && len(s.Modules) > 0 && plain {
		s.Format = "checkpoint" // whole tensors and no adapter config: a model, not an adapter
	}
	if a.PeftType != "" {
		s.PeftType = a.PeftType
	}
	if s.Architecture == "" {
		s.Architecture = a.Architecture
	}
	if cfg == nil && a.Config != nil {
		cfg = a.Config
		if s.BaseModel == "" {
			s.BaseModel = cfg.BaseModelNameOrPath
		}
	}
	s.Warnings = append(s.Warnings, a.Warnings...)
	s.Warnings = append(s.Warnings, modWarns...)
	if len(incomplete) > 0 {
		list := incomplete
		if len(list) > 5 {
			list = append(append([]string{}, list[:5]...), "…")
		}
		s.Warnings = append(s.Warnings, fmt.Sprintf("%d modules have a low-rank factor missing (incomplete, not a usable adapter): %s", len(incomplete), strings.Join(list, ", ")))
	}
	if cfg != nil {
		tm, err := matchTargets(cfg.TargetModules, names, "adapter")
		if err != nil {
			s.Warnings = append(s.Warnings, err.Error())
		}
		s.TargetMatches = tm
		for _, t := range tm {
			if t.Matches == 0 {
				s.Warnings = append(s.Warnings, fmt.Sprintf("config target_modules entry %q matches no module with tensors in the file", t.Entry))
			}
		}
		seen := map[string]bool{}
		for _, e := range cfg.ModulesToSave {
			if seen[e] {
				s.Warnings = append(s.Warnings, fmt.Sprintf("config modules_to_save lists %q more than once", e))
				continue
			}
			seen[e] = true
			found := false
			for _, n := range names {
				if n == e || hasDotSuffix(n, e) {
					found = true
					break
				}
			}
			if !found {
				s.Warnings = append(s.Warnings, fmt.Sprintf("config modules_to_save entry %q has no tensors in the file", e))
			}
		}
	}
	if opts.Stats {
		var sumSq float64
		for i, m := range a.Modules {
			st, warns := moduleStats(a, m)
			s.Warnings = append(s.Warnings, warns...)
			s.Modules[i].ModuleStats = st
			s.Modules[i].statsRequested = true
			if st != nil {
				sumSq += st.DeltaFroNorm * st.DeltaFroNorm
			}
			if opts.Progress != nil {
				opts.Progress(i+1, len(a.Modules))
			}
		}
		s.Totals.DeltaFroNorm = math.Sqrt(sumSq)
	}
	return nil
}

// moduleSummary is the header-level summary of one module; its Tensors
// are taken from *arena (refilled in chunks when short), so that a
// module's list costs no allocation of its own.
func moduleSummary(m *adapter.Module, arena *RoleTensors) ModuleSummary {
	ms := ModuleSummary{
		Name: m.Name, Kind: string(m.Kind), Rank: m.Rank, Alpha: m.Alpha, Scale: m.Scale, AlphaKnown: m.AlphaKnown,
		InFeatures: m.InFeatures, OutFeatures: m.OutFeatures, FanInFanOut: m.FanInFanOut,
		Layer: LayerOf(m.Name), Block: BlockOf(m.Name), ModuleType: ModuleType(m.Name),
	}
	n := len(m.Tensors)
	if cap(*arena)-len(*arena) < n {
		*arena = make(RoleTensors, 0, max(n, 4096))
	}
	start := len(*arena)
	for role, t := range m.Tensors {
		*arena = append(*arena, RoleTensor{role, t.Name})
	}
	ms.Tensors = (*arena)[start:len(*arena):len(*arena)]
	slices.SortFunc(ms.Tensors, byRole)
	return ms
}

// moduleWarnings are the header-level defects of one module.
func moduleWarnings(m *adapter.Module) []string {
	var w []string
	if m.IsLowRank() {
		if width := min(m.InFeatures, m.OutFeatures); width > 0 && m.Rank > width {
			w = append(w, fmt.Sprintf("module %q: rank %d exceeds the layer width min(in %d, out %d) = %d, so rank(ΔW) ≤ %d", m.Name, m.Rank, m.InFeatures, m.OutFeatures, width, width))
		}
		if sc := math.Abs(m.Scale); m.Rank > 0 && (sc > ScaleHigh || sc < ScaleLow) { // rank 0: ΔW = 0, no scale
			w = append(w, fmt.Sprintf("module %q: scale %g is far outside the usual range [%g, %g]", m.Name, m.Scale, ScaleLow, ScaleHigh))
		}
	}
	return w
}

// moduleStats computes one module's statistics from its factors (or its
// vector for IA3 / DoRA, its tensor for a full-size delta). Modules of
// other kinds get nil.
func moduleStats(a *adapter.Adapter, m *adapter.Module) (*ModuleStats, []string) {
	switch {
	case m.IsLowRank():
	case m.Kind == adapter.KindDiff:
		return diffStats(a, m)
	case m.Kind == adapter.KindIA3:
		t := m.Tensors[adapter.RoleIA3]
		v, err := a.File.Float32(t.Name)
		if err != nil {
			return nil, []string{err.Error()}
		}
		var n, dev, maxDev float64
		for _, x := range v {
			n += float64(x) * float64(x)
			d := float64(x) - 1
			dev += d * d
			maxDev = math.Max(maxDev, math.Abs(d))
		}
		st := &ModuleStats{VectorNorm: math.Sqrt(n), SingularValues: []float64{},
			Note: fmt.Sprintf("IA3 rescales W by l (W⊙l); ‖l−1‖ = %.4g, max |l−1| = %.4g; ΔW needs the base weight", math.Sqrt(dev), maxDev)}
		var w []string
		if finiteCount(v) != len(v) {
			w = append(w, fmt.Sprintf("module %q: tensor %q has NaN or Inf values", m.Name, t.Name))
		}
		return st, w
	default:
		return nil, nil
	}
	f, err := a.Factors(m)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var w []string
	ta, tb := m.Tensors[adapter.RoleA].Name, m.Tensors[adapter.RoleB].Name
	if finiteCount(f.A) != len(f.A) {
		w = append(w, fmt.Sprintf("module %q: lora_A tensor %q has NaN or Inf values", m.Name, ta))
	}
	if finiteCount(f.B) != len(f.B) {
		w = append(w, fmt.Sprintf("module %q: lora_B tensor %q has NaN or Inf values", m.Name, tb))
	}
	if len(w) > 0 {
		return nil, w // statistics of NaN/Inf factors are meaningless: null in JSON
	}
	A, B, note := f.A, f.B, ""
	if f.Experts > 0 {
		A, B = A[:f.Rank*f.InK()], B[:f.Out*f.Rank]
		note = fmt.Sprintf("MoE SwitchLinear: statistics of expert 0 of %d", f.Experts)
	}
	allZero := f.Rank > 0 // rank 0 (empty factors) is ΔW = 0 by shape, not an untrained lora_B
	for _, x := range B {
		if x != 0 {
			allZero = false
			break
		}
	}
	if allZero {
		w = append(w, fmt.Sprintf("module %q: lora_B %q is all zero (untrained: ΔW = 0)", m.Name, tb))
	}
	var diag []float64
	var diag32 []float32
	switch {
	case f.E != nil:
		diag32 = f.E
	case f.Diag != nil:
		diag32 = f.Diag
	}
	if diag32 != nil {
		diag = make([]float64, len(diag32))
		for i, x := range diag32 {
			diag[i] = float64(x)
		}
	}
	lr := svd.LowRank{Out: f.Out, In: f.InK(), Rank: f.Rank, A: A, B: B, Diag: diag, Scale: f.Scale}
	st, err := lowRankStats(lr)
	if err != nil {
		return nil, append(w, fmt.Sprintf("module %q: %v", m.Name, err))
	}
	if !finite(st.DeltaFroNorm) || !finite(st.NormA) || !finite(st.NormB) {
		// a non-finite or overflowing scale: no statistic is meaningful
		return nil, append(w, fmt.Sprintf("module %q: ‖ΔW‖ is not finite (scale %v): statistics not computed", m.Name, f.Scale))
	}
	st.Note = note
	if f.Magnitude != nil {
		var n float64
		for _, x := range f.Magnitude {
			n += float64(x) * float64(x)
		}
		st.VectorNorm = math.Sqrt(n)
		st.Note = "DoRA: statistics of the directional update s·B·A; the merged delta also rescales rows by magnitude/‖W+s·B·A‖ (needs the base)"
	}
	return st, w
}

// lowRankStats computes the spectrum statistics of one factored delta
// (package svd: Gram matrices for the norms, QR-core singular values).
func lowRankStats(lr svd.LowRank) (*ModuleStats, error) {
	g, err := svd.NewGram(lr)
	if err != nil {
		return nil, err
	}
	sv, err := lr.SingularValues()
	if err != nil {
		return nil, err
	}
	sp := svd.NewSpectrum(sv, g.FroNorm())
	return &ModuleStats{NormA: g.NormA(), NormB: g.NormB(), DeltaFroNorm: sp.FroNorm, SingularValues: sp.SingularValues,
		EffectiveRank: sp.EffectiveRank, StableRank: sp.StableRank, Rank90: sp.Rank90, Rank99: sp.Rank99}, nil
}

func finiteCount(x []float32) int { return int(kernels.StatsF32(x).Finite) }
