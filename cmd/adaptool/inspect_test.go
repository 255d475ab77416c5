package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/convert"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/adaptool/adaptool/quant"
)

// corpusRoot returns the shared corpus root (testcorpus.Dir: skips the test
// when the corpus is absent).
func corpusRoot(t *testing.T) string { return testcorpus.Dir(t) }

// corpusEntry is a MANIFEST.tsv row in the fields the command tests use
// (validate_test.go too).
type corpusEntry struct {
	dir, file, expect string
	tensors           int
	dtypes            map[string]int
}

// corpusEntries reads the manifest through internal/testcorpus.
func corpusEntries(t *testing.T, root string) []corpusEntry {
	_, rows := testcorpus.Manifest(t)
	out := make([]corpusEntry, 0, len(rows))
	for _, r := range rows {
		out = append(out, corpusEntry{dir: r.Dir, file: r.File, expect: r.Expect, tensors: r.Tensors, dtypes: r.DTypes})
	}
	return out
}

// TestInspectCommandsCorpus runs inspect (plain, --stats, --hashes), diff,
// check and report over every corpus entry: exit codes as documented,
// tensor counts and dtypes as the manifest says, and no panic.
func TestInspectCommandsCorpus(t *testing.T) {
	root := corpusRoot(t)
	tmp := t.TempDir()
	for _, e := range corpusEntries(t, root) {
		t.Run(e.dir, func(t *testing.T) {
			file := filepath.Join(root, e.dir, e.file)
			dir := filepath.Join(root, e.dir)
			bad := strings.HasPrefix(e.expect, "error:")
			wantCode := 0
			if bad {
				wantCode = 2
			}
			for _, args := range [][]string{
				{"inspect", file, "--json"},
				{"inspect", dir, "--json", "--stats"},
				{"inspect", file, "--json", "--hashes"},
			} {
				code, out, stderr := runCLI(t, args...)
				if code != wantCode {
					t.Fatalf("%v: exit %d, want %d\n%s", args, code, wantCode, stderr)
				}
				if bad {
					if !strings.Contains(stderr, strings.TrimPrefix(e.expect, "error:")) {
						t.Errorf("%v: stderr %q lacks %s", args, stderr, e.expect)
					}
					if e.tensors == 0 {
						continue
					}
				}
				var doc struct {
					Format  string `json:"format"`
					Tensors []struct {
						Name  string `json:"name"`
						DType string `json:"dtype"`
						Shape []int  `json:"shape"`
					} `json:"tensors"`
					Modules []map[string]any `json:"modules"`
					Totals  struct {
						Tensors int            `json:"tensors"`
						DTypes  map[string]int `json:"dtypes"`
					} `json:"totals"`
				}
				if err := json.Unmarshal([]byte(out), &doc); err != nil {
					t.Fatalf("%v: invalid JSON: %v", args, err)
				}
				if len(doc.Tensors) != e.tensors || doc.Totals.Tensors != e.tensors {
					t.Errorf("%v: %d tensors, manifest %d", args, len(doc.Tensors), e.tensors)
				}
				for k, v := range e.dtypes {
					if doc.Totals.DTypes[k] != v {
						t.Errorf("%v: dtype %s ×%d, manifest %d", args, k, doc.Totals.DTypes[k], v)
					}
				}
				if args[len(args)-1] == "--stats" {
					for _, m := range doc.Modules {
						for _, k := range []string{"name", "delta_fro_norm", "singular_values", "effective_rank"} {
							if _, ok := m[k]; !ok {
								t.Errorf("module %v lacks %s", m["name"], k)
							}
						}
						if m["kind"] == "lora" && m["delta_fro_norm"] == nil && e.dir != "gemma2b-f16-mqa" {
							t.Errorf("lora module %v has no delta_fro_norm", m["name"])
						}
						sv, _ := m["singular_values"].([]any)
						for i := 1; i < len(sv); i++ {
							if sv[i].(float64) > sv[i-1].(float64) {
								t.Errorf("module %v: singular values not descending", m["name"])
							}
						}
					}
				}
			}
			// text output too
			if code, out, _ := runCLI(t, "inspect", dir, "--stats"); code != wantCode || !strings.Contains(out, "container:") {
				t.Errorf("text inspect: exit %d", code)
			}
			if bad {
				for _, args := range [][]string{
					{"diff", dir, dir},
					{"check", "--base", file, dir},
					{"report", dir, "-o", filepath.Join(tmp, e.dir+".html")},
				} {
					if code, _, _ := runCLI(t, args...); code != 2 {
						t.Errorf("%v: exit %d, want 2", args, code)
					}
				}
				return
			}
			code, out, stderr := runCLI(t, "diff", dir, dir, "--json", "--dense")
			if code != 0 {
				t.Fatalf("diff: exit %d: %s", code, stderr)
			}
			var d struct {
				Modules []struct {
					Name             string   `json:"name"`
					Cosine           *float64 `json:"cosine"`
					RelativeDistance *float64 `json:"relative_distance"`
					Compared         string   `json:"compared"`
				} `json:"modules"`
			}
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				t.Fatal(err)
			}
			for _, m := range d.Modules {
				if m.Compared == "delta" && m.Cosine != nil && (*m.Cosine < 1-1e-9 || *m.RelativeDistance > 1e-6) {
					t.Errorf("self-diff %s: cosine %v distance %v", m.Name, *m.Cosine, *m.RelativeDistance)
				}
			}
			// the adapter file's own header as the "base": runs end to end
			// (most modules are missing there, so exit 1 is expected)
			if code, out, stderr := runCLI(t, "check", "--base", file, dir, "--json"); code != 0 && code != 1 || !json.Valid([]byte(out)) {
				t.Errorf("check: exit %d %s", code, stderr)
			}
			html := filepath.Join(tmp, e.dir+".html")
			if code, _, stderr := runCLI(t, "report", dir, "-o", html); code != 0 {
				t.Errorf("report: exit %d %s", code, stderr)
			} else if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "</html>") {
				t.Errorf("report HTML: %v", err)
			}
		})
	}
}

