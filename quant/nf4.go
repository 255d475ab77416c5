package quant

import (
	"fmt"
	"math/bits"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/adaptool/adaptool/internal/mmapfile"
	"github.com/adaptool/adaptool/ops/kernels"
)

// DefaultBlockSize is the bitsandbytes default block size of 4-bit
// quantization (Params4bit, quantize_4bit).
const DefaultBlockSize = 64

// MinBlockSize and MaxBlockSize bound the 4-bit block size; valid sizes are
// the powers of two in between.
const (
	MinBlockSize = 32
	MaxBlockSize = 4096
)

// NF4Code is the NormalFloat4 code of bitsandbytes, indices 0…15, exactly
// as the float32 constants of bitsandbytes (functional.py, kernels.cu). The
// test regenerates it from its definition (normal quantiles).
var NF4Code = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// CheckBlockSize returns nil when bs is a valid 4-bit block size (a power of
// two in [MinBlockSize, MaxBlockSize]) and an ErrBlockSize error otherwise.
func CheckBlockSize(bs int) error {
	if bs < MinBlockSize || bs > MaxBlockSize || bits.OnesCount(uint(bs)) != 1 {
		return fmt.Errorf("%w: %d (4-bit block sizes are powers of two from %d to %d)", ErrBlockSize, bs, MinBlockSize, MaxBlockSize)
	}
	return nil
}

// NumBlocks returns ⌈n/bs⌉, the number of blocks (and absmax values) of n
// elements; a trailing partial block counts as one.
func NumBlocks(n, bs int) int { return (n + bs - 1) / bs }

// PackedLen returns the number of bytes that n 4-bit codes occupy:
// ⌈n/2⌉ (an odd length is padded with one zero nibble).
func PackedLen(n int) int { return (n + 1) / 2 }

// lutBits is the resolution of the bucket tables of the 4-bit lookup: a
// scaled value is mapped to one of 2^lutBits buckets covering its range.
const lutBits = 7

// lut4 is the branchless nearest-code lookup of one 4-bit code book.
//
// The scheme-specific hot loop of NF4/FP4 quantization (see quantizeBlocks):
// for a scaled value s, bucket k = int(s·scale + bias) selects base[k], the
// number of decision thresholds that lie at or below the start of the
// bucket's left neighbour; then the rank is base[k] + (s > th[base[k]]).
// Since adjacent thresholds are further apart than three buckets (checked when
// the table is built), this single strict comparison reproduces the
// reference decision tree exactly, including its tie rule (a value equal to
// a threshold goes to the lower code).
type lut4 struct {
	scale, bias float32
	base        [256]uint8  // indexed by uint8(bucket)
	th          [16]float32 // thresholds ascending, padded with +Inf
	rank2code   [16]uint8   // rank (number of thresholds below) → code bits
}

// newLUT4 builds the table for ascending thresholds th over [lo, hi] with
// 2^lutBits buckets (2^(lutBits+1) when lo < 0).
func newLUT4(th []float32, rank2code []uint8, lo, hi float32) *lut4 {
	nb := 1 << lutBits
	if lo < 0 {
		nb = 1 << (lutBits + 1)
	}
	return newLUT4N(th, rank2code, lo, hi, nb)
}

// newLUT4N builds the table with nb ≤ 256 buckets.
func newLUT4N(th []float32, rank2code []uint8, lo, hi float32, nb int) *lut4 {
	t := &lut4{}
	t.scale = float32(nb-2) / (hi - lo)
	t.bias = -lo*t.scale + 1
	for i := range t.th {
		t.th[i] = float32(inf32())
	}
	copy(t.th[:], th)
	copy(t.rank2code[:], rank2code)
	w := 1 / float64(t.scale)
	for k := range t.base[:nb] {
		start := float64(lo) + (float64(k)-1-1)*w // start of the left neighbour bucket
		n := 0
		for _, v := range th {
			if float64(v) <= start {
				n++
			}
		}
		t.base[k] = uint8(n)
	}
	for i := 1; i < len(th); i++ {
		if float64(th[i]-th[i-1]) <= 3.01*w {
			panic("quant: 4-bit lookup thresholds too close for the bucket table")
		}
	}
	return t
}

// rank returns the number of thresholds strictly below s, for s in [lo, hi].
func (t *lut4) rank(s float32) uint8 {
	b := t.base[uint8(int32(s*t.scale+t.bias))]
	r := b
	if s > t.th[b&15] {
		r++
	}
	return r
}

// nf4Thresholds are the decision thresholds of bitsandbytes' dQuantizeNF4
// (csrc/kernels.cu), literally as the kernel's float literals: the
// midpoints of adjacent NF4Code values as bitsandbytes computed them (some
// differ from the float32-rounded exact midpoint by one ulp, which is why
// they are copied rather than recomputed). A value above a threshold goes
// to the upper code.
var nf4Thresholds = []float32{
	-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
	-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
	0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
	0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
}

