package convert

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

func mixedAdapter(t *testing.T, dir string, rslora bool) *testgen.Result {
	t.Helper()
	gen, err := testgen.WriteLoRA(dir, testgen.LoRA{
		Seed: 21, R: 8, Alpha: 16, RSLoRA: rslora,
		Modules: []testgen.Module{
			{Name: "model.layers.0.self_attn.q_proj", In: 32, Out: 32},
			{Name: "model.layers.0.self_attn.v_proj", In: 32, Out: 16, Rank: 4},
			{Name: "model.layers.1.mlp.down_proj", In: 48, Out: 32, Rank: 2},
			{Name: "model.layers.1.mlp.up_proj", In: 32, Out: 48},
		},
		RankPattern:  []testgen.KV{{Key: "v_proj", Value: 4}, {Key: "down_proj", Value: 2}},
		AlphaPattern: []testgen.KV{{Key: "layers\\.1\\.mlp\\.up_proj", Value: 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

// Mixed ranks and per-module alphas survive PEFT → kohya → PEFT and
// PEFT → MLX → PEFT with the ΔW reproduced exactly (MLX: ranks
// zero-padded; differing scales baked into lora_b, within float32 rounding).
func TestMixedRankAlphaExact(t *testing.T) {
	dir := t.TempDir()
	gen := mixedAdapter(t, filepath.Join(dir, "in"), false)
	want := deltasFull(t, gen.Dir)
	// the scales computed here from the spec: alpha/r with the patterns
	scales := map[string]float64{"q_proj": 16.0 / 8, "v_proj": 16.0 / 4, "down_proj": 16.0 / 2, "up_proj": 3.0 / 8}
	a, _ := adapter.Load(gen.Dir)
	for _, m := range a.Modules {
		last := m.Name[strings.LastIndexByte(m.Name, '.')+1:]
		if m.Scale != scales[last] {
			t.Fatalf("source scale of %s = %v, want %v", m.Name, m.Scale, scales[last])
		}
	}
	a.Close()

	kohya := filepath.Join(dir, "k.safetensors")
	convertPath(t, gen.Dir, ToKohyaName, kohya)
	sameDeltas(t, "peft→kohya", want, deltasFull(t, kohya))
	peft := filepath.Join(dir, "p")
	convertPath(t, kohya, ToPEFTName, peft)
	sameDeltas(t, "peft→kohya→peft", want, deltasFull(t, peft))
	cfg, _ := os.ReadFile(filepath.Join(peft, "adapter_config.json"))
	for _, s := range []string{`"rank_pattern": {`, `"^model\\.layers\\.1\\.mlp\\.down_proj": 2`, `"alpha_pattern": {`} {
		if !strings.Contains(string(cfg), s) {
			t.Errorf("config lacks %s:\n%s", s, cfg)
		}
	}

	mlx := filepath.Join(dir, "m")
	res := convertPath(t, gen.Dir, ToMLXName, mlx)
	if mc, _ := os.ReadFile(filepath.Join(mlx, "adapter_config.json")); !strings.Contains(string(mc), `"scale": 2`) {
		t.Errorf("MLX scale should be 2 (most power-of-two ratios):\n%s", mc)
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "baked into lora_b") {
		t.Errorf("MLX: no baking warning: %q", res.Warnings)
	}
	got := deltasFull(t, mlx)
	for k, w := range want {
		g := got[k]
		if g.out != w.out || g.in != w.in {
			t.Fatalf("%s shape", k)
		}
		for i := range w.w {
			// exact where the scale is MLX's one scale (2.0); elsewhere one
			// float32 rounding of lora_b per rank term
			if math.Abs(g.w[i]-w.w[i]) > 1e-6*(math.Abs(w.w[i])+1) {
				t.Fatalf("%s ΔW[%d] = %v, want %v", k, i, g.w[i], w.w[i])
			}
			// MLX scale 2 (q_proj): v_proj ×2 and down_proj ×4 are powers of
			// two, so only up_proj (×3/16) may round
			if !strings.HasSuffix(k, "up_proj") && g.w[i] != w.w[i] {
				t.Fatalf("%s: power-of-two scale ratio not exact: %v vs %v", k, g.w[i], w.w[i])
			}
		}
	}
	// MLX lora_a of v_proj (r=4) padded to rank 8 with zero columns
	h, err := safetensors.OpenHeader(filepath.Join(mlx, "adapters.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := h.Tensor("model.layers.0.self_attn.v_proj.lora_a")
	if len(ti.Shape) != 2 || ti.Shape[0] != 32 || ti.Shape[1] != 8 {
		t.Errorf("padded lora_a shape %v", ti.Shape)
	}
}

// rsLoRA: alpha/√r scales; PEFT and diffusers carry them exactly (alphaᵢ =
// sᵢ·rᵢ with alphaᵢ/rᵢ == sᵢ in float64), kohya's float32 .alpha within one
// float32 rounding.
func TestRSLoRAScales(t *testing.T) {
	dir := t.TempDir()
	gen := mixedAdapter(t, filepath.Join(dir, "in"), true)
	want := deltasFull(t, gen.Dir)
	peft := filepath.Join(dir, "diff.safetensors")
	convertPath(t, gen.Dir, ToDiffusersName, peft)
	sameDeltas(t, "rslora peft→diffusers", want, deltasFull(t, peft))
	k := filepath.Join(dir, "k.safetensors")
	convertPath(t, gen.Dir, ToKohyaName, k)
	got := deltasFull(t, k)
	for key, w := range want {
		for i := range w.w {
			if math.Abs(got[key].w[i]-w.w[i]) > 1e-7*math.Abs(w.w[i])+1e-12 {
				t.Fatalf("%s ΔW[%d] = %v, want %v", key, i, got[key].w[i], w.w[i])
			}
		}
	}
}

func TestLoadBase(t *testing.T) {
	dir := t.TempDir()
	idx := filepath.Join(dir, "model.safetensors.index.json")
	os.WriteFile(idx, []byte(`{"metadata":{},"weight_map":{"model.layers.0.odd_block.weight":"a.safetensors","lm_head.weight":"a.safetensors"}}`), 0o644)
	b, err := LoadBase(idx)
	if err != nil || !b.Names["model.layers.0.odd_block"] || !b.Names["lm_head"] {
		t.Fatalf("index: %+v %v", b, err)
	}
	cfg := filepath.Join(dir, "config.json")
	os.WriteFile(cfg, []byte(`{"text_config":{"num_attention_heads":12},"tie_word_embeddings":false}`), 0o644)
	b, err = LoadBase(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := b.Int("num_attention_heads"); !ok || n != 12 {
		t.Errorf("text_config heads %d %v", n, ok)
	}
	if v, ok := b.Bool("tie_word_embeddings"); !ok || v {
		t.Errorf("tie %v %v", v, ok)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{`), 0o644)
	if _, err := LoadBase(bad); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("bad json: %v", err)
	}
}

// Conv LoRA (LoCon) through kohya and embedding LoRA through MLX, exactly.
func TestConvAndEmbeddingRoundTrips(t *testing.T) {
	dir := t.TempDir()
	conv, err := testgen.WriteLoRA(filepath.Join(dir, "conv"), testgen.LoRA{Seed: 31, R: 4, Alpha: 8, Modules: []testgen.Module{
		{Name: "down_blocks.0.resnets.0.conv1", In: 8, Out: 16, Kernel: []int{3, 3}},
		{Name: "down_blocks.0.attentions.0.proj_in", In: 16, Out: 16},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := deltasFull(t, conv.Dir)
	k := filepath.Join(dir, "k.safetensors")
	convertPath(t, conv.Dir, ToKohyaName, k)
	h, _ := safetensors.OpenHeader(k)
	if ti, ok := h.Tensor("lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight"); !ok || len(ti.Shape) != 4 || ti.Shape[2] != 1 || ti.Shape[3] != 1 {
		t.Errorf("conv lora_up %+v", ti)
	}
	back := filepath.Join(dir, "back")
	convertPath(t, k, ToPEFTName, back)
	sameDeltas(t, "conv peft→kohya→peft", want, deltasFull(t, back))
	if _, err := Convert(mustLoad(t, conv.Dir), ToMLXName, filepath.Join(dir, "m"), Options{}); err == nil {
		t.Error("conv/UNet to MLX must be refused")
	}

	emb, err := testgen.WriteLoRA(filepath.Join(dir, "emb"), testgen.LoRA{Seed: 32, R: 4, Alpha: 8, Modules: []testgen.Module{
		{Name: "model.embed_tokens", In: 50, Out: 16, Embedding: true},
		{Name: "model.layers.0.self_attn.q_proj", In: 16, Out: 16},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want = deltasFull(t, emb.Dir)
	m := filepath.Join(dir, "mlx")
	convertPath(t, emb.Dir, ToMLXName, m)
	p := filepath.Join(dir, "p")
	convertPath(t, m, ToPEFTName, p)
	sameDeltas(t, "embedding peft→mlx→peft", want, deltasFull(t, p))
	if _, err := Convert(mustLoad(t, emb.Dir), ToKohyaName, filepath.Join(dir, "k2.safetensors"), Options{}); err == nil || !strings.Contains(err.Error(), "lora_embedding") {
		t.Errorf("embedding to kohya: %v", err)
	}
}

func mustLoad(t *testing.T, p string) *adapter.Adapter {
	t.Helper()
	a, err := adapter.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}
