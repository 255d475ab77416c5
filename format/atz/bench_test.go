package atz

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Benchmarks of the container on generated N(0, 0.02) tensors (64 MiB) and
// on the real corpus, next to plain zstd (Default and Best, whole input,
// AllLit on) and copy() of the same bytes, all in the same run. Each reports
// "ratio" (original/compressed); MB/s is of original bytes.
//
//	go test -run XXX -bench . -benchtime 3x -count 5 ./format/atz
//
// atz-pack-1core packs with Workers = 1 (one encoder; the SHA-256 runs on
// its own goroutine next to it, so divide by CPU time: "cpu-MB/s"),
// atz-pack-par with GOMAXPROCS encoders; unpack likewise.

const benchSize = 64 << 20

func benchInputs(b *testing.B) []struct {
	name string
	data []byte
} {
	return []struct {
		name string
		data []byte
	}{
		{"BF16", buildST([]stTensor{{"w", "BF16", []int{benchSize / 2}, normalBF16(benchSize/2, 0.02, 100)}}, 8)},
		{"FP32", buildST([]stTensor{{"w", "F32", []int{benchSize / 4}, normalF32(benchSize/4, 0.02, 101)}}, 8)},
	}
}

func BenchmarkPack(b *testing.B) {
	for _, in := range benchInputs(b) {
		benchAll(b, in.name, in.data)
	}
}

// BenchmarkCodec measures the chunk codec alone on one goroutine (the
// per-core figure): EncodeChunk / DecodeChunk over 128 Ki-element chunks,
// without I/O, CRCs or the whole-file SHA-256 of Pack/Unpack.
func BenchmarkCodec(b *testing.B) {
	for _, in := range []struct {
		name string
		data []byte
		spec ChunkSpec
	}{
		{"BF16", normalBF16(benchSize/2, 0.02, 100), ChunkSpec{2, true, true}},
		{"FP32", normalF32(benchSize/4, 0.02, 101), ChunkSpec{4, true, true}},
	} {
		step := chunkLen(in.spec)
		var encs [][]byte
		b.Run(in.name+"/copy", func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			dst := make([]byte, len(in.data))
			var m cpuMeter
			m.start()
			for b.Loop() {
				copy(dst, in.data)
			}
			m.stop(b, int64(len(in.data)))
		})
		b.Run(in.name+"/encode", func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			encs = make([][]byte, 0, len(in.data)/step+1)
			for off := 0; off < len(in.data); off += step {
				encs = append(encs, make([]byte, 0, step+64))
			}
			var out int
			var m cpuMeter
			m.start()
			for b.Loop() {
				out = 0
				for i, off := 0, 0; off < len(in.data); i, off = i+1, off+step {
					e, err := EncodeChunk(encs[i][:0], in.data[off:min(off+step, len(in.data))], nil, in.spec, LevelDefault)
					if err != nil {
						b.Fatal(err)
					}
					encs[i] = e
					out += len(e)
				}
			}
			m.stop(b, int64(len(in.data)))
			b.ReportMetric(float64(len(in.data))/float64(out), "ratio")
		})
		b.Run(in.name+"/decode", func(b *testing.B) {
			if encs == nil {
				b.Skip("run with the encode benchmark")
			}
			b.SetBytes(int64(len(in.data)))
			dst := make([]byte, len(in.data))
			var m cpuMeter
			m.start()
			for b.Loop() {
				for i, off := 0, 0; off < len(in.data); i, off = i+1, off+step {
					if err := DecodeChunk(dst[off:min(off+step, len(in.data))], encs[i], nil, in.spec); err != nil {
						b.Fatal(err)
					}
				}
			}
			m.stop(b, int64(len(in.data)))
		})
	}
}

// BenchmarkCorpus packs every corpus file (concatenated results).
func BenchmarkCorpus(b *testing.B) {
	files := corpusFiles(b)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var all [][]byte
	for _, n := range names {
		d, err := os.ReadFile(n)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, d)
	}
	benchAllFiles(b, "corpus", all)
}

func benchAll(b *testing.B, name string, data []byte) {
	benchAllFiles(b, name, [][]byte{data})
}

