package kernels

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// Benchmarks of every kernel at 4 KiB, 1 MiB and 256 MiB (the size of the
// float32 operand), with b.SetBytes = bytes read + written and a metric
// "x-copy": the kernel's bytes/s divided by copy()'s bytes/s for the same
// number of bytes moved (copy of half of them), from interleaved runs in the
// same benchmark (see runKernel). The names do not carry the path, so
//
//	go test -run '^$' -bench . ./ops/kernels/              # fastest path
//	go test -run '^$' -bench . -tags noasm ./ops/kernels/  # pure-Go twins
//	go test -run '^$' -bench . ./ops/kernels/ -kernels.impl=avx2
//
// give comparable results for benchstat; bench/kernels.sh prints the table.

var implFlag = flag.String("kernels.impl", "", "force a kernel path (avx512, avx2, generic) for tests and benchmarks")

func TestMain(m *testing.M) {
	flag.Parse()
	if *implFlag != "" {
		setImpl(*implFlag)
	}
	os.Exit(m.Run())
}

var benchSizes = []struct {
	name  string
	bytes int
}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}, {"256MiB", 256 << 20}}

const maxBenchElems = 64 << 20 // 256 MiB of float32

var bench struct {
	x, y     []float32
	h        []uint16
	b8       []uint8
	mask     []bool
	csrc     []byte
	cdst     []byte
	prepared bool
}

func benchBuffers() {
	if bench.prepared {
		return
	}
	rng := rand.New(rand.NewPCG(1, 1))
	tile := make([]float32, 1<<16)
	for i := range tile {
		tile[i] = float32(rng.NormFloat64() * 0.02)
	}
	bench.x = make([]float32, maxBenchElems)
	bench.y = make([]float32, maxBenchElems)
	for i := 0; i < maxBenchElems; i += len(tile) {
		copy(bench.x[i:], tile)
		copy(bench.y[i:], tile[100:])
	}
	bench.h = make([]uint16, maxBenchElems)
	F32ToBF16(bench.h, bench.x)
	bench.b8 = make([]uint8, maxBenchElems)
	F32ToF8E4M3(bench.b8, bench.x)
	bench.mask = make([]bool, maxBenchElems)
	// Write every page: an untouched allocation maps the shared zero page,
	// and copying from it runs at cache speed (a 3× too fast baseline).
	bench.csrc = make([]byte, 384<<20)
	bench.cdst = make([]byte, 384<<20)
	for i := range bench.csrc {
		bench.csrc[i] = byte(i)
	}
	copy(bench.cdst, bench.csrc)
	for i := range bench.mask {
		bench.mask[i] = i&1 == 0
	}
	bench.prepared = true
}

// copyOnce copies moved/2 bytes, i.e. moves `moved` bytes.
func copyOnce(moved int) {
	half := moved / 2
	copy(bench.cdst[:half], bench.csrc[:half])
}

// runKernel benchmarks f, which moves `moved` bytes per call. Besides the
// usual ns/op and MB/s it reports "x-copy": the kernel's speed relative to
// copy() of the same bytes, from the fastest of interleaved kernel/copy runs
// (the minimum is robust to the other processes of a shared machine, the
// mean is not), and "copy-GB/s", that copy's speed.
func runKernel(b *testing.B, moved int, f func()) {
	b.ReportAllocs()
	b.SetBytes(int64(moved))
	f() // warm
	b.ResetTimer()
	for b.Loop() {
		f()
	}
	b.StopTimer()
	bestK, bestC := time.Duration(1<<62), time.Duration(1<<62)
	start := time.Now()
	for reps := 0; reps < 7 || (reps < 200 && time.Since(start) < 300*time.Millisecond); reps++ {
		t0 := time.Now()
		f()
		t1 := time.Now()
		copyOnce(moved)
		t2 := time.Now()
		bestK, bestC = min(bestK, t1.Sub(t0)), min(bestC, t2.Sub(t1))
	}
	b.ReportMetric(bestC.Seconds()/bestK.Seconds(), "x-copy")
	b.ReportMetric(float64(moved)/bestC.Seconds()/1e9, "copy-GB/s")
	b.ReportMetric(float64(moved)/bestK.Seconds()/1e9, "best-GB/s")
}

type benchCase struct {
	name  string
	moved func(n int) int // bytes read + written for n elements
	run   func(n int)
}

