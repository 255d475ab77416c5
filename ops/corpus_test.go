package ops

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
	"github.com/adaptool/adaptool/svd"
)

// loadFactored loads every finite low-rank module of an adapter.
func loadFactored(t *testing.T, dir string) map[string]*LowRank {
	t.Helper()
	a, err := adapter.Load(dir)
	if err != nil {
		t.Fatalf("reload %s: %v", dir, err)
	}
	defer a.Close()
	out := map[string]*LowRank{}
	for _, m := range a.Modules {
		if m.IsLowRank() && m.Kind != adapter.KindDoRA && m.Experts == 0 {
			if l, _, err := lowRankOf(a, m); err == nil {
				out[m.Name] = l
			}
		}
	}
	return out
}

// factoredRelDiff returns ‖X − c·Y‖_F / ‖Y‖_F from Gram inner products
// (svd.Inner, tested against dense math in package svd), without forming
// the deltas: ‖X‖² + c²‖Y‖² − 2c⟨X, Y⟩.
func factoredRelDiff(t *testing.T, x, y *LowRank, c float64) float64 {
	t.Helper()
	if x == nil {
		t.Fatal("module missing from the output")
	}
	xa, ya := x.foldedA(), y.foldedA()
	xx, err1 := svd.Inner(x.B, xa, x.Rank, x.B, xa, x.Rank)
	yy, err2 := svd.Inner(y.B, ya, y.Rank, y.B, ya, y.Rank)
	xy, err3 := svd.Inner(x.B, xa, x.Rank, y.B, ya, y.Rank)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	sx, sy := x.Scale, c*y.Scale
	d := sx*sx*xx + sy*sy*yy - 2*sx*sy*xy
	n := sy * sy * yy
	if n == 0 {
		return math.Sqrt(math.Max(d, 0))
	}
	return math.Sqrt(math.Max(d, 0) / n)
}

// corpusDir returns the shared corpus root or skips (apply_test.go uses it).
func corpusDir(t *testing.T) string { return testcorpus.Dir(t) }

// TestCorpusRoundTrips runs resize (at full rank: ΔW must be unchanged),
// neg (exactly −ΔW) and a self-merge svd over every corpus adapter. An
// operation may refuse an input, but only with a sentinel error that names
// the module; nothing panics and no output is written on refusal.
func TestCorpusRoundTrips(t *testing.T) {
	root, rows := testcorpus.Manifest(t)
	expected := func(err error) bool {
		return errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNonFinite) || errors.Is(err, ErrIncompatible) || errors.Is(err, errNoModules) ||
			safetensors.IsFormatError(err) || errors.Is(err, adapter.ErrUnsupported) || errors.Is(err, adapter.ErrConfig) ||
			errors.Is(err, adapter.ErrNoAdapter) || errors.Is(err, adapter.ErrShape)
	}
	for _, r := range rows {
		in := r.DirPath(root)
		t.Run(r.Dir, func(t *testing.T) {
			orig, err := adapter.Load(in)
			if err != nil {
				if r.OK() || !expected(err) {
					t.Fatalf("load (manifest: %s): %v", r.Expect, err)
				}
				return
			}
			if !r.OK() {
				orig.Close()
				t.Fatalf("loaded, but the manifest expects %s", r.Expect)
			}
			before := map[string]*LowRank{}
			for _, m := range orig.Modules {
				if m.IsLowRank() && m.Kind != adapter.KindDoRA && m.Experts == 0 {
					if l, _, err := lowRankOf(orig, m); err == nil {
						before[m.Name] = l
					}
				}
			}
			orig.Close()

			out := filepath.Join(t.TempDir(), "resize")
			rep, err := ResizeAdapter(in, RankParams{Rank: 1 << 20}, RunOptions{Output: out})
			switch {
			case err != nil && !expected(err):
				t.Errorf("resize: unexpected error: %v", err)
			case err != nil:
				t.Logf("resize refused: %v", err)
				if _, serr := os.Stat(out); serr == nil {
					t.Errorf("resize refused (%v) but wrote %s", err, out)
				}
			default:
				after := loadFactored(t, out)
				for _, m := range rep.Modules {
					if m.Status != "matched" || before[m.Name] == nil {
						continue
					}
					if e := factoredRelDiff(t, after[m.Name], before[m.Name], 1); e > 1e-5 {
						t.Errorf("resize at full rank changed %s: relative error %g", m.Name, e)
					}
				}
			}

			out = filepath.Join(t.TempDir(), "neg")
			if _, err := NegateAdapter(in, true, RunOptions{Output: out}); err != nil {
				t.Logf("neg refused: %v", err)
				if !expected(err) {
					t.Errorf("neg: unexpected error: %v", err)
				}
			} else {
				after := loadFactored(t, out)
				for name, l := range before {
					if e := factoredRelDiff(t, after[name], l, -1); e > 1e-12 {
						t.Errorf("neg %s: ‖ΔW′ + ΔW‖/‖ΔW‖ = %g", name, e)
					}
				}
			}

			if _, err := Merge([]string{in, in}, MergeParams{Weights: []float64{0.5, 0.5}}, RunOptions{DryRun: true}); err != nil && !expected(err) {
				t.Errorf("merge plan: unexpected error: %v", err)
			}
		})
	}
}
