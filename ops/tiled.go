package ops

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/adaptool/adaptool/svd"
)

// denseOpts bound the memory of the elementwise methods (mergeDense).
type denseOpts struct {
	// tileRows is the height of a row tile (rounded down to a multiple of
	// 64, at least 64); 0 means defaultTileBytes of float32 per tile.
	tileRows int
	// cache holds the merged out×in matrix (4·out·in bytes) while it is
	// factored back to rank K, instead of rebuilding its tiles for each of
	// the randomized SVD's products.
	cache bool
}

// defaultTileBytes is the size of one float32 row tile (the elementwise
// methods hold N+2 of them, N the input count).
const defaultTileBytes = 4 << 20

// rows returns the tile height for an out×in module.
func (o denseOpts) rows(in int) int {
	h := o.tileRows
	if h <= 0 {
		h = defaultTileBytes / (4 * max(in, 1))
	}
	return max(64, h&^63)
}

// denseExactLimit is the largest min(out, in) factored by exact LAPACK SVD.
const denseExactLimit = 512

// sketchOversample is the randomized SVD's oversampling p (its default).
const sketchOversample = 10

// exactSmall reports whether an out×in result is factored by exact SVD
// (LAPACK Dgesvd, O(out·in·min(out, in))) rather than by randomized SVD
// (O(out·in·(K+p)·(2q+2))): only when min(out, in) ≤ 512, out·in ≤ 2²⁴ and
// either the sketch would span at least half of min(out, in) (K+p ≥
// min(out, in)/2, where the randomized route saves nothing) or the rank is
// chosen from the whole spectrum (energy or threshold without a rank cap).
// def is the default rank K (the largest input rank).
func exactSmall(out, in int, rp RankParams, def int) bool {
	if min(out, in) > denseExactLimit || int64(out)*int64(in) > 1<<24 {
		return false
	}
	if rp.Rank == 0 && (rp.Energy > 0 || rp.Threshold > 0) {
		return true
	}
	return 2*(max(rankCap(rp, def), 1)+sketchOversample) >= min(out, in)
}

// mergeDense applies an elementwise method (ties, dare_linear, dare_ties,
// magnitude_prune) to the dense deltas Δᵢ = sᵢ·Bᵢ·Dᵢ·Aᵢ of one module and
// factors the result back to rank K: by randomized SVD (oversampling 10, 2
// power iterations, seeded), or exactly (LAPACK) when exactSmall says so.
//
// A module of at most one tile of rows is built whole. A taller one is
// streamed in row tiles rebuilt from the factors (kernels.RankUpdate gives
// the same bits for any row range): per input, the global top-k threshold
// of |Δᵢ| comes from a two-pass radix selection over the tiles (with the
// number of ties at the threshold kept per tile, lowest index first), DARE's
// mask is counter-based, and the merged tile is the same elementwise
// function of the input tiles. The result equals the untiled computation
// bit for bit; memory is O(N·tile) plus, with o.cache or for the exact SVD,
// the merged matrix.
func mergeDense(method string, in []*LowRank, w []float64, ep ElementwiseParams, rp RankParams, key uint64, o denseOpts) (*LowRank, ModuleStats, error) {
	out, inF, err := shapeOf(in)
	if err != nil {
		return nil, ModuleStats{}, err
	}
	if len(w) != len(in) {
		return nil, ModuleStats{}, errWeights(len(w), len(in))
	}
	seed := ep.Seed ^ key
	th := o.rows(inF)
	if out <= th {
		ts := make([][]float32, len(in))
		for i, l := range in {
			if l != nil {
				ts[i] = l.Dense()
			}
		}
		res, err := elementwise(method, ts, w, ep, key)
		if err != nil {
			return nil, ModuleStats{}, err
		}
		clear(ts)
		return factorDense(out, inF, res, rp, maxRank(in), seed)
	}
	tm, err := newTiledMerge(method, in, w, ep, key, th)
	if err != nil {
		return nil, ModuleStats{}, err
	}
	if o.cache || exactSmall(out, inF, rp, maxRank(in)) {
		x := make([]float32, out*inF)
		for r0 := 0; r0 < out; r0 += th {
			h := min(th, out-r0)
			tm.fill(r0, h, x[r0*inF:(r0+h)*inF])
		}
		tm.release()
		return factorDense(out, inF, x, rp, maxRank(in), seed)
	}
	// Stream: the first product visits every tile in order and sums ‖x‖².
	var total float64
	seen := 0
	op := svd.RowTiles{Rows: out, Cols: inF, TileRows: th, Fill: func(r0, h int, dst []float32) {
		tm.fill(r0, h, dst)
		if seen < out && r0 == seen {
			total += kernels.SumSquares(dst)
			seen += h
		}
	}}
	d, err := svd.Randomized(op, max(rankCap(rp, maxRank(in)), 1), svd.RandomizedOptions{Seed: seed})
	if math.IsNaN(total) || math.IsInf(total, 0) {
		return nil, ModuleStats{}, fmt.Errorf("%w: the merged delta has a non-finite element", svd.ErrNonFinite)
	}
	if err != nil {
		return nil, ModuleStats{}, err
	}
	return finishFactor(d, rp, maxRank(in), total)
}

