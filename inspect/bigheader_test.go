package inspect

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/internal/testgen"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
	"github.com/adaptool/adaptool/quant"
)

// The strings.Split versions that LayerOf, ModuleType, BlockOf and
// classifyTensor replaced: the byte-scanning ones must agree with them.

func refSegments(module string) []string {
	if kohyaLike(module) {
		return strings.Split(module, "_")
	}
	return strings.Split(module, ".")
}

func refLayerOf(module string) int {
	for _, s := range refSegments(module) {
		if s == "" {
			continue
		}
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			return n
		}
	}
	return -1
}

func refModuleType(module string) string {
	if kohyaLike(module) {
		seg := strings.Split(module, "_")
		for i := len(seg) - 1; i >= 0; i-- {
			if _, err := strconv.Atoi(seg[i]); err == nil {
				if i < len(seg)-1 {
					return strings.Join(seg[i+1:], "_")
				}
				break
			}
		}
		return module
	}
	seg := strings.Split(module, ".")
	for i := len(seg) - 1; i >= 0; i-- {
		if _, err := strconv.Atoi(seg[i]); err != nil && seg[i] != "" {
			return seg[i]
		}
	}
	return module
}

func refBlockOf(module string) string {
	sep := "."
	if kohyaLike(module) {
		sep = "_"
	}
	seg := strings.Split(module, sep)
	for i, s := range seg {
		if _, err := strconv.Atoi(s); err == nil && s != "" {
			return strings.Join(seg[:i+1], sep)
		}
	}
	return ""
}

func refClassifyTensor(name string) (class, method string) {
	seg := strings.Split(name, ".")
	last := seg[len(seg)-1]
	prev := ""
	if len(seg) > 1 {
		prev = seg[len(seg)-2]
	}
	has := func(s string) bool { return slices.Contains(seg, s) }
	switch {
	case last == "lora_diag":
		return ClassSVDForm, "kasa"
	case last == "lora_E":
		return ClassSVDForm, "adalora"
	case strings.HasPrefix(last, "lora_magnitude_vector") || prev == "lora_magnitude_vector" || last == "dora_scale":
		return ClassRescaled, "dora"
	case last == "ia3_l":
		return ClassRescaling, "ia3"
	case strings.HasPrefix(last, "hada_"):
		return ClassLyCORIS, "loha"
	case strings.HasPrefix(last, "lokr_"):
		return ClassLyCORIS, "lokr"
	case strings.HasPrefix(last, "vera_"):
		return ClassVeRA, "vera"
	case last == "prompt_embeddings" || strings.HasPrefix(last, "prefix_task_"):
		return ClassPrompt, "prompt"
	case last == "trainable_tokens_delta":
		return ClassReplacement, "trainable-tokens"
	case len(seg) > 1 && (last == "diff" || last == "diff_b" || last == "w_norm" || last == "b_norm"):
		return ClassFullDelta, "diff"
	}
	for _, k := range []string{"lora_A", "lora_B", "lora_down", "lora_up", "lora_a", "lora_b", "lora_embedding_A", "lora_embedding_B"} {
		if last == k || prev == k || (k == "lora_A" || k == "lora_B") && (last == "weight" || last == "bias") && len(seg) > 2 && seg[len(seg)-3] == k {
			if has("modules_to_save") || has("original_module") {
				return ClassLowRank, "lora-on-wrapper"
			}
			return ClassLowRank, "lora"
		}
	}
	if (prev == "down" || prev == "up") && len(seg) > 2 && (strings.HasSuffix(seg[len(seg)-3], "_lora") || seg[len(seg)-3] == "lora") {
		return ClassLowRank, "lora"
	}
	for _, sg := range seg[max(0, len(seg)-3):] {
		if k := adapter.OtherMethod(sg); k != "" {
			return ClassOther, string(k)
		}
	}
	if last == "alpha" && len(seg) > 1 {
		return "", ""
	}
	if strings.HasPrefix(last, "w_a_") || strings.HasPrefix(last, "w_b_") {
		return ClassUnknown, "custom"
	}
	if last == "weight" || last == "bias" || strings.HasSuffix(name, "base_layer.weight") {
		return ClassReplacement, "full"
	}
	return ClassUnknown, "unknown"
}

