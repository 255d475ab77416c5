package quant

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
)

// writeAdapter writes a small PEFT-style LoRA file with two modules, a
// bias (1-D) and a BF16 tensor, returning its path and the float values.
func writeAdapter(t *testing.T, dir string) (string, map[string][]float32) {
	t.Helper()
	vals := map[string][]float32{}
	var ts []safetensors.Tensor
	add := func(name string, dt safetensors.DType, shape []int, seed int64, scale float32) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		x := normals(n, seed)
		for i := range x {
			x[i] *= scale
		}
		b := make([]byte, n*dt.Bits()/8)
		if err := safetensors.FromFloat32(b, x, dt); err != nil {
			t.Fatal(err)
		}
		// keep the values as stored
		y := make([]float32, n)
		if err := safetensors.ToFloat32(y, b, dt); err != nil {
			t.Fatal(err)
		}
		vals[name] = y
		ts = append(ts, safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: b})
	}
	pre := "base_model.model.layers.0."
	add(pre+"q_proj.lora_A.weight", safetensors.F32, []int{4, 96}, 1, 0.1)
	add(pre+"q_proj.lora_B.weight", safetensors.F32, []int{80, 4}, 2, 0.05)
	add(pre+"v_proj.lora_A.weight", safetensors.BF16, []int{4, 96}, 3, 0.1)
	add(pre+"v_proj.lora_B.weight", safetensors.BF16, []int{80, 4}, 4, 0.05)
	add(pre+"v_proj.bias", safetensors.F32, []int{80}, 5, 1)
	p := filepath.Join(dir, "adapter_model.safetensors")
	if err := safetensors.WriteFile(p, ts, map[string]string{"note": "test"}); err != nil {
		t.Fatal(err)
	}
	return p, vals
}

// denseLoRAError is the reference: forms B·A, B′·A′ etc. densely in float64.
func denseLoRAError(a, aq, b, bq []float32, r, in, out int) (ea, eb, eboth float64) {
	prod := func(bb, aa []float32) []float64 {
		p := make([]float64, out*in)
		for i := 0; i < out; i++ {
			for j := 0; j < in; j++ {
				var s float64
				for k := 0; k < r; k++ {
					s += float64(bb[i*r+k]) * float64(aa[k*in+j])
				}
				p[i*in+j] = s
			}
		}
		return p
	}
	ref := prod(b, a)
	rel := func(p []float64) float64 {
		var se, sr float64
		for i := range p {
			se += (p[i] - ref[i]) * (p[i] - ref[i])
			sr += ref[i] * ref[i]
		}
		return math.Sqrt(se / sr)
	}
	return rel(prod(b, aq)), rel(prod(bq, a)), rel(prod(bq, aq))
}

