package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

func writeTestBase(t *testing.T, path string, withV bool) {
	t.Helper()
	q := make([]float32, 16*12)
	for i := range q {
		q[i] = float32(i%7) - 3
	}
	ts := []safetensors.Tensor{
		{Name: "model.layers.0.self_attn.q_proj.weight", DType: safetensors.F32, Shape: []int{16, 12}, Data: safetensors.Float32Bytes(q)},
		{Name: "model.norm.weight", DType: safetensors.F32, Shape: []int{12}, Data: make([]byte, 48)},
	}
	if withV {
		v := make([]byte, 2*16*12)
		if err := safetensors.FromFloat32(v, q, safetensors.BF16); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: "model.layers.0.self_attn.v_proj.weight", DType: safetensors.BF16, Shape: []int{16, 12}, Data: v})
	}
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

func TestApplyAndExtractCommands(t *testing.T) {
	tmp := t.TempDir()
	a := writeTestAdapter(t, filepath.Join(tmp, "a"), 1, 4, 2, false)
	base := filepath.Join(tmp, "base.safetensors")
	writeTestBase(t, base, true)
	out := filepath.Join(tmp, "merged.safetensors")

	code, stdout, stderr := runCLI(t, "apply", "--base", base, "--adapter", a+":0.5", "-o", out, "--dry-run", "--json")
	if code != exitOK {
		t.Fatalf("apply --dry-run: code %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("dry run wrote the output")
	}
	code, stdout, stderr = runCLI(t, "apply", "--base", base, "--adapter", a+":0.5", "-o", out, "--verify", "--json")
	if code != exitOK {
		t.Fatalf("apply: code %d, stderr %q, stdout %s", code, stderr, stdout)
	}
	var rep struct {
		Applied  int  `json:"applied"`
		Touched  int  `json:"tensors_touched"`
		Copied   int  `json:"tensors_copied"`
		Verified bool `json:"verified"`
		Modules  []struct {
			Name   string `json:"name"`
			Verify struct {
				RelFro float64 `json:"rel_fro_error"`
			} `json:"verify"`
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	if rep.Applied != 2 || rep.Touched != 2 || rep.Copied != 1 || !rep.Verified || len(rep.Modules) != 2 {
		t.Fatalf("report %+v", rep)
	}
	// Text output names every module.
	code, stdout, _ = runCLI(t, "apply", "--base", base, "--adapter", a, "-o", filepath.Join(tmp, "m2.safetensors"))
	if code != exitOK || !strings.Contains(stdout, "model.layers.0.self_attn.v_proj") || !strings.Contains(stdout, "2 applied") {
		t.Fatalf("apply text: code %d\n%s", code, stdout)
	}

	// Exit codes: usage 3, unreadable input 2, refused 4.
	if code, _, _ := runCLI(t, "apply", "--adapter", a, "-o", out); code != exitUsage {
		t.Errorf("missing --base: code %d", code)
	}
	if code, _, _ := runCLI(t, "apply", "--base", filepath.Join(tmp, "nope"), "--adapter", a, "-o", out); code != exitInput {
		t.Errorf("missing base: code %d", code)
	}
	bad := filepath.Join(tmp, "bad.safetensors")
	os.WriteFile(bad, []byte{1, 2, 3}, 0o644)
	if code, _, _ := runCLI(t, "apply", "--base", bad, "--adapter", a, "-o", out); code != exitInput {
		t.Errorf("malformed base: code %d", code)
	}
	noV := filepath.Join(tmp, "nov.safetensors")
	writeTestBase(t, noV, false)
	if code, _, stderr := runCLI(t, "apply", "--base", noV, "--adapter", a, "-o", filepath.Join(tmp, "x.safetensors")); code != exitFailed {
		t.Errorf("refused apply: code %d, stderr %q", code, stderr)
	}

	// extract recovers the adapter's modules from merged − base.
	ex := filepath.Join(tmp, "extracted")
	code, stdout, stderr = runCLI(t, "extract", "--base", base, "--tuned", out, "--rank", "4", "-o", ex, "--json")
	if code != exitOK {
		t.Fatalf("extract: code %d, stderr %q", code, stderr)
	}
	var erep struct {
		Matched int `json:"matched"`
		Modules []struct {
			Rank  int `json:"rank"`
			Stats struct {
				Energy float64 `json:"energy"`
			} `json:"stats"`
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(stdout), &erep); err != nil {
		t.Fatal(err)
	}
	// q_proj (F32) holds the rank-4 delta exactly; v_proj (BF16) adds rounding noise.
	if erep.Matched != 2 || erep.Modules[1].Rank != 4 || erep.Modules[0].Stats.Energy < 0.999999 {
		t.Fatalf("extract report %s", stdout)
	}
	if _, err := os.Stat(filepath.Join(ex, "adapter_config.json")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, "extract", "--base", base, "--tuned", out, "-o", ex); code != exitUsage {
		t.Errorf("extract without rank: code %d", code)
	}
}

// apply into a quantized base (NF4 q_proj, LLM.int8 v_proj): --json reports
// per module the requantization error, which equals a recomputation from
// the dequantized output and the float64 W_deq + ΔW; --verify passes; the
// text output has the requantization table; a bad --kasa is a usage error.
func TestApplyQuantizedCommand(t *testing.T) {
	tmp := t.TempDir()
	const lambda = 0.001
	a := writeTestAdapter(t, filepath.Join(tmp, "a"), 3, 4, 2, false)
	rng := rand.New(rand.NewPCG(1, 2))
	var ts []safetensors.Tensor
	for _, m := range []struct {
		name string
		p    quant.Params
	}{{"model.layers.0.self_attn.q_proj.weight", quant.Params{Scheme: quant.SchemeNF4, DoubleQuant: true}}, {"model.layers.0.self_attn.v_proj.weight", quant.Params{Scheme: quant.SchemeInt8}}} {
		w := make([]float32, 16*12)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.02)
		}
		q, err := quant.QuantizeTensor(m.name, []int{16, 12}, safetensors.BF16, w, m.p)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, q.Tensors...)
	}
	ts = append(ts, safetensors.Tensor{Name: "model.norm.weight", DType: safetensors.F32, Shape: []int{12}, Data: make([]byte, 48)})
	base := filepath.Join(tmp, "base.safetensors")
	if err := safetensors.WriteFile(base, ts, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "merged.safetensors")
	code, stdout, stderr := runCLI(t, "apply", "--base", base, "--adapter", a+":0.001", "-o", out, "--verify", "--json")
	if code != exitOK {
		t.Fatalf("apply: code %d, stderr %q, stdout %s", code, stderr, stdout)
	}
	var rep struct {
		Applied   int  `json:"applied"`
		Quantized int  `json:"quantized_weights_touched"`
		Verified  bool `json:"verified"`
		Modules   []struct {
			Name    string `json:"name"`
			Requant struct {
				Tensor   string   `json:"tensor"`
				Scheme   string   `json:"scheme"`
				RMSE     float64  `json:"rmse"`
				MaxAbs   float64  `json:"max_abs_error"`
				SNR      *float64 `json:"snr_db"`
				DeltaFro float64  `json:"delta_fro_norm"`
				RelDelta *float64 `json:"rel_delta_error"`
			} `json:"requant"`
			Verify struct {
				Quantized bool    `json:"quantized"`
				RelFro    float64 `json:"rel_fro_error"`
				Bound     float64 `json:"bound"`
			} `json:"verify"`
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	if rep.Applied != 2 || rep.Quantized != 2 || !rep.Verified || len(rep.Modules) != 2 {
		t.Fatalf("report %s", stdout)
	}
	ad, err := adapter.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	bc, _ := safetensors.OpenCheckpoint(base)
	defer bc.Close()
	oc, _ := safetensors.OpenCheckpoint(out)
	defer oc.Close()
	bix, oix := quant.NewIndex(bc, bc.Names()), quant.NewIndex(oc, oc.Names())
	for _, m := range rep.Modules {
		wn := m.Name + ".weight"
		w0, _, _, err := quant.Dequantize(bc, bix.Weights[wn])
		if err != nil {
			t.Fatal(err)
		}
		got, _, _, err := quant.Dequantize(oc, oix.Weights[wn])
		if err != nil {
			t.Fatal(err)
		}
		f, err := ad.Factors(ad.Module(m.Name))
		if err != nil {
			t.Fatal(err)
		}
		var se, dd, me, sx float64
		for o := 0; o < 16; o++ {
			for i := 0; i < 12; i++ {
				var d float64
				for k := 0; k < f.Rank; k++ {
					d += float64(f.B[o*f.Rank+k]) * float64(f.A[k*12+i])
				}
				d *= lambda * f.Scale
				e := float64(w0[o*12+i]) + d
				x := float64(got[o*12+i]) - e
				se, dd, sx, me = se+x*x, dd+d*d, sx+e*e, math.Max(me, math.Abs(x))
			}
		}
		q := m.Requant
		if q.Tensor != wn || math.Abs(q.RMSE-math.Sqrt(se/192)) > 1e-4*q.RMSE || math.Abs(q.MaxAbs-me) > 1e-4*me ||
			math.Abs(q.DeltaFro-math.Sqrt(dd)) > 1e-5*q.DeltaFro || q.RelDelta == nil || math.Abs(*q.RelDelta-math.Sqrt(se/dd)) > 1e-4**q.RelDelta ||
			q.SNR == nil || math.Abs(*q.SNR-10*math.Log10(sx/se)) > 1e-3 {
			t.Errorf("%s: reported %+v; recomputed rmse %g max %g ||dW|| %g rel %g", m.Name, q, math.Sqrt(se/192), me, math.Sqrt(dd), math.Sqrt(se/dd))
		}
		if !m.Verify.Quantized || m.Verify.RelFro > m.Verify.Bound || math.Abs(m.Verify.RelFro-math.Sqrt(se/sx)) > 1e-6 {
			t.Errorf("%s: verify %+v, recomputed %g", m.Name, m.Verify, math.Sqrt(se/sx))
		}
	}
	code, stdout, _ = runCLI(t, "apply", "--base", base, "--adapter", a+":0.001", "-o", filepath.Join(tmp, "m2.safetensors"), "--verify")
	if code != exitOK || !strings.Contains(stdout, "requantized 2 quantized weight(s)") || !strings.Contains(stdout, "nf4/bitsandbytes") || !strings.Contains(stdout, "int8/bitsandbytes-int8") ||
		!strings.Contains(stdout, "(requantizing the exact result: ") {
		t.Fatalf("text output: code %d\n%s", code, stdout)
	}
	if code, _, _ := runCLI(t, "apply", "--base", base, "--adapter", a, "--kasa", "bogus", "-o", out); code != exitUsage {
		t.Errorf("--kasa bogus: code %d", code)
	}
	// A malformed quant_state is invalid input (exit 2), nothing written.
	for i := range ts {
		if strings.Contains(ts[i].Name, "quant_state") {
			ts[i].Data, ts[i].Shape = []byte("{bad"), []int{4}
		}
	}
	bad := filepath.Join(tmp, "bad.safetensors")
	if err := safetensors.WriteFile(bad, ts, nil); err != nil {
		t.Fatal(err)
	}
	badOut := filepath.Join(tmp, "bad-out.safetensors")
	if code, _, stderr := runCLI(t, "apply", "--base", bad, "--adapter", a, "-o", badOut); code != exitInput || !strings.Contains(stderr, "quant_state") {
		t.Errorf("malformed quant_state: code %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(badOut); !os.IsNotExist(err) {
		t.Error("malformed base: output written")
	}
}