func TestInspectUsage(t *testing.T) {
	for _, args := range [][]string{{"inspect"}, {"diff", "a"}, {"check", "x"}, {"report", "x"}} {
		if code, _, _ := runCLI(t, args...); code != 3 {
			t.Errorf("%v: exit %d, want 3 (usage)", args, code)
		}
	}
	if code, _, _ := runCLI(t, "inspect", "/nonexistent/adapter"); code != 2 {
		t.Errorf("missing input: exit %d, want 2", code)
	}
	// a directory without weights and a malformed index are input errors too
	empty := t.TempDir()
	if code, _, stderr := runCLI(t, "inspect", empty); code != 2 || !strings.Contains(stderr, "no .safetensors file") {
		t.Errorf("empty dir: exit %d %s", code, stderr)
	}
	pickled := t.TempDir()
	os.WriteFile(filepath.Join(pickled, "adapter_model.bin"), []byte("PK\x03\x04"), 0o644)
	if code, _, stderr := runCLI(t, "inspect", pickled); code != 2 || !strings.Contains(stderr, "only pickled PyTorch weights (adapter_model.bin)") {
		t.Errorf("pickle-only dir: exit %d %s", code, stderr)
	}
	idx := filepath.Join(empty, "model.safetensors.index.json")
	os.WriteFile(idx, []byte("{not json"), 0o644)
	if code, _, stderr := runCLI(t, "inspect", idx); code != 2 || !strings.Contains(stderr, "invalid index JSON") {
		t.Errorf("bad index: exit %d %s", code, stderr)
	}
}

