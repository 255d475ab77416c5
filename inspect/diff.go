package inspect

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/adaptool/adaptool/svd"
)

// DiffOptions configures Diff.
type DiffOptions struct {
	// Dense also builds each module's dense ΔW (tile by tile, bounded
	// memory) to measure the sign-conflict rate TIES cares about.
	Dense bool
	// Progress, if set, is called after each module with (done, total).
	Progress func(done, total int)
	// BaseConfig is an optional config.json giving the head counts that
	// undoing llama.cpp's q/k row permutation needs when an input is a
	// GGUF adapter of a permuted architecture (Llama family).
	BaseConfig string
}

// DiffResult compares two adapters module by module (`adaptool diff`).
type DiffResult struct {
	PathA    string       `json:"a"`
	PathB    string       `json:"b"`
	Modules  []DiffModule `json:"modules"`
	OnlyInA  []string     `json:"only_in_a"`
	OnlyInB  []string     `json:"only_in_b"`
	Warnings []string     `json:"warnings"`
	// Cosine and RelativeDistance of the whole adapters: all common
	// low-rank modules' deltas taken as one vector.
	Cosine           *float64 `json:"cosine"`
	RelativeDistance *float64 `json:"relative_distance"`
}

// DiffModule is one module present in both adapters. Undefined values
// (a zero norm) are null in JSON.
type DiffModule struct {
	Name  string `json:"name"`
	KindA string `json:"kind_a"`
	KindB string `json:"kind_b"`
	// Cosine is ⟨ΔW_A,ΔW_B⟩/(‖ΔW_A‖‖ΔW_B‖).
	Cosine *float64 `json:"cosine"`
	// RelativeDistance is ‖ΔW_A−ΔW_B‖_F/‖ΔW_A‖_F.
	RelativeDistance *float64 `json:"relative_distance"`
	// NormRatio is ‖ΔW_B‖_F/‖ΔW_A‖_F.
	NormRatio *float64 `json:"norm_ratio"`
	// NormA and NormB are ‖ΔW_A‖_F and ‖ΔW_B‖_F (‖l‖ for IA3); null when
	// the module was not compared.
	NormA *float64 `json:"delta_fro_norm_a"`
	NormB *float64 `json:"delta_fro_norm_b"`
	// SignConflict (--dense) is the fraction of positions where both
	// deltas are non-zero and their signs differ, among the positions where
	// both are non-zero.
	SignConflict *float64 `json:"sign_conflict_rate,omitempty"`
	// Compared says what was compared: "delta" (ΔW from the factors),
	// "dense-delta" (ΔW built densely by adapter.Delta64: a LoHa, LoKr or
	// VeRA module on either side), "ia3" (the scaling vectors l), or why
	// nothing was ("skipped: ...").
	Compared string `json:"compared"`
}

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// factorsOf returns a module's delta as a LowRank (expert 0 for MLX
// SwitchLinear).
func factorsOf(a *adapter.Adapter, m *adapter.Module) (svd.LowRank, error) {
	f, err := a.Factors(m)
	if err != nil {
		return svd.LowRank{}, err
	}
	lr := svd.LowRank{Out: f.Out, In: f.InK(), Rank: f.Rank, A: f.A[:f.Rank*f.InK()], B: f.B[:f.Out*f.Rank], Scale: f.Scale}
	d := f.E
	if d == nil {
		d = f.Diag
	}
	if d != nil {
		lr.Diag = make([]float64, len(d))
		for i, x := range d {
			lr.Diag[i] = float64(x)
		}
	}
	return lr, nil
}

