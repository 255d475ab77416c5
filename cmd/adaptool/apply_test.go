package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
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
