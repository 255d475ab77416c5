package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/adaptool/adaptool/ops/kernels"
)

// ErrUnsupportedConversion is returned by ToFloat32 for the sub-byte
// dtypes (F4, F6_*) and by FromFloat32 for those and F8_E8M0 and the FNUZ
// variants. It is not a format error.
var ErrUnsupportedConversion = errors.New("safetensors: conversion to or from float32 not supported for this dtype")

// chunk is the element count converted per step when the source must be
// copied (unaligned or big-endian), bounding the scratch memory.
const chunk = 4096

func checkLen(nelem int, nbytes int, dt DType) error {
	if dt.Bits() == 0 || nelem*dt.Bits() != nbytes*8 {
		return fmt.Errorf("%w: %d elements of %s need %d bytes, have %d",
			ErrInvalidTensorView, nelem, dt, nelem*dt.Bits()/8, nbytes)
	}
	return nil
}

var (
	f8TablesOnce sync.Once
	f8Tables     map[DType]*[256]float32
)

// f8Table returns the decoding table of F8_E8M0 (2^(c−127), 0xff NaN),
// F8_E4M3FNUZ (bias 8, max 240) or F8_E5M2FNUZ (bias 16, max 57344); the
// FNUZ formats have no infinities and no −0, and 0x80 is their only NaN.
func f8Table(dt DType) *[256]float32 {
	f8TablesOnce.Do(func() {
		f8Tables = map[DType]*[256]float32{}
		e8 := new([256]float32)
		for c := range 256 {
			e8[c] = float32(math.Ldexp(1, c-127))
		}
		e8[0xff] = float32(math.NaN())
		f8Tables[F8E8M0] = e8
		for _, f := range []struct {
			dt          DType
			mbits, bias int
		}{{F8E4M3FNUZ, 3, 8}, {F8E5M2FNUZ, 2, 16}} {
			t := new([256]float32)
			for c := range 256 {
				e := (c & 0x7f) >> f.mbits
				m := c & (1<<f.mbits - 1)
				v := math.Ldexp(float64(m), 1-f.bias-f.mbits)
				if e > 0 {
					v = math.Ldexp(float64(1<<f.mbits+m), e-f.bias-f.mbits)
				}
				if c&0x80 != 0 {
					v = -v
				}
				t[c] = float32(v)
			}
			t[0x80] = float32(math.NaN())
			f8Tables[f.dt] = t
		}
	})
	return f8Tables[dt]
}

// ToFloat32 converts len(dst) elements of little-endian dtype dt from src
// to float32. len(src) must be exactly len(dst)·Bits/8 (ErrInvalidTensorView
// otherwise); C64 yields interleaved (real, imaginary) pairs, so dst holds
// two values per element.
//
// F32 and C64 are copied; F64 is rounded to nearest even (overflow to ±Inf);
// F16, BF16, F8_E4M3 and F8_E5M2 widen exactly with the ops/kernels
// conversions (NaN stays NaN, quieted); F8_E8M0, F8_E4M3FNUZ and
// F8_E5M2FNUZ decode exactly by table; integers
// convert with round-to-nearest-even (I32/U32/I64/U64 beyond 2^24 lose
// precision); BOOL gives 1 for any non-zero byte, else 0. Aligned sources
// are reinterpreted in place; unaligned ones are copied in chunks.
func ToFloat32(dst []float32, src []byte, dt DType) error {
	n := len(dst)
	if dt == C64 {
		if n%2 != 0 {
			return fmt.Errorf("%w: C64 needs an even float32 count, have %d", ErrInvalidTensorView, n)
		}
		if err := checkLen(n/2, len(src), dt); err != nil {
			return err
		}
		dt = F32
	} else if err := checkLen(n, len(src), dt); err != nil {
		if dt.Valid() && dt.Bits()%8 != 0 {
			return fmt.Errorf("%w: %s", ErrUnsupportedConversion, dt)
		}
		return err
	}
	switch dt {
	case F32:
		if v, ok := AsFloat32(src); ok {
			copy(dst, v)
			return nil
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16, BF16:
		conv := kernels.F16ToF32
		if dt == BF16 {
			conv = kernels.BF16ToF32
		}
		if v, ok := AsUint16(src); ok {
			conv(dst, v)
			return nil
		}
		var tmp [chunk]uint16
		for i := 0; i < n; i += chunk {
			m := min(chunk, n-i)
			for j := range m {
				tmp[j] = binary.LittleEndian.Uint16(src[2*(i+j):])
			}
			conv(dst[i:i+m], tmp[:m])
		}
	case F8E4M3:
		kernels.F8E4M3ToF32(dst, src)
	case F8E5M2:
		kernels.F8E5M2ToF32(dst, src)
	case F8E8M0, F8E4M3FNUZ, F8E5M2FNUZ:
		table := f8Table(dt)
		for i, c := range src {
			dst[i] = table[c]
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case Bool:
		for i, b := range src {
			if b != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	case U8:
		for i, b := range src {
			dst[i] = float32(b)
		}
	case I8:
		for i, b := range src {
			dst[i] = float32(int8(b))
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(binary.LittleEndian.Uint16(src[2*i:])))
		}
	case U16:
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(binary.LittleEndian.Uint32(src[4*i:])))
		}
	case U32:
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case U64:
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint64(src[8*i:]))
		}
	default:
		return fmt.Errorf("%w: %s", ErrUnsupportedConversion, dt)
	}
	return nil
}