func benchAllFiles(b *testing.B, name string, files [][]byte) {
	var total int64
	for _, f := range files {
		total += int64(len(f))
	}
	b.Run(name+"/copy", func(b *testing.B) {
		b.SetBytes(total)
		dst := make([]byte, total)
		var m cpuMeter
		m.start()
		for b.Loop() {
			off := 0
			for _, f := range files {
				off += copy(dst[off:], f)
			}
		}
		m.stop(b, total)
	})
	// Output buffers are allocated and touched up front, so page faults on
	// fresh memory (a first-iteration effect of append) are not timed.
	packed := make([][]byte, len(files))
	for i, f := range files {
		packed[i] = make([]byte, len(f)+len(f)/16+1<<16)
		for j := 0; j < len(packed[i]); j += 4096 {
			packed[i][j] = 1
		}
		packed[i] = packed[i][:0]
	}
	// The source is addressable memory (byteSource), as the file PackFile
	// maps; the -reader row goes through a plain io.ReaderAt (read copies).
	for _, w := range []struct {
		name    string
		workers int
		reader  bool
	}{{"1core", 1, false}, {"par", 0, false}, {"reader-par", 0, true}} {
		b.Run(name+"/atz-pack-"+w.name, func(b *testing.B) {
			b.SetBytes(total)
			var out int64
			var m cpuMeter
			m.start()
			for b.Loop() {
				out = 0
				for i, f := range files {
					sw := &sliceWriter{b: packed[i][:0]}
					var src io.ReaderAt = byteSource(f)
					if w.reader {
						src = bytes.NewReader(f)
					}
					if _, err := Pack(sw, src, int64(len(f)), PackOptions{Workers: w.workers}); err != nil {
						b.Fatal(err)
					}
					packed[i] = sw.b
					out += int64(len(sw.b))
				}
			}
			m.stop(b, total)
			b.ReportMetric(float64(total)/float64(out), "ratio")
		})
	}
	// Unpack rows check every chunk's CRC-32C (as zstd checks its frame
	// checksum); the -sha256 row also recomputes the whole-file SHA-256
	// (the default of Unpack and the CLI).
	for _, w := range []struct {
		name    string
		workers int
		sha     bool
	}{{"1core", 1, false}, {"par", runtime.GOMAXPROCS(0), false}, {"sha256-par", runtime.GOMAXPROCS(0), true}} {
		b.Run(name+"/atz-unpack-"+w.name, func(b *testing.B) {
			for i, f := range files {
				if len(packed[i]) == 0 { // the pack benchmarks were filtered out
					sw := &sliceWriter{b: packed[i][:0]}
					if _, err := Pack(sw, bytes.NewReader(f), int64(len(f)), PackOptions{}); err != nil {
						b.Fatal(err)
					}
					packed[i] = sw.b
				}
			}
			b.SetBytes(total)
			var m cpuMeter
			m.start()
			for b.Loop() {
				for _, p := range packed {
					rd, err := NewReader(bytes.NewReader(p), int64(len(p)), WithSHA256Check(w.sha))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := rd.writeTo(io.Discard, w.workers); err != nil {
						b.Fatal(err)
					}
				}
			}
			m.stop(b, total)
		})
	}
	// zstd-best runs at 1–50 MB/s: it is measured on at most the first
	// 4 MiB of each input (its ratio on these stationary inputs is the same).
	for _, lv := range []struct {
		name  string
		level zstd.EncoderLevel
		limit int
	}{{"zstd-default", zstd.SpeedDefault, 1 << 62}, {"zstd-best", zstd.SpeedBestCompression, 4 << 20}} {
		in := make([][]byte, len(files))
		var size int64
		for i, f := range files {
			in[i] = f[:min(len(f), lv.limit)]
			size += int64(len(in[i]))
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lv.level), zstd.WithAllLitEntropyCompression(true), zstd.WithEncoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		comp := make([][]byte, len(in))
		b.Run(name+"/"+lv.name+"-compress", func(b *testing.B) {
			b.SetBytes(size)
			var out int64
			var m cpuMeter
			m.start()
			for b.Loop() {
				out = 0
				for i, f := range in {
					comp[i] = enc.EncodeAll(f, comp[i][:0])
					out += int64(len(comp[i]))
				}
			}
			m.stop(b, size)
			b.ReportMetric(float64(size)/float64(out), "ratio")
		})
		dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		b.Run(name+"/"+lv.name+"-decompress", func(b *testing.B) {
			b.SetBytes(size)
			var buf []byte
			var m cpuMeter
			m.start()
			for b.Loop() {
				for _, c := range comp {
					if buf, err = dec.DecodeAll(c, buf[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}
			m.stop(b, size)
		})
		dec.Close()
	}
}

// cpuMeter reports, next to the wall-clock MB/s, MB per CPU-second of the
// whole process ("cpu-MB/s"): on a shared, overloaded machine wall-clock
// rates swing several-fold with other users' load, while CPU time stays a
// fair per-core figure. Call start before b.Loop and stop after.
type cpuMeter struct{ t0 time.Duration }

func (m *cpuMeter) start() { m.t0 = cpuTime() }

func (m *cpuMeter) stop(b *testing.B, bytesPerOp int64) {
	d := cpuTime() - m.t0
	if d > 0 && m.t0 > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/d.Seconds(), "cpu-MB/s")
	}
}

// sliceWriter appends to a reused slice (no per-iteration zeroing).
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
