package adapter

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/internal/testgen"

	"github.com/adaptool/adaptool/format/safetensors"
)

// refStripAdapterName is the strings.Split version stripAdapterName
// replaced.
func refStripAdapterName(key string, names []string) string {
	segs := strings.Split(key, ".")
	n := len(segs)
	isName := func(s string) bool {
		for _, a := range names {
			if s == a {
				return true
			}
		}
		return false
	}
	if n >= 3 && (segs[n-1] == "weight" || segs[n-1] == "bias") && isName(segs[n-2]) && isModuleDictRole(segs[n-3]) {
		return strings.Join(append(segs[:n-2:n-2], segs[n-1]), ".")
	}
	if n >= 2 && isName(segs[n-1]) && isParamDictRole(segs[n-2]) {
		return strings.Join(segs[:n-1], ".")
	}
	return key
}

func TestStripAdapterName(t *testing.T) {
	names := []string{"default", "other"}
	cases := []struct{ key, want string }{
		{"model.layers.0.q_proj.lora_A.default.weight", "model.layers.0.q_proj.lora_A.weight"},
		{"model.layers.0.q_proj.lora_B.other.bias", "model.layers.0.q_proj.lora_B.bias"},
		{"x.lora_magnitude_vector.default.weight", "x.lora_magnitude_vector.weight"},
		{"x.lora_E.default", "x.lora_E"},
		{"x.hada_w1_a.default", "x.hada_w1_a"},
		{"x.trainable_tokens_delta.other", "x.trainable_tokens_delta"},
		{"lora_A.default.weight", "lora_A.weight"},
		{"lora_A.default", "lora_A"},
		{"x.lora_A.defaults.weight", "x.lora_A.defaults.weight"}, // not an exact name
		{"x.q_proj.default.weight", "x.q_proj.default.weight"},   // not a ModuleDict role
		{"x.lora_magnitude_vector.default", "x.lora_magnitude_vector.default"},
		{"default.weight", "default.weight"},
		{"default", "default"},
		{"", ""},
		{"..", ".."},
		{".lora_A.default.weight", ".lora_A.weight"},
		{"a..default", "a..default"},
	}
	for _, c := range cases {
		if got := stripAdapterName(c.key, names); got != c.want {
			t.Errorf("stripAdapterName(%q) = %q, want %q", c.key, got, c.want)
		}
		if ref := refStripAdapterName(c.key, names); ref != c.want {
			t.Errorf("reference(%q) = %q, want %q", c.key, ref, c.want)
		}
	}
}

