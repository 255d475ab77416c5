package inspect

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
	"github.com/adaptool/adaptool/internal/testgen"
)

// writeBase writes a base checkpoint whose tensors have the given shapes
// (zero data, F16).
func writeBase(t *testing.T, path string, shapes map[string][]int) {
	t.Helper()
	var ts []safetensors.Tensor
	for n, s := range shapes {
		size := 2
		for _, d := range s {
			size *= d
		}
		ts = append(ts, safetensors.Tensor{Name: n, DType: safetensors.F16, Shape: s, Data: make([]byte, size)})
	}
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter")
	if _, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 1, R: 4, Alpha: 8,
		Modules: []testgen.Module{
			{Name: "model.layers.0.self_attn.q_proj", In: 24, Out: 16},
			{Name: "model.layers.1.self_attn.q_proj", In: 24, Out: 16},
			{Name: "model.layers.0.conv", In: 4, Out: 6, Kernel: []int{3, 3}},
			{Name: "model.embed_tokens", In: 50, Out: 12, Embedding: true},
		},
		Full: map[string][]int{"score.weight": {3, 16}}}); err != nil {
		t.Fatal(err)
	}
	good := map[string][]int{
		"model.layers.0.self_attn.q_proj.weight": {16, 24},
		"model.layers.1.self_attn.q_proj.weight": {16, 24},
		"model.layers.0.self_attn.k_proj.weight": {16, 24},
		"model.layers.0.conv.weight":             {6, 4, 3, 3},
		"model.layers.0.conv.bias":               {6},
		"model.embed_tokens.weight":              {50, 12},
		"score.weight":                           {3, 16},
	}
	basePath := filepath.Join(dir, "base.safetensors")
	writeBase(t, basePath, good)
	r, err := Check(ad, basePath)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || len(r.Problems) != 0 {
		t.Fatalf("good base: problems %v", r.Problems)
	}
	for _, m := range r.Modules {
		if m.Status != "ok" || m.BaseTensor == "" || m.BaseDType != "F16" || m.AdapterDType != "F32" {
			t.Errorf("module %+v", m)
		}
	}
	for _, tm := range r.TargetMatches {
		if want := 1; tm.Matches != want || tm.Against != "base" {
			t.Errorf("target %s matches %d, want %d", tm.Entry, tm.Matches, want)
		}
	}

	// header-only base: the data section cut off
	b, _ := os.ReadFile(basePath)
	h, err := safetensors.OpenHeader(basePath)
	if err != nil {
		t.Fatal(err)
	}
	hdrOnly := filepath.Join(dir, "header-only.safetensors")
	os.WriteFile(hdrOnly, b[:h.DataOffset()], 0o644)
	r, err = Check(ad, hdrOnly)
	if err != nil || !r.OK {
		t.Fatalf("header-only base: %v %v", err, r)
	}

	// a base that does not fit: transposed q_proj, wrong conv kernel, no embeddings
	bad := map[string][]int{
		"model.layers.0.self_attn.q_proj.weight": {24, 16},
		"model.layers.1.self_attn.q_proj.weight": {16, 24},
		"model.layers.0.conv.weight":             {6, 4, 1, 1},
		"score.weight":                           {2, 16},
	}
	badPath := filepath.Join(dir, "bad.safetensors")
	writeBase(t, badPath, bad)
	r, err = Check(ad, badPath)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK {
		t.Fatal("bad base accepted")
	}
	want := []struct{ module, rule, text string }{
		{"model.layers.0.self_attn.q_proj", "shape-mismatch", "transposed"},
		{"model.layers.0.conv", "shape-mismatch", "[6 4 3 3]"},
		{"model.embed_tokens", "module-missing", "model.embed_tokens.weight"},
		{"score", "shape-mismatch", "[3 16]"},
		{"target_modules", "target-unmatched", `"model.embed_tokens"`},
	}
	for _, w := range want {
		found := false
		for _, p := range r.Problems {
			if p.Module == w.module && p.Rule == w.rule && strings.Contains(p.Detail, w.text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem %v in %v", w, r.Problems)
		}
	}
	if len(r.Problems) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(r.Problems), len(want), r.Problems)
	}
}