var benchCases = []benchCase{
	{"Axpy", func(n int) int { return 12 * n }, func(n int) { Axpy(0.5, bench.x[:n], bench.y[:n]) }},
	{"Scale", func(n int) int { return 8 * n }, func(n int) { Scale(1, bench.y[:n]) }},
	{"ScaleTo", func(n int) int { return 8 * n }, func(n int) { ScaleTo(bench.y[:n], 0.5, bench.x[:n]) }},
	{"Add", func(n int) int { return 12 * n }, func(n int) { Add(bench.y[:n], bench.x[:n]) }},
	{"Sub", func(n int) int { return 12 * n }, func(n int) { Sub(bench.y[:n], bench.x[:n]) }},
	{"Neg", func(n int) int { return 8 * n }, func(n int) { Neg(bench.y[:n]) }},
	{"Mul", func(n int) int { return 12 * n }, func(n int) { Mul(bench.y[:n], bench.x[:n]) }},
	{"AbsMax", func(n int) int { return 4 * n }, func(n int) { AbsMax(bench.x[:n]) }},
	{"SumSquares", func(n int) int { return 4 * n }, func(n int) { SumSquares(bench.x[:n]) }},
	{"Dot", func(n int) int { return 8 * n }, func(n int) { Dot(bench.x[:n], bench.y[:n]) }},
	{"F16ToF32", func(n int) int { return 6 * n }, func(n int) { F16ToF32(bench.y[:n], bench.h[:n]) }},
	{"F32ToF16", func(n int) int { return 6 * n }, func(n int) { F32ToF16(bench.h[:n], bench.x[:n]) }},
	{"BF16ToF32", func(n int) int { return 6 * n }, func(n int) { BF16ToF32(bench.y[:n], bench.h[:n]) }},
	{"F32ToBF16", func(n int) int { return 6 * n }, func(n int) { F32ToBF16(bench.h[:n], bench.x[:n]) }},
	{"F8E4M3ToF32", func(n int) int { return 5 * n }, func(n int) { F8E4M3ToF32(bench.y[:n], bench.b8[:n]) }},
	{"F32ToF8E4M3", func(n int) int { return 5 * n }, func(n int) { F32ToF8E4M3(bench.b8[:n], bench.x[:n]) }},
	{"F8E5M2ToF32", func(n int) int { return 5 * n }, func(n int) { F8E5M2ToF32(bench.y[:n], bench.b8[:n]) }},
	{"F32ToF8E5M2", func(n int) int { return 5 * n }, func(n int) { F32ToF8E5M2(bench.b8[:n], bench.x[:n]) }},
	// One pass over x; AbsThreshold makes two (16-bit digits), TopKMask two
	// plus the mask pass, so x-copy ≈ 1/passes for a memory-bound selector.
	{"AbsThreshold", func(n int) int { return 4 * n }, func(n int) { AbsThreshold(bench.x[:n], n/10) }},
	{"TopKMask", func(n int) int { return 5 * n }, func(n int) { TopKMask(bench.mask[:n], bench.x[:n], n/10) }},
}

func BenchmarkKernels(b *testing.B) {
	benchBuffers()
	for _, c := range benchCases {
		for _, s := range benchSizes {
			n := s.bytes / 4
			b.Run(c.name+"/"+s.name, func(b *testing.B) { runKernel(b, c.moved(n), func() { c.run(n) }) })
		}
	}
}

// BenchmarkCopy is copy() of half of each size's bytes (SetBytes = bytes
// moved), the baseline the x-copy metric divides by.
func BenchmarkCopy(b *testing.B) {
	benchBuffers()
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			half := s.bytes / 2
			b.SetBytes(int64(s.bytes))
			b.ReportAllocs()
			for b.Loop() {
				copy(bench.cdst[:half], bench.csrc[:half])
			}
		})
	}
}

// BenchmarkRankUpdate is W(out×in) += s·B·A for W of 4 KiB, 1 MiB, 64 MiB
// (4096×4096, the target) and 256 MiB at r = 16. Bytes = W read +
// written; x-copy compares with copying W.
func BenchmarkRankUpdate(b *testing.B) {
	benchBuffers()
	for _, d := range []int{32, 512, 4096, 8192} {
		r := 16
		w := bench.y[:d*d]
		bm := bench.x[:d*r]
		am := bench.x[d*r : d*r+r*d]
		b.Run(fmt.Sprintf("%dx%d_r%d", d, d, r), func(b *testing.B) {
			runKernel(b, 8*d*d, func() { RankUpdate(w, d, d, 1e-3, bm, am, r) })
		})
	}
}

// BenchmarkParallel times Scale with and without the goroutine split around
// the threshold parMin, the measurement behind its value.
func BenchmarkParallel(b *testing.B) {
	benchBuffers()
	for _, n := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		for _, par := range []bool{false, true} {
			b.Run(fmt.Sprintf("Scale/%dKi/par=%v", n>>10, par), func(b *testing.B) {
				old := parMin
				if par {
					parMin = 1
				} else {
					parMin = math.MaxInt
				}
				defer func() { parMin = old }()
				runKernel(b, 8*n, func() { Scale(1, bench.y[:n]) })
			})
		}
	}
}