var nf4LUT = func() *lut4 {
	r := make([]uint8, 16)
	for i := range r {
		r[i] = uint8(i)
	}
	return newLUT4(nf4Thresholds, r, -1, 1)
}()

// nf4Index returns the NF4 code of a scaled value s: the index of the
// nearest code value, a value on a midpoint going to the lower code; values
// outside [-1, 1] are clamped and NaN gives 0 (as the CUDA kernel's decision
// tree with strict comparisons).
func nf4Index(s float32) uint8 {
	if !(s >= -1) {
		s = -1
	}
	if s > 1 {
		s = 1
	}
	return nf4LUT.rank(s)
}

// absmaxFloor is the lower clamp of the divisor absmax, so that an all-zero
// block quantizes to code 0.0 instead of dividing by zero. The stored absmax
// is the block's true maximum.
const absmaxFloor = 1e-38

// quantize4 is the shared NF4/FP4 block quantizer. For each block of bs
// elements (the last may be partial): absmax = kernels.AbsMax(block);
// inv = 1/max(absmax, 1e-38) in float32; each element's code is that of
// x·inv; codes are packed two per byte, the first element in the high
// nibble, an odd tail padded with a zero low nibble.
func quantize4(dst []byte, absmax []float32, src []float32, bs int, scheme string, fp4 bool) error {
	if err := CheckBlockSize(bs); err != nil {
		return err
	}
	n := len(src)
	if len(dst) != PackedLen(n) || len(absmax) != NumBlocks(n, bs) {
		return fmt.Errorf("%w: %s of %d values with block size %d needs %d packed bytes and %d absmax, got %d and %d",
			ErrLength, scheme, n, bs, PackedLen(n), NumBlocks(n, bs), len(dst), len(absmax))
	}
	forBlocks(n, bs, func(b0, b1 int) {
		full := min(b1, n/bs)
		if fp4 && quantFP4Fast(dst, absmax, src, bs, b0, full) || !fp4 && quantNF4Fast(dst, absmax, src, bs, b0, full) {
			b0 = full
		}
		for b := b0; b < b1; b++ {
			lo := b * bs
			hi := min(lo+bs, n)
			blk := src[lo:hi]
			am := kernels.AbsMax(blk)
			absmax[b] = am
			inv := 1 / max(am, absmaxFloor)
			out := dst[lo/2 : (hi+1)/2]
			if fp4 {
				packFP4Fast(out, blk, inv)
			} else {
				packNF4Fast(out, blk, inv)
			}
		}
	})
	return nil
}

// packNF4 is the NF4 hot loop: out[i] = code(x[2i]·inv)<<4 | code(x[2i+1]·inv),
// an odd tail padded with a zero low nibble. It relies on |x·inv| ≤ 1 up to
// rounding (inv is the block's reciprocal absmax), so no clamp is needed:
// the bucket tables map the few values beyond ±1 by an ulp to the end
// codes, and NaN (bucket 0, no comparison true) to code 0 as the CUDA
// kernel does. See lut4 for the lookup.
func packNF4(out []byte, x []float32, inv float32) {
	t := nf4LUT
	sc, bi := t.scale, t.bias
	m := len(x) &^ 1
	out = out[:(len(x)+1)/2]
	for i := 0; i < m; i += 2 {
		s0 := x[i] * inv
		s1 := x[i+1] * inv
		b0 := t.base[uint8(int32(s0*sc+bi))]
		b1 := t.base[uint8(int32(s1*sc+bi))]
		b0 += gt(s0, t.th[b0&15])
		b1 += gt(s1, t.th[b1&15])
		out[i>>1] = b0<<4 | b1&15
	}
	if m < len(x) {
		out[m>>1] = nf4Index(x[m]*inv) << 4
	}
}

// gt returns 1 if a > b and 0 otherwise (NaN: 0), compiled without a
// branch (SETHI), so the lookup does not pay branch mispredictions on
// random data.
func gt(a, b float32) uint8 {
	var c uint8
	if a > b {
		c = 1
	}
	return c
}

// packFP4 is the FP4 hot loop, as packNF4 with fp4Index's sign-magnitude
// rule.
func packFP4(out []byte, x []float32, inv float32) {
	m := len(x) &^ 1
	out = out[:(len(x)+1)/2]
	for i := 0; i < m; i += 2 {
		out[i>>1] = fp4Index(x[i]*inv)<<4 | fp4Index(x[i+1]*inv)
	}
	if m < len(x) {
		out[m>>1] = fp4Index(x[m]*inv) << 4
	}
}

