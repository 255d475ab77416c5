package adapter

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testcorpus"
)

// manifestKind maps what Load found to the kind strings of
// ../shared/corpus/MANIFEST.tsv (the mapping is documented in
// SPEC.md §3):
//
//	dialect mlx                                  → mlx-lm-lora
//	dialect diffusers-legacy                     → diffusers-lora-attnproc-legacy
//	dialect diffusers, producer ai-toolkit, flux → ai-toolkit-flux-lora
//	dialect diffusers                            → diffusers-lora
//	dialect kohya                                → kohya-lora
//	dialect unknown, producer LoRA-ViT           → custom-lora-vit
//	dialect peft: "peft-" + lower(peft_type, _→-) (LORA when there is no
//	config), with "-diffusers-unet" / "-clip-te" appended for LoRA on a
//	unet / clip-text architecture.
func manifestKind(a *Adapter) string {
	switch a.Dialect {
	case DialectMLX:
		return "mlx-lm-lora"
	case DialectDiffusersLegacy:
		return "diffusers-lora-attnproc-legacy"
	case DialectDiffusers:
		if a.Producer == "ai-toolkit" && a.Architecture == "flux" {
			return "ai-toolkit-flux-lora"
		}
		return "diffusers-lora"
	case DialectKohya:
		return "kohya-lora"
	case DialectUnknown:
		if a.Producer == "LoRA-ViT" {
			return "custom-lora-vit"
		}
		return "unknown"
	}
	pt := a.PeftType
	if pt == "" {
		pt = "LORA"
	}
	k := "peft-" + strings.ToLower(strings.ReplaceAll(pt, "_", "-"))
	if pt == "LORA" {
		switch a.Architecture {
		case "unet":
			k += "-diffusers-unet"
		case "clip-text":
			k += "-clip-te"
		}
	}
	return k
}

func dtypeHistogram(f *safetensors.File) map[string]int {
	count := map[string]int{}
	for _, t := range f.Tensors {
		count[t.DType.String()]++
	}
	return count
}

func TestCorpusConformance(t *testing.T) {
	corpus, rows := testcorpus.Manifest(t)
	for _, row := range rows {
		t.Run(row.Dir, func(t *testing.T) {
			// Load the directory (bare file for the non-standard names).
			path := row.DirPath(corpus)
			if after := row.WantError(); after != "" {
				want := safetensors.SentinelByName(after)
				if want == nil {
					t.Fatalf("unknown sentinel %q", after)
				}
				_, err := Load(path)
				if !errors.Is(err, want) || !safetensors.IsFormatError(err) || !strings.Contains(err.Error(), row.File) {
					t.Errorf("Load = %v; want %v naming %s", err, want, row.File)
				}
				if _, err := Validate(path); !errors.Is(err, want) {
					t.Errorf("Validate = %v; want %v", err, want)
				}
				return
			}
			a := mustLoad(t, path)
			if filepath.Base(a.WeightsPath) != row.File {
				t.Errorf("weights file %s, want %s", a.WeightsPath, row.File)
			}
			if got := manifestKind(a); got != row.Kind {
				t.Errorf("kind %s (dialect %s, type %q, producer %q, arch %q), want %s", got, a.Dialect, a.PeftType, a.Producer, a.Architecture, row.Kind)
			}
			if a.PeftType != row.PeftType {
				t.Errorf("peft_type %q, want %q", a.PeftType, row.PeftType)
			}
			if len(a.File.Tensors) != row.Tensors {
				t.Errorf("%d tensors, want %d", len(a.File.Tensors), row.Tensors)
			}
			if got := dtypeHistogram(a.File); !maps.Equal(got, row.DTypes) {
				t.Errorf("dtypes %v, want %v", got, row.DTypes)
			}
			// every tensor belongs to exactly one module (or the shared set)
			seen := map[string]int{}
			for _, m := range a.Modules {
				for _, tr := range m.Tensors {
					seen[tr.Name]++
				}
			}
			for _, tr := range a.File.Tensors {
				if seen[tr.Name] != 1 {
					t.Errorf("tensor %s is in %d modules", tr.Name, seen[tr.Name])
				}
			}
			if row.Rank != 0 {
				want := row.Rank
				got := 0
				if a.PeftType == "ADALORA" {
					got = a.Config.R // the manifest lists the config's (unused) r
				} else {
					var ranks []int
					for _, m := range a.Modules {
						if m.IsLowRank() || m.Kind == KindIncomplete {
							ranks = append(ranks, m.Rank)
						}
					}
					got = mostCommon(ranks)
				}
				if got != want {
					t.Errorf("rank %d, want %d", got, want)
				}
			}
		})
	}
}

