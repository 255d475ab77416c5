package inspect

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

// TestDialectStats: kohya (alpha/r), MLX (transposed, scale) and diffusers
// files give the same module statistics as the dense reference.
func TestDialectStats(t *testing.T) {
	mods := []testgen.Module{
		{Name: "down_blocks.0.attentions.0.proj_in", In: 12, Out: 12},
		{Name: "down_blocks.0.resnets.0.conv1", In: 4, Out: 6, Kernel: []int{3, 3}},
	}
	for _, c := range []struct {
		name  string
		spec  testgen.Bare
		scale float64
	}{
		{"kohya", testgen.Bare{Seed: 1, Dialect: testgen.Kohya, R: 4, Alpha: 2, Modules: mods}, 0.5},
		{"mlx", testgen.Bare{Seed: 2, Dialect: testgen.MLX, R: 4, Scale: 10, Modules: []testgen.Module{{Name: "model.layers.3.self_attn.q_proj", In: 10, Out: 6}}}, 10},
		{"diffusers", testgen.Bare{Seed: 3, Dialect: testgen.Diffusers, R: 4, Modules: mods}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a")
			res, err := testgen.WriteDialect(dir, c.spec)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Summarize(dir, Options{Stats: true})
			if err != nil {
				t.Fatal(err)
			}
			got := byName(s)
			if len(got) != len(res.Modules) {
				t.Fatalf("%d modules, generated %d", len(got), len(res.Modules))
			}
			for name, f := range res.Modules {
				m, ok := got[name]
				if !ok {
					t.Fatalf("module %s missing (have %v)", name, s.Modules)
				}
				if math.Abs(m.Scale-c.scale) > 1e-12 {
					t.Errorf("%s: scale %g, want %g", name, m.Scale, c.scale)
				}
				checkModule(t, m, denseRef(f, c.scale, false))
			}
		})
	}
}

// TestShardedStats: --stats over a real sharded checkpoint written by
// format/safetensors, every tensor against the float64 reference.
func TestShardedStats(t *testing.T) {
	dir := t.TempDir()
	var tensors []safetensors.Tensor
	want := map[string][]float64{}
	for i := 0; i < 6; i++ {
		name := "model.layers." + string(rune('0'+i)) + ".mlp.weight"
		v := make([]float64, 1000)
		b := make([]byte, 4*len(v))
		for j := range v {
			f := float32(math.Sin(float64(i*1000+j)) * float64(i+1))
			v[j] = float64(f)
			binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(f))
		}
		want[name] = v
		tensors = append(tensors, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: []int{10, 100}, Data: b})
	}
	if err := safetensors.WriteCheckpoint(dir, tensors, nil, 9000); err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(dir, Options{Stats: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Container != "safetensors-sharded" || len(s.Files) < 2 {
		t.Fatalf("container %s with %d files", s.Container, len(s.Files))
	}
	for _, ts := range s.Tensors {
		if ts.Stats == nil {
			t.Fatalf("%s: no stats", ts.Name)
		}
		compareStats(t, *ts.Stats, refStats(want[ts.Name], func(int) bool { return false }))
	}
}

// TestGGUFSummary: a llama.cpp LoRA adapter written with format/gguf:
// modules from the lora_a/lora_b pairs, scale alpha/r, and --stats against
// the dense reference (A (r,in) = lora_a ne [in,r], B (out,r) = lora_b ne [r,out]).
func TestGGUFSummary(t *testing.T) {
	p := filepath.Join(t.TempDir(), "adapter.gguf")
	const in, out, r = 12, 10, 4
	f := &testgen.Factors{Rank: r, In: in, Out: out, A: make([]float32, r*in), B: make([]float32, out*r)}
	for i := range f.A {
		f.A[i] = float32(math.Sin(float64(i)))
	}
	for i := range f.B {
		f.B[i] = float32(math.Cos(float64(3 * i)))
	}
	f32 := func(v []float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	err := gguf.WriteFile(p, []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.type", Value: gguf.String("adapter")},
		{Key: "adapter.type", Value: gguf.String("lora")},
		{Key: "adapter.lora.alpha", Value: gguf.Float32(8)},
	}, []gguf.Tensor{
		{Name: "blk.3.attn_q.weight.lora_a", Type: gguf.F32, Dims: []uint64{in, r}, Data: f32(f.A)},
		{Name: "blk.3.attn_q.weight.lora_b", Type: gguf.F32, Dims: []uint64{r, out}, Data: f32(f.B)},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(p, Options{Stats: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Container != "gguf" || s.Format != "gguf-lora" || s.Architecture != "llama" || s.PeftType != "LORA" {
		t.Errorf("summary %s %s %s %s", s.Container, s.Format, s.Architecture, s.PeftType)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// sizes from the file itself: the whole file, the data section (both
	// tensors, 192 + 160 bytes, already 32-byte aligned) and the header before it
	if fi := s.Files[0]; len(s.Files) != 1 || fi.FileBytes != st.Size() || fi.DataBytes != 4*(r*in+out*r) ||
		fi.HeaderBytes <= 0 || fi.HeaderBytes+fi.DataBytes != st.Size() {
		t.Errorf("files %+v, file size %d", s.Files, st.Size())
	}
	if len(s.Tensors) != 2 || s.Tensors[0].Shape[0] != r || s.Tensors[0].Shape[1] != in || s.Tensors[0].Bytes != 4*r*in {
		t.Errorf("tensors %+v", s.Tensors)
	}
	if !hasClass(s, ClassLowRank) || len(s.Layers) != 1 || s.Layers[0] != 3 {
		t.Errorf("classification %v layers %v", s.Classification, s.Layers)
	}
	if len(s.Modules) != 1 {
		t.Fatalf("modules %+v", s.Modules)
	}
	m := s.Modules[0]
	if m.Rank != r || m.InFeatures != in || m.OutFeatures != out || m.Scale != 2 || !m.AlphaKnown || m.ModuleType != "attn_q" {
		t.Errorf("module %+v", m)
	}
	checkModule(t, m, denseRef(f, 2, false))
	vals := make([]float64, len(f.A))
	for i, x := range f.A {
		vals[i] = float64(x)
	}
	compareStats(t, *s.Tensors[0].Stats, refStats(vals, func(int) bool { return false }))
}

// TestCheckKohya: kohya underscore names are found in a dotted base.
func TestCheckKohya(t *testing.T) {
	dir := t.TempDir()
	ad := filepath.Join(dir, "a")
	if _, err := testgen.WriteDialect(ad, testgen.Bare{Seed: 4, Dialect: testgen.Kohya, R: 2, Alpha: 1,
		Modules: []testgen.Module{{Name: "down_blocks.0.attentions.0.proj_in", In: 12, Out: 12}}}); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "unet.safetensors")
	writeBase(t, base, map[string][]int{"down_blocks.0.attentions.0.proj_in.weight": {12, 12}, "down_blocks.0.attentions.0.proj_out.weight": {12, 12}})
	r, err := Check(ad, base)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Modules[0].BaseTensor != "down_blocks.0.attentions.0.proj_in.weight" {
		t.Errorf("kohya check: %+v", r)
	}
}
