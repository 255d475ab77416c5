package kernels

import (
	"math"
	"math/bits"
	"sync"
)

// Stats are the fused value statistics of a slice: one pass computes the
// extremes, the centred first two moments and the class counts.
//
// Min, Max, Sum and SumSq are over the finite values only (NaN and ±Inf are
// counted, never used). The sums are centred on Shift, the first finite
// value of the slice (0 when there is none): Sum = Σ(v−Shift) and
// SumSq = Σ(v−Shift)², accumulated in float64, so that the variance does
// not cancel when the mean is large relative to the spread. Zeros counts +0
// and −0; Denormal counts the subnormals of the STORED dtype (an F16
// subnormal is a normal float32 but is counted); NaN and Inf count the
// non-finite values (E4M3FN has no Inf).
type Stats struct {
	N, Finite                 int64
	Min, Max                  float64 // +Inf/−Inf when Finite == 0
	Shift                     float64
	Sum, SumSq                float64
	Zeros, NaN, Inf, Denormal int64
}

// Mean returns the mean of the finite values (NaN when there is none).
func (s *Stats) Mean() float64 {
	if s.Finite == 0 {
		return math.NaN()
	}
	return s.Shift + s.Sum/float64(s.Finite)
}

// Std returns the population standard deviation of the finite values
// (NaN when there is none).
func (s *Stats) Std() float64 {
	if s.Finite == 0 {
		return math.NaN()
	}
	n := float64(s.Finite)
	m := s.Sum / n
	return math.Sqrt(math.Max(0, s.SumSq/n-m*m))
}

// Norm returns the Euclidean norm √Σv² of the finite values, from the
// centred sums: Σv² = Σd² + 2·Shift·Σd + n·Shift².
func (s *Stats) Norm() float64 {
	n := float64(s.Finite)
	return math.Sqrt(math.Max(0, s.SumSq+2*s.Shift*s.Sum+n*s.Shift*s.Shift))
}

// Merge adds the statistics of o (another part of the same data) into s,
// re-centring o's sums on s.Shift when the shifts differ:
// Σ(v−a) = Σ(v−b) + n·(b−a) and Σ(v−a)² = Σ(v−b)² + 2(b−a)Σ(v−b) + n(b−a)².
func (s *Stats) Merge(o Stats) {
	s.N += o.N
	s.Zeros += o.Zeros
	s.NaN += o.NaN
	s.Inf += o.Inf
	s.Denormal += o.Denormal
	if o.Finite == 0 {
		return
	}
	if s.Finite == 0 {
		s.Finite, s.Shift, s.Sum, s.SumSq, s.Min, s.Max = o.Finite, o.Shift, o.Sum, o.SumSq, o.Min, o.Max
		return
	}
	d := o.Shift - s.Shift
	nb := float64(o.Finite)
	s.SumSq += o.SumSq + 2*d*o.Sum + nb*d*d
	s.Sum += o.Sum + nb*d
	s.Finite += o.Finite
	s.Min = math.Min(s.Min, o.Min)
	s.Max = math.Max(s.Max, o.Max)
}

// Smallest-normal thresholds as float32 bit patterns: a finite nonzero value
// whose |bits| is below the threshold is subnormal in the stored dtype.
const (
	minNormalF32  = 0x00800000 // 2⁻¹²⁶ (also BF16's)
	minNormalF16  = 0x38800000 // 2⁻¹⁴ (also E5M2's)
	minNormalE4M3 = 0x3c800000 // 2⁻⁶
)

// statBuf is the conversion block of the 16-bit and 8-bit statistics: 4096
// float32 = 16 KiB, in L1/L2 while the fused pass reads it back.
const statBuf = 4096

var statBufPool = sync.Pool{New: func() any { return new([statBuf]float32) }}

// StatsF32 returns the statistics of x. The result depends only on x (the
// blocks of 65536 elements are summed in order whatever GOMAXPROCS is);
// large slices are split across cores.
func StatsF32(x []float32) Stats {
	shift, _ := firstFinite32(x)
	return statsBlocks(len(x), shift, func(lo, hi int, acc *statLanes) {
		acc.add(x[lo:hi], minNormalF32)
	})
}

