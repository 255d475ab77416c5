package inspect

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/adaptool/adaptool/ops/kernels"
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

// fromKernel converts the kernel's statistics; undefined moments (no finite
// value) are 0, and float64 overflow of F64 data saturates so that the
// result stays representable in JSON.
func fromKernel(name, dtype string, k kernels.Stats) TensorStats {
	st := TensorStats{Name: name, DType: dtype, Count: k.N, Zeros: k.Zeros, NaN: k.NaN, Inf: k.Inf, Denormal: k.Denormal}
	if k.Finite > 0 {
		st.Min, st.Max = k.Min, k.Max
		st.Mean, st.Std, st.Norm = k.Mean(), k.Std(), k.Norm()
		st.AbsMax = math.Max(math.Abs(k.Min), math.Abs(k.Max))
	}
	for _, p := range []*float64{&st.Mean, &st.Std, &st.Norm} {
		if math.IsInf(*p, 0) || math.IsNaN(*p) {
			*p = math.Copysign(math.MaxFloat64, *p)
		}
	}
	return st
}

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

// chunkBytes is the copy unit for data that cannot be viewed in place
// (misaligned, or integers widened to float64): bounded memory whatever the
// tensor size.
const chunkBytes = 256 << 10

// StatsOf computes the statistics of one tensor's raw little-endian bytes in
// its stored dtype (the file spelling: "F32", "BF16", "F8_E4M3", ...) with
// the fused kernels of ops/kernels (one streaming pass, parallel for large
// tensors). Sub-byte, complex and exotic FP8 dtypes are refused with an
// error naming the dtype.
func StatsOf(name, dtype string, raw []byte) (TensorStats, error) {
	es := dtypeBytes(dtype)
	if es == 0 {
		return TensorStats{}, fmt.Errorf("inspect: tensor %q: statistics are not defined for dtype %s", name, dtype)
	}
	if len(raw)%es != 0 {
		return TensorStats{}, fmt.Errorf("inspect: tensor %q: %d bytes is not a whole number of %s values", name, len(raw), dtype)
	}
	var fn func([]byte) kernels.Stats
	switch dtype {
	case "F32":
		fn = func(b []byte) kernels.Stats { return kernels.StatsF32(view[float32](b)) }
	case "BF16":
		fn = func(b []byte) kernels.Stats { return kernels.StatsBF16(view[uint16](b)) }
	case "F16":
		fn = func(b []byte) kernels.Stats { return kernels.StatsF16(view[uint16](b)) }
	case "F8_E4M3":
		fn = kernels.StatsF8E4M3
	case "F8_E5M2":
		fn = kernels.StatsF8E5M2
	case "F64":
		fn = func(b []byte) kernels.Stats { return kernels.StatsF64(view[float64](b)) }
	default: // integers and bool: exact in float64
		return fromKernel(name, dtype, intStats(dtype, raw, es)), nil
	}
	if len(raw) == 0 || (littleEndian && uintptr(unsafe.Pointer(&raw[0]))%uintptr(es) == 0) {
		return fromKernel(name, dtype, fn(raw)), nil
	}
	// misaligned (or big-endian host): aligned copies of fixed chunks
	buf := make([]uint64, chunkBytes/8)
	bb := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), chunkBytes)
	var total kernels.Stats
	for off := 0; off < len(raw); off += chunkBytes {
		c := bb[:copy(bb, raw[off:min(len(raw), off+chunkBytes)])]
		if !littleEndian {
			swapBytes(c, es)
		}
		total.Merge(fn(c))
	}
	return fromKernel(name, dtype, total), nil
}

// view reinterprets little-endian bytes (aligned for T) as []T.
func view[T uint16 | float32 | float64](b []byte) []T {
	if len(b) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/int(unsafe.Sizeof(z)))
}

// swapBytes reverses each es-byte element of b (big-endian hosts only).
func swapBytes(b []byte, es int) {
	for i := 0; i+es <= len(b); i += es {
		slices.Reverse(b[i : i+es])
	}
}

// intStats widens integer (and bool) elements to float64, which is exact up
// to 2⁵³, chunk by chunk and runs the float64 kernel.
func intStats(dt string, raw []byte, es int) kernels.Stats {
	buf := make([]float64, chunkBytes/8)
	var total kernels.Stats
	for off := 0; off < len(raw); off += es * len(buf) {
		chunk := raw[off:min(len(raw), off+es*len(buf))]
		n := len(chunk) / es
		for i := 0; i < n; i++ {
			buf[i] = intValue(dt, chunk[es*i:])
		}
		total.Merge(kernels.StatsF64(buf[:n]))
	}
	return total
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

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