// oddNames are module and tensor names at the edges of the segment rules:
// empty segments, signs, leading zeros, int overflow, kohya names.
var oddNames = []string{
	"", ".", "..", "a", "a.", ".a", "a..b", "0", "-1", "+1", "-0", "+", "-", "007", "1.2.3",
	"model.layers.12.mlp.up_proj", "model.layers.-3.x", "model.layers.+4.x", "model.layers.99999999999999999999.x",
	"model.layers.9223372036854775807.x", "model.layers.9223372036854775808.x", "model.layers.1e3.x", "model.layers.0x1.x",
	"encoder.block.3.layer.0.SelfAttention.q", "down_blocks.1.attentions.0.to_out.0", "to_out.0", "x.1.", "x..1",
	"lora_unet_down_blocks_1_attentions_0_proj_in", "lora_unet_3", "lora_unet_x_99999999999999999999_y", "lora_te_a__1_b",
	"lora_", "lora_1_", "lora_unet_mid_block_attentions_0_to_q", "lora_unet_a_-2_b", "módulo.ü.3.q_proj",
	"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "base_model.model.x.lora_magnitude_vector.weight",
	"base_model.model.classifier.modules_to_save.lora_A.weight", "base_model.model.c.original_module.lora_B.weight",
	"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight", "x.lora.up.weight",
	"lora.up.weight", "up.weight", "lora_A", "x.alpha", "alpha", "w_a_000", "w_b_1", "x.base_layer.weight", "x.bias",
	"prompt_embeddings", "prefix_task_cols", "x.dora_scale", "x.hada_w1_a", "x.lokr_t2", "x.vera_lambda_d", "x.ia3_l",
	"x.lora_diag", "x.lora_E", "x.token_adapter.trainable_tokens_delta", "modules_to_save.lora_A", "a.modules_to_save",
	"x.oft_r", "x.oft_R.weight", "oft_R.weight.x.y", "boft_s", "vblora_vector_bank", "a.ln_tuning_layers.bias", "x.hra_u.y.z",
	"poly_router.a.b.c", "x.poly_proj.weight", "x.road_theta", "x.fourierft_spectrum", "x.diff", "diff", "x.diff_b", "a.b.w_norm",
	"x.lora_A.task.weight", "lora_B.t.bias", "x.lora_A.t.u.weight", "lora_A.x",
}

func TestSegmentRulesMatchSplit(t *testing.T) {
	names := append([]string{}, oddNames...)
	if root, err := testcorpus.Locate(); err == nil {
		// every tensor and module name of the real-file corpus as well
		files, _ := filepath.Glob(filepath.Join(root, "*", "*.safetensors"))
		for _, f := range files {
			if h, err := safetensors.OpenHeader(f); err == nil {
				for _, tn := range h.Tensors {
					names = append(names, tn.Name, strings.TrimSuffix(tn.Name, ".weight"))
				}
			}
		}
	}
	for _, n := range names {
		if got, want := LayerOf(n), refLayerOf(n); got != want {
			t.Errorf("LayerOf(%q) = %d, want %d", n, got, want)
		}
		if got, want := ModuleType(n), refModuleType(n); got != want {
			t.Errorf("ModuleType(%q) = %q, want %q", n, got, want)
		}
		if got, want := BlockOf(n), refBlockOf(n); got != want {
			t.Errorf("BlockOf(%q) = %q, want %q", n, got, want)
		}
		gc, gm := classifyTensor(n)
		if wc, wm := refClassifyTensor(n); gc != wc || gm != wm {
			t.Errorf("classifyTensor(%q) = %s/%s, want %s/%s", n, gc, gm, wc, wm)
		}
	}
}

func TestAtoi(t *testing.T) {
	for _, s := range []string{"", "+", "-", "0", "-0", "+0", "7", "007", "-12", "+12", "1_0", "0x10", "1e3", " 1", "1 ",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "99999999999999999999", "١"} {
		want, err := strconv.Atoi(s)
		got, ok := atoi(s)
		if ok != (err == nil) || ok && got != want {
			t.Errorf("atoi(%q) = %d, %v; strconv.Atoi = %d, %v", s, got, ok, want, err)
		}
	}
}

