package ops

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/adaptool/adaptool/quant"
)

// BenchmarkApplyQuantized folds a rank-16 LoRA (ΔW scaled to ~0.1 of the
// weights' spread) into one 4096×4096 base weight of N(0, 0.02²) values
// stored NF4 (blocksize 64, double quantization), LLM.int8 or FP8 E4M3
// (per-channel): ms/module (wall) and cpu-ms/module (all threads; the
// machine is shared, so wall time varies) are one whole apply (sha256 of the inputs,
// dequantize, update, requantize, write), x-copy its time over a copy() of
// the base bytes in the same run; the requantization error is reported
// too (rmse, rel-dW = ‖Q(W')−W'‖/‖ΔW‖, snr-dB).
func BenchmarkApplyQuantized(b *testing.B) {
	const n = 4096
	for _, c := range []struct {
		name string
		p    quant.Params
	}{
		{"nf4-dq", quant.Params{Scheme: quant.SchemeNF4, DoubleQuant: true}},
		{"int8", quant.Params{Scheme: quant.SchemeInt8}},
		{"fp8-e4m3-channel", quant.Params{Scheme: quant.SchemeFP8E4M3, Granularity: "channel"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			q, err := quant.QuantizeTensor("model.q_proj.weight", []int{n, n}, safetensors.BF16, gaussian(1, n*n, 0.02), c.p)
			if err != nil {
				b.Fatal(err)
			}
			base := filepath.Join(dir, "model.safetensors")
			if err := safetensors.WriteFile(base, q.Tensors, nil); err != nil {
				b.Fatal(err)
			}
			ad := filepath.Join(dir, "lora")
			if _, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 1, R: 16, Alpha: 16, Modules: []testgen.Module{{Name: "model.q_proj", In: n, Out: n}}}); err != nil {
				b.Fatal(err)
			}
			out := filepath.Join(dir, "out.safetensors")
			size := q.Bytes()
			src, dst := make([]byte, size), make([]byte, size)
			var rep *ApplyReport
			var copyTime time.Duration
			b.SetBytes(size)
			b.ResetTimer()
			c0 := cpuTime()
			for b.Loop() {
				t0 := time.Now()
				copy(dst, src)
				copyTime += time.Since(t0)
				// ΔW entries ≈ 0.33 at λ = 1; λ = 0.006 makes them ≈ 0.1·0.02.
				if rep, err = Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 0.006}}}, RunOptions{Output: out}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/module")
			el := b.Elapsed() - copyTime
			b.ReportMetric(float64(el.Milliseconds())/float64(b.N), "ms/module")
			b.ReportMetric(float64(el)/math.Max(float64(copyTime), 1), "x-copy")
			rq := rep.Modules[0].Requant
			b.ReportMetric(rq.RMSE, "rmse")
			b.ReportMetric(*rq.RelDelta, "rel-dW")
			b.ReportMetric(*rq.SNRdB, "snr-dB")
			b.ReportMetric(*rq.Cosine, "cos-applied")
		})
	}
}

// BenchmarkApplyLoHa folds a rank-16 LoHa (dense delta built in float64)
// into one 4096×4096 BF16 weight.
func BenchmarkApplyLoHa(b *testing.B) {
	const n, r = 4096, 16
	dir := b.TempDir()
	base := filepath.Join(dir, "model.safetensors")
	w := make([]byte, 2*n*n)
	if err := safetensors.FromFloat32(w, gaussian(1, n*n, 0.02), safetensors.BF16); err != nil {
		b.Fatal(err)
	}
	if err := safetensors.WriteFile(base, []safetensors.Tensor{{Name: "model.q.weight", DType: safetensors.BF16, Shape: []int{n, n}, Data: w}}, nil); err != nil {
		b.Fatal(err)
	}
	ad := filepath.Join(dir, "loha")
	var ts []safetensors.Tensor
	for i, s := range []struct {
		role  string
		shape []int
	}{{"hada_w1_a", []int{n, r}}, {"hada_w1_b", []int{r, n}}, {"hada_w2_a", []int{n, r}}, {"hada_w2_b", []int{r, n}}} {
		ts = append(ts, safetensors.Tensor{Name: "base_model.model.model.q." + s.role, DType: safetensors.F32, Shape: s.shape,
			Data: safetensors.Float32Bytes(gaussian(uint64(i+2), n*r, 0.1))})
	}
	if err := os.MkdirAll(ad, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ad, "adapter_config.json"), []byte(`{"peft_type": "LOHA", "r": 16, "alpha": 16, "target_modules": ["q"]}`), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := safetensors.WriteFile(filepath.Join(ad, "adapter_model.safetensors"), ts, nil); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out.safetensors")
	b.SetBytes(2 * n * n)
	c0 := cpuTime()
	for b.Loop() {
		if _, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{ad, 1}}}, RunOptions{Output: out}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/module")
}
