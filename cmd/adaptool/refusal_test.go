package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
)

// Exit classes of inputs that are valid but that an operation does not
// apply to (SPEC §1.1: refusals exit 4, not 2 or 3).
func TestRefusalExitCodes(t *testing.T) {
	dir := t.TempDir()
	// conv factors only: no 2-D float tensor for quantize's default selection
	conv := writeFile(t, filepath.Join(dir, "conv.safetensors"), swFile(nil,
		swRand("base_model.model.conv_in.lora_A.weight", "F32", 1, 2, 3, 3, 3),
		swRand("base_model.model.conv_in.lora_B.weight", "F32", 2, 6, 2, 1, 1)))
	plain := writeFile(t, filepath.Join(dir, "plain.safetensors"), swFile(nil, swRand("w.weight", "F32", 3, 4, 4)))
	mamba := filepath.Join(dir, "mamba.gguf")
	if err := gguf.WriteFile(mamba, []gguf.KV{{Key: "general.architecture", Value: gguf.String("mamba")},
		{Key: "general.type", Value: gguf.String("adapter")}, {Key: "adapter.type", Value: gguf.String("lora")}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"dequantize: nothing quantized", []string{"dequantize", plain, "-o", filepath.Join(dir, "d.safetensors")}, exitFailed,
			plain + " holds no quantized tensors (nothing to dequantize"},
		{"dequantize --dry-run: nothing quantized", []string{"dequantize", "--dry-run", plain}, exitFailed, "holds no quantized tensors"},
		{"quantize: no tensor qualifies", []string{"quantize", "--scheme", "nf4", conv, "-o", filepath.Join(dir, "q.safetensors")}, exitFailed,
			"2 float tensor(s) that are not 2-D (base_model.model.conv_in.lora_A.weight [2 3 3 3]"},
		{"quantize --only matches nothing", []string{"quantize", "--scheme", "int8", "--only", "^x", plain, "-o", filepath.Join(dir, "q2.safetensors")}, exitFailed,
			`--only "^x" matches none of its 1 tensors`},
		// the architecture is the file's, not an option: not a usage error
		{"convert: GGUF adapter of an unknown architecture", []string{"convert", "--to", "peft", mamba, "-o", filepath.Join(dir, "p")}, exitFailed,
			`architecture "mamba" is not one of`},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d with %q", tc.name, code, stderr, tc.code, tc.stderr)
		}
	}

	// A dry run prints its plan and exits 4 like the real run.
	code, stdout, stderr := runCLI(t, "quantize", "--scheme", "nf4", "--dry-run", "--json", conv)
	var rep struct {
		DryRun  bool              `json:"dry_run"`
		Tensors []json.RawMessage `json:"tensors"`
		Skipped []struct{ Name, Reason string }
	}
	if code != exitFailed || json.Unmarshal([]byte(stdout), &rep) != nil || !rep.DryRun || len(rep.Tensors) != 0 {
		t.Fatalf("quantize --dry-run --json: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "that are not 2-D") || !strings.Contains(stderr, "--only REGEX") {
		t.Errorf("quantize --dry-run: stderr %q", stderr)
	}
}
