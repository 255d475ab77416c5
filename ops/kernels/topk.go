package kernels

import (
	"math"
	"runtime/debug"
	"sync"

	"github.com/adaptool/adaptool/internal/mmapfile"
)

// AbsKey maps v to a uint32 that orders like |v|: the bits of a non-negative
// float32 already sort as the value, so the key is bits(|v|)+1, and a NaN
// gets 0, below every number. It is the ranking of AbsThreshold and
// TopKMask (NaN below +0), for callers that select over data they see in
// pieces.
func AbsKey(v float32) uint32 {
	a := math.Float32bits(v) & 0x7fffffff
	k := a + 1
	if a > 0x7f800000 {
		k = 0
	}
	return k
}

// selection is the outcome of selectKth.
type selection struct {
	t      uint32   // the k-th largest key
	gt     int      // how many keys are > t
	chunks [][2]int // the ranges the last pass counted, in order
	eq     []int    // per chunk, how many keys == t
}

// selectKth finds the k-th largest absKey of x (1 ≤ k ≤ len(x)) by radix
// selection: two passes of 16-bit digits over the data (four passes of 8-bit
// digits below 65536 elements, which stay in cache), each pass building a
// histogram of the next digit among the keys whose higher digits match the
// prefix found so far. Work is O(n) with no sort and no copy of x.
func selectKth(x []float32, k int) selection {
	n := len(x)
	bits := uint(8)
	if n >= 1<<16 {
		bits = 16
	}
	size := 1 << bits
	// Chunks: one per worker, each short enough for uint32 counters.
	nc := max(workers(n), n/(1<<30)+1)
	per := (n + nc - 1) / nc
	var chunks [][2]int
	for lo := 0; lo < n; lo += per {
		chunks = append(chunks, [2]int{lo, min(lo+per, n)})
	}
	hists := make([][]uint32, len(chunks))
	for c := range hists {
		hists[c] = make([]uint32, size)
	}
	var sel selection
	sel.chunks = chunks
	var prefix uint32
	for shift := int(32 - bits); shift >= 0; shift -= int(bits) {
		hs := uint(shift) + bits // keys match when key>>hs == prefix>>hs
		ph := uint32(uint64(prefix) >> hs)
		s := uint(shift)
		mask := uint32(size - 1)
		count := func(c int) {
			h := hists[c]
			clear(h)
			xs := x[chunks[c][0]:chunks[c][1]]
			switch {
			case bits == 16 && shift == 16:
				countHigh16((*[1 << 16]uint32)(h), xs)
			case bits == 16:
				countLow16((*[1 << 16]uint32)(h), xs, ph)
			default:
				for _, v := range xs {
					key := AbsKey(v)
					if uint32(uint64(key)>>hs) == ph {
						h[(key>>(s&31))&mask]++
					}
				}
			}
		}
		if len(chunks) == 1 {
			count(0)
		} else {
			// x may be a mapped file: a fault is re-raised here (see parallel)
			var wg sync.WaitGroup
			var faults mmapfile.Faults
			for c := range chunks {
				wg.Go(func() {
					defer faults.Catch(debug.SetPanicOnFault(true))
					count(c)
				})
			}
			wg.Wait()
			faults.Rethrow()
		}
		d := size - 1
		for ; d > 0; d-- {
			var tot int
			for c := range hists {
				tot += int(hists[c][d])
			}
			if sel.gt+tot >= k {
				break
			}
			sel.gt += tot
		}
		prefix |= uint32(d) << s
		if shift == 0 {
			sel.eq = make([]int, len(chunks))
			for c := range hists {
				sel.eq[c] = int(hists[c][d])
			}
		}
	}
	sel.t = prefix
	return sel
}

// countHigh16 is the first 16-bit pass: h[key>>16]++ for every element.
func countHigh16(h *[1 << 16]uint32, x []float32) {
	for _, v := range x {
		h[uint16(AbsKey(v)>>16)]++
	}
}

// countLow16 is the second 16-bit pass: h[key&0xffff]++ for the elements
// whose key>>16 is hi.
func countLow16(h *[1 << 16]uint32, x []float32, hi uint32) {
	for _, v := range x {
		k := AbsKey(v)
		if k>>16 == hi {
			h[uint16(k)]++
		}
	}
}

// AbsThreshold returns t, the k-th largest |x[i]|, so that keeping the
// elements with |x[i]| ≥ t keeps the k largest (more when |x| ties at t;
// [TopKMask] breaks ties by lower index to keep exactly k). The reference is
//
//	a := abs of x, NaN ranked below +0; sort a descending; return a[k-1]
//
// computed in O(n) without sorting: two histogram passes over the bits of
// |x| (bits of non-negative floats order like their values). k ≤ 0 or an
// empty x gives +Inf; k > len(x) is treated as len(x). The result is NaN only
// when k exceeds the number of non-NaN elements.
func AbsThreshold(x []float32, k int) float32 {
	if k <= 0 || len(x) == 0 {
		return float32(math.Inf(1))
	}
	k = min(k, len(x))
	t := selectKth(x, k).t
	if t == 0 {
		return float32(math.NaN())
	}
	return math.Float32frombits(t - 1)
}

// TopKMask sets mask[i] to whether x[i] is among the k elements of largest
// |x[i]|, ties broken in favour of the lower index, so exactly min(max(k,0),
// len(x)) entries are true. NaN ranks below every number (a NaN is kept only
// when k exceeds the number of non-NaN elements). The reference is
//
//	order := indices sorted by (|x[i]| descending, NaN last, i ascending)
//	for j, i := range order { mask[i] = j < k }
//
// computed in O(n): two histogram passes to find the threshold and one pass
// writing the mask. A tensor whose elements are all equal keeps its first k.
// It panics if len(mask) != len(x).
func TopKMask(mask []bool, x []float32, k int) {
	if len(mask) != len(x) {
		mismatch("TopKMask", "mask", len(mask), "x", len(x))
	}
	n := len(x)
	if k <= 0 {
		clear(mask)
		return
	}
	if k >= n {
		for i := range mask {
			mask[i] = true
		}
		return
	}
	sel := selectKth(x, k)
	need := k - sel.gt // ties at t to keep, lowest indices first
	t := sel.t
	write := func(c, budget int) {
		lo, hi := sel.chunks[c][0], sel.chunks[c][1]
		m := mask[lo:hi]
		for i, v := range x[lo:hi] {
			key := AbsKey(v)
			keep := key > t
			if key == t && budget > 0 {
				keep = true
				budget--
			}
			m[i] = keep
		}
	}
	if len(sel.chunks) == 1 {
		write(0, need)
		return
	}
	var wg sync.WaitGroup
	var faults mmapfile.Faults
	for c := range sel.chunks {
		budget := min(max(need, 0), sel.eq[c])
		need -= sel.eq[c]
		wg.Go(func() {
			defer faults.Catch(debug.SetPanicOnFault(true))
			write(c, budget)
		})
	}
	wg.Wait()
	faults.Rethrow()
}
