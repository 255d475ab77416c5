package inspect

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/internal/testgen"
)

// denseDeltaOf builds ΔW (out × in·k) in float64 from generated factors.
func denseDeltaOf(f *testgen.Factors, scale float64) []float64 {
	ink := len(f.A) / f.Rank
	d := make([]float64, f.Out*ink)
	for o := 0; o < f.Out; o++ {
		for i := 0; i < ink; i++ {
			var s float64
			for k := 0; k < f.Rank; k++ {
				c := float64(f.B[o*f.Rank+k])
				if f.Diag != nil {
					c *= float64(f.Diag[k])
				}
				s += c * float64(f.A[k*ink+i])
			}
			d[o*ink+i] = scale * s
		}
	}
	return d
}

// refCompare returns, for two dense deltas in float64, ⟨a,b⟩, ‖a‖², ‖b‖²,
// ‖a−b‖², the positions where both are non-zero and those of opposite signs.
func refCompare(a, b []float64) (dot, aa, bb, dist float64, both, conflict int) {
	for i := range a {
		dot, aa, bb = dot+a[i]*b[i], aa+a[i]*a[i], bb+b[i]*b[i]
		dist += (a[i] - b[i]) * (a[i] - b[i])
		if a[i] != 0 && b[i] != 0 {
			both++
			if (a[i] > 0) != (b[i] > 0) {
				conflict++
			}
		}
	}
	return dot, aa, bb, dist, both, conflict
}

