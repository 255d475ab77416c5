package ops

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
)

// Methods lists the merge methods, in documentation order.
var Methods = []string{
	"svd", "cat", "task_arithmetic", "linear",
	"ties", "ties_svd", "dare_linear", "dare_linear_svd", "dare_ties", "dare_ties_svd",
	"magnitude_prune", "magnitude_prune_svd",
}

// MergeParams are the parameters of a merge. The zero value is the default:
// method svd, every weight 1, rank = the largest input rank.
type MergeParams struct {
	// Method is one of Methods; "" means "svd".
	Method string `json:"method"`
	// Weights are wᵢ, one per input, acting on the true deltas
	// ΔWᵢ = sᵢ·Bᵢ·Aᵢ; nil means all 1.
	Weights []float64 `json:"weights,omitempty"`
	// FactorSpace selects PEFT's factor-space forms of ties, dare_linear,
	// dare_ties, magnitude_prune and task_arithmetic (add_weighted_adapter
	// without _svd): approximate, for compatibility. "linear" is always
	// factor-space.
	FactorSpace bool `json:"factor_space,omitempty"`
	// PEFTCompat reproduces PEFT 0.9–0.20's weighting of its delta-space
	// methods (svd, ties_svd, …): the weight wᵢ·sᵢ is applied to ΔWᵢ, which
	// already contains sᵢ, so the effective weight is wᵢ·sᵢ² (merging notes
	// §4, fixed by PEFT PR #3111). cat and the factor-space forms are not
	// affected.
	PEFTCompat bool `json:"peft_compat,omitempty"`
	RankParams
	ElementwiseParams
}

// method returns the normalised method name.
func (p MergeParams) method() string {
	if p.Method == "" {
		return "svd"
	}
	return p.Method
}

// Validate checks the method and every parameter; n is the input count.
func (p MergeParams) Validate(n int) error {
	ok := false
	for _, m := range Methods {
		ok = ok || p.method() == m
	}
	if !ok {
		return fmt.Errorf("%w: unknown method %q (want %s)", ErrParams, p.Method, strings.Join(Methods, ", "))
	}
	if p.Weights != nil && len(p.Weights) != n {
		return errWeights(len(p.Weights), n)
	}
	for i, w := range p.Weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return fmt.Errorf("%w: weight %d is %v", ErrParams, i+1, w)
		}
	}
	if err := p.RankParams.Validate(); err != nil {
		return err
	}
	return p.ElementwiseParams.Validate()
}

