package ops

import (
	"math"
	"testing"
)

// The worked 2×3 example of the merging notes §7, reproduced number by
// number. Adapter 1: r = 2, α = 4 (s = 2); adapter 2: r = 2, α = 2 (s = 1);
// w = [1, −0.5].
func example7() ([]*LowRank, []float64) {
	a1 := &LowRank{Out: 2, In: 3, Rank: 2, Scale: 2,
		A: []float32{1, -2, 3, 0.5, 4, -1.5}, B: []float32{1, 0.25, -2, 1.5}}
	a2 := &LowRank{Out: 2, In: 3, Rank: 2, Scale: 1,
		A: []float32{-3, 1, 2.5, 2, -0.75, 1.25}, B: []float32{0.5, -1, 1.5, 2}}
	return []*LowRank{a1, a2}, []float64{1, -0.5}
}

func checkVals(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > tol {
			t.Errorf("%s: %v, want %v", what, got, want)
			return
		}
	}
}

func product(l *LowRank) []float32 {
	p := refProduct(l)
	out := make([]float32, len(p))
	for i, v := range p {
		out[i] = float32(v)
	}
	return out
}

func TestWorkedExample(t *testing.T) {
	in, w := example7()
	checkVals(t, "Δ1", in[0].Dense(), []float64{2.25, -2, 5.25, -2.5, 20, -16.5}, 0)
	checkVals(t, "Δ2", in[1].Dense(), []float64{-3.5, 1.25, 0, -0.5, 0, 6.25}, 0)
	exact := []float64{4, -2.625, 5.25, -2.25, 20, -19.625}

	cat, _, err := MergeModule(MergeParams{Method: "cat", Weights: w}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "cat A", cat.A, []float64{2, -4, 6, 1, 8, -3, 1.5, -0.5, -1.25, -1, 0.375, -0.625}, 0)
	checkVals(t, "cat B", cat.B, []float64{1, 0.25, 0.5, -1, -2, 1.5, 1.5, 2}, 0)
	checkVals(t, "cat B·A", product(cat), exact, 1e-12)

	lin, _, err := MergeModule(MergeParams{Method: "linear", Weights: w}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "linear A", lin.A, []float64{3.5355339, -3.5355339, 2.4748737, -0.7071068, 6.1871843, -3.0052038}, 1e-6)
	checkVals(t, "linear B", lin.B, []float64{1.7677670, -0.3535534, -1.7677670, 3.5355339}, 1e-6)
	checkVals(t, "linear B·A", product(lin), []float64{6.5, -8.4375, 5.4375, -8.75, 28.125, -15}, 1e-5)

	// svd at full rank equals the exact sum; PEFT's snapshot weights w·s
	// (Δ already scaled, so w·s²) give the listed svd input.
	svdRes, _, err := MergeModule(MergeParams{Weights: w}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "svd B·A", product(svdRes), exact, 1e-5)
	snap, _, err := MergeModule(MergeParams{Weights: []float64{2, -0.5}}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "svd input at snapshot", product(snap), []float64{6.25, -4.625, 10.5, -4.75, 40, -36.125}, 1e-5)
	compat, _, err := MergeModule(MergeParams{Weights: w, PEFTCompat: true}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "svd --peft-compat", product(compat), []float64{6.25, -4.625, 10.5, -4.75, 40, -36.125}, 1e-5)

	half := ElementwiseParams{Density: Float(0.5)}
	mp, _, err := MergeModule(MergeParams{Method: "magnitude_prune", Weights: w, FactorSpace: true, ElementwiseParams: half}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "magnitude_prune B·A", product(mp), []float64{0, 0, 0, -8.75, 25, -4.375}, 1e-5)

	ties, _, err := MergeModule(MergeParams{Method: "ties", Weights: w, FactorSpace: true, ElementwiseParams: half}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "ties A", ties.A, []float64{2.1213203, -2.8284271, 1.2374369, -1.4142136, 5.6568542, 0}, 1e-6)
	checkVals(t, "ties B", ties.B, []float64{0, 0, -2.8284271, 1.7677670}, 1e-6)
	checkVals(t, "ties B·A", product(ties), []float64{0, 0, 0, -8.5, 18, -3.5}, 1e-5)

	freq := half
	freq.Majority = "frequency"
	tf, _, err := MergeModule(MergeParams{Method: "ties", Weights: w, FactorSpace: true, ElementwiseParams: freq}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "ties frequency B", tf.B, []float64{0, 0, 1.0606602, 1.7677670}, 1e-6)
	checkVals(t, "ties frequency B·A", product(tf), []float64{0, 0, 0, -0.25, 7, 1.3125}, 1e-5)

	// ties_svd input at the snapshot: the dense ties merge with weights w·s.
	ts := [][]float32{in[0].Dense(), in[1].Dense()}
	got, err := elementwise("ties", ts, []float64{2, -0.5}, half, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "ties_svd input", got, []float64{1.75, -0.625, 10.5, 0, 40, -33}, 0)
	// and ties_svd at full rank reproduces it through the factoring back.
	tsvd, _, err := MergeModule(MergeParams{Method: "ties_svd", Weights: []float64{2, -0.5}, RankParams: RankParams{Rank: 2}, ElementwiseParams: half}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "ties_svd B·A", product(tsvd), []float64{1.75, -0.625, 10.5, 0, 40, -33}, 1e-5)
	tcompat, _, err := MergeModule(MergeParams{Method: "ties_svd", Weights: w, PEFTCompat: true, RankParams: RankParams{Rank: 2}, ElementwiseParams: half}, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, "ties_svd --peft-compat B·A", product(tcompat), []float64{1.75, -0.625, 10.5, 0, 40, -33}, 1e-5)
}
