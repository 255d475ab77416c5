package inspect

import (
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/adaptool/adaptool/internal/testgen"
)

// hugeLoRA writes n rank-1 modules base_model.model.model.layers.L.mlp.
// experts.E.down_proj (256 experts a layer), lora_A (1,4) and lora_B (4,1)
// of F32 zeros: 2n tensors, ~138 header bytes each.
func hugeLoRA(tb testing.TB, path string, n int) {
	tb.Helper()
	if err := testgen.WriteMoEExperts(path, n, 256); err != nil {
		tb.Fatal(err)
	}
}

// TestSummarizeModulesStreamed: the modules summarized as format/adapter
// hands them over (without --stats) are those summarized from the loaded
// adapter (with --stats), statistics aside, also for headers large enough
// for the collection after the parse.
func TestSummarizeModulesStreamed(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	mods := []testgen.Module{{Name: "model.layers.0.self_attn.q_proj", In: 16, Out: 16}, {Name: "model.layers.1.mlp.down_proj", In: 32, Out: 16, Rank: 4},
		{Name: "model.embed_tokens", In: 50, Out: 16, Embedding: true}, {Name: "model.conv", In: 4, Out: 8, Kernel: []int{3, 3}}}
	for i, s := range []testgen.LoRA{
		{Seed: 1, Modules: mods, Full: map[string][]int{"score.weight": {2, 16}}},
		{Seed: 2, Modules: mods[:2], DoRA: true, LoRABias: true},
		{Seed: 3, Modules: mods[:2], KaSA: true, NoConfig: true},
	} {
		p := filepath.Join(dir, fmt.Sprint(i))
		if _, err := testgen.WriteLoRA(p, s); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p, filepath.Join(p, "adapter_model.safetensors"))
	}
	lm := []testgen.LycoModule{{Name: "model.layers.0.self_attn.q_proj", In: 16, Out: 16}, {Name: "model.layers.0.conv", In: 4, Out: 8, Kernel: []int{3, 3}}}
	loha := filepath.Join(dir, "loha")
	if _, err := testgen.WriteLoHa(loha, testgen.Lyco{Seed: 4, Modules: lm}); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.safetensors")
	hugeLoRA(t, huge, collectAfter/2+10)
	paths = append(paths, loha, huge)
	for _, p := range paths {
		plain, err := Summarize(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		stats, err := Summarize(p, Options{Stats: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(plain.Modules) == 0 || len(plain.Modules) != len(stats.Modules) {
			t.Fatalf("%s: %d and %d modules", p, len(plain.Modules), len(stats.Modules))
		}
		for i := range plain.Modules {
			m := stats.Modules[i]
			m.ModuleStats, m.statsRequested = nil, false
			if !reflect.DeepEqual(plain.Modules[i], m) {
				t.Errorf("%s: module %d:\n %+v\nwith --stats:\n %+v", p, i, plain.Modules[i], m)
			}
		}
		if !reflect.DeepEqual(plain.Tensors, stripStats(stats.Tensors)) || plain.Format != stats.Format || plain.Architecture != stats.Architecture ||
			!reflect.DeepEqual(plain.Classification, stats.Classification) {
			t.Errorf("%s: tensors, format, architecture or classification differ", p)
		}
	}
}

func stripStats(ts []TensorSummary) []TensorSummary {
	out := make([]TensorSummary, len(ts))
	for i, t := range ts {
		t.Stats = nil
		out[i] = t
	}
	return out
}

// BenchmarkSummarizeHuge is `adaptool inspect` (without output) on a
// 100,000-tensor LoRA (50,000 rank-1 modules, a 13.8 MB header); live-MB
// is what the summary keeps.
func BenchmarkSummarizeHuge(b *testing.B) {
	p := filepath.Join(b.TempDir(), "huge.safetensors")
	hugeLoRA(b, p, 50_000)
	b.ReportAllocs()
	var before, after runtime.MemStats
	var s *Summary
	for b.Loop() {
		b.StopTimer()
		s = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		var err error
		s, err = Summarize(p, Options{})
		if err != nil || len(s.Modules) != 50_000 {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.StartTimer()
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "live-MB")
	runtime.KeepAlive(s)
}