// dequantize4 is the shared NF4/FP4 dequantizer: x = code[q]·absmax[block]
// in float32, the first element of a byte in its high nibble. Per block it
// builds the 16 products once (the same float32 multiplications) and then
// looks them up.
func dequantize4(dst []float32, src []byte, absmax []float32, code *[16]float32, bs int, scheme string) error {
	if err := CheckBlockSize(bs); err != nil {
		return err
	}
	n := len(dst)
	if len(src) != PackedLen(n) || len(absmax) != NumBlocks(n, bs) {
		return fmt.Errorf("%w: %s of %d values with block size %d needs %d packed bytes and %d absmax, got %d and %d",
			ErrLength, scheme, n, bs, PackedLen(n), NumBlocks(n, bs), len(src), len(absmax))
	}
	forBlocks(n, bs, func(b0, b1 int) {
		var lut [16]float32
		if full := min(b1, n/bs); unpack4Fast(dst, src, absmax, code, bs, b0, full) {
			b0 = full
		}
		for b := b0; b < b1; b++ {
			lo := b * bs
			hi := min(lo+bs, n)
			am := absmax[b]
			for i := range lut {
				lut[i] = code[i] * am
			}
			out := dst[lo:hi]
			in := src[lo/2 : (hi+1)/2]
			m := len(out) &^ 1
			for i := 0; i < m; i += 2 {
				c := in[i/2]
				out[i] = lut[c>>4]
				out[i+1] = lut[c&15]
			}
			if m < len(out) {
				out[m] = lut[in[m/2]>>4]
			}
		}
	})
	return nil
}

// parallelMin is the element count from which block loops are split across
// goroutines.
const parallelMin = 1 << 17

// forBlocks calls f on contiguous ranges of the ⌈n/bs⌉ blocks, in parallel
// (GOMAXPROCS workers) when n is large, inline otherwise. Ranges never
// share a block, so writes to per-block outputs do not overlap. The input
// may be a mapped file truncated meanwhile: a worker's memory fault is
// re-raised on the caller once every worker has finished, where the
// caller's mmapfile.Guard turns it into an error naming the file.
func forBlocks(n, bs int, f func(b0, b1 int)) {
	nb := NumBlocks(n, bs)
	w := runtime.GOMAXPROCS(0)
	if n < parallelMin || w < 2 || nb < 2 {
		f(0, nb)
		return
	}
	w = min(w, nb, n/(parallelMin/2))
	if w < 2 {
		f(0, nb)
		return
	}
	var wg sync.WaitGroup
	var faults mmapfile.Faults
	per := (nb + w - 1) / w
	for b0 := 0; b0 < nb; b0 += per {
		b1 := min(b0+per, nb)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer faults.Catch(debug.SetPanicOnFault(true))
			f(b0, b1)
		}()
	}
	wg.Wait()
	faults.Rethrow()
}

// QuantizeNF4 quantizes src (flattened row-major) to packed NF4 codes in
// dst (len PackedLen(len(src))) and per-block absmax values in absmax (len
// NumBlocks(len(src), blockSize)), exactly as bitsandbytes quantize_4bit
// with quant_type="nf4":
//
//   - absmax is max|x| over each block of blockSize elements, a trailing
//     partial block having its own;
//   - each x is scaled by the float32 reciprocal 1/absmax (divisor clamped
//     to ≥ 1e-38 so that zero blocks give code 0.0), clamped to [-1, 1], and
//     mapped to the nearest NF4Code value, a value exactly on a midpoint
//     going to the lower code (the CUDA kernel's strict comparisons); NaN
//     gives code 0;
//   - byte i holds code 2i in its high nibble and code 2i+1 in its low one.
//
// It returns an ErrBlockSize or ErrLength error for bad arguments. Large
// inputs are processed in parallel over blocks.
func QuantizeNF4(dst []byte, absmax []float32, src []float32, blockSize int) error {
	return quantize4(dst, absmax, src, blockSize, "nf4", false)
}

// DequantizeNF4 reverses QuantizeNF4: dst[i] = NF4Code[q_i]·absmax[i/blockSize]
// computed in float32. len(dst) is the element count.
func DequantizeNF4(dst []float32, src []byte, absmax []float32, blockSize int) error {
	return dequantize4(dst, src, absmax, &NF4Code, blockSize, "nf4")
}

// Dequantize4 dequantizes packed 4-bit codes with an arbitrary 16-entry code
// book (the quant_map tensor of a bitsandbytes checkpoint):
// dst[i] = code[q_i]·absmax[i/blockSize] in float32.
func Dequantize4(dst []float32, src []byte, absmax []float32, code *[16]float32, blockSize int) error {
	return dequantize4(dst, src, absmax, code, blockSize, "4-bit")
}
