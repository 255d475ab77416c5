package convert

import (
	"strings"
	"testing"
)

func TestDecodeUnderscored(t *testing.T) {
	cases := map[string]string{
		"down_blocks_0_attentions_1_transformer_blocks_0_attn1_to_out_0": "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0",
		"mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj":      "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj",
		"text_model_encoder_layers_11_self_attn_q_proj":                  "text_model.encoder.layers.11.self_attn.q_proj",
		"model_layers_3_mlp_gate_up_proj":                                "model.layers.3.mlp.gate_up_proj",
		"transformer_h_0_attn_c_attn":                                    "transformer.h.0.attn.c_attn",
		"transformer_h_2_self_attention_query_key_value":                 "transformer.h.2.self_attention.query_key_value",
		"gpt_neox_layers_1_mlp_dense_4h_to_h":                            "gpt_neox.layers.1.mlp.dense_4h_to_h",
		"encoder_block_0_layer_1_DenseReluDense_wi_0":                    "encoder.block.0.layer.1.DenseReluDense.wi_0",
		"decoder_block_5_layer_1_EncDecAttention_q":                      "decoder.block.5.layer.1.EncDecAttention.q",
		"bert_encoder_layer_0_attention_self_query":                      "bert.encoder.layer.0.attention.self.query",
		"model_decoder_layers_0_encoder_attn_k_proj":                     "model.decoder.layers.0.encoder_attn.k_proj",
		"single_blocks_7_linear2":                                        "single_blocks.7.linear2",
	}
	for in, want := range cases {
		got, ok := decodeUnderscored(in)
		if !ok || got != want {
			t.Errorf("decode(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"foo_bar_0", "model_layers_0_self_attn_qq_proj", ""} {
		if got, ok := decodeUnderscored(bad); ok {
			t.Errorf("decode(%q) = %q, want failure", bad, got)
		}
	}
}

func TestKohyaNames(t *testing.T) {
	cases := []struct{ comp, path, kohya string }{
		{CompUNet, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"},
		{CompTextEncoder, "text_model.encoder.layers.0.mlp.fc1", "lora_te_text_model_encoder_layers_0_mlp_fc1"},
		{CompNone, "model.layers.0.self_attn.q_proj", "lycoris_model_layers_0_self_attn_q_proj"},
		{CompTransformer, "single_transformer_blocks.7.proj_out", "lora_unet_single_blocks_7_linear2"},
		{CompTransformer, "transformer_blocks.2.ff_context.net.2", "lora_unet_double_blocks_2_txt_mlp_2"},
		{CompTransformer, "x_embedder", "lora_unet_img_in"},
		{CompTransformer, "proj_out", "lora_unet_final_layer_linear"},
		{CompTransformer, "time_text_embed.guidance_embedder.linear_2", "lora_unet_guidance_in_out_layer"},
	}
	for _, c := range cases {
		k, err := kohyaName(c.comp, c.path, false)
		if err != nil || k != c.kohya {
			t.Errorf("kohyaName(%s,%s) = %q %v, want %q", c.comp, c.path, k, err, c.kohya)
		}
		comp, path, err := fromKohya(c.kohya, nil)
		if err != nil || comp != c.comp || path != c.path {
			t.Errorf("fromKohya(%q) = %q %q %v", c.kohya, comp, path, err)
		}
	}
	if _, err := kohyaName(CompTransformer, "transformer_blocks.0.attn.to_q", false); err == nil {
		t.Error("fused Flux module must not map")
	}
	// a name only the base weight names can resolve
	base := &Base{Names: map[string]bool{"my_block.0.weird_proj": true}}
	comp, path, err := fromKohya("lycoris_my_block_0_weird_proj", base)
	if err != nil || comp != CompNone || path != "my_block.0.weird_proj" {
		t.Errorf("base names: %q %q %v", comp, path, err)
	}
	if _, _, err := fromKohya("lycoris_my_block_0_weird_proj", nil); err == nil {
		t.Error("unknown vocabulary must fail without base names")
	}
}

func TestSGMNames(t *testing.T) {
	// SDXL kohya (SGM) ↔ diffusers UNet paths
	pairs := [][2]string{
		{"input_blocks.4.1.transformer_blocks.0.attn1.to_q", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"},
		{"input_blocks.8.1.proj_out", "down_blocks.2.attentions.1.proj_out"},
		{"input_blocks.1.0.in_layers.2", "down_blocks.0.resnets.0.conv1"},
		{"input_blocks.2.0.emb_layers.1", "down_blocks.0.resnets.1.time_emb_proj"},
		{"input_blocks.3.0.op", "down_blocks.0.downsamplers.0.conv"},
		{"input_blocks.7.0.skip_connection", "down_blocks.2.resnets.0.conv_shortcut"},
		{"middle_block.1.transformer_blocks.9.ff.net.2", "mid_block.attentions.0.transformer_blocks.9.ff.net.2"},
		{"middle_block.2.out_layers.3", "mid_block.resnets.1.conv2"},
		{"output_blocks.0.1.transformer_blocks.3.attn2.to_k", "up_blocks.0.attentions.0.transformer_blocks.3.attn2.to_k"},
		{"output_blocks.5.1.proj_in", "up_blocks.1.attentions.2.proj_in"},
		{"output_blocks.5.2.conv", "up_blocks.1.upsamplers.0.conv"},
		{"output_blocks.8.0.out_layers.3", "up_blocks.2.resnets.2.conv2"},
		{"time_embed.0", "time_embedding.linear_1"},
		{"label_emb.0.2", "add_embedding.linear_2"},
	}
	for _, p := range pairs {
		if d, ok := sgmToDiffusers(p[0]); !ok || d != p[1] {
			t.Errorf("sgm→diffusers(%s) = %q %v, want %q", p[0], d, ok, p[1])
		}
		if s, ok := diffusersToSGM(p[1]); !ok || s != p[0] {
			t.Errorf("diffusers→sgm(%s) = %q %v, want %q", p[1], s, ok, p[0])
		}
	}
	comp, path, err := fromKohya("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", nil)
	if err != nil || comp != CompUNet || path != pairs[0][1] {
		t.Errorf("fromKohya SDXL: %q %q %v", comp, path, err)
	}
	k, err := kohyaName(CompUNet, pairs[0][1], true)
	if err != nil || k != "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" {
		t.Errorf("kohyaName SDXL: %q %v", k, err)
	}
	if k, _ := kohyaName(CompTextEncoder, "text_model.encoder.layers.0.self_attn.q_proj", true); k != "lora_te1_text_model_encoder_layers_0_self_attn_q_proj" {
		t.Errorf("te1: %q", k)
	}
}

// FuzzDecodeUnderscored: any input either fails or yields a dotted path
// whose underscore form is the input.
func FuzzDecodeUnderscored(f *testing.F) {
	f.Add("down_blocks_0_attentions_1_transformer_blocks_0_attn1_to_out_0")
	f.Add("model_layers_0_self_attn_q_proj")
	f.Add("__")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 512 {
			return
		}
		d, ok := decodeUnderscored(s)
		if !ok {
			return
		}
		if got := strings.ReplaceAll(d, ".", "_"); got != s {
			t.Fatalf("decode(%q) = %q, which re-encodes to %q", s, d, got)
		}
	})
}