// StatsBF16 returns the statistics of bfloat16 values given as their bits.
// BF16 shares float32's exponent, so float32 classification is exact.
func StatsBF16(src []uint16) Stats {
	return stats16(src, cur.bf16ToF32, func(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }, minNormalF32)
}

// StatsF16 returns the statistics of IEEE binary16 values given as their
// bits; Denormal counts binary16 subnormals.
func StatsF16(src []uint16) Stats {
	return stats16(src, cur.f16ToF32, f16Value, minNormalF16)
}

// StatsF8E4M3 returns the statistics of E4M3FN values (no Inf; S.1111.111
// is NaN); Denormal counts E4M3 subnormals.
func StatsF8E4M3(src []uint8) Stats {
	return stats8(src, cur.f8E4M3ToF32, minNormalE4M3)
}

// StatsF8E5M2 returns the statistics of E5M2 values; Denormal counts E5M2
// subnormals.
func StatsF8E5M2(src []uint8) Stats {
	return stats8(src, cur.f8E5M2ToF32, minNormalF16)
}

// StatsF64 returns the statistics of float64 values; Denormal counts
// float64 subnormals.
func StatsF64(x []float64) Stats {
	var shift float64
	for _, v := range x {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			shift = v
			break
		}
	}
	return statsBlocks(len(x), shift, func(lo, hi int, acc *statLanes) { acc.add64(x[lo:hi]) })
}

func f16Value(h uint16) float32 {
	var d [1]float32
	f16ToF32Generic(d[:], []uint16{h})
	return d[0]
}

func stats16(src []uint16, conv func([]float32, []uint16), one func(uint16) float32, thr uint32) Stats {
	var fill float32
	for _, h := range src {
		if v := one(h); !isNonFinite32(v) {
			fill = v
			break
		}
	}
	// the 16-bit thresholds: smallest normal and the all-ones exponent
	thr16, nonFin16 := uint16(0x0080), uint16(0x7f80) // BF16
	if thr == minNormalF16 {
		thr16, nonFin16 = 0x0400, 0x7c00 // F16
	}
	return statsBlocks(len(src), 0, func(lo, hi int, acc *statLanes) {
		acc.shiftBits = math.Float32bits(fill)
		buf := statBufPool.Get().(*[statBuf]float32)
		for i := lo; i < hi; i += statBuf {
			j := min(hi, i+statBuf)
			b := buf[:j-i]
			h := src[i:j]
			conv(b, h)
			z, below, nf := classify16(h, thr16, nonFin16)
			if nf != 0 {
				acc.add(b, thr) // rare: masked pass, classes from the float32 values
				continue
			}
			acc.zeros += z
			acc.below += below
			kmin, kmax := keyRange16(h)
			acc.mn[0] = min(acc.mn[0], one(keyCode16(kmin)))
			acc.mx[0] = max(acc.mx[0], one(keyCode16(kmax)))
			acc.sums(b)
		}
		statBufPool.Put(buf)
	})
}

// keyRange16 returns the smallest and largest order key of sign-magnitude
// 16-bit codes: k = int16(h) with the magnitude bits flipped for negative
// codes, which orders codes as their values (−0 just below +0).
func keyRange16(h []uint16) (kmin, kmax int32) {
	mn0, mn1 := int32(math.MaxInt32), int32(math.MaxInt32)
	mx0, mx1 := int32(math.MinInt32), int32(math.MinInt32)
	i := 0
	for ; i+2 <= len(h); i += 2 {
		v := h[i : i+2 : i+2]
		k0, k1 := int32(int16(v[0])), int32(int16(v[1]))
		k0 ^= k0 >> 31 & 0x7fff
		k1 ^= k1 >> 31 & 0x7fff
		mn0, mn1 = min(mn0, k0), min(mn1, k1)
		mx0, mx1 = max(mx0, k0), max(mx1, k1)
	}
	for ; i < len(h); i++ {
		k := int32(int16(h[i]))
		k ^= k >> 31 & 0x7fff
		mn0, mx0 = min(mn0, k), max(mx0, k)
	}
	return min(mn0, mn1), max(mx0, mx1)
}