func TestDiffAgainstDense(t *testing.T) {
	common := []testgen.Module{
		{Name: "model.layers.0.q_proj", In: 24, Out: 16},
		{Name: "model.layers.1.conv", In: 3, Out: 5, Kernel: []int{3, 3}},
	}
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	ra, err := testgen.WriteLoRA(dirA, testgen.LoRA{Seed: 11, R: 4, Alpha: 8, Modules: append(common, testgen.Module{Name: "model.layers.0.only_a", In: 4, Out: 4})})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := testgen.WriteLoRA(dirB, testgen.LoRA{Seed: 12, R: 8, Alpha: 4, KaSA: true, Modules: append(common, testgen.Module{Name: "model.layers.0.only_b", In: 4, Out: 4})})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Diff(dirA, dirB, DiffOptions{Dense: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.OnlyInA) != 1 || r.OnlyInA[0] != "model.layers.0.only_a" || len(r.OnlyInB) != 1 || r.OnlyInB[0] != "model.layers.0.only_b" {
		t.Errorf("only in A %v, only in B %v", r.OnlyInA, r.OnlyInB)
	}
	if len(r.Modules) != 2 {
		t.Fatalf("%d common modules", len(r.Modules))
	}
	var dotAll, aaAll, bbAll float64
	for _, m := range r.Modules {
		da := denseDeltaOf(ra.Modules[m.Name], 8.0/4)
		db := denseDeltaOf(rb.Modules[m.Name], 4.0/8)
		dot, aa, bb, dist, both, conflict := refCompare(da, db)
		dotAll, aaAll, bbAll = dotAll+dot, aaAll+aa, bbAll+bb
		if m.Cosine == nil || math.Abs(*m.Cosine-dot/math.Sqrt(aa*bb)) > 1e-9 {
			t.Errorf("%s: cosine %v, dense %g", m.Name, m.Cosine, dot/math.Sqrt(aa*bb))
		}
		if w := math.Sqrt(dist / aa); m.RelativeDistance == nil || math.Abs(*m.RelativeDistance-w) > 1e-7*w {
			t.Errorf("%s: relative distance %v, dense %g", m.Name, m.RelativeDistance, w)
		}
		if w := math.Sqrt(bb / aa); m.NormRatio == nil || math.Abs(*m.NormRatio-w) > 1e-9*w {
			t.Errorf("%s: norm ratio %v, dense %g", m.Name, m.NormRatio, w)
		}
		// the tiles are float32 (kernels.RankUpdate), so entries within
		// float32 rounding of zero may flip; allow one such position
		if w := float64(conflict) / float64(both); m.SignConflict == nil || math.Abs(*m.SignConflict-w) > 1.0/float64(both)+1e-12 {
			t.Errorf("%s: sign conflict %v, dense %g", m.Name, m.SignConflict, w)
		}
	}
	if r.Cosine == nil || math.Abs(*r.Cosine-dotAll/math.Sqrt(aaAll*bbAll)) > 1e-9 {
		t.Errorf("overall cosine %v", r.Cosine)
	}
	// an adapter against itself
	r, err = Diff(dirA, dirA, DiffOptions{Dense: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Modules {
		if m.Cosine == nil || math.Abs(*m.Cosine-1) > 1e-12 || *m.RelativeDistance > 1e-6 || *m.SignConflict != 0 {
			t.Errorf("self diff %s: %+v", m.Name, m)
		}
	}
}

// TestDiffDenseKinds: LoHa, LoKr and VeRA modules (no B·A form) from
// internal/testgen are compared through their dense ΔW; cosine, relative
// distance, norms and the sign-conflict rate match the generators' float64
// RefDelta computed here. A LoRA module against a LoHa one of the same shape
// is compared the same way; a VeRA module whose in_features the file does
// not record is skipped with a reason and null norms.
func TestDiffDenseKinds(t *testing.T) {
	base := t.TempDir()
	lin := testgen.LycoModule{Name: "model.layers.0.q_proj", In: 12, Out: 10}
	conv := testgen.LycoModule{Name: "unet.conv_in", In: 6, Out: 4, Kernel: []int{3, 3}}
	type side func(dir string) (*testgen.LycoResult, error)
	loha := func(seed uint64) side {
		return func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoHa(d, testgen.Lyco{Seed: seed, R: 2, Alpha: 3, EffectiveConv: true, Modules: []testgen.LycoModule{lin, conv}})
		}
	}
	lokr := func(seed uint64) side {
		return func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteLoKr(d, testgen.Lyco{Seed: seed, R: 8, Alpha: 4, Modules: []testgen.LycoModule{lin, conv}})
		}
	}
	vera := func(seed uint64) side {
		return func(d string) (*testgen.LycoResult, error) {
			return testgen.WriteVeRA(d, testgen.VeRA{Seed: seed, R: 3, Modules: []testgen.LycoModule{lin}})
		}
	}
	for _, c := range []struct {
		name string
		a, b side
	}{
		{"loha", loha(41), loha(42)},
		{"lokr", lokr(43), lokr(44)},
		{"vera", vera(45), vera(46)},
		{"loha-vs-lokr", loha(47), lokr(48)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ra, err := c.a(filepath.Join(base, c.name, "a"))
			if err != nil {
				t.Fatal(err)
			}
			rb, err := c.b(filepath.Join(base, c.name, "b"))
			if err != nil {
				t.Fatal(err)
			}
			r, err := Diff(ra.Dir, rb.Dir, DiffOptions{Dense: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Modules) != len(ra.Modules) {
				t.Fatalf("%d common modules, want %d", len(r.Modules), len(ra.Modules))
			}
			var dotAll, aaAll, bbAll float64
			for _, m := range r.Modules {
				da, db := ra.Modules[m.Name].RefDelta(), rb.Modules[m.Name].RefDelta()
				dot, aa, bb, dist, both, conflict := refCompare(da, db)
				dotAll, aaAll, bbAll = dotAll+dot, aaAll+aa, bbAll+bb
				if m.Compared != "dense-delta" {
					t.Fatalf("%s: compared %q", m.Name, m.Compared)
				}
				for _, v := range []struct {
					what      string
					got       *float64
					want, tol float64
				}{
					{"cosine", m.Cosine, dot / math.Sqrt(aa*bb), 1e-12},
					{"relative distance", m.RelativeDistance, math.Sqrt(dist / aa), 1e-10},
					{"norm ratio", m.NormRatio, math.Sqrt(bb / aa), 1e-12},
					{"‖ΔW_A‖", m.NormA, math.Sqrt(aa), 1e-12},
					{"‖ΔW_B‖", m.NormB, math.Sqrt(bb), 1e-12},
					{"sign conflict", m.SignConflict, float64(conflict) / float64(both), 0},
				} {
					if v.got == nil || math.Abs(*v.got-v.want) > v.tol*math.Max(1, math.Abs(v.want)) {
						t.Errorf("%s: %s = %v, float64 reference %.15g", m.Name, v.what, v.got, v.want)
					}
				}
			}
			if r.Cosine == nil || math.Abs(*r.Cosine-dotAll/math.Sqrt(aaAll*bbAll)) > 1e-12 {
				t.Errorf("overall cosine %v, reference %g", r.Cosine, dotAll/math.Sqrt(aaAll*bbAll))
			}
		})
	}
	// VeRA over two modules: in_features is not in the file (the shared
	// vera_A is sliced per layer), so the modules are skipped, norms null.
	two := []testgen.LycoModule{lin, {Name: "model.layers.0.k_proj", In: 8, Out: 10}}
	ra, err := testgen.WriteVeRA(filepath.Join(base, "vera2"), testgen.VeRA{Seed: 49, R: 3, Modules: two})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Diff(ra.Dir, ra.Dir, DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Modules {
		if !strings.HasPrefix(m.Compared, "skipped: ") || !strings.Contains(m.Compared, "in_features") || m.NormA != nil || m.NormB != nil || m.Cosine != nil {
			t.Errorf("VeRA without in_features: %+v", m)
		}
	}
	if r.Cosine != nil {
		t.Errorf("overall cosine %v over no compared module", *r.Cosine)
	}
}
