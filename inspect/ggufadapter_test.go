package inspect

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/convert"
	"github.com/adaptool/adaptool/internal/testcorpus"
)

// toGGUF exports a corpus adapter as a GGUF LoRA adapter (f32).
func toGGUF(t *testing.T, src, arch, cfg string) (gg, cfgPath string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := convert.LoadBase(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := adapter.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	gg = filepath.Join(dir, "adapter.gguf")
	if _, err := convert.ToGGUF(a, gg, convert.GGUFOptions{Arch: arch, Base: base}); err != nil {
		t.Fatal(err)
	}
	return gg, cfgPath
}

// TestDiffGGUF: a GGUF export of a corpus adapter diffed against its source
// is the same delta in every module (cosine 1, distance 0, ratio 1), and the
// Llama q/k permutation is undone with the head counts of --base-config.
func TestDiffGGUF(t *testing.T) {
	corpus := testcorpus.Dir(t)
	for _, c := range []struct{ entry, arch, cfg string }{
		{"llama32-1b-qv", "llama", `{"num_attention_heads":32,"num_key_value_heads":8}`},
		{"gpt2-clm-r8-fanin", "gpt2", `{}`},
	} {
		src := filepath.Join(corpus, c.entry)
		gg, cfg := toGGUF(t, src, c.arch, c.cfg)
		r, err := Diff(src, gg, DiffOptions{BaseConfig: cfg})
		if err != nil {
			t.Fatalf("%s: %v", c.entry, err)
		}
		if len(r.Modules) == 0 || len(r.OnlyInA) != 0 || len(r.OnlyInB) != 0 {
			t.Fatalf("%s: %d common modules, only in A %v, only in B %v", c.entry, len(r.Modules), r.OnlyInA, r.OnlyInB)
		}
		for _, m := range r.Modules {
			if m.Cosine == nil || math.Abs(*m.Cosine-1) > 1e-9 || *m.RelativeDistance > 1e-6 || math.Abs(*m.NormRatio-1) > 1e-9 {
				t.Errorf("%s: module %s: %+v", c.entry, m.Name, m)
			}
		}
		if c.arch == "llama" {
			// without head counts the permutation cannot be undone: refused, not guessed
			if _, err := Diff(src, gg, DiffOptions{}); err == nil {
				t.Errorf("%s: llama GGUF diffed without head counts", c.entry)
			}
		}
	}
}

// TestCheckGGUF: the GGUF export of the GPT-2 LoRA fits the header-only
// GPT-2 base like its source does, and a base missing a layer is reported.
func TestCheckGGUF(t *testing.T) {
	corpus := testcorpus.Dir(t)
	gg, _ := toGGUF(t, filepath.Join(corpus, "gpt2-clm-r8-fanin"), "gpt2", `{}`)
	shapes := gpt2BaseShapes()
	base := filepath.Join(t.TempDir(), "gpt2.safetensors")
	writeHeaderOnlyBase(t, base, shapes)
	src, err := Check(filepath.Join(corpus, "gpt2-clm-r8-fanin"), base)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Check(gg, base)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || len(r.Modules) != len(src.Modules) {
		t.Fatalf("gguf check: ok %v, %d modules (source %d), problems %v", r.OK, len(r.Modules), len(src.Modules), r.Problems)
	}
	for i, m := range r.Modules {
		if m.Status != "ok" || m.BaseTensor != src.Modules[i].BaseTensor {
			t.Errorf("module %s: status %s base %s (source: %s)", m.Name, m.Status, m.BaseTensor, src.Modules[i].BaseTensor)
		}
	}
	delete(shapes, "h.3.attn.c_attn.weight")
	writeHeaderOnlyBase(t, base, shapes)
	if r, err = Check(gg, base); err != nil || r.OK {
		t.Errorf("base without h.3.attn.c_attn accepted: %v %+v", err, r)
	}
}
