package quant

import (
	"testing"
	"time"
)

// benchN is the element count of the throughput benchmarks: 2^22 float32
// (16 MiB of input), larger than the caches, so the figures are
// memory-bound like real tensors.
const benchN = 1 << 22

// runThroughput benchmarks f over traffic bytes (read + written) per call
// and reports its GB/s and the ratio to copy() of the same traffic
// (traffic/2 bytes copied: copy reads and writes each byte), measured in
// the same run by interleaving one copy with every call, so both see the
// same machine load (the build machine is shared).
func runThroughput(b *testing.B, traffic int, f func()) {
	n := traffic / 2
	src := make([]byte, n)
	dst := make([]byte, n)
	for i := range src {
		src[i] = byte(i)
	}
	f()
	copy(dst, src)
	b.SetBytes(int64(traffic))
	b.ReportAllocs()
	b.ResetTimer()
	var tf, tc time.Duration
	for b.Loop() {
		t0 := time.Now()
		f()
		t1 := time.Now()
		copy(dst, src)
		tc += time.Since(t1)
		tf += t1.Sub(t0)
	}
	b.StopTimer()
	rate := float64(traffic) * float64(b.N) / tf.Seconds()
	crate := float64(2*n) * float64(b.N) / tc.Seconds()
	b.ReportMetric(rate/1e9, "GB/s")
	b.ReportMetric(crate/1e9, "copy-GB/s")
	b.ReportMetric(rate/crate, "x-copy")
}

func BenchmarkCopy(b *testing.B) {
	src := make([]byte, benchN*4)
	dst := make([]byte, benchN*4)
	b.SetBytes(int64(2 * len(src)))
	for b.Loop() {
		copy(dst, src)
	}
}

func BenchmarkQuantize(b *testing.B) {
	x := normals(benchN, 1)
	n4 := PackedLen(benchN)
	nb := NumBlocks(benchN, 64)
	packed := make([]byte, n4)
	absmax := make([]float32, nb)
	t4 := 4*benchN + n4 + 4*nb
	b.Run("nf4", func(b *testing.B) {
		runThroughput(b, t4, func() { _ = QuantizeNF4(packed, absmax, x, 64) })
	})
	b.Run("fp4", func(b *testing.B) {
		runThroughput(b, t4, func() { _ = QuantizeFP4(packed, absmax, x, 64) })
	})
	b.Run("nf4+dq", func(b *testing.B) {
		runThroughput(b, t4+nb, func() {
			_ = QuantizeNF4(packed, absmax, x, 64)
			_ = DoubleQuantize(absmax)
		})
	})
	rows, cols := benchN/4096, 4096
	q8 := make([]int8, benchN)
	scb := make([]float32, rows)
	b.Run("int8-rows", func(b *testing.B) {
		runThroughput(b, 5*benchN, func() { _ = QuantizeInt8Rows(q8, scb, x, rows, cols) })
	})
	b.Run("int8-group128", func(b *testing.B) {
		s := make([]float32, benchN/128)
		runThroughput(b, 5*benchN, func() {
			_ = QuantizeInt8Groups(q8, s, nil, x, rows, cols, Granularity{Kind: PerGroup, Size: 128})
		})
	})
	f8 := make([]uint8, benchN)
	for _, g := range []Granularity{{Kind: PerTensor}, {Kind: PerChannel}, {Kind: PerBlock, Size: 128}} {
		s := make([]float32, func() int { n, _ := g.numScales(rows, cols); return n }())
		b.Run("fp8-e4m3-"+g.String(), func(b *testing.B) {
			runThroughput(b, 5*benchN, func() { _ = QuantizeFP8(f8, s, x, rows, cols, E4M3, g) })
		})
	}
	for _, typ := range GGUFTypes {
		n, _ := typ.RowSize(benchN)
		dst := make([]byte, n)
		b.Run("gguf-"+typ.String(), func(b *testing.B) {
			runThroughput(b, 4*benchN+n, func() { _ = QuantizeGGUF(dst, x, typ) })
		})
	}
}

func BenchmarkDequantize(b *testing.B) {
	x := normals(benchN, 1)
	out := make([]float32, benchN)
	n4 := PackedLen(benchN)
	nb := NumBlocks(benchN, 64)
	packed := make([]byte, n4)
	absmax := make([]float32, nb)
	_ = QuantizeNF4(packed, absmax, x, 64)
	t4 := 4*benchN + n4 + 4*nb
	b.Run("nf4", func(b *testing.B) {
		runThroughput(b, t4, func() { _ = DequantizeNF4(out, packed, absmax, 64) })
	})
	_ = QuantizeFP4(packed, absmax, x, 64)
	b.Run("fp4", func(b *testing.B) {
		runThroughput(b, t4, func() { _ = DequantizeFP4(out, packed, absmax, 64) })
	})
	rows, cols := benchN/4096, 4096
	q8 := make([]int8, benchN)
	scb := make([]float32, rows)
	_ = QuantizeInt8Rows(q8, scb, x, rows, cols)
	b.Run("int8-rows", func(b *testing.B) {
		runThroughput(b, 5*benchN, func() { _ = DequantizeInt8Rows(out, q8, scb, rows, cols) })
	})
	f8 := make([]uint8, benchN)
	s := make([]float32, 1)
	_ = QuantizeFP8(f8, s, x, rows, cols, E4M3, Granularity{})
	b.Run("fp8-e4m3-tensor", func(b *testing.B) {
		runThroughput(b, 5*benchN, func() { _ = DequantizeFP8(out, f8, s, rows, cols, E4M3, Granularity{}) })
	})
	for _, typ := range GGUFTypes {
		n, _ := typ.RowSize(benchN)
		src := make([]byte, n)
		_ = QuantizeGGUF(src, x, typ)
		b.Run("gguf-"+typ.String(), func(b *testing.B) {
			runThroughput(b, 4*benchN+n, func() { _ = DequantizeGGUF(out, src, typ) })
		})
	}
}
