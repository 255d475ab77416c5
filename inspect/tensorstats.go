package inspect

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"
)

// TensorStats are the value statistics of one tensor. Min, Max, Mean and
// Std are over the finite values only (NaN and ±Inf are counted, not used);
// Std is the population standard deviation. Denormals are counted in the
// tensor's stored dtype (an F16 subnormal is a denormal even though it is a
// normal float32). Zeros count +0 and −0.
type TensorStats struct {
	Name     string  `json:"name,omitempty"`
	DType    string  `json:"dtype,omitempty"`
	Count    int64   `json:"count"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	Mean     float64 `json:"mean"`
	Std      float64 `json:"std"`
	AbsMax   float64 `json:"abs_max"`
	Norm     float64 `json:"l2_norm"`
	Zeros    int64   `json:"zeros"`
	NaN      int64   `json:"nan"`
	Inf      int64   `json:"inf"`
	Denormal int64   `json:"denormal"`
}

// statAcc accumulates statistics over chunks. Sums are taken of v−shift in
// float64 (shift = the first finite value) so that the variance does not
// cancel catastrophically when the mean is large relative to the spread.
type statAcc struct {
	n, finite, zeros, nan, inf, denorm int64
	min, max                           float64
	shift                              float64
	shifted                            bool
	sum, sumsq                         float64
}

func newStatAcc() statAcc {
	return statAcc{min: math.Inf(1), max: math.Inf(-1)}
}

// addF32 accumulates float32 values, classifying them as float32.
func (a *statAcc) addF32(x []float32) {
	a.addF32Class(x, true)
}

// addF32Class accumulates float32 values; when classify is false the caller
// has already counted zeros/NaN/Inf/denormals from the stored bits and only
// the moments are taken here (non-finite values are still skipped).
func (a *statAcc) addF32Class(x []float32, classify bool) {
	a.n += int64(len(x))
	if !a.shifted {
		for _, v := range x {
			if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
				a.shift, a.shifted = float64(v), true
				break
			}
		}
	}
	mn, mx := float32(a.min), float32(a.max)
	if math.IsInf(a.min, 1) {
		mn = float32(math.Inf(1))
	}
	if math.IsInf(a.max, -1) {
		mx = float32(math.Inf(-1))
	}
	var s0, s1, q0, q1 float64
	var zeros, nonfin, denorm, inf int64
	i := 0
	// Fast path: two values at a time while both are finite.
	for ; i+2 <= len(x); i += 2 {
		v0, v1 := x[i], x[i+1]
		b0, b1 := math.Float32bits(v0), math.Float32bits(v1)
		e0, e1 := b0&0x7f800000, b1&0x7f800000
		if e0 == 0x7f800000 || e1 == 0x7f800000 {
			// slow path for this pair
			for _, v := range x[i : i+2] {
				b := math.Float32bits(v)
				if b&0x7f800000 == 0x7f800000 {
					nonfin++
					if b&0x007fffff == 0 {
						inf++
					}
					continue
				}
				if b&0x7fffffff == 0 {
					zeros++
				} else if b&0x7f800000 == 0 {
					denorm++
				}
				mn = min(mn, v)
				mx = max(mx, v)
				d := float64(v) - a.shift
				s0 += d
				q0 += d * d
			}
			continue
		}
		if b0&0x7fffffff == 0 {
			zeros++
		} else if e0 == 0 {
			denorm++
		}
		if b1&0x7fffffff == 0 {
			zeros++
		} else if e1 == 0 {
			denorm++
		}
		mn = min(mn, v0, v1)
		mx = max(mx, v0, v1)
		d0 := float64(v0) - a.shift
		d1 := float64(v1) - a.shift
		s0 += d0
		s1 += d1
		q0 += d0 * d0
		q1 += d1 * d1
	}
	for ; i < len(x); i++ {
		v := x[i]
		b := math.Float32bits(v)
		if b&0x7f800000 == 0x7f800000 {
			nonfin++
			if b&0x007fffff == 0 {
				inf++
			}
			continue
		}
		if b&0x7fffffff == 0 {
			zeros++
		} else if b&0x7f800000 == 0 {
			denorm++
		}
		mn = min(mn, v)
		mx = max(mx, v)
		d := float64(v) - a.shift
		s0 += d
		q0 += d * d
	}
	a.sum += s0 + s1
	a.sumsq += q0 + q1
	a.finite += int64(len(x)) - nonfin
	if classify {
		a.zeros += zeros
		a.denorm += denorm
		a.inf += inf
		a.nan += nonfin - inf
	}
	a.min, a.max = float64(mn), float64(mx)
}

// addF64 accumulates float64 values.
func (a *statAcc) addF64(x []float64) {
	a.n += int64(len(x))
	for _, v := range x {
		if math.IsNaN(v) {
			a.nan++
			continue
		}
		if math.IsInf(v, 0) {
			a.inf++
			continue
		}
		if !a.shifted {
			a.shift, a.shifted = v, true
		}
		if v == 0 {
			a.zeros++
		} else if math.Abs(v) < 0x1p-1022 {
			a.denorm++
		}
		a.min = math.Min(a.min, v)
		a.max = math.Max(a.max, v)
		d := v - a.shift
		a.sum += d
		a.sumsq += d * d
		a.finite++
	}
}

func (a *statAcc) result(name, dtype string) TensorStats {
	st := TensorStats{Name: name, DType: dtype, Count: a.n, Zeros: a.zeros, NaN: a.nan, Inf: a.inf, Denormal: a.denorm}
	if a.finite > 0 {
		n := float64(a.finite)
		m := a.sum / n
		st.Mean = a.shift + m
		st.Std = math.Sqrt(math.Max(0, a.sumsq/n-m*m))
		st.Min, st.Max = a.min, a.max
		st.AbsMax = math.Max(math.Abs(a.min), math.Abs(a.max))
		// Σv² = Σ(d+shift)² = Σd² + 2·shift·Σd + n·shift²
		st.Norm = math.Sqrt(math.Max(0, a.sumsq+2*a.shift*a.sum+n*a.shift*a.shift))
	}
	// F64 data near the top of the range can overflow the float64 sums;
	// saturate so that the result stays representable in JSON.
	for _, p := range []*float64{&st.Mean, &st.Std, &st.Norm} {
		if math.IsInf(*p, 0) || math.IsNaN(*p) {
			*p = math.Copysign(math.MaxFloat64, *p)
		}
	}
	return st
}

// chunkElems is the number of elements converted per step: bounded memory
// whatever the tensor size, and small enough to stay in L2.
const chunkElems = 16 << 10

// f16Table maps every IEEE half bit pattern to float32.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for h := range t {
		t[h] = halfToFloat32(uint16(h))
	}
	return &t
}()

func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0:
		// subnormal or zero: man·2⁻²⁴
		v := float32(man) * float32(math.Ldexp(1, -24))
		if sign != 0 {
			v = -v
		}
		return v
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	}
}

// e4m3Table and e5m2Table map the FP8 bit patterns to float32 (E4M3FN has
// no Inf; S.1111.111 is NaN).
var e4m3Table, e5m2Table = func() (*[256]float32, *[256]float32) {
	var a, b [256]float32
	for i := 0; i < 256; i++ {
		s := 1.0
		if i&0x80 != 0 {
			s = -1
		}
		e, m := (i>>3)&0xf, i&7
		switch {
		case e == 0xf && m == 7:
			a[i] = float32(math.NaN())
		case e == 0:
			a[i] = float32(s * float64(m) / 8 * math.Ldexp(1, -6))
		default:
			a[i] = float32(s * (1 + float64(m)/8) * math.Ldexp(1, e-7))
		}
		e, m = (i>>2)&0x1f, i&3
		switch {
		case e == 0x1f && m == 0:
			b[i] = float32(math.Inf(int(s)))
		case e == 0x1f:
			b[i] = float32(math.NaN())
		case e == 0:
			b[i] = float32(s * float64(m) / 4 * math.Ldexp(1, -14))
		default:
			b[i] = float32(s * (1 + float64(m)/4) * math.Ldexp(1, e-15))
		}
	}
	return &a, &b
}()

// dtypeBytes returns the element size of the dtypes whose statistics are
// supported (0 for the others).
func dtypeBytes(dt string) int {
	switch dt {
	case "F64", "I64", "U64":
		return 8
	case "F32", "I32", "U32":
		return 4
	case "F16", "BF16", "I16", "U16":
		return 2
	case "F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL":
		return 1
	}
	return 0
}

// StatsOf computes the statistics of one tensor's raw little-endian bytes in
// its stored dtype (the file spelling: "F32", "BF16", "F8_E4M3", ...). It
// streams over raw in fixed chunks with no allocation proportional to the
// tensor. Sub-byte, complex and exotic FP8 dtypes are refused with an error
// naming the dtype.
func StatsOf(name, dtype string, raw []byte) (TensorStats, error) {
	es := dtypeBytes(dtype)
	if es == 0 {
		return TensorStats{}, fmt.Errorf("inspect: tensor %q: statistics are not defined for dtype %s", name, dtype)
	}
	if len(raw)%es != 0 {
		return TensorStats{}, fmt.Errorf("inspect: tensor %q: %d bytes is not a whole number of %s values", name, len(raw), dtype)
	}
	n := len(raw) / es
	workers := min(runtime.GOMAXPROCS(0), n/parallelMinElems)
	if workers <= 1 {
		a := newStatAcc()
		accumulate(&a, dtype, raw, es)
		return a.result(name, dtype), nil
	}
	// large tensors: split into element-aligned ranges, one accumulator each
	accs := make([]statAcc, workers)
	var wg sync.WaitGroup
	for w := range accs {
		lo, hi := n*w/workers, n*(w+1)/workers
		accs[w] = newStatAcc()
		wg.Add(1)
		go func(a *statAcc, part []byte) {
			defer wg.Done()
			accumulate(a, dtype, part, es)
		}(&accs[w], raw[lo*es:hi*es])
	}
	wg.Wait()
	for w := 1; w < workers; w++ {
		accs[0].merge(&accs[w])
	}
	return accs[0].result(name, dtype), nil
}

// parallelMinElems is the per-worker minimum of elements before a tensor is
// split across cores.
const parallelMinElems = 1 << 20

// merge adds the statistics of b into a, re-basing b's shifted sums on a's
// shift: Σ(v−s) = Σ(v−s_b) + n_b·(s_b−s), Σ(v−s)² = Σ(v−s_b)² + 2(s_b−s)Σ(v−s_b) + n_b(s_b−s)².
func (a *statAcc) merge(b *statAcc) {
	a.n += b.n
	a.zeros += b.zeros
	a.nan += b.nan
	a.inf += b.inf
	a.denorm += b.denorm
	if b.finite == 0 {
		return
	}
	if a.finite == 0 {
		a.shift, a.shifted = b.shift, true
		a.sum, a.sumsq, a.finite = b.sum, b.sumsq, b.finite
		a.min, a.max = b.min, b.max
		return
	}
	d := b.shift - a.shift
	nb := float64(b.finite)
	a.sumsq += b.sumsq + 2*d*b.sum + nb*d*d
	a.sum += b.sum + nb*d
	a.finite += b.finite
	a.min = math.Min(a.min, b.min)
	a.max = math.Max(a.max, b.max)
}

// accumulate streams raw (whole elements of dtype) into a.
func accumulate(a *statAcc, dtype string, raw []byte, es int) {
	switch dtype {
	case "F32":
		streamF32(a, raw)
	case "F16":
		buf := make([]float32, chunkElems)
		forU16(raw, func(h []uint16) {
			for i, x := range h {
				// F16 subnormals are normal float32 values: count them here;
				// zeros, NaN and Inf survive the conversion and are counted
				// by addF32 (which finds no float32 denormal among them).
				if x&0x7c00 == 0 && x&0x03ff != 0 {
					a.denorm++
				}
				buf[i] = f16Table[x]
			}
			a.addF32(buf[:len(h)])
		})
	case "BF16":
		buf := make([]float32, chunkElems)
		forU16(raw, func(h []uint16) {
			for i, x := range h {
				buf[i] = math.Float32frombits(uint32(x) << 16)
			}
			// BF16 shares float32's exponent, so float32 classification is exact.
			a.addF32(buf[:len(h)])
		})
	case "F8_E4M3", "F8_E5M2":
		tab, expMask, manMask := e4m3Table, byte(0x78), byte(0x07)
		if dtype == "F8_E5M2" {
			tab, expMask, manMask = e5m2Table, 0x7c, 0x03
		}
		buf := make([]float32, chunkElems)
		for off := 0; off < len(raw); off += chunkElems {
			chunk := raw[off:min(len(raw), off+chunkElems)]
			for i, b := range chunk {
				v := tab[b]
				buf[i] = v
				switch {
				case v != v:
					a.nan++
				case math.IsInf(float64(v), 0):
					a.inf++
				case b&0x7f == 0:
					a.zeros++
				case b&expMask == 0 && b&manMask != 0:
					a.denorm++
				}
			}
			a.addF32Class(buf[:len(chunk)], false)
		}
	case "F64":
		buf := make([]float64, chunkElems)
		for off := 0; off < len(raw); off += 8 * chunkElems {
			chunk := raw[off:min(len(raw), off+8*chunkElems)]
			n := len(chunk) / 8
			for i := 0; i < n; i++ {
				buf[i] = math.Float64frombits(binary.LittleEndian.Uint64(chunk[8*i:]))
			}
			a.addF64(buf[:n])
		}
	default: // integers and bool: exact in float64
		buf := make([]float64, chunkElems)
		for off := 0; off < len(raw); off += es * chunkElems {
			chunk := raw[off:min(len(raw), off+es*chunkElems)]
			n := len(chunk) / es
			for i := 0; i < n; i++ {
				buf[i] = intValue(dtype, chunk[es*i:])
			}
			a.addF64(buf[:n])
		}
	}
}

func intValue(dt string, b []byte) float64 {
	switch dt {
	case "I8":
		return float64(int8(b[0]))
	case "U8", "BOOL":
		return float64(b[0])
	case "I16":
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case "U16":
		return float64(binary.LittleEndian.Uint16(b))
	case "I32":
		return float64(int32(binary.LittleEndian.Uint32(b)))
	case "U32":
		return float64(binary.LittleEndian.Uint32(b))
	case "I64":
		return float64(int64(binary.LittleEndian.Uint64(b)))
	default: // U64
		return float64(binary.LittleEndian.Uint64(b))
	}
}

// streamF32 accumulates F32 bytes: reinterpreted in place when aligned
// (little-endian host), copied chunk by chunk otherwise.
func streamF32(a *statAcc, raw []byte) {
	n := len(raw) / 4
	if n == 0 {
		return
	}
	if littleEndian && uintptr(unsafe.Pointer(&raw[0]))%4 == 0 {
		x := unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), n)
		for off := 0; off < n; off += 4 * chunkElems {
			a.addF32(x[off:min(n, off+4*chunkElems)])
		}
		return
	}
	buf := make([]float32, chunkElems)
	for off := 0; off < n; off += chunkElems {
		m := min(n, off+chunkElems) - off
		for i := 0; i < m; i++ {
			buf[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(off+i):]))
		}
		a.addF32(buf[:m])
	}
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// forU16 calls fn on consecutive chunks (≤ chunkElems) of raw read as
// little-endian uint16: in place when aligned on a little-endian host,
// through a copy otherwise.
func forU16(raw []byte, fn func([]uint16)) {
	n := len(raw) / 2
	if n == 0 {
		return
	}
	if littleEndian && uintptr(unsafe.Pointer(&raw[0]))%2 == 0 {
		x := unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), n)
		for off := 0; off < n; off += chunkElems {
			fn(x[off:min(n, off+chunkElems)])
		}
		return
	}
	buf := make([]uint16, chunkElems)
	for off := 0; off < n; off += chunkElems {
		m := min(n, off+chunkElems) - off
		for i := 0; i < m; i++ {
			buf[i] = binary.LittleEndian.Uint16(raw[2*(off+i):])
		}
		fn(buf[:m])
	}
}