// TestReportWithBase writes the HTML and PNGs of a corpus adapter checked
// against a base built from its own module shapes.
func TestReportWithBase(t *testing.T) {
	root := corpusRoot(t)
	ad := filepath.Join(root, "llama32-1b-qv")
	code, out, stderr := runCLI(t, "inspect", ad, "--json")
	if code != 0 {
		t.Fatalf("inspect: %d %s", code, stderr)
	}
	var doc struct {
		Modules []struct {
			Name string `json:"name"`
			In   int    `json:"in_features"`
			Out  int    `json:"out_features"`
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	// a header-only base: tensor shapes only, written by hand
	shapes := map[string][]int{}
	for _, m := range doc.Modules {
		shapes[m.Name+".weight"] = []int{m.Out, m.In}
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.safetensors")
	writeHeaderOnly(t, base, shapes)
	if code, out, stderr := runCLI(t, "check", "--base", base, ad); code != 0 || !strings.Contains(out, "ok: the adapter fits") {
		t.Fatalf("check: exit %d\n%s\n%s", code, out, stderr)
	}
	html := filepath.Join(dir, "r.html")
	code, out, stderr = runCLI(t, "report", ad, "--base", base, "-o", html, "--png", filepath.Join(dir, "png"), "--json")
	if code != 0 {
		t.Fatalf("report: exit %d %s", code, stderr)
	}
	var rep struct {
		HTML    string   `json:"html"`
		PNG     []string `json:"png"`
		Modules int      `json:"modules"`
		Fits    *bool    `json:"fits_base"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.HTML != html || len(rep.PNG) != 4 || rep.Modules != 32 || rep.Fits == nil || !*rep.Fits {
		t.Errorf("report output %+v", rep)
	}
	page, _ := os.ReadFile(html)
	if strings.Count(string(page), "<svg") != 4 || !strings.Contains(string(page), "The adapter fits the base model") {
		t.Error("report page lacks its plots or the base verdict")
	}
	// a base with one module's shape wrong: check exits 1 with the list
	shapes[doc.Modules[0].Name+".weight"] = []int{doc.Modules[0].Out + 1, doc.Modules[0].In}
	writeHeaderOnly(t, base, shapes)
	code, out, _ = runCLI(t, "check", "--base", base, ad)
	if code != 1 || !strings.Contains(out, "shape-mismatch") {
		t.Errorf("bad base: exit %d\n%s", code, out)
	}
}

// writeHeaderOnly writes a header-only BF16 base (see testgen.WriteHeaderOnly).
func writeHeaderOnly(t *testing.T, path string, shapes map[string][]int) {
	t.Helper()
	if err := testgen.WriteHeaderOnly(path, "BF16", 2, shapes); err != nil {
		t.Fatal(err)
	}
}

// TestInspectShardedIndexProblems: an index naming a tensor no shard holds
// is an input problem (exit 2) whose message names the tensor; the summary
// is still printed.
func TestInspectShardedIndexProblems(t *testing.T) {
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, "model-00001-of-00001.safetensors"), []safetensors.Tensor{
		{Name: "a.weight", DType: safetensors.F32, Shape: []int{2}, Data: make([]byte, 8)},
	}, nil); err != nil {
		t.Fatal(err)
	}
	idx := `{"metadata":{"total_size":8},"weight_map":{"a.weight":"model-00001-of-00001.safetensors","ghost.weight":"model-00001-of-00001.safetensors"}}`
	os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(idx), 0o644)
	code, out, stderr := runCLI(t, "inspect", dir, "--json")
	if code != 2 || !strings.Contains(stderr, "ghost.weight") || !json.Valid([]byte(out)) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestInspectDiffCheckGGUF: the text summary of a GGUF adapter gives the
// file's real size; diff and check accept GGUF adapters (the GPT-2 corpus
// LoRA exported to GGUF diffs as identical to its source, and fits a base
// laid out as GPT-2).
func TestInspectDiffCheckGGUF(t *testing.T) {
	root := corpusRoot(t)
	src := filepath.Join(root, "gpt2-clm-r8-fanin")
	dir := t.TempDir()
	a, err := adapter.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	gg := filepath.Join(dir, "a.gguf")
	_, err = convert.ToGGUF(a, gg, convert.GGUFOptions{Arch: "gpt2"})
	a.Close()
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(gg)
	code, out, stderr := runCLI(t, "inspect", gg)
	want := "container:      gguf (1 file(s), " + strconv.FormatInt(st.Size(), 10) + " bytes)"
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("inspect gguf: exit %d, want line %q in\n%s%s", code, want, out, stderr)
	}
	code, out, stderr = runCLI(t, "diff", src, gg, "--json")
	var d struct {
		Modules []struct {
			Cosine *float64 `json:"cosine"`
		} `json:"modules"`
		OnlyInA []string `json:"only_in_a"`
		OnlyInB []string `json:"only_in_b"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || len(d.Modules) == 0 || len(d.OnlyInA)+len(d.OnlyInB) != 0 {
		t.Fatalf("diff gguf: exit %d %s %s", code, out, stderr)
	}
	for _, m := range d.Modules {
		if m.Cosine == nil || *m.Cosine < 1-1e-9 {
			t.Errorf("diff gguf: cosine %v", m.Cosine)
		}
	}
	shapes := map[string][]int{"wte.weight": {50257, 768}}
	for l := 0; l < 12; l++ {
		p := "h." + strconv.Itoa(l)
		shapes[p+".attn.c_attn.weight"] = []int{768, 2304}
		shapes[p+".attn.c_proj.weight"] = []int{768, 768}
		shapes[p+".mlp.c_fc.weight"] = []int{768, 3072}
		shapes[p+".mlp.c_proj.weight"] = []int{3072, 768}
	}
	base := filepath.Join(dir, "gpt2.safetensors")
	writeHeaderOnly(t, base, shapes)
	if code, out, stderr := runCLI(t, "check", "--base", base, gg); code != 0 {
		t.Errorf("check gguf: exit %d\n%s%s", code, out, stderr)
	}
}

// TestInspectQuantized: inspect of an NF4-quantized adapter (quant's own
// writer) shows the source's modules with their logical rank, features and
// scale, not the packed U8 shapes; validate passes with quantized infos.
func TestInspectQuantized(t *testing.T) {
	q := filepath.Join(t.TempDir(), "q")
	if _, err := quant.QuantizeFile("../../testdata/tiny-llama-lora", q, quant.FileOptions{Params: quant.Params{Scheme: quant.SchemeNF4}}); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "inspect", "--json", q)
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, errs)
	}
	var s struct {
		Modules []struct {
			Name  string
			Rank  int
			In    int     `json:"in_features"`
			Out   int     `json:"out_features"`
			Scale float64 `json:"scale"`
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	// tiny-llama-lora: r 8, alpha 16; q_proj 32→32, v_proj 32→8, two layers.
	if len(s.Modules) != 4 {
		t.Fatalf("%d modules, want 4: %+v", len(s.Modules), s.Modules)
	}
	for _, m := range s.Modules {
		wantOut := 32
		if strings.HasSuffix(m.Name, "v_proj") {
			wantOut = 8
		}
		if m.Rank != 8 || m.In != 32 || m.Out != wantOut || m.Scale != 2 {
			t.Errorf("%s: rank %d in %d out %d scale %g; want 8 32 %d 2", m.Name, m.Rank, m.In, m.Out, m.Scale, wantOut)
		}
	}
	if code, out, errs := runCLI(t, "validate", q); code != 0 || !strings.Contains(out, "quantized") {
		t.Errorf("validate: exit %d\n%s%s", code, out, errs)
	}
}

// inspect --stats gives a full-size delta module its ‖ΔW‖_F = ‖diff‖_F
// and dashes where it has no factors or spectrum.
func TestInspectStatsDiff(t *testing.T) {
	v := make([]float32, 12)
	for i := range v {
		v[i] = float32(i + 1) // ‖diff‖_F = √650
	}
	b := make([]byte, 4*len(v))
	if err := safetensors.FromFloat32(b, v, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "d.safetensors")
	ts := []safetensors.Tensor{{Name: "diffusion_model.blocks.0.k.diff", DType: safetensors.F32, Shape: []int{3, 4}, Data: b}}
	if err := safetensors.WriteFile(in, ts, nil); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "inspect", "--stats", in)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := regexp.MustCompile(`diffusion_model\.blocks\.0\.k\s+diff\s+-\s+-\s+-\s+4\s+3\s+-\s+-\s+25\.5\s+-\s+-\s+-\s+-\s+-`)
	if !want.MatchString(stdout) {
		t.Errorf("no diff row with ‖ΔW‖_F 25.5 and dashes in:\n%s", stdout)
	}
}
