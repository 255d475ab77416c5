package ops

import (
	"strings"
	"testing"
)

// TestPlanMemory checks the worker count and the hold/stream choice against
// budgets chosen around hand-computed working sets.
func TestPlanMemory(t *testing.T) {
	mods := []ModuleReport{
		{Name: "big", Status: "matched", Out: 4096, In: 11008, InputRanks: []int{16, 16}, Rank: 16},
		{Name: "sq", Status: "matched", Out: 4096, In: 4096, InputRanks: []int{16, 0}, Rank: 16},
		{Name: "small", Status: "partial", Out: 100, In: 30, InputRanks: []int{4, 4}, Rank: 4},
		{Name: "gone", Status: "refused", Out: 1 << 20, In: 1 << 20, InputRanks: []int{64, 64}},
	}
	p := MergeParams{Method: "ties"}
	// big, streamed: factors 4·15104·32, two 64-row tiles of 11008 floats
	// (+ the 2¹⁶-bin histogram), the randomized SVD's 24·15104·26 bytes of
	// sketches, one float64 panel of 64 rows and the operator's tile, the
	// rank-16 result.
	const (
		factors = 4 * 15104 * 32
		tiles   = 2*64*11008*4 + 8<<16
		rsvd    = 24*15104*26 + 8*64*11008 + 4*64*11008
		result  = 4 * 15104 * 16
		held    = 4 * 4096 * 11008
	)
	if got, want := p.moduleMemory(4096, 11008, []int{16, 16}, denseOpts{}), int64(factors+tiles+rsvd+result); got != want {
		t.Fatalf("streamed estimate %d, want %d", got, want)
	}
	if got, want := p.moduleMemory(4096, 11008, []int{16, 16}, denseOpts{cache: true}), int64(factors+tiles+rsvd+result+held); got != want {
		t.Fatalf("held estimate %d, want %d", got, want)
	}
	outputs := int64(4 * (16*(4096+11008) + 16*(4096+4096) + 4*130))
	for _, c := range []struct {
		budget            int64
		workers, streamed int
		warn              bool
	}{
		{8 << 30, 4, 0, false},                                 // everything held, four workers
		{outputs + 3*(factors+tiles+rsvd+result), 3, 2, false}, // three streamed modules fit
		{outputs + 1<<20, 1, 2, true},                          // not even one module: one worker, a warning
	} {
		mp, opts, warn := p.planMemory(mods, RunOptions{Workers: 4, MaxMemory: c.budget})
		if mp.Workers != min(c.workers, 4) || mp.Streamed != c.streamed || mp.Streamed+mp.Cached != 2 || (len(warn) > 0) != c.warn {
			t.Errorf("budget %d: plan %+v, warnings %q", c.budget, mp, warn)
		}
		if mp.OutputBytes != outputs || mp.Largest != "big" {
			t.Errorf("budget %d: outputs %d (want %d), largest %q", c.budget, mp.OutputBytes, outputs, mp.Largest)
		}
		if opts[0].cache != (c.streamed == 0) || opts[2].cache {
			t.Errorf("budget %d: options %+v", c.budget, opts)
		}
		if c.warn && !strings.Contains(warn[0], "exceeds the budget") {
			t.Errorf("warning %q", warn[0])
		}
		if !c.warn && mp.PeakBytes > c.budget {
			t.Errorf("budget %d: peak %d above it", c.budget, mp.PeakBytes)
		}
	}
	// svd needs no tiles: a small QR-core working set.
	if got := (MergeParams{}).moduleMemory(4096, 11008, []int{16, 16}, denseOpts{}); got > 16<<20 {
		t.Errorf("svd estimate %d bytes", got)
	}
}