// weights returns the weights, defaulting to all 1.
func (p MergeParams) weights(n int) []float64 {
	if p.Weights != nil {
		return p.Weights
	}
	w := make([]float64, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// Exact reports whether the method's output equals the weighted sum Σ wᵢΔWᵢ
// up to float32 rounding when the rank suffices (cat, and svd or
// task_arithmetic at full rank).
func (p MergeParams) Exact() bool {
	switch p.method() {
	case "cat":
		return true
	case "svd":
		return p.Energy == 0 && p.Threshold == 0
	case "task_arithmetic":
		return !p.FactorSpace && p.Energy == 0 && p.Threshold == 0
	}
	return false
}

// MergeModule merges one module across the inputs (nil = absent, merged as
// zero). module names the module for error messages and DARE's seeds.
//
// The elementwise methods stream modules taller than one 4 MiB row tile
// and hold the merged matrix while factoring it only when it fits in
// DefaultMaxMemory.
func MergeModule(p MergeParams, module string, in []*LowRank) (*LowRank, ModuleStats, error) {
	var o denseOpts
	if out, inF, err := shapeOf(in); err == nil {
		ranks := make([]int, len(in))
		for i, l := range in {
			if l != nil {
				ranks[i] = l.Rank
			}
		}
		o.cache = p.moduleMemory(out, inF, ranks, denseOpts{cache: true}) <= DefaultMaxMemory
	}
	res, st, err := mergeModule(p, module, in, o)
	if err != nil {
		return nil, ModuleStats{}, fmt.Errorf("module %s: %w", module, err)
	}
	return res, st, nil
}

// mergeModule is MergeModule with the memory options of mergeDense; its
// errors do not name the module (the callers do).
func mergeModule(p MergeParams, module string, in []*LowRank, o denseOpts) (*LowRank, ModuleStats, error) {
	if err := p.Validate(len(in)); err != nil {
		return nil, ModuleStats{}, err
	}
	w := p.weights(len(in))
	m := p.method()
	base := strings.TrimSuffix(m, "_svd")
	var (
		res *LowRank
		st  ModuleStats
		err error
	)
	switch {
	case m == "cat":
		res, err = Cat(in, w)
		if err == nil {
			st, err = exactStats(res)
		}
	case m == "svd" || (m == "task_arithmetic" && !p.FactorSpace):
		res, st, err = SVD(in, p.compatWeights(w, in), p.RankParams)
	case m == "linear" || (p.FactorSpace && m == base):
		res, err = mergeFactors(m, in, w, p.ElementwiseParams, module)
		if err == nil {
			st, err = exactStats(res)
		}
	default:
		res, st, err = mergeDense(base, in, p.compatWeights(w, in), p.ElementwiseParams, p.RankParams, seedKey(module, "delta"), o)
	}
	if err != nil {
		return nil, ModuleStats{}, err
	}
	return res, st, nil
}

// compatWeights returns w, or with PEFTCompat wᵢ·sᵢ per present input.
func (p MergeParams) compatWeights(w []float64, in []*LowRank) []float64 {
	if !p.PEFTCompat {
		return w
	}
	out := append([]float64(nil), w...)
	for i, l := range in {
		if l != nil && i < len(out) {
			out[i] *= l.Scale
		}
	}
	return out
}

// exactStats reports a result that represents itself exactly.
func exactStats(l *LowRank) (ModuleStats, error) {
	n, err := l.Norm()
	return ModuleStats{Rank: l.Rank, Energy: 1, Norm: n}, err
}

// plannedRank is the output rank a merge writes for a module (an upper
// bound when the rank is chosen per module by energy or threshold).
func (p MergeParams) plannedRank(ranks []int, out, ink int) int {
	sum, mx := 0, 0
	for _, r := range ranks {
		sum += r
		mx = max(mx, r)
	}
	m := p.method()
	switch {
	case m == "cat":
		return sum
	case m == "linear" || (p.FactorSpace && !strings.HasSuffix(m, "_svd") && m != "svd"):
		return mx
	}
	k := mx
	if p.Rank > 0 {
		k = p.Rank
	}
	lim := min(out, ink)
	if m == "svd" || m == "task_arithmetic" {
		lim = min(lim, sum)
	}
	if (p.Energy > 0 || p.Threshold > 0) && p.Rank == 0 {
		k = lim
	}
	return max(1, min(k, lim))
}

// Merge merges the adapters at paths module by module (modules present in
// only some inputs are merged with the others as zero) and writes a PEFT
// directory with Scale 1 per module (r = lora_alpha per module through
// rank_pattern/alpha_pattern), use_rslora false, and provenance in
// __metadata__. lora_B.bias terms are combined as Σ wᵢ·sᵢ·bᵢ. With
// o.DryRun it returns the plan and writes nothing. Modules the method
// cannot merge (DoRA, IA3, modules_to_save, LoHa/LoKr/VeRA) are listed as
// refused and the merge fails with ErrUnsupported: nothing is dropped
// silently. Inputs made only of (IA)³ vectors are merged in l − 1 space
// (see mergeIA3) and written as a PEFT IA3 directory.
func Merge(paths []string, p MergeParams, o RunOptions) (*Report, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no input adapter", ErrParams)
	}
	if err := p.Validate(len(paths)); err != nil {
		return nil, err
	}
	dt, err := outDType(o.DType)
	if err != nil {
		return nil, err
	}
	if p.Method == "" {
		p.Method = "svd"
	}
	in, err := open(paths, o, !o.DryRun)
	if err != nil {
		return nil, err
	}
	defer in.close()
	fifo, err := fanInFanOut(in.ads)
	if err != nil {
		return nil, err
	}
	rep := &Report{Operation: "merge", Params: p, Inputs: in.infos, Output: o.Output, DType: dt.String(), DryRun: o.DryRun, Warnings: in.warnings}
	for i, a := range in.ads {
		if w := dialectWarning(a); w != "" && !slices.Contains(paths[:i], paths[i]) {
			rep.Warnings = append(rep.Warnings, w)
		}
	}
	if allIA3(in.ads) {
		return mergeIA3(p, o, in, rep)
	}
	slots := union(in.ads)
	kinds := make([]adapter.Kind, len(slots))
	kernels := make([][]int, len(slots))
	for i, s := range slots {
		kind, kernel, ranks, reason := lowRankKind(s, doraMergeReason)
		out, ink := dims(s)
		mr := ModuleReport{Name: s.name, Kind: string(kind), Out: out, In: ink, InputRanks: ranks, Status: "matched"}
		for _, r := range ranks {
			if r == 0 {
				mr.Status = "partial"
			}
		}
		if st, why := rank0Status(s); reason == "" && st != "" {
			mr.Status, mr.Reason = st, why
		} else if reason != "" {
			mr.Status, mr.Reason = "refused", reason
		} else {
			mr.Rank = p.plannedRank(ranks, out, ink)
			mr.Bytes = lowRankBytes(mr.Rank, out, ink, dt, 0)
		}
		kinds[i], kernels[i] = kind, kernel
		rep.Modules = append(rep.Modules, mr)
	}
	if err := rep.planned(); err != nil {
		return rep, err
	}
	if err := allRank0(rep); err != nil {
		return rep, err
	}
	mp, dopts, warn := p.planMemory(rep.Modules, o)
	rep.Memory = mp
	rep.Warnings = append(rep.Warnings, warn...)
	if o.DryRun {
		return rep, nil
	}
	w := p.weights(len(paths))
	outMods := make([]adapter.OutModule, len(slots))
	err = runPool(len(slots), mp.Workers, o.Progress, func(i int) error {
		s := slots[i]
		if rep.Modules[i].Status == "removed" {
			return nil
		}
		lrs := make([]*LowRank, len(s.mods))
		var bias []float32
		var in0 *adapter.Factors
		for j, m := range s.mods {
			if m == nil || m.Rank == 0 { // rank 0: ΔW = 0, contributes nothing
				continue
			}
			l, f, err := lowRankOf(in.ads[j], m)
			if err != nil {
				return err
			}
			lrs[j] = l
			if in0 == nil {
				in0 = f
			}
			if f.Bias != nil {
				if bias == nil {
					bias = make([]float32, f.Out)
				}
				for k, v := range f.Bias {
					bias[k] += float32(w[j] * f.Scale * float64(v))
				}
			}
		}
		res, st, err := mergeModule(p, s.name, lrs, dopts[i])
		if err != nil {
			return moduleErr(in, s, err)
		}
		outMods[i] = adapter.OutModule{Name: s.name, Kind: kinds[i], Rank: res.Rank, In: in0.In, Out: res.Out,
			Kernel: kernels[i], Scale: res.Scale, A: res.foldedA(), B: res.B, Bias: bias}
		mr := &rep.Modules[i]
		mr.Rank, mr.Stats = res.Rank, &st
		extra := 0
		if bias != nil {
			extra = len(bias)
		}
		mr.Bytes = lowRankBytes(res.Rank, res.Out, res.In, dt, extra)
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.count()
	var seed *uint64
	if strings.HasPrefix(p.Method, "dare") || !p.Exact() {
		seed = &p.Seed
	}
	var mods []adapter.OutModule // rank-0 modules (removed) are not written
	for i, om := range outMods {
		if rep.Modules[i].Status != "removed" {
			mods = append(mods, om)
		}
	}
	if err := checkOverflow(mods, dt); err != nil {
		return rep, err
	}
	meta := provenance("merge", p.Method, p, w, seed, in.infos)
	return rep, write(o, outputConfig(in.ads[0]), fifo, mods, meta)
}
