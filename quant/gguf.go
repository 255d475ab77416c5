package quant

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/ops/kernels"
)

// GGUFType is a ggml tensor type id. The numeric values are ggml's (and
// format/gguf's GGMLType), so quant.GGUFType(t) converts between them.
type GGUFType uint32

// The ggml block types quantized here, with ggml's ids.
const (
	GGUFQ4_0 GGUFType = 2  // 32 values in 18 bytes: d (f16), qs[16]
	GGUFQ4_1 GGUFType = 3  // 32 values in 20 bytes: d, m (f16), qs[16]
	GGUFQ5_0 GGUFType = 6  // 32 values in 22 bytes: d, qh (u32), qs[16]
	GGUFQ5_1 GGUFType = 7  // 32 values in 24 bytes: d, m, qh, qs[16]
	GGUFQ8_0 GGUFType = 8  // 32 values in 34 bytes: d, int8 qs[32]
	GGUFQ2_K GGUFType = 10 // 256 values in 84 bytes: scales[16], qs[64], d, dmin
	GGUFQ3_K GGUFType = 11 // 256 values in 110 bytes: hmask[32], qs[64], scales[12], d
	GGUFQ4_K GGUFType = 12 // 256 values in 144 bytes: d, dmin, scales[12], qs[128]
	GGUFQ5_K GGUFType = 13 // 256 values in 176 bytes: d, dmin, scales[12], qh[32], qs[128]
	GGUFQ6_K GGUFType = 14 // 256 values in 210 bytes: ql[128], qh[64], int8 scales[16], d
)

// QK_K is the super-block size of the k-quants.
const QKK = 256

// ggufInfo holds the name, values per block and bytes per block of a type.
var ggufInfo = map[GGUFType]struct {
	name       string
	block, typ int
}{
	GGUFQ4_0: {"Q4_0", 32, 18},
	GGUFQ4_1: {"Q4_1", 32, 20},
	GGUFQ5_0: {"Q5_0", 32, 22},
	GGUFQ5_1: {"Q5_1", 32, 24},
	GGUFQ8_0: {"Q8_0", 32, 34},
	GGUFQ2_K: {"Q2_K", QKK, 84},
	GGUFQ3_K: {"Q3_K", QKK, 110},
	GGUFQ4_K: {"Q4_K", QKK, 144},
	GGUFQ5_K: {"Q5_K", QKK, 176},
	GGUFQ6_K: {"Q6_K", QKK, 210},
}

// GGUFTypes lists the block types this package quantizes, in id order.
var GGUFTypes = []GGUFType{GGUFQ4_0, GGUFQ4_1, GGUFQ5_0, GGUFQ5_1, GGUFQ8_0, GGUFQ2_K, GGUFQ3_K, GGUFQ4_K, GGUFQ5_K, GGUFQ6_K}

// String returns ggml's name of the type ("Q4_K"), or "GGUFType(n)".
func (t GGUFType) String() string {
	if i, ok := ggufInfo[t]; ok {
		return i.name
	}
	return fmt.Sprintf("GGUFType(%d)", uint32(t))
}

// BlockSize returns the number of values per block (32 or 256), 0 for a
// type this package does not quantize.
func (t GGUFType) BlockSize() int { return ggufInfo[t].block }

// TypeSize returns the number of bytes per block, 0 for a type this package
// does not quantize.
func (t GGUFType) TypeSize() int { return ggufInfo[t].typ }

// RowSize returns the bytes of n values of type t, or an error when t is
// not supported or n is not a whole number of blocks (ggml quantizes rows
// whose length is a multiple of the block size).
func (t GGUFType) RowSize(n int) (int, error) {
	i, ok := ggufInfo[t]
	if !ok {
		return 0, fmt.Errorf("%w: GGUF type %s", ErrScheme, t)
	}
	if n < 0 || n%i.block != 0 {
		return 0, fmt.Errorf("%w: %d values are not a whole number of %s blocks of %d", ErrLength, n, i.name, i.block)
	}
	return n / i.block * i.typ, nil
}

// QuantizeGGUF quantizes src into ggml blocks of type t, byte-identical to
// ggml's quantize_row_<t>_ref (ggml-quants.c) computed without FMA
// contraction: float32 arithmetic in the reference's order, f16 scales by
// round-to-nearest-even (kernels.F32ToF16). len(src) must be a multiple of
// t.BlockSize() and len(dst) must be t.RowSize(len(src)).
func QuantizeGGUF(dst []byte, src []float32, t GGUFType) error {
	want, err := t.RowSize(len(src))
	if err != nil {
		return err
	}
	if len(dst) != want {
		return fmt.Errorf("%w: %s of %d values needs %d bytes, got %d", ErrLength, t, len(src), want, len(dst))
	}
	bs, ts := t.BlockSize(), t.TypeSize()
	if f, ok := ggufSimpleQuantizers[t]; ok {
		offs := ggufScaleOffsets[t]
		forBlocks(len(src), bs, func(b0, b1 int) {
			// The f16 scales of up to 256 blocks are rounded in one
			// kernels.F32ToF16 call (the blocks do not reuse them).
			var sf [512]float32
			var sh [512]uint16
			for c0 := b0; c0 < b1; c0 += 256 {
				c1 := min(c0+256, b1)
				k := 0
				for b := c0; b < c1; b++ {
					d, m := f(dst[b*ts:(b+1)*ts], src[b*bs:(b+1)*bs])
					sf[k], sf[k+1] = d, m
					k += 2
				}
				kernels.F32ToF16(sh[:k], sf[:k])
				k = 0
				for b := c0; b < c1; b++ {
					for j, off := range offs {
						h := sh[k+j]
						dst[b*ts+off], dst[b*ts+off+1] = byte(h), byte(h>>8)
					}
					k += 2
				}
			}
		})
		return nil
	}
	f := ggufQuantizers[t]
	forBlocks(len(src), bs, func(b0, b1 int) {
		sc := new(f16Scratch)
		for b := b0; b < b1; b++ {
			f(dst[b*ts:(b+1)*ts], src[b*bs:(b+1)*bs], sc)
		}
	})
	return nil
}

