package ops

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/svd"
)

// PruneParams select structured pruning (Light-PEFT style, merging notes
// §13) from the files alone. Exactly one rule is used:
//
//	energy:E           per module, keep the fewest singular triplets holding
//	                   the fraction E of Σσ² (exact SVD by QR-core)
//	top:K              per module, keep the K largest singular triplets
//	module-fraction:F  drop the ⌊F·N⌋ modules of lowest ‖ΔW‖_F (ties: the
//	                   later name first); the others are kept unchanged
type PruneParams struct {
	Rule  string  `json:"rule"`  // "energy", "top" or "module-fraction"
	Value float64 `json:"value"` // E, K or F
}

// ParsePrune parses "energy:E", "top:K" or "module-fraction:F".
func ParsePrune(s string) (PruneParams, error) {
	rule, arg, ok := strings.Cut(strings.TrimSpace(s), ":")
	v, err := strconv.ParseFloat(arg, 64)
	if !ok || err != nil {
		return PruneParams{}, fmt.Errorf("%w: --ranks %q: want energy:E, top:K or module-fraction:F", ErrParams, s)
	}
	p := PruneParams{Rule: rule, Value: v}
	return p, p.Validate()
}

// Validate checks the rule and its range: E in (0, 1], K a positive
// integer, F in [0, 1].
func (p PruneParams) Validate() error {
	v := p.Value
	ok := false
	switch p.Rule {
	case "energy":
		ok = v > 0 && v <= 1
	case "top":
		ok = v >= 1 && v == math.Trunc(v) && v <= math.MaxInt32
	case "module-fraction":
		ok = v >= 0 && v <= 1
	default:
		return fmt.Errorf("%w: prune rule %q (want energy, top or module-fraction)", ErrParams, p.Rule)
	}
	if !ok {
		return fmt.Errorf("%w: prune %s:%v out of range", ErrParams, p.Rule, v)
	}
	return nil
}

// rankParams returns the per-module truncation of an energy or top rule.
func (p PruneParams) rankParams() RankParams {
	if p.Rule == "energy" {
		return RankParams{Energy: p.Value}
	}
	return RankParams{Rank: int(p.Value)}
}

// PruneRanks truncates one module per an energy or top rule. A module whose
// rank is already within the rule is still returned in canonical √σ form.
func PruneRanks(l *LowRank, p PruneParams) (*LowRank, ModuleStats, error) {
	if err := p.Validate(); err != nil {
		return nil, ModuleStats{}, err
	}
	if p.Rule == "module-fraction" {
		return nil, ModuleStats{}, fmt.Errorf("%w: module-fraction is an adapter-level rule", ErrParams)
	}
	return Resize(l, p.rankParams())
}

// LowNormModules returns the indices of the ⌊F·N⌋ entries of norms with
// the smallest value (ties: the larger index first), ascending by index.
func LowNormModules(norms []float64, f float64) []int {
	k := int(math.Floor(f * float64(len(norms))))
	idx := make([]int, len(norms))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		if norms[idx[a]] != norms[idx[b]] {
			return norms[idx[a]] < norms[idx[b]]
		}
		return idx[a] > idx[b]
	})
	drop := append([]int(nil), idx[:k]...)
	sort.Ints(drop)
	return drop
}

// Norm returns ‖ΔW‖_F = |s|·‖B·D·A‖_F from r×r Gram matrices.
func (l *LowRank) Norm() (float64, error) {
	n, err := svd.FroNorm(l.B, l.foldedA(), l.Rank)
	return n * math.Abs(l.Scale), err
}

// PruneAdapter prunes the adapter at path: energy:E and top:K truncate
// every low-rank module's exact SVD (written in √σ form, Scale 1);
// module-fraction:F removes the ⌊F·N⌋ low-rank modules of smallest
// ‖ΔW‖_F and keeps the others bit-for-bit in value (same factors and
// scale). The report lists what was removed and, per module, the kept
// energy.
func PruneAdapter(path string, p PruneParams, o RunOptions) (*Report, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	op := singleOp{name: "prune", params: p}
	if p.Rule == "module-fraction" {
		op.dora = "module-fraction ranks modules by ‖ΔW‖_F, which does not measure a DoRA module's effect (its magnitude vector rescales the base weight, which the adapter does not hold), and removing the module would drop that rescaling too (--ranks energy:E or top:K keep the magnitude)"
		op.plan = func(m *adapter.Module, out, ink int) int { return m.Rank }
		op.prepare = func(slots []slot, in *inputSet, rep *Report) error {
			var idx []int
			var norms []float64
			for i, s := range slots {
				if rep.Modules[i].Status != "matched" {
					continue
				}
				l, _, err := lowRankOf(in.ads[0], s.mods[0])
				if err != nil {
					return err
				}
				n, err := l.Norm()
				if err != nil {
					return err
				}
				idx, norms = append(idx, i), append(norms, n)
			}
			for _, j := range LowNormModules(norms, p.Value) {
				mr := &rep.Modules[idx[j]]
				mr.Status, mr.Reason, mr.Rank, mr.Bytes = "removed", fmt.Sprintf("‖ΔW‖_F = %.6g among the lowest %g", norms[j], p.Value), 0, 0
			}
			return nil
		}
		op.do = func(name string, l *LowRank) (*LowRank, ModuleReport, bool, error) {
			n, err := l.Norm()
			return l, ModuleReport{Stats: &ModuleStats{Rank: l.Rank, Energy: 1, Norm: n}}, false, err
		}
	} else {
		rp := p.rankParams()
		op.plan = func(m *adapter.Module, out, ink int) int {
			k := min(m.Rank, out, ink)
			if rp.Rank > 0 {
				k = min(k, rp.Rank)
			}
			return max(1, k)
		}
		op.do = func(name string, l *LowRank) (*LowRank, ModuleReport, bool, error) {
			res, st, err := PruneRanks(l, p)
			return res, ModuleReport{Stats: &st}, false, err
		}
	}
	return runSingle(path, op, o)
}