func TestAppendShape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"model.layers.12.mlp.experts.7.down_proj", "model.layers.#.mlp.experts.#.down_proj"},
		{"a1b22c333", "a#b#c#"},
		{"0", "#"},
		{"", ""},
		{"x#1", "x##"},
		{"transformer.h.0.attn.c_attn", "transformer.h.#.attn.c_attn"},
	} {
		if got := string(appendShape(nil, c.in)); got != c.want {
			t.Errorf("appendShape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// archPatterns are the substrings guessArchitecture looks for; none may
// hold a digit or '#', or the name shapes would not preserve them.
var archPatterns = []string{"single_transformer_blocks", "transformer_blocks", "transformer.", "double_blocks", "down_blocks",
	"up_blocks", "mid_block", "lora_unet_", "text_model.encoder.layers", "lora_te", "transformer.h.", "query_key_value",
	"c_attn", "c_proj", "c_fc", "gpt_neox.", "SelfAttention", "EncDecAttention", "DenseReluDense", "distilbert.", "roberta.",
	"bert.", "vit.", "model.decoder.layers", "_proj", "language_model.layers", "layers.", "self_attn", "mlp."}

func TestArchPatternsSurviveShapes(t *testing.T) {
	src, err := os.ReadFile("arch.go")
	if err != nil {
		t.Fatal(err)
	}
	body := string(src[strings.Index(string(src), "switch {"):])
	body = body[:strings.Index(body, "return fromHint(\"\")\n}")]
	seen := map[string]bool{}
	for _, q := range strings.Split(body, `has("`)[1:] {
		for _, part := range strings.Split(q[:strings.Index(q, ")")], `", "`) {
			p := strings.Trim(part, `"`)
			if strings.ContainsAny(p, "0123456789#") {
				t.Errorf("pattern %q holds a digit or '#'", p)
			}
			found := false
			for _, a := range archPatterns {
				found = found || a == p
			}
			if !found {
				t.Errorf("pattern %q of arch.go is not in archPatterns", p)
			}
			seen[p] = true
		}
	}
	if len(seen) != len(archPatterns) {
		t.Errorf("arch.go has %d has() patterns, archPatterns %d", len(seen), len(archPatterns))
	}
	names := []string{"model.layers.12.self_attn.q_proj", "transformer.h.0.attn.c_attn", "a1_proj", "lay1ers.", "x.mlp.1",
		"down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q", "encoder.block.0.layer.0.SelfAttention.q", "c_1fc", "v1it."}
	for _, n := range names {
		shape := string(appendShape(nil, n))
		for _, p := range archPatterns {
			if strings.Contains(n, p) != strings.Contains(shape, p) {
				t.Errorf("%q in %q: %v, in its shape %q: %v", p, n, strings.Contains(n, p), shape, !strings.Contains(n, p))
			}
		}
	}
}

func TestGuessArchitectureShapes(t *testing.T) {
	mods := func(names ...string) []*Module {
		var out []*Module
		for _, n := range names {
			out = append(out, &Module{Name: n, Kind: KindLoRA})
		}
		return out
	}
	var moe []string
	for i := 0; i < 3000; i++ {
		moe = append(moe, fmt.Sprintf("model.layers.%d.mlp.experts.%d.down_proj", i/64, i%64))
	}
	for _, c := range []struct {
		name string
		mods []*Module
		want string
	}{
		{"moe", mods(moe...), "llama"},
		{"gpt2", mods("transformer.h.0.attn.c_attn", "transformer.h.11.mlp.c_fc"), "gpt2"},
		{"bloom", mods("transformer.h.3.self_attention.query_key_value"), "bloom"},
		{"t5", mods("encoder.block.0.layer.0.SelfAttention.q"), "t5"},
		{"opt", mods("model.decoder.layers.1.self_attn.q_proj"), "opt"},
		{"unet", mods("unet.down_blocks.0.attentions.0.to_q"), "unet"},
		{"flux", mods("transformer.single_transformer_blocks.0.attn.to_q"), "flux"},
		{"digits only", mods("1.2.3"), ""},
	} {
		if got := guessArchitecture(c.mods, nil, nil); got != c.want {
			t.Errorf("%s: guessArchitecture = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestCountLayers(t *testing.T) {
	mods := func(names ...string) []*Module {
		var out []*Module
		for _, n := range names {
			out = append(out, &Module{Name: n})
		}
		return out
	}
	for _, c := range []struct {
		mods []*Module
		want int
	}{
		{mods("model.layers.0.q", "model.layers.1.q", "model.layers.1.k"), 2},
		{mods("transformer.h.3.attn", "encoder.block.3.layer.0.x"), 1}, // "3" twice; block wins before layer
		{mods("model.layers", "layers"), 0},                            // no segment after "layers"
		{mods("model.layers.x", "layers..q"), 2},                       // "x" and ""
		{mods("a.blocks.2", "a.layer.2.b", "a.b.c"), 1},
		{nil, 0},
	} {
		if got := countLayers(c.mods); got != c.want {
			t.Errorf("countLayers(%v) = %d, want %d", names(c.mods), got, c.want)
		}
	}
}

func names(mods []*Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

func TestFlagWrapper(t *testing.T) {
	cl := &classification{}
	for _, m := range []struct {
		name string
		kind Kind
	}{
		{"classifier", KindLoRA}, {"classifier.modules_to_save", KindLoRA}, {"classifier.original_module", KindLoRA},
		{"score", KindFull}, {"score.modules_to_save", KindFull}, {"other", KindLoRA},
	} {
		cl.modules = append(cl.modules, &Module{Name: m.name, Kind: m.kind})
	}
	cl.flagWrapper()
	want := map[string]bool{"classifier": true, "classifier.modules_to_save": true, "classifier.original_module": true,
		"score": true, "score.modules_to_save": false, "other": false}
	for _, m := range cl.modules {
		if m.Wrapped != want[m.Name] {
			t.Errorf("%s: Wrapped %v, want %v", m.Name, m.Wrapped, want[m.Name])
		}
	}
	if len(cl.warnings) != 1 || !strings.Contains(cl.warnings[0], `module "classifier": LoRA was applied to a ModulesToSaveWrapper`) {
		t.Errorf("warnings %q", cl.warnings)
	}
}

// writeMoE writes n MoE expert modules (2n tensors) as a PEFT file
// (testgen.WriteMoE).
func writeMoE(tb testing.TB, path string, n int) {
	tb.Helper()
	if err := testgen.WriteMoE(path, n); err != nil {
		tb.Fatal(err)
	}
}

func TestWithFile(t *testing.T) {
	dir := t.TempDir()
	writeMoE(t, filepath.Join(dir, PEFTWeightsFile), 100)
	writeMoE(t, filepath.Join(dir, "other.safetensors"), 3)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"peft_type":"LORA","r":1,"lora_alpha":2,"target_modules":["down_proj"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	for _, c := range []struct {
		name, file string
		lent       bool // Load uses the lent file
	}{
		{"same file", PEFTWeightsFile, true},
		{"same file, unclean path", "./" + PEFTWeightsFile, true},
		{"another file", "other.safetensors", false},
	} {
		f, err := safetensors.Open(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		a, err := Load(dir, WithFile(f))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (a.File == f) != c.lent {
			t.Errorf("%s: Adapter.File is the lent file: %v, want %v", c.name, a.File == f, c.lent)
		}
		if a.Dialect != want.Dialect || a.Architecture != want.Architecture || len(a.Modules) != len(want.Modules) ||
			!reflect.DeepEqual(a.Modules[7], want.Modules[7]) || !reflect.DeepEqual(a.Warnings, want.Warnings) {
			t.Errorf("%s: adapter differs from a plain Load", c.name)
		}
		own := a.File
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		// the lent file stays usable after Close; a file Load opened does not
		if _, err := f.Data(f.Tensors[0].Name); err != nil {
			t.Errorf("%s: lent file closed by Adapter.Close: %v", c.name, err)
		}
		if !c.lent && own.Mapped() {
			t.Errorf("%s: the adapter's own file is still mapped after Close", c.name)
		}
		f.Close()
	}
}

// BenchmarkLoadBigHeader is Load of a 100,000-tensor MoE adapter (50,000
// modules, a 13.6 MB header): header parse, classification, scales.
func BenchmarkLoadBigHeader(b *testing.B) {
	p := filepath.Join(b.TempDir(), "moe.safetensors")
	writeMoE(b, p, 50_000)
	b.ReportAllocs()
	for b.Loop() {
		a, err := Load(p)
		if err != nil || len(a.Modules) != 50_000 || a.Architecture != "llama" {
			b.Fatal(err)
		}
		a.Close()
	}
}

// BenchmarkClassifyBigHeader is the part of it after the header parse.
func BenchmarkClassifyBigHeader(b *testing.B) {
	p := filepath.Join(b.TempDir(), "moe.safetensors")
	writeMoE(b, p, 50_000)
	f, err := safetensors.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	for b.Loop() {
		a, err := Load(p, WithFile(f))
		if err != nil || len(a.Modules) != 50_000 {
			b.Fatal(err)
		}
		a.Close()
	}
}

func TestQuantCandidate(t *testing.T) {
	for d := 0; d < safetensors.NumDTypes; d++ {
		dt := safetensors.DType(d)
		want := dt == safetensors.I8 || dt == safetensors.F8E4M3 || dt == safetensors.F8E5M2
		if got := quantCandidate(safetensors.TensorInfo{Name: "x.weight", DType: dt}); got != want {
			t.Errorf("%s: candidate %v, want %v", dt, got, want)
		}
		if !quantCandidate(safetensors.TensorInfo{Name: "x.weight.quant_state.bitsandbytes__nf4", DType: dt}) {
			t.Errorf("%s: a quant_state key is not a candidate", dt)
		}
	}
}

// TestMatchSimple compares the regexp-free match of simple pattern keys with
// the regular expression patternRegexp builds, in both modes.
func TestMatchSimple(t *testing.T) {
	keys := []string{"q_proj", "down_proj", "experts.1.down_proj", "layers.3.mlp.experts.7.down_proj", "model.layers.0.self_attn.q_proj",
		".", "..", "a.", ".a", "x", "1", "lora", "a b", "a-b#c~", "layers.1"}
	modules := []string{"", ".", "..", "q_proj", "x.q_proj", "xq_proj", "a.b.q_proj", "q_proj.x", ".q_proj", "a\n.q_proj", "a.\nq_proj",
		"model.layers.0.mlp.experts.1.down_proj", "model.layers.0.mlp.experts.11.down_proj", "model.layers.0.mlp.expertsX1Xdown_proj",
		"layers.3.mlp.experts.7.down_proj", "blayers.3.mlp.experts.7.down_proj", "b.layers.3.mlp.experts.7.down_proj",
		"model.layers.0.self_attn.q_proj", "base.model.layers.0.self_attn.q_proj", "model_layers_0_self_attn_q_proj", "x", "1", "ab", "a\nb",
		"layers.1", "layers\n1", "a.layers.1", "a.layers11", "a b", "x.a b", "x.a-b#c~", "lora", "x.lora", "xlora", "a.", ".a", "ba", "b.a"}
	simple := 0
	for _, k := range keys {
		if !simplePattern(k) {
			t.Errorf("key %q is not simple", k)
			continue
		}
		simple++
		for _, mode := range []PatternMode{PatternsModern, PatternsOld} {
			re := regexp.MustCompile(patternRegexp(k, mode))
			for _, m := range modules {
				if got, want := matchSimple(k, m, mode), re.MatchString(m); got != want {
					t.Errorf("%s key %q module %q: %v, regexp %v", mode, k, m, got, want)
				}
				got, err := matchPattern(k, m, mode, "rank_pattern")
				if err != nil || got != re.MatchString(m) {
					t.Errorf("matchPattern(%q, %q, %s) = %v, %v", k, m, mode, got, err)
				}
			}
		}
	}
	for _, k := range []string{"", "q_proj$", "a|b", "layers\\.1", "(x)", "x*", "x+", "x?", "[ab]", "x{2}", "^x", "ü", "a\tb", "a\nb"} {
		if simplePattern(k) {
			t.Errorf("key %q is simple", k)
		}
	}
	// non-ASCII modules take the regexp: '.' matches a whole rune there
	if ok, err := matchPattern("a.b", "xaüb", PatternsModern, "rank_pattern"); err != nil || ok {
		t.Errorf("a.b against xaüb: %v %v", ok, err)
	}
	if ok, err := matchPattern("a.b", "x.aüb", PatternsModern, "rank_pattern"); err != nil || !ok {
		t.Errorf("a.b against x.aüb: %v %v", ok, err)
	}
}

// FuzzMatchSimple: for every simple key and ASCII module, matchSimple agrees
// with the regular expression of patternRegexp in both modes.
func FuzzMatchSimple(f *testing.F) {
	f.Add("experts.1.down_proj", "model.layers.0.mlp.experts.1.down_proj")
	f.Add("q_proj", "a\n.q_proj")
	f.Add("a.", "b.a\n")
	f.Fuzz(func(t *testing.T, key, module string) {
		if !simplePattern(key) || !isASCII(module) {
			return
		}
		for _, mode := range []PatternMode{PatternsModern, PatternsOld} {
			if got, want := matchSimple(key, module, mode), regexp.MustCompile(patternRegexp(key, mode)).MatchString(module); got != want {
				t.Fatalf("%s key %q module %q: %v, regexp %v", mode, key, module, got, want)
			}
		}
	})
}