// Diff compares two adapters (paths accepted by adapter.Load, or GGUF LoRA
// adapters, compared through their exact PEFT conversion).
func Diff(pathA, pathB string, opts DiffOptions) (*DiffResult, error) {
	a, closeA, err := loadAdapter(pathA, opts.BaseConfig)
	if err != nil {
		return nil, err
	}
	defer closeA()
	b, closeB, err := loadAdapter(pathB, opts.BaseConfig)
	if err != nil {
		return nil, err
	}
	defer closeB()
	r := &DiffResult{PathA: pathA, PathB: pathB, Modules: []DiffModule{}, OnlyInA: []string{}, OnlyInB: []string{}, Warnings: []string{}}
	inB := map[string]*adapter.Module{}
	for _, m := range b.Modules {
		inB[m.Name] = m
	}
	inA := map[string]bool{}
	var dot, nA2, nB2 float64
	for i, ma := range a.Modules {
		inA[ma.Name] = true
		mb, ok := inB[ma.Name]
		if !ok {
			r.OnlyInA = append(r.OnlyInA, ma.Name)
			continue
		}
		dm := DiffModule{Name: ma.Name, KindA: string(ma.Kind), KindB: string(mb.Kind)}
		switch {
		case ma.IsLowRank() && mb.IsLowRank():
			fa, errA := factorsOf(a, ma)
			fb, errB := factorsOf(b, mb)
			if errA != nil || errB != nil {
				dm.Compared = fmt.Sprintf("skipped: %v", firstErr(errA, errB))
				break
			}
			if finiteCount(fa.A) != len(fa.A) || finiteCount(fa.B) != len(fa.B) || finiteCount(fb.A) != len(fb.A) || finiteCount(fb.B) != len(fb.B) {
				dm.Compared = "skipped: NaN or Inf in the factors"
				r.Warnings = append(r.Warnings, fmt.Sprintf("module %q: NaN or Inf in the factors; not compared", ma.Name))
				break
			}
			if fa.Out != fb.Out || fa.In != fb.In {
				dm.Compared = fmt.Sprintf("skipped: deltas are %d×%d and %d×%d", fa.Out, fa.In, fb.Out, fb.In)
				r.Warnings = append(r.Warnings, fmt.Sprintf("module %q: shapes differ (%d×%d vs %d×%d)", ma.Name, fa.Out, fa.In, fb.Out, fb.In))
				break
			}
			ab, err := fa.Inner(fb)
			if err != nil {
				dm.Compared = "skipped: " + err.Error()
				break
			}
			aa, _ := fa.Inner(fa)
			bb, _ := fb.Inner(fb)
			fillCompare(&dm, ab, aa, bb)
			dm.Compared = "delta"
			dot, nA2, nB2 = dot+ab, nA2+aa, nB2+bb
			if opts.Dense {
				dm.SignConflict = ptr(signConflict(fa, fb))
			}
		case additive(ma) && additive(mb):
			ab, aa, bb, sc, err := compareDense(a, ma, b, mb, opts.Dense)
			if err != nil {
				dm.Compared = "skipped: " + err.Error()
				r.Warnings = append(r.Warnings, fmt.Sprintf("module %q: %v; not compared", ma.Name, err))
				break
			}
			fillCompare(&dm, ab, aa, bb)
			dm.Compared = "dense-delta"
			dot, nA2, nB2 = dot+ab, nA2+aa, nB2+bb
			if opts.Dense {
				dm.SignConflict = ptr(sc)
			}
		case ma.Kind == adapter.KindIA3 && mb.Kind == adapter.KindIA3:
			va, errA := a.File.Float32(ma.Tensors[adapter.RoleIA3].Name)
			vb, errB := b.File.Float32(mb.Tensors[adapter.RoleIA3].Name)
			if errA != nil || errB != nil || len(va) != len(vb) || finiteCount(va) != len(va) || finiteCount(vb) != len(vb) {
				dm.Compared = fmt.Sprintf("skipped: IA3 vectors unreadable, non-finite or of different lengths (%v)", firstErr(errA, errB))
				break
			}
			var ab, aa, bb float64
			for i := range va {
				x, y := float64(va[i]), float64(vb[i])
				ab, aa, bb = ab+x*y, aa+x*x, bb+y*y
			}
			fillCompare(&dm, ab, aa, bb)
			dm.Compared = "ia3"
		default:
			dm.Compared = fmt.Sprintf("skipped: no delta to compare for kinds %s and %s", ma.Kind, mb.Kind)
		}
		r.Modules = append(r.Modules, dm)
		if opts.Progress != nil {
			opts.Progress(i+1, len(a.Modules))
		}
	}
	for _, m := range b.Modules {
		if !inA[m.Name] {
			r.OnlyInB = append(r.OnlyInB, m.Name)
		}
	}
	cos, rel, _ := svd.CompareInner(dot, nA2, nB2)
	r.Cosine, r.RelativeDistance = ptr(cos), ptr(rel)
	return r, nil
}