func loadCorpus(t *testing.T, name string) *Adapter {
	t.Helper()
	a, err := Load(filepath.Join(corpusDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// allModules asserts a predicate over the low-rank modules of an adapter.
func allModules(t *testing.T, a *Adapter, want int, check func(m *Module) string) {
	t.Helper()
	n := 0
	for _, m := range a.Modules {
		if !m.IsLowRank() && m.Kind != KindIncomplete && m.Kind != KindIA3 {
			continue
		}
		n++
		if msg := check(m); msg != "" {
			t.Errorf("%s: %s", m.Name, msg)
		}
	}
	if n != want {
		t.Errorf("%d adapted modules, want %d", n, want)
	}
}

func TestCorpusScales(t *testing.T) {
	corpusDir(t)
	t.Run("bloom alpha 1 r 10", func(t *testing.T) {
		a := loadCorpus(t, "bloom560m-r10-alpha1")
		allModules(t, a, 24, func(m *Module) string {
			if m.Rank != 10 || m.Alpha != 1 || m.Scale != 0.1 || m.InFeatures != 1024 || m.OutFeatures != 3072 || m.Kind != KindLoRA {
				return fmt.Sprintf("r %d alpha %g scale %g in %d out %d", m.Rank, m.Alpha, m.Scale, m.InFeatures, m.OutFeatures)
			}
			return ""
		})
	})
	for _, name := range []string{"sd15-unet-peft", "sd15-unet-diffusers"} {
		t.Run(name, func(t *testing.T) {
			a := loadCorpus(t, name)
			cross := 0
			allModules(t, a, 96, func(m *Module) string {
				if strings.Contains(m.Name, "attn2.to_k") || strings.Contains(m.Name, "attn2.to_v") {
					cross++
					if m.InFeatures != 768 {
						return fmt.Sprintf("cross-attention in %d, want 768", m.InFeatures)
					}
				}
				if m.Rank != 4 || m.Scale != 4 || !m.AlphaKnown {
					return fmt.Sprintf("r %d scale %g known %v; want 4, 16/4", m.Rank, m.Scale, m.AlphaKnown)
				}
				return ""
			})
			if cross != 32 || len(a.Warnings) != 0 {
				t.Errorf("%d cross-attention k/v modules, warnings %v", cross, a.Warnings)
			}
		})
	}
	t.Run("adalora", func(t *testing.T) {
		a := loadCorpus(t, "berttiny-adalora-tokcls")
		initR, eps := 12.0, 1e-5
		want := 32 / (initR + eps)
		allModules(t, a, 4, func(m *Module) string {
			if m.Kind != KindAdaLoRA || m.Rank != 12 || m.Scale != want || m.Tensors[RoleE].Shape[0] != 12 {
				return fmt.Sprintf("kind %s r %d scale %.17g", m.Kind, m.Rank, m.Scale)
			}
			return ""
		})
		if a.Config.RankPattern != nil || a.Config.AdaLoRAMask != nil || a.Config.TargetR != 8 {
			t.Errorf("null rank_pattern / target_r: %v %v %d", a.Config.RankPattern, a.Config.AdaLoRAMask, a.Config.TargetR)
		}
	})
	t.Run("mlx scale 10 transposed", func(t *testing.T) {
		a := loadCorpus(t, "mlx-gemma2b-lora")
		allModules(t, a, 8, func(m *Module) string {
			wantOut := 2048
			if strings.HasSuffix(m.Name, "v_proj") {
				wantOut = 256
			}
			if m.Scale != 10 || m.Rank != 8 || m.InFeatures != 2048 || m.OutFeatures != wantOut || !m.Transposed || !m.AlphaKnown {
				return fmt.Sprintf("scale %g r %d in %d out %d", m.Scale, m.Rank, m.InFeatures, m.OutFeatures)
			}
			return ""
		})
		// Factors transposes: A[k][i] = lora_a[i][k], B[o][k] = lora_b[k][o]
		m := a.Module("model.layers.17.self_attn.v_proj")
		f, err := a.Factors(m)
		if err != nil {
			t.Fatal(err)
		}
		la, _ := a.File.Float32(m.Tensors[RoleA].Name)
		lb, _ := a.File.Float32(m.Tensors[RoleB].Name)
		for _, ik := range [][2]int{{0, 0}, {5, 3}, {2047, 7}} {
			i, k := ik[0], ik[1]
			if f.A[k*2048+i] != la[i*8+k] {
				t.Errorf("A[%d][%d] = %g, lora_a[%d][%d] = %g", k, i, f.A[k*2048+i], i, k, la[i*8+k])
			}
		}
		for _, ok := range [][2]int{{0, 0}, {255, 7}, {100, 2}} {
			o, k := ok[0], ok[1]
			if f.B[o*8+k] != lb[k*256+o] {
				t.Errorf("B[%d][%d] = %g, lora_b[%d][%d] = %g", o, k, f.B[o*8+k], k, o, lb[k*256+o])
			}
		}
	})
	t.Run("tinygpt2 rank > in", func(t *testing.T) {
		a := loadCorpus(t, "tinygpt2-r4-gt-dim")
		allModules(t, a, 6, func(m *Module) string {
			if m.Rank != 4 || m.Scale != 0.25 || !m.FanInFanOut {
				return fmt.Sprintf("r %d scale %g fifo %v", m.Rank, m.Scale, m.FanInFanOut)
			}
			return ""
		})
		m := a.Module("transformer.h.0.attn.c_attn")
		if m.InFeatures != 2 || m.OutFeatures != 6 {
			t.Errorf("c_attn in %d out %d", m.InFeatures, m.OutFeatures)
		}
		f, err := a.Factors(m)
		if err != nil || len(f.A) != 8 || len(f.B) != 24 {
			t.Errorf("factors %v %v", f, err)
		}
	})
	t.Run("t5 no config", func(t *testing.T) {
		a := loadCorpus(t, "t5small-noconfig")
		allModules(t, a, 36, func(m *Module) string {
			if m.AlphaKnown || m.Rank != 16 || m.Alpha != 16 || m.Scale != 1 {
				return fmt.Sprintf("known %v r %d alpha %g scale %g", m.AlphaKnown, m.Rank, m.Alpha, m.Scale)
			}
			return ""
		})
		if len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "alpha unknown") {
			t.Errorf("warnings %v", a.Warnings)
		}
	})
	t.Run("gpt2 c_proj attn and mlp", func(t *testing.T) {
		a := loadCorpus(t, "gpt2-clm-r8-fanin")
		attn, mlp := a.Module("transformer.h.3.attn.c_proj"), a.Module("transformer.h.3.mlp.c_proj")
		if attn == nil || mlp == nil || attn.InFeatures != 768 || mlp.InFeatures != 3072 || mlp.OutFeatures != 768 {
			t.Fatalf("attn %+v mlp %+v", attn, mlp)
		}
		for _, m := range []*Module{attn, mlp} {
			if ok, err := a.Config.Targets(m.Name); !ok || err != nil || m.Scale != 4 || !m.FanInFanOut {
				t.Errorf("%s: targeted %v scale %g fifo %v", m.Name, ok, m.Scale, m.FanInFanOut)
			}
		}
		if c := a.Module("transformer.h.0.attn.c_attn"); c.OutFeatures != 2304 {
			t.Errorf("fused c_attn out %d", c.OutFeatures)
		}
	})
	t.Run("ia3", func(t *testing.T) {
		a := loadCorpus(t, "gpt2-ia3-fanin")
		fc := a.Module("transformer.h.0.mlp.c_fc")
		at := a.Module("transformer.h.0.attn.c_attn")
		if !fc.Feedforward || fc.InFeatures != 768 || at.Feedforward || at.OutFeatures != 2304 || !at.FanInFanOut {
			t.Errorf("c_fc %+v c_attn %+v", fc, at)
		}
		b := loadCorpus(t, "t5small-ia3-seq2seq")
		wi := b.Module("encoder.block.0.layer.1.DenseReluDense.wi")
		if wi == nil || !wi.Feedforward || wi.InFeatures != 512 {
			t.Errorf("wi %+v", wi)
		}
	})
	t.Run("mts wrapper flagged", func(t *testing.T) {
		a := loadCorpus(t, "distilbert-lora-on-mts-wrapper")
		found := false
		for _, w := range a.Warnings {
			found = found || strings.Contains(w, "ModulesToSaveWrapper")
		}
		c := a.Module("classifier")
		if !found || c == nil || !c.Wrapped || c.Tensors[RoleWeight].Name != "base_model.model.classifier.base_layer.weight" {
			t.Errorf("warnings %v classifier %+v", a.Warnings, c)
		}
		if p := a.Module("pre_classifier"); p == nil || p.Kind != KindFull {
			t.Errorf("pre_classifier %+v", p)
		}
	})
	t.Run("flux ai-toolkit", func(t *testing.T) {
		a := loadCorpus(t, "flux-aitoolkit-partial")
		allModules(t, a, 4, func(m *Module) string {
			if m.AlphaKnown || m.Rank != 16 || m.InFeatures != 15360 || m.OutFeatures != 3072 || !strings.HasPrefix(m.Name, "transformer.") {
				return fmt.Sprintf("%+v", m)
			}
			return ""
		})
		if a.Producer != "ai-toolkit" || len(a.Warnings) != 1 {
			t.Errorf("producer %q warnings %v", a.Producer, a.Warnings)
		}
	})
	t.Run("legacy attn processors", func(t *testing.T) {
		a := loadCorpus(t, "sd15-unet-attnproc-2023")
		outs := 0
		allModules(t, a, 128, func(m *Module) string {
			if strings.HasSuffix(m.Name, ".to_out.0") {
				outs++
			}
			if strings.Contains(m.Name, "processor") || m.Scale != 1 {
				return fmt.Sprintf("scale %g", m.Scale)
			}
			return ""
		})
		if outs != 32 {
			t.Errorf("%d to_out.0 modules", outs)
		}
	})
	t.Run("vit incomplete", func(t *testing.T) {
		a := loadCorpus(t, "vit-custom-unaligned")
		allModules(t, a, 24, func(m *Module) string {
			if m.Kind != KindIncomplete || m.Rank != 4 {
				return string(m.Kind)
			}
			return ""
		})
		if _, err := a.Factors(a.Modules[0]); !errors.Is(err, ErrNotLowRank) {
			t.Errorf("Factors(incomplete) = %v", err)
		}
	})
	t.Run("prompt and prefix", func(t *testing.T) {
		for name, want := range map[string]Kind{"gpt2-prefix-tuning": KindPrefix, "t5small-prefix-tuning": KindPrefix, "flant5-prompt-tuning": KindPrompt, "flant5-p-tuning": KindPrompt} {
			a := loadCorpus(t, name)
			if len(a.Modules) != 1 || a.Modules[0].Kind != want {
				t.Errorf("%s: %+v", name, a.Modules)
			}
		}
	})
	t.Run("heads passthrough", func(t *testing.T) {
		a := loadCorpus(t, "roberta-seqcls-head")
		for _, n := range []string{"classifier.dense", "classifier.out_proj"} {
			if m := a.Module(n); m == nil || m.Kind != KindFull || len(m.Tensors) != 2 {
				t.Errorf("%s: %+v", n, m)
			}
		}
		g := loadCorpus(t, "gpt2-seqcls-fanin")
		if m := g.Module("score"); m == nil || m.Kind != KindFull || m.OutFeatures != 6 {
			t.Errorf("score: %+v", m)
		}
	})
	t.Run("gemma all NaN", func(t *testing.T) {
		rep, err := Validate(filepath.Join(corpusDir(t), "gemma2b-f16-mqa"))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Count(SeverityError) != 72 {
			t.Errorf("%d errors, want a nonfinite finding for each of the 72 all-NaN F16 tensors", rep.Count(SeverityError))
		}
		for _, f := range rep.Findings {
			if f.Rule != RuleNonFinite {
				t.Errorf("unexpected finding %+v", f)
			}
		}
	})
}

// Every low-rank corpus adapter survives Output → WritePEFT → Load with the
// same factors (bit for bit) and the same scale; the others are refused
// with ErrInvalidOutput.
func TestCorpusWritePEFTAll(t *testing.T) {
	_, rows := testcorpus.Manifest(t)
	refused := map[string]bool{"gpt2-ia3-fanin": true, "t5small-ia3-seq2seq": true, "gpt2-prefix-tuning": true, "t5small-prefix-tuning": true,
		"flant5-prompt-tuning": true, "flant5-p-tuning": true, "vit-custom-unaligned": true}
	for _, row := range rows {
		if !row.OK() {
			continue
		}
		t.Run(row.Dir, func(t *testing.T) {
			a := loadCorpus(t, row.Dir)
			out, err := a.Output()
			if refused[row.Dir] {
				if !errors.Is(err, ErrInvalidOutput) {
					t.Errorf("Output err = %v, want ErrInvalidOutput", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := writeLoad(t, "", out)
			unknown := row.Dir == "t5small-noconfig" || row.Dir == "flux-aitoolkit-partial"
			if _, ok := b.Metadata[MetaAlphaAssumed]; ok != unknown {
				t.Errorf("%s in metadata: %v, want %v", MetaAlphaAssumed, ok, unknown)
			}
			if len(b.Modules) != len(a.Modules) || b.Dialect != DialectPEFT || b.PeftType != "LORA" {
				t.Fatalf("%d modules (want %d), %s %s", len(b.Modules), len(a.Modules), b.Dialect, b.PeftType)
			}
			for i, ma := range a.Modules {
				mb := b.Modules[i]
				if ma.Name != mb.Name {
					t.Fatalf("module %d: %s vs %s", i, ma.Name, mb.Name)
				}
				if !ma.IsLowRank() {
					continue
				}
				if d := ma.Scale - mb.Scale; d > 1e-15*ma.Scale || d < -1e-15*ma.Scale || !mb.AlphaKnown {
					t.Errorf("%s: scale %.17g → %.17g (known %v)", ma.Name, ma.Scale, mb.Scale, mb.AlphaKnown)
				}
				fa, err := a.Factors(ma)
				if err != nil {
					t.Fatal(err)
				}
				fb, err := b.Factors(mb)
				if err != nil {
					t.Fatal(err)
				}
				if fa.E == nil && (!equalF32(fa.A, fb.A) || !equalF32(fa.B, fb.B)) {
					t.Errorf("%s: factors changed", ma.Name)
				}
			}
		})
	}
}