// rankCap is the rank a randomized factorization computes.
func rankCap(rp RankParams, def int) int {
	if rp.Rank > 0 {
		return rp.Rank
	}
	return def
}

// factorDense returns the rank-k factors of the dense out×in matrix x.
func factorDense(out, in int, x []float32, rp RankParams, def int, seed uint64) (*LowRank, ModuleStats, error) {
	total := kernels.SumSquares(x)
	var d *svd.Decomposition
	var err error
	if exactSmall(out, in, rp, def) {
		d, err = svd.Dense(out, in, x)
	} else {
		d, err = svd.Randomized(svd.Matrix32{Rows: out, Cols: in, Data: x}, max(rankCap(rp, def), 1), svd.RandomizedOptions{Seed: seed})
	}
	if err != nil {
		return nil, ModuleStats{}, err
	}
	return finishFactor(d, rp, def, total)
}

// finishFactor chooses the rank of d (energy relative to the exact ‖x‖² =
// total, not to the sketch) and splits it.
func finishFactor(d *svd.Decomposition, rp RankParams, def int, total float64) (*LowRank, ModuleStats, error) {
	var k int
	if rp.Energy > 0 && total > 0 {
		cum := 0.0
		for _, s := range d.Values() {
			if cum >= rp.Energy*total {
				break
			}
			cum += s * s
			k++
		}
		if rp.Rank > 0 {
			k = min(k, rp.Rank)
		}
		k = max(1, min(k, d.Len()))
	} else {
		k = rp.choose(d, def)
	}
	m, n := d.Dims()
	b, a := splitPadded(d, k)
	var kept float64
	for _, s := range d.Values()[:min(k, d.Len())] {
		kept += s * s
	}
	st := ModuleStats{Rank: k, Energy: 1, FroError: math.Sqrt(math.Max(total-kept, 0)), Norm: math.Sqrt(total)}
	if total > 0 {
		st.Energy = math.Min(kept/total, 1)
	}
	return &LowRank{Out: m, In: n, Rank: k, B: b, A: a, Scale: 1}, st, nil
}

// topk is a global top-k selection over the tiles of one tensor: keep the
// elements whose key is > t, and of those equal to t the first need in
// index order.
type topk struct {
	t    uint32
	need int
}

// tiledMerge rebuilds tiles of an elementwise merge on demand.
type tiledMerge struct {
	method    string
	out, in   int
	th        int // tile rows
	src       []*LowRank
	fa        [][]float32 // folded A (D·A) per input
	w         []float64
	d         float64
	frequency bool
	sel       []topk      // per input (magnitude_prune, ties)
	left      []int       // per input, ties at sel.t still to keep in this sweep
	state     []uint64    // per input DARE stream
	factor    []float64   // per input DARE rescale (0: none)
	bufs      [][]float32 // per input tile scratch
	ts        [][]float32 // per input view of the current tile (nil = absent)
}