// DequantizeGGUF reverses QuantizeGGUF with ggml's dequantize_row_<t>.
func DequantizeGGUF(dst []float32, src []byte, t GGUFType) error {
	want, err := t.RowSize(len(dst))
	if err != nil {
		return err
	}
	if len(src) != want {
		return fmt.Errorf("%w: %s of %d values needs %d bytes, got %d", ErrLength, t, len(dst), want, len(src))
	}
	bs, ts := t.BlockSize(), t.TypeSize()
	f := ggufDequantizers[t]
	offs := ggufScaleOffsets[t]
	forBlocks(len(dst), bs, func(b0, b1 int) {
		// The f16 scales of up to 256 blocks are widened in one
		// kernels.F16ToF32 call.
		var sh [512]uint16
		var sf [512]float32
		for c0 := b0; c0 < b1; c0 += 256 {
			c1 := min(c0+256, b1)
			k := 0
			for b := c0; b < c1; b++ {
				sh[k], sh[k+1] = 0, 0
				for j, off := range offs {
					sh[k+j] = uint16(src[b*ts+off]) | uint16(src[b*ts+off+1])<<8
				}
				k += 2
			}
			kernels.F16ToF32(sf[:k], sh[:k])
			k = 0
			for b := c0; b < c1; b++ {
				f(dst[b*bs:(b+1)*bs], src[b*ts:(b+1)*ts], sf[k], sf[k+1])
				k += 2
			}
		}
	})
	return nil
}

// ggufScaleOffsets are the byte offsets of each type's f16 scales in a
// block: d, then m (Q4_1, Q5_1) or dmin (Q2_K, Q4_K, Q5_K).
var ggufScaleOffsets = map[GGUFType][]int{
	GGUFQ8_0: {0}, GGUFQ4_0: {0}, GGUFQ4_1: {0, 2}, GGUFQ5_0: {0}, GGUFQ5_1: {0, 2},
	GGUFQ2_K: {80, 82}, GGUFQ3_K: {108}, GGUFQ4_K: {0, 2}, GGUFQ5_K: {0, 2}, GGUFQ6_K: {208},
}

// ggufSimpleQuantizers quantize one block and return its float32 d and m
// (0 when the type has none) for batched f16 rounding; the block's own
// arithmetic never reads the rounded values back.
var ggufSimpleQuantizers = map[GGUFType]func(dst []byte, x []float32) (d, m float32){
	GGUFQ8_0: quantizeBlockQ8_0,
	GGUFQ4_0: quantizeBlockQ4_0,
	GGUFQ4_1: quantizeBlockQ4_1,
	GGUFQ5_0: quantizeBlockQ5_0,
	GGUFQ5_1: quantizeBlockQ5_1,
}

// ggufQuantizers are the k-quant block quantizers, which requantize
// against their f16-rounded scales.
var ggufQuantizers = map[GGUFType]func(dst []byte, x []float32, sc *f16Scratch){
	GGUFQ2_K: quantizeBlockQ2_K,
	GGUFQ3_K: quantizeBlockQ3_K,
	GGUFQ4_K: quantizeBlockQ4_K,
	GGUFQ5_K: quantizeBlockQ5_K,
	GGUFQ6_K: quantizeBlockQ6_K,
}

// ggufDequantizers decode one block given its widened f16 scales.
var ggufDequantizers = map[GGUFType]func(dst []float32, b []byte, d, m float32){
	GGUFQ8_0: dequantizeBlockQ8_0,
	GGUFQ4_0: dequantizeBlockQ4_0,
	GGUFQ4_1: dequantizeBlockQ4_1,
	GGUFQ5_0: dequantizeBlockQ5_0,
	GGUFQ5_1: dequantizeBlockQ5_1,
	GGUFQ2_K: dequantizeBlockQ2_K,
	GGUFQ3_K: dequantizeBlockQ3_K,
	GGUFQ4_K: dequantizeBlockQ4_K,
	GGUFQ5_K: dequantizeBlockQ5_K,
	GGUFQ6_K: dequantizeBlockQ6_K,
}

// f16Scratch holds the one-element buffers of the f16 conversions, so a
// block loop converts its scales with the kernels without allocating.
type f16Scratch struct {
	h [1]uint16
	f [1]float32
}

// f16 rounds v to binary16 (RNE) with kernels.F32ToF16.
func (s *f16Scratch) f16(v float32) uint16 {
	s.f[0] = v
	kernels.F32ToF16(s.h[:], s.f[:])
	return s.h[0]
}

// f32 widens binary16 bits to float32 with kernels.F16ToF32.
func (s *f16Scratch) f32(h uint16) float32 {
	s.h[0] = h
	kernels.F16ToF32(s.f[:], s.h[:])
	return s.f[0]
}

func (s *f16Scratch) put(b []byte, v float32) {
	h := s.f16(v)
	b[0], b[1] = byte(h), byte(h>>8)
}

func (s *f16Scratch) get(b []byte) float32 { return s.f32(uint16(b[0]) | uint16(b[1])<<8) }

// fabs is fabsf.
func fabs(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