func TestQuantizeFileRoundTrip(t *testing.T) {
	for _, p := range []Params{
		{Scheme: SchemeNF4, BlockSize: 32},
		{Scheme: SchemeFP4, DoubleQuant: true},
		{Scheme: SchemeInt8},
		{Scheme: SchemeInt8, Granularity: "group:4", Asymmetric: true},
		{Scheme: SchemeFP8E4M3, Granularity: "channel"},
		{Scheme: SchemeFP8E5M2},
	} {
		dir := t.TempDir()
		in, vals := writeAdapter(t, dir)
		out := filepath.Join(dir, "q.safetensors")
		rep, err := QuantizeFile(in, out, FileOptions{Params: p})
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		if len(rep.Tensors) != 4 {
			t.Fatalf("%+v: %d tensors quantized, want the 4 2-D ones", p, len(rep.Tensors))
		}
		f, err := safetensors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		// The bias is copied byte-identically.
		src, _ := safetensors.Open(in)
		bi, _ := src.Data("base_model.model.layers.0.v_proj.bias")
		bo, err := f.Data("base_model.model.layers.0.v_proj.bias")
		if err != nil || !bytes.Equal(bi, bo) {
			t.Errorf("%+v: bias not copied unchanged (%v)", p, err)
		}
		src.Close()
		ds := Detect(f, f.Names())
		if len(ds) != 4 {
			t.Fatalf("%+v: Detect found %d quantized tensors", p, len(ds))
		}
		for i, tr := range rep.Tensors {
			x, shape, _, err := Dequantize(f, ds[i])
			if err != nil {
				t.Fatal(err)
			}
			if ds[i].Name != tr.Name || !slices.Equal(shape, tr.Shape) {
				t.Fatalf("%+v: detected %s %v, report %s %v", p, ds[i].Name, shape, tr.Name, tr.Shape)
			}
			st := ErrorStats(vals[tr.Name], x)
			if st.RMSE != tr.RMSE || st.MaxAbsError != tr.MaxAbsError {
				t.Errorf("%+v %s: file RMSE %g max %g, report %g %g", p, tr.Name, st.RMSE, st.MaxAbsError, tr.RMSE, tr.MaxAbsError)
			}
			var sx, se float64
			for j, v := range vals[tr.Name] {
				sx += float64(v) * float64(v)
				se += (float64(v) - float64(x[j])) * (float64(v) - float64(x[j]))
			}
			if snr := 10 * math.Log10(sx/se); math.Abs(snr-tr.SNRdB) > 1e-9 {
				t.Errorf("%s: SNR %g, report %g", tr.Name, snr, tr.SNRdB)
			}
		}
		// LoRA product errors against the dense float64 reference.
		if len(rep.LoRA) != 2 {
			t.Fatalf("%+v: %d LoRA pairs", p, len(rep.LoRA))
		}
		for _, le := range rep.LoRA {
			get := func(n string) ([]float32, []float32) {
				for _, d := range ds {
					if d.Name == n {
						y, _, _, _ := Dequantize(f, d)
						return vals[n], y
					}
				}
				t.Fatalf("no %s", n)
				return nil, nil
			}
			a, aq := get(le.A)
			b, bq := get(le.B)
			ea, eb, e := denseLoRAError(a, aq, b, bq, 4, 96, 80)
			for _, c := range [][2]float64{{ea, le.RelErrorA}, {eb, le.RelErrorB}, {e, le.RelError}} {
				if math.Abs(c[0]-c[1]) > 1e-9*max(1, c[0]) {
					t.Errorf("%+v %s: ΔW error %g, dense reference %g", p, le.Module, c[1], c[0])
				}
			}
			if (ea > eb) != (le.Worse == "A") {
				t.Errorf("%s: worse factor %s, errors A %g B %g", le.Module, le.Worse, ea, eb)
			}
		}
		// Dequantize the file: values equal the in-memory round trip, the
		// source dtype is restored, quantization metadata dropped.
		back := filepath.Join(dir, "back.safetensors")
		plan, err := DequantizeFile(out, back, DequantizeOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(back); !os.IsNotExist(err) {
			t.Fatalf("dry run wrote %s", back)
		}
		done, err := DequantizeFile(out, back, DequantizeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The plan is the report of the real run (only the output and the
		// dry-run flag differ), and its sizes are those of the output file.
		if !plan.DryRun || plan.Output != "" || plan.BytesBefore != done.BytesBefore || plan.BytesAfter != done.BytesAfter ||
			plan.FileBytesAfter != done.FileBytesAfter || len(plan.Tensors) != len(done.Tensors) {
			t.Fatalf("dry-run report %+v differs from the run's %+v", plan, done)
		}
		for i := range plan.Tensors {
			if plan.Tensors[i].Name != done.Tensors[i].Name || plan.Tensors[i].BytesAfter != done.Tensors[i].BytesAfter {
				t.Fatalf("dry-run tensor %+v, run %+v", plan.Tensors[i], done.Tensors[i])
			}
		}
		g, err := safetensors.Open(back)
		if err != nil {
			t.Fatal(err)
		}
		if g.DataSize != plan.FileBytesAfter {
			t.Errorf("dry run planned %d tensor bytes, the output holds %d", plan.FileBytesAfter, g.DataSize)
		}
		for _, d := range ds {
			ti, ok := g.Tensor(d.Name)
			si, _ := f.Tensor(d.Name)
			_ = si
			want, _, _, _ := Dequantize(f, d)
			got, err := g.Float32(d.Name)
			if !ok || err != nil {
				t.Fatalf("%s missing after dequantize: %v", d.Name, err)
			}
			origDT := safetensors.F32
			if bytes.Contains([]byte(d.Name), []byte("v_proj")) {
				origDT = safetensors.BF16
			}
			if ti.DType != origDT {
				t.Errorf("%+v %s: dequantized dtype %s, want %s", p, d.Name, ti.DType, origDT)
			}
			if origDT == safetensors.F32 {
				for j := range want {
					if got[j] != want[j] {
						t.Fatalf("%s[%d] = %g, want %g", d.Name, j, got[j], want[j])
					}
				}
			}
		}
		if _, ok := g.Metadata[MetaQuantization]; ok || g.Metadata["note"] != "test" {
			t.Errorf("metadata after dequantize: %v", g.Metadata)
		}
		f.Close()
		g.Close()
	}
}

func TestQuantizeFileSelectionAndDirs(t *testing.T) {
	dir := t.TempDir()
	adir := filepath.Join(dir, "adapter")
	os.Mkdir(adir, 0o755)
	in, _ := writeAdapter(t, adir)
	_ = in
	cfg := []byte(`{"peft_type": "LORA", "r": 4}`)
	os.WriteFile(filepath.Join(adir, "adapter_config.json"), cfg, 0o644)
	out := filepath.Join(dir, "out")
	rep, err := QuantizeFile(adir, out, FileOptions{Params: Params{Scheme: SchemeInt8}, Only: regexp.MustCompile(`q_proj|bias`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 3 || len(rep.Skipped) != 0 {
		t.Errorf("selected %d, skipped %v", len(rep.Tensors), rep.Skipped)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "adapter_config.json")); !bytes.Equal(got, cfg) {
		t.Error("adapter_config.json not copied")
	}
	f, err := safetensors.Open(filepath.Join(out, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ti, _ := f.Tensor("base_model.model.layers.0.v_proj.lora_A.weight"); ti.DType != safetensors.BF16 {
		t.Errorf("unselected tensor changed: %v", ti.DType)
	}
	if ti, _ := f.Tensor("base_model.model.layers.0.v_proj.bias.SCB"); ti.DType != safetensors.F32 || !slices.Equal(ti.Shape, []int{1}) {
		t.Errorf("1-D bias as int8 rows: SCB %v %v", ti.DType, ti.Shape)
	}
	// A group size that does not divide a tensor's columns skips it.
	rep3, err := QuantizeFile(adir, "", FileOptions{Params: Params{Scheme: SchemeInt8, Granularity: "group:32"}, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep3.Tensors) != 2 || len(rep3.Skipped) != 2 {
		t.Errorf("group:32: quantized %d, skipped %v", len(rep3.Tensors), rep3.Skipped)
	}
	// Quantizing a quantized file skips what is already quantized; with
	// nothing left to quantize it is refused (ErrNothing), the dry run's
	// report still listing what was skipped and why.
	rep2, err := QuantizeFile(filepath.Join(out, "adapter_model.safetensors"), filepath.Join(dir, "x.safetensors"),
		FileOptions{Params: Params{Scheme: SchemeNF4}, Only: regexp.MustCompile(`q_proj`), DryRun: true})
	if !errors.Is(err, ErrNothing) || !strings.Contains(err.Error(), "already quantized (int8)") || rep2 == nil {
		t.Fatalf("requantizing: err %v, want ErrNothing naming the skipped tensors", err)
	}
	if len(rep2.Tensors) != 0 || len(rep2.Skipped) == 0 {
		t.Errorf("requantizing: %d tensors, skipped %v", len(rep2.Tensors), rep2.Skipped)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.safetensors")); !os.IsNotExist(err) {
		t.Error("dry run wrote a file")
	}
}

func TestQuantizeCorpus(t *testing.T) {
	root := corpusDir(t)
	p := filepath.Join(root, "llama32-1b-qv", "adapter_model.safetensors")
	rep, err := QuantizeFile(p, "", FileOptions{Params: Params{Scheme: SchemeNF4}, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 64 || len(rep.LoRA) != 32 {
		t.Fatalf("llama32-1b-qv: %d tensors, %d LoRA pairs (want 64, 32)", len(rep.Tensors), len(rep.LoRA))
	}
	for _, le := range rep.LoRA {
		if le.Rank != 8 || !(le.RelError > 0 && le.RelError < 1) {
			t.Errorf("%s: rank %d rel error %g", le.Module, le.Rank, le.RelError)
		}
	}
}

// corpusDir returns the shared corpus root, or skips the test when it is absent.
func corpusDir(t *testing.T) string { return testcorpus.Dir(t) }

func TestQuantizeShardedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	var ts []safetensors.Tensor
	for i := 0; i < 4; i++ {
		x := normals(32*64, int64(i))
		ts = append(ts, safetensors.Tensor{Name: "layers." + itoa(i) + ".weight", DType: safetensors.F32, Shape: []int{32, 64}, Data: f32Bytes(x)})
	}
	if err := safetensors.WriteCheckpoint(ck, ts, nil, 10000); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ck, "config.json"), []byte(`{"model_type": "x"}`), 0o644)
	out := filepath.Join(dir, "q")
	rep, err := QuantizeFile(ck, out, FileOptions{Params: Params{Scheme: SchemeFP8E4M3, Granularity: "channel"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 4 {
		t.Fatalf("%d tensors", len(rep.Tensors))
	}
	c, err := safetensors.OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(Detect(c, c.Names())) != 4 {
		t.Errorf("detected %d quantized weights", len(Detect(c, c.Names())))
	}
	c.Close()
	if _, err := os.Stat(filepath.Join(out, "config.json")); err != nil {
		t.Error("config.json not copied")
	}
	back := filepath.Join(dir, "back")
	if _, err := DequantizeFile(out, back, DequantizeOptions{}); err != nil {
		t.Fatal(err)
	}
	c2, err := safetensors.OpenCheckpoint(back)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for i, tt := range ts {
		got, err := c2.Float32(tt.Name)
		if err != nil {
			t.Fatal(err)
		}
		x := normals(32*64, int64(i))
		if e := rmse(x, got); e > 0.05 {
			t.Errorf("%s: RMSE after round trip %g", tt.Name, e)
		}
	}
}