// FromFloat32 converts src to len(src) little-endian elements of dtype dt in
// dst; len(dst) must be exactly len(src)·Bits/8 (ErrInvalidTensorView
// otherwise); C64 takes interleaved (real, imaginary) pairs.
//
// F32 and C64 are copied and F64 widened exactly. F16 and BF16 round to nearest even
// (overflow to ±Inf, NaN stays a quiet NaN). F8_E4M3 and F8_E5M2 round to
// nearest even and saturate finite overflow to the largest finite value
// (±448, ±57344); ±Inf gives ±448 in E4M3 (which has no infinity) and stays
// ±Inf in E5M2; NaN stays NaN (code 0x7f with its sign). The float paths are
// the ops/kernels conversions. Integer dtypes round half to
// even and saturate to the type's range; NaN becomes 0. BOOL stores 1 for
// any non-zero value (NaN included) and 0 for ±0.
func FromFloat32(dst []byte, src []float32, dt DType) error {
	if dt == C64 {
		if len(src)%2 != 0 {
			return fmt.Errorf("%w: C64 needs an even float32 count, have %d", ErrInvalidTensorView, len(src))
		}
		if err := checkLen(len(src)/2, len(dst), dt); err != nil {
			return err
		}
		dt = F32
	} else if err := checkLen(len(src), len(dst), dt); err != nil {
		if dt.Valid() && dt.Bits()%8 != 0 {
			return fmt.Errorf("%w: %s", ErrUnsupportedConversion, dt)
		}
		return err
	}
	n := len(src)
	switch dt {
	case F32:
		if hostLittleEndian {
			copy(dst, Float32Bytes(src))
			return nil
		}
		for i, f := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
		}
	case F16, BF16:
		conv := kernels.F32ToF16
		if dt == BF16 {
			conv = kernels.F32ToBF16
		}
		if v, ok := AsUint16(dst); ok {
			conv(v, src)
			return nil
		}
		var tmp [chunk]uint16
		for i := 0; i < n; i += chunk {
			m := min(chunk, n-i)
			conv(tmp[:m], src[i:i+m])
			for j := range m {
				binary.LittleEndian.PutUint16(dst[2*(i+j):], tmp[j])
			}
		}
	case F8E4M3:
		kernels.F32ToF8E4M3(dst, src)
	case F8E5M2:
		kernels.F32ToF8E5M2(dst, src)
	case F64:
		for i, f := range src {
			binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(float64(f)))
		}
	case Bool:
		for i, f := range src {
			if f != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	case U8:
		for i, f := range src {
			dst[i] = uint8(satInt(f, 0, math.MaxUint8))
		}
	case I8:
		for i, f := range src {
			dst[i] = uint8(int8(satInt(f, math.MinInt8, math.MaxInt8)))
		}
	case I16:
		for i, f := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], uint16(int16(satInt(f, math.MinInt16, math.MaxInt16))))
		}
	case U16:
		for i, f := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], uint16(satInt(f, 0, math.MaxUint16)))
		}
	case I32:
		for i, f := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], uint32(int32(satInt(f, math.MinInt32, math.MaxInt32))))
		}
	case U32:
		for i, f := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], uint32(satInt(f, 0, math.MaxUint32)))
		}
	case I64:
		for i, f := range src {
			binary.LittleEndian.PutUint64(dst[8*i:], uint64(satI64(f)))
		}
	case U64:
		for i, f := range src {
			binary.LittleEndian.PutUint64(dst[8*i:], satU64(f))
		}
	default:
		return fmt.Errorf("%w: %s", ErrUnsupportedConversion, dt)
	}
	return nil
}

// satInt rounds half to even and clamps to [lo, hi] (both exactly
// representable in float64); NaN gives 0.
func satInt(f float32, lo, hi float64) int64 {
	x := math.RoundToEven(float64(f))
	switch {
	case x != x:
		return 0
	case x < lo:
		return int64(lo)
	case x > hi:
		return int64(hi)
	}
	return int64(x)
}

func satI64(f float32) int64 {
	x := math.RoundToEven(float64(f))
	switch {
	case x != x:
		return 0
	case x >= 0x1p63:
		return math.MaxInt64
	case x < -0x1p63:
		return math.MinInt64
	}
	return int64(x)
}

func satU64(f float32) uint64 {
	x := math.RoundToEven(float64(f))
	switch {
	case x != x, x <= 0:
		return 0
	case x >= 0x1p64:
		return math.MaxUint64
	}
	return uint64(x)
}