// keyCode16 inverts the order key of keyRange16.
func keyCode16(k int32) uint16 {
	return uint16(k ^ (k >> 31 & 0x7fff))
}

// sums adds Σx and Σx² (float64, unshifted: the caller's shift is 0) of
// finite x through the Dot and SumSquares lane bodies.
func (l *statLanes) sums(x []float32) {
	m := len(x) &^ (lanes - 1)
	l.s[1] += cur.dotLanes(x[:m], statOnes[:m])
	l.q[1] += cur.sumSquaresLanes(x[:m])
	for _, v := range x[m:] {
		l.s[2] += float64(v)
		l.q[2] += float64(v) * float64(v)
	}
}

// statOnes is the all-ones operand of sums (Σx = x·1, exact products).
var statOnes = func() *[statBuf]float32 {
	var o [statBuf]float32
	for i := range o {
		o[i] = 1
	}
	return &o
}()

// classify16 counts, four codes per 64-bit word (SWAR), the codes whose
// magnitude |h| = h&0x7fff is zero, below thr, and at least nonFin. Adding
// 0x8000−t to a 15-bit magnitude sets bit 15 exactly when |h| ≥ t and never
// carries into the next lane.
func classify16(src []uint16, thr, nonFin uint16) (zeros, below, nonFinite int64) {
	const (
		mag  = 0x7fff_7fff_7fff_7fff
		high = 0x8000_8000_8000_8000
		ones = 0x0001_0001_0001_0001
	)
	kz := uint64(0x7fff) * ones
	kb := uint64(0x8000-thr) * ones
	kn := uint64(0x8000-nonFin) * ones
	var nz, nb, nn int
	i := 0
	for ; i+4 <= len(src); i += 4 {
		s := src[i : i+4 : i+4]
		w := (uint64(s[0]) | uint64(s[1])<<16 | uint64(s[2])<<32 | uint64(s[3])<<48) & mag
		nz += bits.OnesCount64((w + kz) & high)
		nb += bits.OnesCount64((w + kb) & high)
		nn += bits.OnesCount64((w + kn) & high)
	}
	zeros = int64(i/4*4 - nz)
	below = int64(i/4*4 - nb)
	nonFinite = int64(nn)
	for _, h := range src[i:] {
		a := h & 0x7fff
		if a == 0 {
			zeros++
		}
		if a < thr {
			below++
		}
		if a >= nonFin {
			nonFinite++
		}
	}
	return zeros, below, nonFinite
}

func stats8(src []uint8, conv func([]float32, []uint8), thr uint32) Stats {
	var shift float32
	var one [1]float32
	for i := range src {
		conv(one[:], src[i:i+1])
		if !isNonFinite32(one[0]) {
			shift = one[0]
			break
		}
	}
	return statsBlocks(len(src), float64(shift), func(lo, hi int, acc *statLanes) {
		buf := statBufPool.Get().(*[statBuf]float32)
		for i := lo; i < hi; i += statBuf {
			j := min(hi, i+statBuf)
			b := buf[:j-i]
			conv(b, src[i:j])
			acc.add(b, thr)
		}
		statBufPool.Put(buf)
	})
}

func isNonFinite32(v float32) bool { return math.Float32bits(v)&0x7f800000 == 0x7f800000 }

func firstFinite32(x []float32) (float64, bool) {
	for _, v := range x {
		if !isNonFinite32(v) {
			return float64(v), true
		}
	}
	return 0, false
}

