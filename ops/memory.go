package ops

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
)

// DefaultMaxMemory is the working-memory budget of a merge when
// RunOptions.MaxMemory is 0: 2 GiB.
const DefaultMaxMemory int64 = 2 << 30

// MemoryPlan says how a merge keeps within its memory budget (Report.Memory).
// Byte figures are estimates of the working set (float32 tiles and
// matrices, float64 sketches and factorizations, the result factors), not
// measurements; the input files are memory-mapped and not counted.
type MemoryPlan struct {
	// MaxMemory is the budget in bytes (--max-memory).
	MaxMemory int64 `json:"max_memory"`
	// Workers is the number of modules merged at once: at most GOMAXPROCS
	// (or RunOptions.Workers), fewer when the largest module's working set
	// times the workers would exceed the budget.
	Workers int `json:"workers"`
	// Streamed counts the elementwise modules whose merged matrix is rebuilt
	// tile by tile for each product of the randomized SVD; Cached those held
	// whole while they are factored (when the budget allows: faster).
	Streamed int `json:"streamed"`
	Cached   int `json:"cached"`
	// Largest names the module with the largest working set, of
	// LargestBytes.
	Largest      string `json:"largest_module,omitempty"`
	LargestBytes int64  `json:"largest_module_bytes"`
	// OutputBytes are the result factors held until the output is written.
	OutputBytes int64 `json:"output_bytes"`
	// PeakBytes is the estimated peak: OutputBytes plus the Workers largest
	// module working sets.
	PeakBytes int64 `json:"peak_bytes"`
}

// denseMethod reports whether the merge runs an elementwise method on the
// dense deltas (mergeDense).
func (p MergeParams) denseMethod() bool {
	m := p.method()
	base := strings.TrimSuffix(m, "_svd")
	switch {
	case m == "cat", m == "svd", m == "linear":
		return false
	case m == "task_arithmetic":
		return false // QR-core, or factor-space
	case p.FactorSpace && m == base:
		return false
	}
	return true
}

// moduleMemory estimates the working set in bytes of merging one out×in
// module with the given input ranks (0 = absent).
func (p MergeParams) moduleMemory(out, in int, ranks []int, o denseOpts) int64 {
	n, r := 0, 0
	for _, k := range ranks {
		if k > 0 {
			n++
			r += k
		}
	}
	O, I, R := int64(out), int64(in), int64(r)
	small := exactSmall(out, in, p.RankParams, maxOf(ranks))
	factors := 4 * (O + I) * R // the inputs' factors, float32
	k := int64(p.plannedRank(ranks, out, in))
	result := 4 * (O + I) * k
	if !p.denseMethod() {
		// QR-core: the weighted stacks and their bases in float64, the core
		// and its SVD, the result.
		return 2*factors + 16*(O+I)*R + 32*R*R + result
	}
	th := int64(o.rows(in))
	l := min(k+10, O, I)
	rsvd := 24*(O+I)*l + 8*64*I + 4*min(th, O)*I // sketches and bases, a float64 panel, the operator's tile
	exact := 24 * O * I                          // LAPACK thin SVD: float64 copy and U, Vᵀ
	x := 4 * O * I
	if O <= th { // built whole
		if small {
			return factors + int64(n+1)*x + exact + result
		}
		return factors + int64(n+1)*x + rsvd + result
	}
	tiles := int64(n)*th*I*4 + 8<<16
	switch {
	case small:
		return factors + tiles + x + exact + result
	case o.cache:
		return factors + tiles + x + rsvd + result
	}
	return factors + tiles + rsvd + result
}

// planMemory chooses the worker count and, per module, whether an
// elementwise merge holds its merged matrix, so that the estimated peak
// stays within the budget when it can; mods are the report's modules.
func (p MergeParams) planMemory(mods []ModuleReport, o RunOptions) (*MemoryPlan, []denseOpts, []string) {
	budget := o.MaxMemory
	if budget <= 0 {
		budget = DefaultMaxMemory
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, len(mods)))
	mp := &MemoryPlan{MaxMemory: budget}
	opts := make([]denseOpts, len(mods))
	est := make([]int64, len(mods))
	var largest int64
	for i, m := range mods {
		if m.Status == "refused" || m.Status == "removed" {
			continue
		}
		est[i] = p.moduleMemory(m.Out, m.In, m.InputRanks, opts[i])
		largest = max(largest, est[i])
		mp.OutputBytes += 4 * int64(m.Rank) * int64(m.Out+m.In)
	}
	avail := budget - mp.OutputBytes
	w := workers
	if largest > 0 {
		w = int(max(1, min(int64(workers), avail/largest)))
	}
	mp.Workers = w
	dense := p.denseMethod()
	for i, m := range mods {
		if est[i] == 0 {
			continue
		}
		if dense && m.Out > opts[i].rows(m.In) && !exactSmall(m.Out, m.In, p.RankParams, maxOf(m.InputRanks)) {
			c := denseOpts{cache: true}
			if e := p.moduleMemory(m.Out, m.In, m.InputRanks, c); e <= avail/int64(w) {
				opts[i], est[i] = c, e
				mp.Cached++
			} else {
				mp.Streamed++
			}
		}
		if est[i] > mp.LargestBytes {
			mp.Largest, mp.LargestBytes = m.Name, est[i]
		}
	}
	top := slices.Clone(est)
	slices.Sort(top)
	slices.Reverse(top)
	mp.PeakBytes = mp.OutputBytes
	for _, e := range top[:min(w, len(top))] {
		mp.PeakBytes += e
	}
	var warn []string
	if mp.PeakBytes > budget {
		warn = append(warn, fmt.Sprintf("estimated peak memory %s exceeds the budget %s (module %s alone needs %s; outputs %s): running %d worker(s)",
			fmtBytes(mp.PeakBytes), fmtBytes(budget), mp.Largest, fmtBytes(mp.LargestBytes), fmtBytes(mp.OutputBytes), w))
	}
	return mp, opts, warn
}

// fmtBytes formats n in MiB or GiB.
func fmtBytes(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// maxOf returns the largest of ranks (0 for none).
func maxOf(ranks []int) int {
	r := 0
	for _, k := range ranks {
		r = max(r, k)
	}
	return r
}
