package convert

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
)

// corpusDir returns the shared corpus root, or skips the test when it is absent.
func corpusDir(t testing.TB) string { return testcorpus.Dir(t) }

// delta is one module's ΔW = s·B·A in float64 (out × in·k), computed here
// from the raw factors, independently of the converter, on a grid of at most
// 48 rows × 48 columns spread over the matrix (first and last included) to
// keep the suite fast on large modules.
type delta struct {
	out, in int
	w       []float64
}

func grid(n int) []int {
	if n <= 48 {
		g := make([]int, n)
		for i := range g {
			g[i] = i
		}
		return g
	}
	g := make([]int, 48)
	for i := range g {
		g[i] = i * (n - 1) / 47
	}
	return g
}

func deltaOf(f *adapter.Factors) delta {
	ink := f.InK()
	rows, cols := grid(f.Out), grid(ink)
	d := delta{out: f.Out, in: ink}
	for _, o := range rows {
		for _, i := range cols {
			var acc float64
			for k := 0; k < f.Rank; k++ {
				acc += float64(f.B[o*f.Rank+k]) * float64(f.A[k*ink+i])
			}
			d.w = append(d.w, acc*f.Scale)
		}
	}
	return d
}

// canonical names a module by component and path so that the same module in
// two dialects gets the same key.
func canonical(t *testing.T, a *adapter.Adapter, m *adapter.Module) string {
	if a.Dialect == adapter.DialectKohya {
		c, p, err := fromKohya(m.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c + "/" + p
	}
	c, p := splitComponent(m.Name)
	return c + "/" + p
}

func deltas(t *testing.T, path string) map[string]delta {
	t.Helper()
	a, err := adapter.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	defer a.Close()
	out := map[string]delta{}
	for _, m := range a.Modules {
		if !m.IsLowRank() {
			continue
		}
		f, err := a.Factors(m)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		out[canonical(t, a, m)] = deltaOf(f)
	}
	return out
}

func sameDeltas(t *testing.T, what string, want, got map[string]delta) {
	t.Helper()
	if len(want) != len(got) || len(want) == 0 {
		t.Fatalf("%s: %d modules, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Fatalf("%s: module %s missing", what, k)
		}
		if g.out != w.out || g.in != w.in {
			t.Fatalf("%s: %s shape %dx%d, want %dx%d", what, k, g.out, g.in, w.out, w.in)
		}
		for i := range w.w {
			if g.w[i] != w.w[i] && !(math.IsNaN(g.w[i]) && math.IsNaN(w.w[i])) { // gemma2b-f16-mqa is all NaN
				t.Fatalf("%s: %s ΔW[%d] = %v, want %v exactly", what, k, i, g.w[i], w.w[i])
			}
		}
	}
}

func convertPath(t *testing.T, src, to, out string) *Result {
	t.Helper()
	a, err := adapter.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	res, err := Convert(a, to, out, Options{})
	if err != nil {
		t.Fatalf("%s → %s: %v", src, to, err)
	}
	return res
}

// outPath names the output of a dialect: a directory for peft/mlx, a file
// otherwise.
func outPath(dir, to string, i int) string {
	switch to {
	case ToPEFTName, ToMLXName:
		return filepath.Join(dir, fmt.Sprintf("%d-%s", i, to))
	}
	return filepath.Join(dir, fmt.Sprintf("%d-%s.safetensors", i, to))
}

// TestCorpusRoundTrips runs each chain on every LoRA entry of the corpus and
// requires the float64 ΔW of every module to be reproduced exactly at each
// step.
func TestCorpusRoundTrips(t *testing.T) {
	corpus := corpusDir(t)
	cases := []struct {
		entry  string
		chains [][]string
	}{
		{"sd15-unet-peft", [][]string{{"kohya", "peft"}, {"diffusers", "peft"}}},
		{"sd15-te-clip", [][]string{{"kohya", "peft"}, {"diffusers", "peft"}}},
		{"sd15-unet-diffusers/pytorch_lora_weights.safetensors", [][]string{{"peft", "diffusers"}, {"kohya", "diffusers"}}},
		{"sd15-unet-attnproc-2023/pytorch_lora_weights.safetensors", [][]string{{"diffusers", "peft"}, {"kohya"}}},
		{"flux-aitoolkit-partial/lora.safetensors", [][]string{{"kohya", "diffusers"}, {"peft", "diffusers"}}},
		{"mlx-gemma2b-lora", [][]string{{"peft", "mlx"}, {"kohya", "mlx"}}},
		{"llama32-1b-qv", [][]string{{"kohya", "peft"}, {"mlx", "peft"}, {"diffusers", "peft"}}},
		{"gemma2b-f16-mqa", [][]string{{"kohya", "peft"}, {"mlx", "peft"}}},
		{"opt125m-bf16", [][]string{{"kohya", "peft"}, {"mlx", "peft"}}},
		{"bloom560m-r10-alpha1", [][]string{{"kohya", "peft"}, {"mlx", "peft"}}},
		{"gpt2-clm-r8-fanin", [][]string{{"kohya", "peft"}, {"mlx", "peft"}}},
		{"tinygpt2-r4-gt-dim", [][]string{{"kohya", "peft"}, {"mlx", "peft"}}},
		{"rut5-oldcfg-seq2seq", [][]string{{"kohya", "peft"}}},
	}
	for _, c := range cases {
		t.Run(strings.Split(c.entry, "/")[0], func(t *testing.T) {
			src := filepath.Join(corpus, c.entry)
			if _, err := os.Stat(src); err != nil {
				t.Skipf("corpus entry %s absent", c.entry)
			}
			want := deltas(t, src)
			for ci, chain := range c.chains {
				dir := t.TempDir()
				cur := src
				for i, to := range chain {
					out := outPath(dir, to, ci*10+i)
					convertPath(t, cur, to, out)
					sameDeltas(t, strings.Join(chain[:i+1], "→"), want, deltas(t, out))
					cur = out
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	corpus := corpusDir(t)
	cases := []struct {
		entry, to string
		want      error
		in        string
	}{
		{"sd15-te-clip", "mlx", ErrUnmapped, "MLX-LM adapters are for language models"},
		{"bert-seqcls", "kohya", ErrUnmapped, "classifier"},
		{"gpt2-ia3-fanin", "peft", ErrUnmapped, "ia3"},
		{"berttiny-adalora-tokcls", "kohya", ErrUnmapped, "adalora"},
	}
	for _, c := range cases {
		src := filepath.Join(corpus, c.entry)
		a, err := adapter.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Convert(a, c.to, filepath.Join(t.TempDir(), "out"), Options{})
		a.Close()
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.in) {
			t.Errorf("%s → %s: err %v, want %v containing %q", c.entry, c.to, err, c.want, c.in)
		}
	}
}

func TestNonFiniteWarning(t *testing.T) {
	corpus := corpusDir(t)
	res := convertPath(t, filepath.Join(corpus, "gemma2b-f16-mqa"), ToKohyaName, filepath.Join(t.TempDir(), "k.safetensors"))
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "non-finite values") {
		t.Errorf("all-NaN gemma adapter converted without a warning: %q", res.Warnings)
	}
	res = convertPath(t, filepath.Join(corpus, "llama32-1b-qv"), ToKohyaName, filepath.Join(t.TempDir(), "k.safetensors"))
	if strings.Contains(strings.Join(res.Warnings, "\n"), "non-finite") {
		t.Errorf("finite adapter warned: %q", res.Warnings)
	}
}

// diffusers layouts: a prefix-less UNet stays model level (plain keys and
// LoraConfig, like the source); ai-toolkit's prefixed Flux file stays
// pipeline level (transformer. keys and "transformer.<field>" metadata).
func TestDiffusersLayouts(t *testing.T) {
	corpus := corpusDir(t)
	dir := t.TempDir()
	for _, c := range []struct {
		src, key, meta string
		packed         bool
	}{
		{"sd15-unet-peft", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", `"lora_alpha": 16`, false},
		{"flux-aitoolkit-partial/lora.safetensors", "transformer.single_transformer_blocks.7.proj_out.lora_A.weight", `"transformer.lora_alpha": 16`, true},
	} {
		out := filepath.Join(dir, strings.Split(c.src, "/")[0]+".safetensors")
		convertPath(t, filepath.Join(corpus, c.src), ToDiffusersName, out)
		h, err := safetensors.OpenHeader(out)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := h.Tensor(c.key); !ok {
			t.Errorf("%s: key %s missing", c.src, c.key)
		}
		md := h.Metadata["lora_adapter_metadata"]
		if !strings.Contains(md, c.meta) || strings.Contains(md, `"unet.`) || (strings.Contains(md, `"transformer.r"`) != c.packed) {
			t.Errorf("%s: metadata %s", c.src, md)
		}
	}
}