// jsonInputs are the inputs whose inspect --json output WriteJSON must
// reproduce byte for byte: the shipped sample, synthetic edge cases and,
// when present, every file of the real-file corpus.
func jsonInputs(t *testing.T) []string {
	dir := t.TempDir()
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	write := func(name string, ts []safetensors.Tensor, meta map[string]string) string {
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFile(p, ts, meta); err != nil {
			t.Fatal(err)
		}
		return p
	}
	odd := []safetensors.Tensor{{Name: "scalar", DType: safetensors.F32, Data: f32(1)}}
	for i, n := range []string{"a\tb", "x\ny", "<b>&amp;", "módulo.ü.3.q_proj", "a..b.+1.c", "l.99999999999999999999.k"} {
		odd = append(odd,
			safetensors.Tensor{Name: fmt.Sprintf("base_model.model.%s.lora_A.weight", n), DType: safetensors.F32, Shape: []int{2, 3}, Data: f32(6)},
			safetensors.Tensor{Name: fmt.Sprintf("base_model.model.%s.lora_B.weight", n), DType: safetensors.BF16, Shape: []int{4 + i, 2}, Data: make([]byte, 2*2*(4+i))})
	}
	paths := []string{
		"../testdata/tiny-llama-lora",
		write("odd.safetensors", odd, map[string]string{"note": "<tab>\t&\n", "ss_base_model_version": "sd_v1"}),
		write("empty.safetensors", nil, nil),
	}
	good, err := os.ReadFile(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "truncated.safetensors")
	if err := os.WriteFile(trunc, good[:len(good)-3], 0o644); err != nil {
		t.Fatal(err)
	}
	paths = append(paths, trunc)
	// a GGUF LoRA export of the sample (modules built by gguf.go)
	gg, _ := toGGUF(t, "../testdata/tiny-llama-lora", "llama", `{"num_attention_heads":4,"num_key_value_heads":2}`)
	paths = append(paths, gg)
	if root, err := testcorpus.Locate(); err == nil {
		dirs, _ := filepath.Glob(filepath.Join(root, "*"))
		for _, d := range dirs {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				paths = append(paths, d)
			}
		}
	}
	return paths
}

