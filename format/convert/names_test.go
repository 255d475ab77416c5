package convert

import "testing"

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