// statsBlocks runs block over the reduceBlock-sized blocks of [0, n) (in
// parallel for large n), each into its own accumulator centred on shift,
// and merges the blocks in order.
func statsBlocks(n int, shift float64, block func(lo, hi int, acc *statLanes)) Stats {
	if n <= reduceBlock {
		acc := newStatLanes(shift)
		block(0, n, &acc)
		return acc.result(int64(n))
	}
	nb := (n + reduceBlock - 1) / reduceBlock
	parts := make([]Stats, nb)
	run := func(b0, b1 int) {
		for b := b0; b < b1; b++ {
			lo, hi := b*reduceBlock, min((b+1)*reduceBlock, n)
			acc := newStatLanes(shift)
			block(lo, hi, &acc)
			parts[b] = acc.result(int64(hi - lo))
		}
	}
	if workers(n) <= 1 {
		run(0, nb)
	} else {
		parallelBlocks(nb, run)
	}
	total := parts[0]
	for _, p := range parts[1:] {
		total.Merge(p)
	}
	return total
}

// statLanes is the running state of one block: four float64 lanes for the
// sums, four float32 lanes for the extremes, integer class counters.
type statLanes struct {
	shift     float64
	shiftBits uint32
	s, q      [4]float64
	mn, mx    [4]float32
	// zeros: |bits| == 0; below: |bits| < threshold (zeros included);
	// nonFin: exponent all ones; inf: ±Inf exactly.
	zeros, below, nonFin, inf int64
	// F64 extremes (add64)
	f64          bool
	min64, max64 float64
}

func newStatLanes(shift float64) statLanes {
	inf := float32(math.Inf(1))
	return statLanes{
		shift:     shift,
		shiftBits: math.Float32bits(float32(shift)),
		mn:        [4]float32{inf, inf, inf, inf},
		mx:        [4]float32{-inf, -inf, -inf, -inf},
		min64:     math.Inf(1),
		max64:     math.Inf(-1),
	}
}

