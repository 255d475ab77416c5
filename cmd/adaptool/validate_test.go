package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateCorpus runs validate (text and --json) over every corpus
// entry and checks the exit code: 2 for the error rows, 1 for the entries
// with real defects, 0 for the rest.
func TestValidateCorpus(t *testing.T) {
	root := corpusRoot(t)
	findings := map[string]string{ // entry → a rule it must report
		"distilbert-lora-on-mts-wrapper": "lora-on-modules-to-save-wrapper",
		"flux-aitoolkit-partial":         "alpha-unknown",
		"gemma2b-f16-mqa":                "nonfinite",
		"t5small-noconfig":               "alpha-unknown",
		"vit-custom-unaligned":           "missing-lora-b",
	}
	for _, e := range corpusEntries(t, root) {
		t.Run(e.dir, func(t *testing.T) {
			path := filepath.Join(root, e.dir)
			want := 0
			switch {
			case strings.HasPrefix(e.expect, "error:"):
				want = 2
			case findings[e.dir] != "":
				want = 1
			}
			code, out, errs := runCLI(t, "validate", path)
			if code != want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, want, out, errs)
			}
			if want == 2 {
				sentinel := strings.TrimPrefix(e.expect, "error:")
				if out != "" || !strings.Contains(errs, sentinel) || !strings.Contains(errs, e.file) {
					t.Errorf("stdout %q stderr %q; want the %s error naming %s on stderr only", out, errs, sentinel, e.file)
				}
				return
			}
			if errs != "" || !strings.Contains(out, e.file) {
				t.Errorf("stderr %q, stdout %q", errs, out)
			}
			code, out, _ = runCLI(t, "validate", path, "--json")
			if code != want {
				t.Fatalf("--json exit %d, want %d", code, want)
			}
			var doc struct {
				Clean    bool   `json:"clean"`
				File     string `json:"file"`
				Tensors  int    `json:"tensors"`
				Findings []struct {
					Severity, File, Tensor, Rule, Message string
				} `json:"findings"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("--json output: %v\n%s", err, out)
			}
			if doc.Clean != (want == 0) || doc.Tensors != e.tensors || filepath.Base(doc.File) != e.file || doc.Findings == nil {
				t.Errorf("json: clean %v tensors %d file %s findings %v", doc.Clean, doc.Tensors, doc.File, doc.Findings)
			}
			if rule := findings[e.dir]; rule != "" {
				found := false
				for _, f := range doc.Findings {
					found = found || (f.Rule == rule && f.File != "" && f.Message != "")
				}
				if !found {
					t.Errorf("no %s finding: %+v", rule, doc.Findings)
				}
			}
		})
	}
}

func TestValidateCommand(t *testing.T) {
	code, out, errs := runCLI(t, "validate", "../../testdata/tiny-llama-lora")
	if code != 0 || !strings.Contains(out, "ok: 0 errors, 0 warnings") || errs != "" {
		t.Errorf("testdata: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCLI(t, "validate", "/nonexistent/adapter"); code != 2 || !strings.Contains(errs, "adaptool:") {
		t.Errorf("missing input: exit %d stderr %q", code, errs)
	}
	if code, _, _ := runCLI(t, "validate"); code != 3 {
		t.Errorf("no argument: exit %d, want 3", code)
	}
	if code, _, _ := runCLI(t, "validate", "a", "b"); code != 3 {
		t.Errorf("two arguments: exit %d, want 3", code)
	}
}

// TestValidateBadRank: adapter_config.json with "r": -4 is a config-invalid
// finding (exit 1) naming the field, and inspect refuses the config (exit
// 2) instead of showing a scale derived from it.
func TestValidateBadRank(t *testing.T) {
	dir := t.TempDir()
	src := "../../testdata/tiny-llama-lora"
	w, err := os.ReadFile(filepath.Join(src, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), w, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(`{"peft_type":"LORA","r":-4,"lora_alpha":8,"target_modules":["q_proj","v_proj"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "validate", "--json", dir)
	var rep struct {
		Findings []struct{ Rule, Message string } `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("exit %d, output %q: %v", code, out, err)
	}
	found := false
	for _, f := range rep.Findings {
		found = found || f.Rule == "config-invalid" && strings.Contains(f.Message, `"r"`)
	}
	if code != 1 || !found {
		t.Errorf("r = -4: exit %d, findings %+v; want exit 1 with a config-invalid finding naming \"r\"", code, rep.Findings)
	}
	if code, _, errs := runCLI(t, "inspect", dir); code != 2 || !strings.Contains(errs, "adapter_config.json") || !strings.Contains(errs, `"r"`) {
		t.Errorf("inspect with r = -4: exit %d, stderr %q", code, errs)
	}
}