// fillCompare sets a module's norms, cosine, relative distance and norm
// ratio from ⟨A,B⟩, ‖A‖² and ‖B‖² (svd.CompareInner; undefined → null).
func fillCompare(dm *DiffModule, ab, aa, bb float64) {
	dm.NormA, dm.NormB = ptr(math.Sqrt(math.Max(aa, 0))), ptr(math.Sqrt(math.Max(bb, 0)))
	cos, rel, ratio := svd.CompareInner(ab, aa, bb)
	dm.Cosine, dm.RelativeDistance, dm.NormRatio = ptr(cos), ptr(rel), ptr(ratio)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// denseTileRows bounds the dense tile: rows×in float32 per side.
const denseTileElems = 1 << 20

// denseTile writes rows [r0,r1) of ΔW = s·B·diag(d)·A into w (zeroed first)
// with kernels.RankUpdate.
func denseTile(w []float32, f svd.LowRank, r0, r1 int, bs []float32) {
	clear(w)
	rows := r1 - r0
	b := f.B[r0*f.Rank : r1*f.Rank]
	if f.Diag != nil {
		for i := 0; i < rows; i++ {
			for k := 0; k < f.Rank; k++ {
				bs[i*f.Rank+k] = b[i*f.Rank+k] * float32(f.Diag[k])
			}
		}
		b = bs[:rows*f.Rank]
	}
	kernels.RankUpdate(w, rows, f.In, float32(f.Scale), b, f.A, f.Rank)
}

// signConflict returns the fraction of positions where both dense deltas
// are non-zero and of opposite signs, among positions where both are
// non-zero (NaN when there are none). Memory: two tiles of ≤ 1 Mi floats.
func signConflict(fa, fb svd.LowRank) float64 {
	rowsPer := min(fa.Out, max(1, denseTileElems/max(1, fa.In)))
	wa := make([]float32, rowsPer*fa.In)
	wb := make([]float32, rowsPer*fa.In)
	bsa := make([]float32, rowsPer*fa.Rank)
	bsb := make([]float32, rowsPer*fb.Rank)
	var both, conflict int64
	for r0 := 0; r0 < fa.Out; r0 += rowsPer {
		r1 := min(fa.Out, r0+rowsPer)
		n := (r1 - r0) * fa.In
		denseTile(wa[:n], fa, r0, r1, bsa)
		denseTile(wb[:n], fb, r0, r1, bsb)
		countSigns(wa[:n], wb[:n], &both, &conflict)
	}
	return conflictRate(both, conflict)
}

// countSigns adds to both the positions where x and y are both non-zero
// (NaN excluded) and to conflict those of them with opposite signs.
func countSigns[T float32 | float64](x, y []T, both, conflict *int64) {
	for i, xv := range x {
		yv := y[i]
		if xv == 0 || yv == 0 || xv != xv || yv != yv {
			continue
		}
		*both++
		if (xv > 0) != (yv > 0) {
			*conflict++
		}
	}
}

// conflictRate is conflict/both, NaN when both is 0.
func conflictRate(both, conflict int64) float64 {
	if both == 0 {
		return math.NaN()
	}
	return float64(conflict) / float64(both)
}

// additive reports whether m has an additive ΔW that adapter.Delta64
// builds: the LoRA family, LoHa, LoKr, VeRA.
func additive(m *adapter.Module) bool {
	return m.IsLowRank() || m.Kind == adapter.KindLoHa || m.Kind == adapter.KindLoKr || m.Kind == adapter.KindVeRA
}

// compareDense returns ⟨ΔW_A,ΔW_B⟩, ‖ΔW_A‖², ‖ΔW_B‖² (and, with signs, the
// sign-conflict rate) from the dense float64 deltas of adapter.Delta64:
// the route for LoHa, LoKr and VeRA, whose ΔW has no B·A form. Cost: both
// modules' out×in·∏k values in float64 at once (bounded by
// adapter.MaxDenseElements each) and O(out·in·r) time to build them.
func compareDense(a *adapter.Adapter, ma *adapter.Module, b *adapter.Adapter, mb *adapter.Module, signs bool) (ab, aa, bb, rate float64, err error) {
	da, va, err := a.Delta64(ma)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	db, vb, err := b.Delta64(mb)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if da.Out != db.Out || da.Cols() != db.Cols() {
		return 0, 0, 0, 0, fmt.Errorf("deltas are %d×%d and %d×%d", da.Out, da.Cols(), db.Out, db.Cols())
	}
	for i, x := range va {
		y := vb[i]
		if math.IsNaN(x+y) || math.IsInf(x+y, 0) {
			return 0, 0, 0, 0, fmt.Errorf("NaN or Inf in the delta")
		}
		ab, aa, bb = ab+x*y, aa+x*x, bb+y*y
	}
	rate = math.NaN()
	if signs {
		var both, conflict int64
		countSigns(va, vb, &both, &conflict)
		rate = conflictRate(both, conflict)
	}
	return ab, aa, bb, rate, nil
}