// add accumulates x. Non-finite values are replaced, branch-free, by the
// shift (a finite value of the data: it moves neither the extremes nor the
// centred sums) and counted; zeros and values below the dtype's smallest
// normal thr are counted from the bits.
func (l *statLanes) add(x []float32, thr uint32) {
	sb := l.shiftBits
	sh := l.shift
	s0, s1, s2, s3 := l.s[0], l.s[1], l.s[2], l.s[3]
	q0, q1, q2, q3 := l.q[0], l.q[1], l.q[2], l.q[3]
	mn0, mn1, mn2, mn3 := l.mn[0], l.mn[1], l.mn[2], l.mn[3]
	mx0, mx1, mx2, mx3 := l.mx[0], l.mx[1], l.mx[2], l.mx[3]
	var zeros, below, nonFin uint32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		b0, b1, b2, b3 := math.Float32bits(v[0]), math.Float32bits(v[1]), math.Float32bits(v[2]), math.Float32bits(v[3])
		a0, a1, a2, a3 := b0&0x7fffffff, b1&0x7fffffff, b2&0x7fffffff, b3&0x7fffffff
		// a−1 wraps only for a == 0; a−thr wraps iff a < thr;
		// a+2²³ reaches bit 31 iff the exponent is all ones.
		zeros += (a0-1)>>31 + (a1-1)>>31 + (a2-1)>>31 + (a3-1)>>31
		below += (a0-thr)>>31 + (a1-thr)>>31 + (a2-thr)>>31 + (a3-thr)>>31
		m0 := uint32(int32(a0+0x00800000) >> 31)
		m1 := uint32(int32(a1+0x00800000) >> 31)
		m2 := uint32(int32(a2+0x00800000) >> 31)
		m3 := uint32(int32(a3+0x00800000) >> 31)
		nonFin += (m0 & 1) + (m1 & 1) + (m2 & 1) + (m3 & 1)
		f0 := math.Float32frombits(b0 ^ ((b0 ^ sb) & m0))
		f1 := math.Float32frombits(b1 ^ ((b1 ^ sb) & m1))
		f2 := math.Float32frombits(b2 ^ ((b2 ^ sb) & m2))
		f3 := math.Float32frombits(b3 ^ ((b3 ^ sb) & m3))
		if f0 < mn0 {
			mn0 = f0
		}
		if f0 > mx0 {
			mx0 = f0
		}
		if f1 < mn1 {
			mn1 = f1
		}
		if f1 > mx1 {
			mx1 = f1
		}
		if f2 < mn2 {
			mn2 = f2
		}
		if f2 > mx2 {
			mx2 = f2
		}
		if f3 < mn3 {
			mn3 = f3
		}
		if f3 > mx3 {
			mx3 = f3
		}
		d0, d1, d2, d3 := float64(f0)-sh, float64(f1)-sh, float64(f2)-sh, float64(f3)-sh
		s0 += d0
		s1 += d1
		s2 += d2
		s3 += d3
		q0 += d0 * d0
		q1 += d1 * d1
		q2 += d2 * d2
		q3 += d3 * d3
	}
	for ; i < len(x); i++ {
		b := math.Float32bits(x[i])
		a := b & 0x7fffffff
		zeros += (a - 1) >> 31
		below += (a - thr) >> 31
		m := uint32(int32(a+0x00800000) >> 31)
		nonFin += m & 1
		f := math.Float32frombits(b ^ ((b ^ sb) & m))
		if f < mn0 {
			mn0 = f
		}
		if f > mx0 {
			mx0 = f
		}
		d := float64(f) - sh
		s0 += d
		q0 += d * d
	}
	if nonFin > 0 {
		// Replaced values added d = fill−shift each (0 when the shift is
		// the fill value, as for F32); take them out again.
		if d := float64(math.Float32frombits(sb)) - sh; d != 0 {
			s0 -= float64(nonFin) * d
			q0 -= float64(nonFin) * d * d
		}
		// rare: tell Inf from NaN
		for _, v := range x {
			if math.Float32bits(v)&0x7fffffff == 0x7f800000 {
				l.inf++
			}
		}
	}
	l.s = [4]float64{s0, s1, s2, s3}
	l.q = [4]float64{q0, q1, q2, q3}
	l.mn = [4]float32{mn0, mn1, mn2, mn3}
	l.mx = [4]float32{mx0, mx1, mx2, mx3}
	l.zeros += int64(zeros)
	l.below += int64(below)
	l.nonFin += int64(nonFin)
}

// add64 accumulates float64 values (lane 0 only; F64 tensors are rare).
func (l *statLanes) add64(x []float64) {
	mn, mx := math.Inf(1), math.Inf(-1)
	for _, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			l.nonFin++
			if !math.IsNaN(v) {
				l.inf++
			}
			continue
		}
		if v == 0 {
			l.zeros++
			l.below++
		} else if math.Abs(v) < 0x1p-1022 {
			l.below++
		}
		mn = math.Min(mn, v)
		mx = math.Max(mx, v)
		d := v - l.shift
		l.s[0] += d
		l.q[0] += d * d
	}
	l.min64, l.max64 = math.Min(l.min64, mn), math.Max(l.max64, mx)
	l.f64 = true
}

func (l *statLanes) result(n int64) Stats {
	st := Stats{
		N: n, Finite: n - l.nonFin, Shift: l.shift,
		Sum:   (l.s[0] + l.s[1]) + (l.s[2] + l.s[3]),
		SumSq: (l.q[0] + l.q[1]) + (l.q[2] + l.q[3]),
		Zeros: l.zeros, NaN: l.nonFin - l.inf, Inf: l.inf, Denormal: l.below - l.zeros,
		Min: math.Inf(1), Max: math.Inf(-1),
	}
	if st.Finite == 0 {
		st.Shift, st.Sum, st.SumSq = 0, 0, 0
		return st
	}
	if l.f64 {
		st.Min, st.Max = l.min64, l.max64
		return st
	}
	st.Min = float64(min(min(l.mn[0], l.mn[1]), min(l.mn[2], l.mn[3])))
	st.Max = float64(max(max(l.mx[0], l.mx[1]), max(l.mx[2], l.mx[3])))
	return st
}
