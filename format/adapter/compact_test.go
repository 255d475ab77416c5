package adapter

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
	"github.com/adaptool/adaptool/internal/testgen"
)

// varietyTensor is a float32 tensor whose values start at v.
func varietyTensor(name string, v float32, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = v + float32(i)*0.01
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: f32bytes(vals...)}
}

// varietyAdapters writes adapters of every kind and dialect the package
// classifies, plus the oddities of the grouping (a role taken twice, a
// module of twenty tensors, other methods, full-size deltas, a quantized
// weight, NaN factors), and returns their paths with the corpus'.
func varietyAdapters(t *testing.T) []string {
	t.Helper()
	root := t.TempDir()
	var paths []string
	dir := func(name string) string {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		return p
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mods := []testgen.Module{{Name: "model.layers.0.self_attn.q_proj", In: 16, Out: 16}, {Name: "model.layers.1.mlp.down_proj", In: 32, Out: 16, Rank: 4},
		{Name: "model.embed_tokens", In: 50, Out: 16, Embedding: true}, {Name: "model.conv", In: 4, Out: 8, Kernel: []int{3, 3}}}
	must(testgen.WriteLoRA(dir("lora"), testgen.LoRA{Seed: 1, Modules: mods, RankPattern: []testgen.KV{{Key: "down_proj", Value: 4}}, Full: map[string][]int{"score.weight": {2, 16}}}))
	must(testgen.WriteLoRA(dir("dora"), testgen.LoRA{Seed: 2, Modules: mods[:2], DoRA: true, LoRABias: true, AdapterName: "default"}))
	must(testgen.WriteLoRA(dir("kasa"), testgen.LoRA{Seed: 3, Modules: mods[:2], KaSA: true, DType: safetensors.BF16, NoConfig: true}))
	must(testgen.WriteLoRA(dir("zerob"), testgen.LoRA{Seed: 3, Modules: mods[:2], ZeroB: true, FanInFanOut: true}))
	lm := []testgen.LycoModule{{Name: "model.layers.0.self_attn.q_proj", In: 16, Out: 16}, {Name: "model.layers.0.conv", In: 4, Out: 8, Kernel: []int{3, 3}}}
	must(testgen.WriteLoHa(dir("loha"), testgen.Lyco{Seed: 4, Modules: lm, EffectiveConv: true}))
	must(testgen.WriteLoKr(dir("lokr"), testgen.Lyco{Seed: 5, Modules: lm, DecomposeBoth: true}))
	must(testgen.WriteVeRA(dir("vera"), testgen.VeRA{Seed: 6, Modules: lm[:1]}))
	must(testgen.WriteVeRA(dir("vera2"), testgen.VeRA{Seed: 6, Modules: []testgen.LycoModule{lm[0], {Name: "model.layers.1.self_attn.q_proj", In: 16, Out: 16}}}))
	must(testgen.WriteVeRA(dir("vera-noproj"), testgen.VeRA{Seed: 6, Modules: lm[:1], NoProjection: true}))
	must(testgen.WriteAdaLoRA(dir("adalora"), testgen.AdaLoRA{Seed: 7, Modules: mods[:2]}))
	must(testgen.WriteIA3(dir("ia3"), 8, []testgen.IA3Module{{Name: "model.layers.0.q", In: 8, Out: 8}, {Name: "model.layers.0.ff", In: 8, Out: 8, Feedforward: true}}, false))
	for _, d := range []testgen.Dialect{testgen.Kohya, testgen.MLX, testgen.Diffusers, testgen.DiffusersLegacy} {
		must(testgen.WriteDialect(dir(fmt.Sprintf("dialect%d", d)), testgen.Bare{Seed: 9, Dialect: d, Modules: mods[:2], R: 4, Alpha: 2, Scale: 2}))
	}
	lyco := filepath.Join(root, "kohyalyco.safetensors")
	must(testgen.WriteKohyaLyco(lyco, testgen.KohyaLyco{Seed: 10, Modules: []testgen.KohyaLycoModule{
		{Name: "lora_unet_a", Kind: "loha", In: 8, Out: 8, Rank: 2, Alpha: 1}, {Name: "lora_unet_b", Kind: "lokr", In: 8, Out: 8, Rank: 2, W2Whole: true},
		{Name: "lora_unet_c", Kind: "dora", In: 8, Out: 8, Rank: 2, Alpha: 4}, {Name: "lora_unet_d", Kind: "loha", In: 4, Out: 8, Kernel: []int{3, 3}, Rank: 2, CP: true}}}))
	paths = append(paths, lyco)
	moe := filepath.Join(root, "moe.safetensors")
	writeMoE(t, moe, 300)
	paths = append(paths, moe)
	var raw []safetensors.Tensor
	for i := range 20 { // one module of twenty tensors
		raw = append(raw, varietyTensor(fmt.Sprintf("blk.weird.t%02d", i), 1, 2))
	}
	raw = append(raw,
		varietyTensor("blk.weird.t03.x", 1, 2),
		varietyTensor("base_model.model.x.lora_A.weight", 0.1, 2, 4), varietyTensor("base_model.model.x.lora_A", 0.2, 2, 4), varietyTensor("base_model.model.x.lora_B.weight", 0, 4, 2),
		varietyTensor("base_model.model.y.lora_A.weight", 0.1, 2, 4),
		varietyTensor("base_model.model.z.oft_r", 1, 2, 2), varietyTensor("base_model.model.z.oft_s", 1, 2), varietyTensor("base_model.model.ln.ln_tuning_layers.weight", 1, 4),
		varietyTensor("base_model.model.n.diff", 0.5, 4, 3), varietyTensor("base_model.model.n.diff_b", 0.25, 4), varietyTensor("base_model.model.nb.diff_b", 0.25, 4),
		varietyTensor("base_model.model.w.weight", 1, 2, 2), varietyTensor("base_model.model.w.bias", 1, 2),
		safetensors.Tensor{Name: "base_model.model.i.weight", DType: safetensors.I8, Shape: []int{2, 2}, Data: make([]byte, 4)},
		safetensors.Tensor{Name: "base_model.model.i.SCB", DType: safetensors.F32, Shape: []int{2}, Data: make([]byte, 8)},
		varietyTensor("base_model.model.nan.lora_A.weight", float32(math.NaN()), 2, 4), varietyTensor("base_model.model.nan.lora_B.weight", float32(math.Inf(1)), 4, 2),
		varietyTensor("prompt_embeddings", 1, 3, 4),
	)
	rawFile := filepath.Join(root, "raw.safetensors")
	if err := safetensors.WriteFile(rawFile, raw, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	paths = append(paths, rawFile)
	rd := dir("rawdir")
	if err := os.WriteFile(filepath.Join(rd, ConfigFile), []byte(`{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["x","y","q"],"modules_to_save":["w","zz"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(filepath.Join(rd, PEFTWeightsFile), raw, nil); err != nil {
		t.Fatal(err)
	}
	// a VeRA module with a tensor of its own under the shared role vera_A,
	// which the shared projection replaces
	vera := filepath.Join(root, "vera-own-a.safetensors")
	if err := safetensors.WriteFile(vera, []safetensors.Tensor{
		varietyTensor("base_model.model.v.vera_lambda_b", 1, 4), varietyTensor("base_model.model.v.vera_lambda_d", 1, 2),
		varietyTensor("base_model.model.v.vera_A", 3, 2, 4), varietyTensor("base_model.vera_A", 1, 2, 4), varietyTensor("base_model.vera_B", 1, 4, 2),
	}, nil); err != nil {
		t.Fatal(err)
	}
	paths = append(paths, vera)
	comfy := filepath.Join(root, "comfy.safetensors")
	if err := safetensors.WriteFile(comfy, []safetensors.Tensor{
		varietyTensor("diffusion_model.blocks.0.q.lora_A.weight", 0.1, 2, 4), varietyTensor("diffusion_model.blocks.0.q.lora_B.weight", 0.1, 4, 2), varietyTensor("diffusion_model.blocks.0.q.alpha", 2),
		varietyTensor("diffusion_model.blocks.0.norm.diff", 0.5, 4), varietyTensor("diffusion_model.blocks.0.norm.diff_b", 0.25, 4),
		varietyTensor("diffusion_model.blocks.0.k.diff", 1, 4, 4),
	}, nil); err != nil {
		t.Fatal(err)
	}
	paths = append(paths, comfy)
	if corpus, err := testcorpus.Locate(); err == nil {
		dirs, _ := filepath.Glob(filepath.Join(corpus, "*"))
		for _, d := range dirs {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				paths = append(paths, d)
			}
		}
	}
	return paths
}

// TestCompactModules: the modules Load builds from the compact lists are
// those it built with one map per module from the start (the grouping is
// checked against maps built here from the header), and WithModuleFunc and
// Validate's compact modules hold the same.
func TestCompactModules(t *testing.T) {
	for _, p := range varietyAdapters(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			a, err := Load(p)
			if err != nil {
				if _, verr := Validate(p); verr == nil {
					t.Errorf("Load fails (%v) but Validate does not", err)
				}
				return
			}
			defer a.Close()
			for _, m := range a.Modules {
				if m.Tensors == nil || m.compact() {
					t.Fatalf("module %s: Tensors %v, compact %v after Load", m.Name, m.Tensors, m.compact())
				}
			}
			if a.Quantized == nil {
				want, warns := mapGrouping(a)
				got := map[string]map[string]TensorRef{}
				for _, m := range a.Modules {
					got[m.Name] = m.Tensors
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("grouping:\n got %v\nwant %v", got, want)
				}
				for _, w := range warns {
					if !slices.Contains(a.Warnings, w) {
						t.Errorf("warning %q missing", w)
					}
				}
			}

			// WithModuleFunc, keeping every module: the same modules
			var kept []*Module
			b, err := Load(p, WithModuleFunc(func(m *Module, i, n int) bool {
				if i != len(kept) || n != len(a.Modules) {
					t.Errorf("call %d of %d, want %d of %d", i, n, len(kept), len(a.Modules))
				}
				kept = append(kept, m)
				return true
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if len(b.Modules) != 0 || !reflect.DeepEqual(kept, a.Modules) || !reflect.DeepEqual(b.Warnings, a.Warnings) {
				t.Errorf("WithModuleFunc: %d modules left, modules or warnings differ", len(b.Modules))
			}
			// dropping every module: each is whole during its call, and
			// its map, reused, is nil afterwards
			var dropped []*Module
			c, err := Load(p, WithModuleFunc(func(m *Module, i, n int) bool {
				if !reflect.DeepEqual(m, a.Modules[i]) {
					t.Errorf("module %d during its call: %+v, want %+v", i, m, a.Modules[i])
				}
				dropped = append(dropped, m)
				return false
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, m := range dropped {
				if m.Tensors != nil {
					t.Errorf("dropped module %s keeps its map", m.Name)
				}
			}

			// Validate's own modules: compact, the same tensors
			d, err := Load(p, withCompact())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			for i, m := range d.Modules {
				if !m.compact() {
					t.Fatalf("module %s is not compact", m.Name)
				}
				m.materialize()
				if !reflect.DeepEqual(m, a.Modules[i]) {
					t.Errorf("compact module %+v, want %+v", m, a.Modules[i])
				}
			}

			// Validate (compact) and Adapter.Validate (maps) find the same,
			// in the same order but for the findings of one module's
			// several tensors, which follow the file there and Tensors'
			// random order here
			r1, err := Validate(p)
			if err != nil {
				t.Fatal(err)
			}
			r2, err := a.Validate()
			if err != nil {
				t.Fatal(err)
			}
			key := func(f Finding) string {
				return strings.Join([]string{string(f.Severity), f.Module, f.Rule, f.Tensor, f.Message}, "\x00")
			}
			sorted := func(fs []Finding) []string {
				var out []string
				for _, f := range fs {
					out = append(out, key(f))
				}
				sort.Strings(out)
				return out
			}
			if !slices.Equal(sorted(r1.Findings), sorted(r2.Findings)) {
				t.Errorf("Validate:\n%v\nAdapter.Validate:\n%v", r1.Findings, r2.Findings)
			}
			for i := 1; i < len(r1.Findings); i++ {
				if sevRank(r1.Findings[i-1].Severity) > sevRank(r1.Findings[i].Severity) {
					t.Errorf("findings not ordered by severity: %v", r1.Findings)
				}
			}
		})
	}
}

// mapGrouping groups a's tensors as classify did with a map per module
// from the start: each tensor parsed into module and role in file order,
// a role taken twice kept under the tensor's name, the shared VeRA
// projections added to every VeRA module.
func mapGrouping(a *Adapter) (map[string]map[string]TensorRef, []string) {
	names := slices.Values(a.File.Names())
	adapterNames := defaultAdapterNames
	if a.Dialect == DialectPEFT || a.Dialect == DialectUnknown || a.Dialect == DialectDiffusers {
		adapterNames = append(slices.Clone(adapterNames), keyAdapterNames(names, adapterNames)...)
	}
	mods := map[string]map[string]TensorRef{}
	shared := map[string]TensorRef{}
	var warns []string
	for _, ti := range a.File.Tensors {
		t := refOf(ti)
		if t.Name == "base_model.vera_A" || t.Name == "base_model.vera_B" {
			shared[strings.TrimPrefix(t.Name, "base_model.")] = t
			continue
		}
		pk := parseKey(a.Dialect, t.Name, adapterNames)
		m := mods[pk.module]
		if m == nil {
			m = map[string]TensorRef{}
			mods[pk.module] = m
		}
		role := pk.role
		if _, dup := m[role]; dup {
			role = t.Name
			warns = append(warns, fmt.Sprintf("tensor %q maps to role %s of module %q which is already taken; kept as passthrough", t.Name, pk.role, pk.module))
		}
		m[role] = t
	}
	for _, m := range a.Modules {
		if m.Kind == KindVeRA {
			for k, v := range shared {
				mods[m.Name][k] = v
			}
		}
	}
	return mods, warns
}

// TestManyTensorsOneModule: a role taken twice in a module of more than
// eight tensors (where the grouping keeps a set of roles) is kept under the
// tensor's full name, with the warning, as in a small module.
func TestManyTensorsOneModule(t *testing.T) {
	for _, n := range []int{3, 8, 9, 20} {
		var refs []TensorRef
		for i := range n {
			refs = append(refs, TensorRef{Name: fmt.Sprintf("m.t%02d", i), DType: safetensors.F32, Shape: []int{1}})
		}
		refs = append(refs, TensorRef{Name: "base_model.model.m.t01", DType: safetensors.F32, Shape: []int{2}})
		cl := classify(refs, nil, nil, false, nil)
		if len(cl.modules) != 1 {
			t.Fatalf("%d modules", len(cl.modules))
		}
		m := cl.modules[0]
		m.materialize()
		if len(m.Tensors) != n+1 || m.Tensors["t01"].Name != "m.t01" || m.Tensors["base_model.model.m.t01"].Shape[0] != 2 {
			t.Errorf("n=%d: tensors %v", n, m.Tensors)
		}
		if len(cl.warnings) != 1 || !strings.Contains(cl.warnings[0], `tensor "base_model.model.m.t01" maps to role t01 of module "m" which is already taken`) {
			t.Errorf("n=%d: warnings %q", n, cl.warnings)
		}
	}
}

// TestScanFloatBytes: the in-place scan of mapped bytes counts as the
// scan of a reader does and as classifyFloat value by value, whatever the
// length, the alignment of the data and the chunk size.
func TestScanFloatBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	dts := []safetensors.DType{safetensors.F32, safetensors.F64, safetensors.F16, safetensors.BF16, safetensors.F8E4M3, safetensors.F8E5M2, safetensors.F8E8M0}
	for _, dt := range dts {
		size := dt.Bits() / 8
		for _, n := range []int{0, 1, 2, 63, 64, 65, 200, 1000, 5000} {
			for _, special := range []int{0, 1, 3} {
				for _, off := range []int{0, 1, 3} {
					raw := make([]byte, off+n*size)
					for i := range raw {
						raw[i] = byte(r.Uint32())
						if r.IntN(4) == 0 {
							raw[i] = 0
						}
					}
					data := raw[off:]
					if special > 0 && n > 0 {
						// NaN/Inf bit patterns where the dtype has them
						for range special {
							i := r.IntN(n) * size
							for k := range size {
								data[i+k] = 0xff
							}
						}
					}
					want := floatStats{first: -1}
					for i := 0; i < n; i++ {
						nan, inf, nz := classifyFloat(data[i*size:(i+1)*size], dt)
						want.record(int64(i), nan, inf)
						if nz {
							want.nonzero++
						}
					}
					for _, bufSize := range []int{8, 64 * size, scanBufSize} {
						buf := make([]byte, bufSize)
						got := scanFloatBytes(data, dt, buf)
						viaReader, err := scanFloats(bytes.NewReader(data), dt, make([]byte, bufSize))
						if err != nil {
							t.Fatal(err)
						}
						if got != want || viaReader != want {
							t.Errorf("%s n=%d off=%d buf=%d: bytes %+v, reader %+v, want %+v", dt, n, off, bufSize, got, viaReader, want)
						}
					}
				}
			}
		}
	}
}

// TestFindingsOrder: the chunked findings come out as a stable sort by
// severity of the order they were found in, after the ones already in the
// report.
func TestFindingsOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	sevs := []Severity{SeverityError, SeverityWarning, SeverityInfo}
	for _, n := range []int{0, 1, findingsChunk - 1, findingsChunk, 3*findingsChunk + 7} {
		rep := &Report{}
		var all []Finding
		if n%2 == 1 {
			f := Finding{Severity: SeverityInfo, Message: "already there"}
			rep.add(f)
			all = append(all, f)
		}
		v := validator{rep: rep}
		for i := range n {
			f := Finding{Severity: sevs[r.IntN(3)], Message: fmt.Sprint(i)}
			v.add(f)
			all = append(all, f)
		}
		v.flush()
		sort.SliceStable(all, func(i, j int) bool { return sevRank(all[i].Severity) < sevRank(all[j].Severity) })
		if len(all) == 0 {
			all = nil
		}
		if !reflect.DeepEqual(rep.Findings, all) {
			t.Errorf("n=%d: findings out of order", n)
		}
	}
}

// TestMessage: message formats only when there is something to format.
func TestMessage(t *testing.T) {
	for _, c := range []struct {
		format string
		args   []any
		want   string
	}{{"plain", nil, "plain"}, {"100%% sure", nil, "100% sure"}, {"%d of %s", []any{3, "x"}, "3 of x"}} {
		if got := message(c.format, c.args); got != c.want {
			t.Errorf("message(%q) = %q, want %q", c.format, got, c.want)
		}
	}
}

// hugeLoRA writes the brief's big-header shape: n rank-1 modules
// base_model.model.model.layers.L.mlp.experts.E.down_proj (256 experts a
// layer), lora_A (1,4) and lora_B (4,1) of F32 zeros.
func hugeLoRA(tb testing.TB, path string, n int) {
	tb.Helper()
	if err := testgen.WriteMoEExperts(path, n, 256); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkValidateHuge is Validate on a 100,000-tensor header (50,000
// modules, every lora_B zero: 50,000 findings and alpha-unknown).
func BenchmarkValidateHuge(b *testing.B) {
	p := filepath.Join(b.TempDir(), "huge.safetensors")
	hugeLoRA(b, p, 50_000)
	b.ReportAllocs()
	for b.Loop() {
		rep, err := Validate(p)
		if err != nil || len(rep.Findings) != 50_001 { // and alpha-unknown
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadHuge is Load of the same file, whose modules keep their
// maps, and Load handing them to a function that keeps none.
func BenchmarkLoadHuge(b *testing.B) {
	p := filepath.Join(b.TempDir(), "huge.safetensors")
	hugeLoRA(b, p, 50_000)
	b.Run("Modules", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a, err := Load(p)
			if err != nil || len(a.Modules) != 50_000 {
				b.Fatal(err)
			}
			a.Close()
		}
	})
	b.Run("ModuleFunc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			a, err := Load(p, WithModuleFunc(func(*Module, int, int) bool { n++; return false }))
			if err != nil || n != 50_000 {
				b.Fatal(err)
			}
			a.Close()
		}
	})
}