func newTiledMerge(method string, in []*LowRank, w []float64, ep ElementwiseParams, key uint64, th int) (*tiledMerge, error) {
	d, err := ep.density()
	if err != nil {
		return nil, err
	}
	switch method {
	case "magnitude_prune", "ties", "dare_linear", "dare_ties", "task_arithmetic":
	default:
		return nil, fmt.Errorf("%w: unknown elementwise method %q", ErrParams, method)
	}
	out, inF, _ := shapeOf(in)
	tm := &tiledMerge{method: method, out: out, in: inF, th: th, src: in, w: w, d: d, frequency: ep.Majority == "frequency",
		fa: make([][]float32, len(in)), sel: make([]topk, len(in)), left: make([]int, len(in)), state: make([]uint64, len(in)), factor: make([]float64, len(in)),
		bufs: make([][]float32, len(in)), ts: make([][]float32, len(in))}
	for i, l := range in {
		if l == nil {
			continue
		}
		tm.fa[i] = l.foldedA()
		tm.bufs[i] = make([]float32, th*inF)
	}
	if d >= 1 {
		return tm, nil
	}
	for i, l := range in {
		if l == nil {
			continue
		}
		switch method {
		case "magnitude_prune", "ties":
			tm.sel[i] = tm.selectTopK(i, int(math.Floor(d*float64(out*inF))))
		case "dare_linear", "dare_ties":
			tm.state[i] = ep.stream(key, i)
			var l1 [2]float64
			if ep.Rescale == "l1" {
				for r0 := 0; r0 < out; r0 += th {
					t := tm.delta(i, r0, min(th, out-r0))
					dareDrop(t, uint64(r0*inF), d, tm.state[i], &l1)
				}
			}
			if f, ok := dareFactor(d, ep.Rescale, l1); ok {
				tm.factor[i] = f
			}
		}
	}
	return tm, nil
}

// release drops the tile buffers.
func (tm *tiledMerge) release() { clear(tm.bufs); clear(tm.ts) }

// delta rebuilds rows [r0, r0+h) of Δᵢ into input i's tile buffer.
func (tm *tiledMerge) delta(i, r0, h int) []float32 {
	l := tm.src[i]
	t := tm.bufs[i][:h*tm.in]
	clear(t)
	if l.Rank > 0 {
		kernels.RankUpdate(t, h, tm.in, float32(l.Scale), l.B[r0*l.Rank:(r0+h)*l.Rank], tm.fa[i], l.Rank)
	}
	return t
}

// selectTopK finds input i's global top-k selection (as kernels.TopKMask:
// ties at the threshold to the lower index) by radix selection on the
// 16-bit halves of kernels.AbsKey, each pass rebuilding the tiles.
func (tm *tiledMerge) selectTopK(i, k int) topk {
	if k <= 0 {
		return topk{t: math.MaxUint32}
	}
	hist := make([]int, 1<<16)
	var s topk
	var prefix uint32
	for pass := 0; pass < 2; pass++ {
		clear(hist)
		hi := prefix >> 16
		for r0 := 0; r0 < tm.out; r0 += tm.th {
			t := tm.delta(i, r0, min(tm.th, tm.out-r0))
			if pass == 0 {
				for _, v := range t {
					hist[kernels.AbsKey(v)>>16]++
				}
				continue
			}
			for _, v := range t {
				if key := kernels.AbsKey(v); key>>16 == hi {
					hist[key&0xffff]++
				}
			}
		}
		dg := len(hist) - 1
		for ; dg > 0; dg-- {
			if s.need+hist[dg] >= k { // s.need counts the keys above so far
				break
			}
			s.need += hist[dg]
		}
		if pass == 0 {
			prefix = uint32(dg) << 16
		} else {
			prefix |= uint32(dg)
		}
	}
	s.t = prefix
	s.need = k - s.need
	return s
}

// fill writes rows [r0, r0+h) of the merged result into dst. Calls come in
// sweeps over the tiles in row order, each starting at r0 = 0 (as
// svd.RowTiles makes them), since the ties at a top-k threshold are kept
// lowest index first.
func (tm *tiledMerge) fill(r0, h int, dst []float32) {
	off := uint64(r0 * tm.in)
	for i, l := range tm.src {
		if l == nil {
			tm.ts[i] = nil
			continue
		}
		t := tm.delta(i, r0, h)
		tm.ts[i] = t
		if tm.d >= 1 {
			continue
		}
		switch tm.method {
		case "magnitude_prune", "ties":
			s := tm.sel[i]
			if r0 == 0 {
				tm.left[i] = s.need
			}
			left := tm.left[i]
			for j, v := range t {
				key := kernels.AbsKey(v)
				keep := key > s.t
				if key == s.t && left > 0 {
					keep = true
					left--
				}
				if !keep {
					t[j] = 0
				}
			}
			tm.left[i] = left
		case "dare_linear", "dare_ties":
			var l1 [2]float64
			dareDrop(t, off, tm.d, tm.state[i], &l1)
			if f := tm.factor[i]; f != 0 {
				dareScale(t, f)
			}
		}
	}
	if tm.method == "ties" || tm.method == "dare_ties" {
		disjointMerge(dst, tm.ts, tm.w, tm.frequency)
	} else {
		weightedSum(dst, tm.ts, tm.w)
	}
}
