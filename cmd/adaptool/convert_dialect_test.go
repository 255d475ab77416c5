package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
)

func dialectCorpus(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "..", "shared", "corpus", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("corpus entry %s absent", p)
	}
	return p
}

func TestConvertDialectCLI(t *testing.T) {
	src := dialectCorpus(t, "sd15-unet-peft")
	dir := t.TempDir()
	out := filepath.Join(dir, "k.safetensors")
	code, stdout, stderr := runCLI(t, "convert", src, "--to", "kohya", "-o", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		From, To string
		Tensors  int
		Modules  []struct{ From, To string }
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout)
	}
	if res.From != "peft" || res.To != "kohya" || res.Tensors != 288 || len(res.Modules) != 96 ||
		!strings.HasPrefix(res.Modules[0].To, "lora_unet_") {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
	// dry run writes nothing
	dry := filepath.Join(dir, "dry.safetensors")
	if code, _, stderr := runCLI(t, "convert", src, "--to", "diffusers", "-o", dry, "--dry-run"); code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(dry); err == nil {
		t.Error("--dry-run wrote a file")
	}
	// gguf needs --arch (usage, 3); a UNet has no llama.cpp mapping (refused, 4)
	if code, _, _ := runCLI(t, "convert", src, "--to", "gguf", "-o", filepath.Join(dir, "x.gguf")); code != 3 {
		t.Errorf("missing --arch: exit %d, want 3", code)
	}
	if code, _, stderr := runCLI(t, "convert", src, "--to", "gguf", "--arch", "llama", "-o", filepath.Join(dir, "x.gguf")); code != 4 || !strings.Contains(stderr, "unet") {
		t.Errorf("unet to gguf: exit %d, want 4; %s", code, stderr)
	}
	if code, _, _ := runCLI(t, "convert", src, "--to", "onnx", "-o", out); code != 3 {
		t.Errorf("bad --to: exit %d, want 3", code)
	}
	// GGUF export readable by our reader
	g := filepath.Join(dir, "opt.gguf")
	cfg := filepath.Join(dir, "config.json")
	os.WriteFile(cfg, []byte(`{"num_attention_heads":32,"num_key_value_heads":8}`), 0o644)
	llama := dialectCorpus(t, "llama32-1b-qv")
	if code, _, stderr := runCLI(t, "convert", llama, "--to", "gguf", "--arch", "llama", "--outtype", "q8_0", "--base-config", cfg, "-o", g); code != 0 {
		t.Fatalf("gguf exit %d: %s", code, stderr)
	}
	s, err := gguf.Summarize(g)
	if err != nil || s.LoraPairs != 32 || len(s.Problems) != 0 || *s.LoraAlpha != 32 {
		t.Fatalf("summary %+v, %v", s, err)
	}
	// and back to PEFT
	back := filepath.Join(dir, "back")
	if code, _, stderr := runCLI(t, "convert", g, "--to", "peft", "--base-config", cfg, "-o", back); code != 0 {
		t.Fatalf("gguf → peft exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(back, "adapter_config.json")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, "convert", g, "--to", "kohya", "-o", filepath.Join(dir, "k2.safetensors")); code != 3 {
		t.Errorf("gguf → kohya: exit %d, want 3", code)
	}
}