func TestCheckPrefixesAndFanIn(t *testing.T) {
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter")
	if _, err := testgen.WriteLoRA(ad, testgen.LoRA{Seed: 2, R: 2, Alpha: 2, FanInFanOut: true,
		Modules: []testgen.Module{{Name: "transformer.h.0.attn.c_attn", In: 8, Out: 24}}}); err != nil {
		t.Fatal(err)
	}
	// GPT-2 Conv1D base stores (in, out); the base model here has no "transformer." prefix
	base := filepath.Join(dir, "base.safetensors")
	writeBase(t, base, map[string][]int{"h.0.attn.c_attn.weight": {8, 24}, "h.0.attn.c_proj.weight": {8, 8}})
	r, err := Check(ad, base)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Modules[0].BaseTensor != "h.0.attn.c_attn.weight" {
		t.Errorf("result %+v", r)
	}
}

func TestCheckCorpusPairs(t *testing.T) {
	corpus := testcorpus.Dir(t)
	// the diffusers and PEFT saves of the same UNet LoRA must fit the same base
	// headers; build a base from the PEFT adapter's own modules
	s, err := Summarize(filepath.Join(corpus, "sd15-unet-peft"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int{}
	for _, m := range s.Modules {
		shapes[m.Name+".weight"] = []int{m.OutFeatures, m.InFeatures}
	}
	base := filepath.Join(t.TempDir(), "unet.safetensors")
	writeBase(t, base, shapes)
	for _, d := range []string{"sd15-unet-peft", "sd15-unet-diffusers"} {
		r, err := Check(filepath.Join(corpus, d), base)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK {
			t.Errorf("%s: %d problems, first %v", d, len(r.Problems), r.Problems[0])
		}
	}
}

// TestCheckCorpusGPT2: the GPT-2 corpus adapters (LoRA and IA3, Conv1D with
// fan_in_fan_out) against a header-only GPT-2 base laid out as the real
// checkpoint is (Conv1D weights stored (in, out), no "transformer." prefix).
func TestCheckCorpusGPT2(t *testing.T) {
	corpus := testcorpus.Dir(t)
	shapes := gpt2BaseShapes()
	shapes["score.weight"] = []int{6, 768}
	base := filepath.Join(t.TempDir(), "gpt2.safetensors")
	writeHeaderOnlyBase(t, base, shapes)
	for _, d := range []string{"gpt2-ia3-fanin", "gpt2-clm-r8-fanin", "gpt2-seqcls-fanin"} {
		r, err := Check(filepath.Join(corpus, d), base)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK {
			t.Errorf("%s: %v", d, r.Problems)
		}
		for _, m := range r.Modules {
			if m.Status != "ok" {
				t.Errorf("%s: module %s status %s", d, m.Name, m.Status)
			}
		}
	}
	// the same adapters against a base whose Conv1D weights are stored (out, in)
	for n, s := range shapes {
		if strings.HasSuffix(n, "c_attn.weight") {
			shapes[n] = []int{s[1], s[0]}
		}
	}
	writeHeaderOnlyBase(t, base, shapes)
	r, err := Check(filepath.Join(corpus, "gpt2-clm-r8-fanin"), base)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || !strings.Contains(r.Problems[0].Detail, "transposed") {
		t.Errorf("transposed base accepted: %v", r.Problems)
	}
}

// writeHeaderOnlyBase writes a header-only F16 base (see testgen.WriteHeaderOnly).
func writeHeaderOnlyBase(t *testing.T, path string, shapes map[string][]int) {
	t.Helper()
	if err := testgen.WriteHeaderOnly(path, "F16", 2, shapes); err != nil {
		t.Fatal(err)
	}
}

// gpt2BaseShapes is the GPT-2 (124M) checkpoint's weight layout: Conv1D
// weights stored (in, out), no "transformer." prefix.
func gpt2BaseShapes() map[string][]int {
	shapes := map[string][]int{"wte.weight": {50257, 768}}
	for l := 0; l < 12; l++ {
		p := "h." + strconv.Itoa(l)
		shapes[p+".attn.c_attn.weight"] = []int{768, 2304}
		shapes[p+".attn.c_proj.weight"] = []int{768, 768}
		shapes[p+".mlp.c_fc.weight"] = []int{768, 3072}
		shapes[p+".mlp.c_proj.weight"] = []int{3072, 768}
	}
	return shapes
}
