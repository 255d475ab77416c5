package convert

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

// An SDXL diffusers LoRA (UNet + both text encoders) → kohya (SGM UNet
// names, lora_te1_/lora_te2_) → diffusers, and → PEFT (one directory per
// component), reproducing every ΔW exactly.
func TestSDXLMultiComponent(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "sdxl.safetensors")
	rng := rand.New(rand.NewPCG(5, 6))
	mods := []struct {
		name    string
		in, out int
	}{
		{"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", 16, 16},
		{"unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k", 24, 16},
		{"unet.up_blocks.0.attentions.2.proj_out", 16, 16},
		{"text_encoder.text_model.encoder.layers.0.self_attn.q_proj", 8, 8},
		{"text_encoder_2.text_model.encoder.layers.31.mlp.fc1", 8, 32},
	}
	var ts []safetensors.Tensor
	for _, m := range mods {
		r := 4
		a := make([]float32, r*m.in)
		b := make([]float32, m.out*r)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		ab, _ := encode(a, safetensors.F32)
		bb, _ := encode(b, safetensors.F32)
		ts = append(ts, safetensors.Tensor{Name: m.name + ".lora_A.weight", DType: safetensors.F32, Shape: []int{r, m.in}, Data: ab},
			safetensors.Tensor{Name: m.name + ".lora_B.weight", DType: safetensors.F32, Shape: []int{m.out, r}, Data: bb})
	}
	md := map[string]string{"lora_adapter_metadata": `{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["to_q","to_k","proj_out","q_proj","fc1"]}`}
	if err := safetensors.WriteFile(src, ts, md); err != nil {
		t.Fatal(err)
	}
	want := deltasFull(t, src)
	for _, d := range want {
		if d.w[0] == 0 {
			t.Fatal("zero delta: source not loaded with its scale")
		}
	}
	a, err := adapter.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	kohya := filepath.Join(dir, "k.safetensors")
	res, err := ToKohya(a, kohya, Options{})
	if err != nil {
		t.Fatal(err)
	}
	joined := ""
	for _, m := range res.Modules {
		joined += m.To + "\n"
	}
	for _, w := range []string{"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k",
		"lora_unet_output_blocks_2_1_proj_out", "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", "lora_te2_text_model_encoder_layers_31_mlp_fc1"} {
		if !strings.Contains(joined, w+"\n") {
			t.Errorf("kohya name %s missing in\n%s", w, joined)
		}
	}
	peft := filepath.Join(dir, "peft")
	if _, err := ToPEFT(a, peft, Options{}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	sameDeltas(t, "diffusers→kohya", want, deltasFull(t, kohya))
	b, err := adapter.Load(kohya)
	if err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "back.safetensors")
	if _, err := ToDiffusers(b, back, Options{}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	sameDeltas(t, "diffusers→kohya→diffusers", want, deltasFull(t, back))
	// PEFT: one directory per component
	got := map[string]delta{}
	for _, comp := range []string{"unet", "text_encoder", "text_encoder_2"} {
		if _, err := os.Stat(filepath.Join(peft, comp, "adapter_config.json")); err != nil {
			t.Fatalf("PEFT component dir: %v", err)
		}
		for k, d := range deltasFull(t, filepath.Join(peft, comp)) {
			_, p, _ := strings.Cut(k, "/")
			got[comp+"/"+p] = d
		}
	}
	sameDeltas(t, "diffusers→peft", want, got)
}