func TestWriteJSONMatchesEncoder(t *testing.T) {
	for _, p := range jsonInputs(t) {
		for _, opts := range []Options{{}, {Stats: true, Hashes: true}} {
			s, _ := Summarize(p, opts)
			if s == nil {
				continue // unresolvable path: the CLI prints no JSON
			}
			var want, got bytes.Buffer
			if err := newIndentEncoder(&want, "").Encode(s); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if err := s.WriteJSON(&got); err != nil {
				t.Fatalf("%s: WriteJSON: %v", p, err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Errorf("%s (stats %v): WriteJSON differs from json.Encoder (%d vs %d bytes)", p, opts.Stats, got.Len(), want.Len())
			}
		}
	}
}

func TestWriteJSONNonFinite(t *testing.T) {
	base := func() *Summary {
		s, err := Summarize("../testdata/tiny-llama-lora", Options{Stats: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Modules) == 0 || s.Modules[0].ModuleStats == nil || s.Tensors[0].Stats == nil {
			t.Fatal("sample has no statistics")
		}
		return s
	}
	// A non-finite alpha or scale comes from the input (a kohya .alpha of
	// Inf or NaN): it is written as null, through the encoding/json path.
	for _, c := range []struct {
		name string
		set  func(s *Summary)
	}{
		{"module alpha", func(s *Summary) { s.Modules[0].Alpha = math.NaN() }},
		{"module scale", func(s *Summary) { s.Modules[len(s.Modules)-1].Scale = math.Inf(1) }},
	} {
		s := base()
		c.set(s)
		var buf bytes.Buffer
		if err := s.WriteJSON(&buf); err != nil || !bytes.Contains(buf.Bytes(), []byte(`": null`)) {
			t.Errorf("%s: WriteJSON err %v; want null for the non-finite value", c.name, err)
		}
	}
	for _, c := range []struct {
		name string
		set  func(s *Summary)
	}{
		{"singular value", func(s *Summary) { s.Modules[0].SingularValues[0] = math.Inf(-1) }},
		{"stable rank", func(s *Summary) { s.Modules[0].StableRank = math.NaN() }},
		{"tensor mean", func(s *Summary) { s.Tensors[1].Stats.Mean = math.NaN() }},
		{"total norm", func(s *Summary) { s.Totals.DeltaFroNorm = math.Inf(1) }},
	} {
		s := base()
		if !s.finite() {
			t.Fatalf("%s: sample not finite before the change", c.name)
		}
		c.set(s)
		var buf bytes.Buffer
		err := s.WriteJSON(&buf)
		if err == nil || buf.Len() != 0 {
			t.Errorf("%s: WriteJSON err %v, wrote %d bytes; want an error and nothing written", c.name, err, buf.Len())
		}
	}
}

// TestFiniteCovers lists every float64 reachable from Summary: finite()
// must check each of them (update both when a float field is added).
func TestFiniteCovers(t *testing.T) {
	var got []string
	var walk func(ty reflect.Type, path string, seen map[reflect.Type]bool)
	walk = func(ty reflect.Type, path string, seen map[reflect.Type]bool) {
		switch ty.Kind() {
		case reflect.Float32, reflect.Float64:
			got = append(got, path)
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(ty.Elem(), path, seen)
		case reflect.Map:
			walk(ty.Key(), path+"[key]", seen)
			walk(ty.Elem(), path+"[]", seen)
		case reflect.Struct:
			if seen[ty] {
				return
			}
			seen[ty] = true
			for i := 0; i < ty.NumField(); i++ {
				f := ty.Field(i)
				if f.IsExported() {
					walk(f.Type, path+"."+f.Name, seen)
				}
			}
			delete(seen, ty)
		}
	}
	walk(summaryType, "Summary", map[reflect.Type]bool{})
	sort.Strings(got)
	want := []string{
		"Summary.Modules.Alpha", "Summary.Modules.ModuleStats.DeltaFroNorm", "Summary.Modules.ModuleStats.EffectiveRank",
		"Summary.Modules.ModuleStats.NormA", "Summary.Modules.ModuleStats.NormB", "Summary.Modules.ModuleStats.SingularValues",
		"Summary.Modules.ModuleStats.StableRank", "Summary.Modules.ModuleStats.VectorNorm", "Summary.Modules.Scale",
		"Summary.Tensors.Stats.AbsMax", "Summary.Tensors.Stats.Max", "Summary.Tensors.Stats.Mean", "Summary.Tensors.Stats.Min",
		"Summary.Tensors.Stats.Norm", "Summary.Tensors.Stats.Std", "Summary.Totals.DeltaFroNorm",
	}
	if !slices.Equal(got, want) {
		t.Errorf("float fields of Summary:\n got %q\nwant %q (Summary.finite checks the latter)", got, want)
	}
}

// TestSummaryFieldsPlain keeps Summary within what WriteJSON reproduces:
// no embedded fields, no "-" or ",string" tags, no MarshalJSON.
func TestSummaryFieldsPlain(t *testing.T) {
	if reflect.PointerTo(summaryType).Implements(marshalerType) {
		t.Error("Summary implements json.Marshaler: WriteJSON would fall back to one in-memory document")
	}
	for i := 0; i < summaryType.NumField(); i++ {
		f := summaryType.Field(i)
		if f.Anonymous {
			t.Errorf("embedded field %s", f.Name)
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || opts != "" && opts != "omitempty" {
			t.Errorf("field %s: json tag %q", f.Name, f.Tag.Get("json"))
		}
	}
	if n := len(summaryFields); n < 18 {
		t.Errorf("%d JSON fields, want the 18 of SPEC.md §4.1", n)
	}
}

// TestReadHeadersOpened checks that the header of a file Summarize has
// opened gives the same listing as reading it with OpenHeader.
func TestReadHeadersOpened(t *testing.T) {
	for _, p := range jsonInputs(t)[:3] { // the sample, odd names, no tensors
		l, err := resolveLayout(p)
		if err != nil {
			t.Fatal(err)
		}
		want := readHeaders(l)
		f, err := safetensors.Open(l.files[0])
		if err != nil {
			t.Fatal(err)
		}
		l.opened = f
		got := readHeaders(l)
		f.Close()
		if !reflect.DeepEqual(got.files, want.files) || !reflect.DeepEqual(got.tensors, want.tensors) || !reflect.DeepEqual(got.meta, want.meta) || len(got.errs) != len(want.errs) {
			t.Errorf("%s: listing from the opened file differs", p)
		}
		for _, ts := range want.tensors {
			a, okA := got.Tensor(ts.Name)
			b, okB := want.Tensor(ts.Name)
			if !okA || !okB || !reflect.DeepEqual(a, b) {
				t.Errorf("%s: Tensor(%q) = %v %v, want %v %v", p, ts.Name, a, okA, b, okB)
			}
		}
		if _, ok := got.Tensor("no such tensor"); ok {
			t.Errorf("%s: Tensor of a missing name found", p)
		}
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

func TestSummarizeMoE(t *testing.T) {
	p := filepath.Join(t.TempDir(), "moe.safetensors")
	writeMoE(t, p, 640)
	s, err := Summarize(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Tensors) != 1280 || len(s.Modules) != 640 || s.Architecture != "llama" || s.Format != "peft" {
		t.Fatalf("%d tensors, %d modules, arch %q, format %q", len(s.Tensors), len(s.Modules), s.Architecture, s.Format)
	}
	m := s.Modules[1] // sorted by name: layers.0.mlp.experts.1 after experts.0
	if m.Name != "model.layers.0.mlp.experts.1.down_proj" || m.Layer != 0 || m.Block != "model.layers.0" || m.ModuleType != "down_proj" ||
		m.Rank != 1 || m.InFeatures != 4 || m.OutFeatures != 4 || m.Tensors.Get("lora_A") != "base_model.model.model.layers.0.mlp.experts.1.down_proj.lora_A.weight" {
		t.Errorf("module %+v", m)
	}
	if len(s.Layers) != 10 || s.ModuleTypes["down_proj"] != 640 || s.Totals.Kinds["lora"] != 640 {
		t.Errorf("layers %v, types %v, kinds %v", s.Layers, s.ModuleTypes, s.Totals.Kinds)
	}
}

// BenchmarkSummarizeBigHeader is `adaptool inspect` (without output) on a
// 100,000-tensor MoE adapter: 50,000 modules, a 13.6 MB header.
func BenchmarkSummarizeBigHeader(b *testing.B) {
	p := filepath.Join(b.TempDir(), "moe.safetensors")
	writeMoE(b, p, 50_000)
	b.ReportAllocs()
	for b.Loop() {
		s, err := Summarize(p, Options{})
		if err != nil || len(s.Modules) != 50_000 {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteJSONBigHeader is the --json output of that summary.
func BenchmarkWriteJSONBigHeader(b *testing.B) {
	p := filepath.Join(b.TempDir(), "moe.safetensors")
	writeMoE(b, p, 50_000)
	s, err := Summarize(p, Options{})
	if err != nil {
		b.Fatal(err)
	}
	var n countWriter
	b.ReportAllocs()
	for b.Loop() {
		if err := s.WriteJSON(&n); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(n) / int64(b.N))
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// fakeHeader is a quant.Header over a list of tensors.
type fakeHeader map[string]safetensors.TensorInfo

func (h fakeHeader) Tensor(name string) (safetensors.TensorInfo, bool) {
	t, ok := h[name]
	return t, ok
}

// TestQuantCandidates: quant.Detect over the names quantCandidate keeps
// finds exactly what it finds over every name, for a weight of each dtype
// with each companion key of every layout (a change to quant.Detect that
// starts from another dtype or key makes this fail).
func TestQuantCandidates(t *testing.T) {
	h := fakeHeader{}
	var names []string
	add := func(name string, dt safetensors.DType, shape ...int) {
		h[name] = safetensors.TensorInfo{Name: name, DType: dt, Shape: shape}
		names = append(names, name)
	}
	for d := 0; d < safetensors.NumDTypes; d++ {
		dt := safetensors.DType(d)
		for _, w := range []string{fmt.Sprintf("m%d.weight", d), fmt.Sprintf("m%d.w", d)} {
			add(w, dt, 8, 8)
			base := strings.TrimSuffix(w, ".weight")
			add(base+".SCB", safetensors.F32, 8)
			add(base+".weight_format", safetensors.U8)
			for _, suf := range []string{"_scale", "_scale_inv", "_zero_point", ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"} {
				add(w+suf, safetensors.F32, 1)
			}
			for _, qt := range []string{"nf4", "fp4", "int8"} {
				add(w+".quant_state.bitsandbytes__"+qt, safetensors.U8, 16)
			}
		}
	}
	add(".quant_state.bitsandbytes__nf4", safetensors.U8, 4) // the marker at index 0
	var cand []string
	for _, n := range names {
		if quantCandidate(n, h[n].DType.String()) {
			cand = append(cand, n)
		}
	}
	all := quant.Detect(h, names)
	got := quant.Detect(h, cand)
	if len(all) < 3*safetensors.NumDTypes/2 || len(cand) >= len(names)/2 {
		t.Fatalf("%d detections from %d names, %d candidates: the test input lost its coverage", len(all), len(names), len(cand))
	}
	if !reflect.DeepEqual(got, all) {
		t.Errorf("Detect over the candidates differs from Detect over every name:\n got %+v\nwant %+v", got, all)
	}
}

// TestFastJSON compares the tensor and module fast paths of WriteJSON with
// the Encoder, entry by entry, on the values where they could differ.
func TestFastJSON(t *testing.T) {
	encode := func(v any) string {
		var buf bytes.Buffer
		if err := newIndentEncoder(&buf, "    ").Encode(v); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(buf.String(), "\n")
	}
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 1.0 / 3, 16, 2e-6, 1e-6, 9.99e-7, 1e-7, 1.5e-9, 1e20, 1e21, 1.5e21, -2e22,
		5e-324, math.MaxFloat64, 1e-300, 123456789.125, 0.1 + 0.2}
	var mods []ModuleSummary
	for i, f := range floats {
		mods = append(mods, ModuleSummary{Name: fmt.Sprintf("model.layers.%d.q_proj", i), Kind: "lora", Rank: i, Alpha: f, Scale: -f,
			AlphaKnown: i%2 == 0, InFeatures: 1 << i, OutFeatures: -i, FanInFanOut: i%3 == 0, Layer: i - 1, Block: "b", ModuleType: "q_proj",
			Tensors: RoleTensors{{"Z", "z"}, {"alpha", "x.alpha"}, {"lora_A", "x.lora_A.weight"}, {"lora_B", "x.lora_B.weight"}}})
	}
	mods = append(mods,
		ModuleSummary{Name: "empty map", Tensors: RoleTensors{}},
		ModuleSummary{Name: "nil map"},
		ModuleSummary{Name: "html <b>", Kind: "lora"},                                 // escaped by MarshalJSON: Encoder
		ModuleSummary{Name: "ünïcode", Kind: "lora"},                                  // Encoder
		ModuleSummary{Name: "x", Tensors: RoleTensors{{"a", "t&t"}}},                  // Encoder
		ModuleSummary{Name: "unsorted", Tensors: RoleTensors{{"b", "t"}, {"a", "u"}}}, // Encoder
		ModuleSummary{Name: "stats", ModuleStats: &ModuleStats{NormA: 1}, statsRequested: true},
		ModuleSummary{Name: "stats requested", statsRequested: true},
	)
	fastMods := 0
	for i := range mods {
		got, ok := appendModuleJSON(nil, &mods[i])
		if !ok {
			continue
		}
		fastMods++
		if want := encode(&mods[i]); string(got) != want {
			t.Errorf("module %q:\n got %s\nwant %s", mods[i].Name, got, want)
		}
	}
	tensors := []TensorSummary{
		{Name: "a.weight", DType: "F32", Shape: []int{4096, 11008}, Bytes: 4096 * 11008 * 4},
		{Name: "scalar", DType: "BF16", Shape: []int{}, Bytes: 2},
		{Name: "nil shape", DType: "F32"},
		{Name: "x", DType: "U8", Shape: []int{1, 2, 3, 4}, Bytes: -1, File: "model-00001-of-00002.safetensors", Quant: "nf4-aux"},
		{Name: "quote\"d", DType: "F32", Shape: []int{1}},                 // Encoder
		{Name: "s", DType: "F32", Shape: []int{1}, Stats: &TensorStats{}}, // Encoder
	}
	fastTensors := 0
	for i := range tensors {
		got, ok := appendTensorJSON(nil, &tensors[i])
		if !ok {
			continue
		}
		fastTensors++
		if want := encode(&tensors[i]); string(got) != want {
			t.Errorf("tensor %q:\n got %s\nwant %s", tensors[i].Name, got, want)
		}
	}
	if fastMods != len(floats)+2 || fastTensors != 4 {
		t.Errorf("fast path taken for %d modules and %d tensors, want %d and 4", fastMods, fastTensors, len(floats)+2)
	}
}
