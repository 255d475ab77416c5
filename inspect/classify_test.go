package inspect

import "testing"

func TestClassifyTensor(t *testing.T) {
	cases := []struct{ name, class, method string }{
		{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", ClassLowRank, "lora"},
		{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", ClassLowRank, "lora"},
		{"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", ClassLowRank, "lora"},
		{"lora_unet_down_blocks_0_attentions_0_proj_in.alpha", "", ""},
		{"model.layers.14.self_attn.q_proj.lora_a", ClassLowRank, "lora"},
		{"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight", ClassLowRank, "lora"},
		{"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight", ClassLowRank, "lora"},
		{"base_model.model.model.embed_tokens.lora_embedding_A", ClassLowRank, "lora"},
		{"base_model.model.x.lora_diag", ClassSVDForm, "kasa"},
		{"base_model.model.bert.encoder.layer.0.attention.self.query.lora_E", ClassSVDForm, "adalora"},
		{"base_model.model.x.lora_magnitude_vector", ClassRescaled, "dora"},
		{"base_model.model.transformer.h.0.attn.c_attn.ia3_l", ClassRescaling, "ia3"},
		{"base_model.model.x.hada_w1_a", ClassLyCORIS, "loha"},
		{"base_model.model.x.lokr_w1", ClassLyCORIS, "lokr"},
		{"base_model.model.x.vera_lambda_b", ClassVeRA, "vera"},
		{"prompt_embeddings", ClassPrompt, "prompt"},
		{"base_model.model.classifier.weight", ClassReplacement, "full"},
		{"base_model.model.classifier.modules_to_save.lora_A.weight", ClassLowRank, "lora-on-wrapper"},
		{"w_a_000", ClassUnknown, "custom"},
		{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.my_task.weight", ClassLowRank, "lora"},
		{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.bias", ClassLowRank, "lora"},
		{"base_model.model.model.layers.0.self_attn.q_proj.oft_r", ClassOther, "oft"},
		{"base_model.model.model.layers.0.self_attn.q_proj.oft_R.weight", ClassOther, "oft"},
		{"base_model.model.model.layers.0.mlp.up_proj.boft_R", ClassOther, "boft"},
		{"base_model.model.model.layers.0.input_layernorm.ln_tuning_layers.weight", ClassOther, "ln_tuning"},
		{"base_model.model.vblora_vector_bank", ClassOther, "vblora"},
		{"base_model.model.poly_proj.weight", ClassReplacement, "full"},
		{"lora_unet_mid_block_attentions_0_proj_in.diff", ClassFullDelta, "diff"},
		{"diffusion_model.blocks.0.norm3.diff_b", ClassFullDelta, "diff"},
		{"lora_unet_mid_block_attentions_0_norm.w_norm", ClassFullDelta, "diff"},
		{"something", ClassUnknown, "unknown"},
	}
	for _, c := range cases {
		cl, m := classifyTensor(c.name)
		if cl != c.class || m != c.method {
			t.Errorf("%s: %s/%s, want %s/%s", c.name, cl, m, c.class, c.method)
		}
	}
}

func TestLayerAndType(t *testing.T) {
	cases := []struct {
		name  string
		layer int
		typ   string
	}{
		{"model.layers.12.mlp.up_proj", 12, "up_proj"},
		{"encoder.block.3.layer.0.SelfAttention.q", 3, "q"},
		{"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0", 1, "to_out"},
		{"classifier", -1, "classifier"},
		{"transformer.h.0.attn.c_attn", 0, "c_attn"},
		{"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q", 1, "attn1_to_q"},
		{"lora_te_text_model_encoder_layers_11_mlp_fc1", 11, "mlp_fc1"},
	}
	for _, c := range cases {
		if l := LayerOf(c.name); l != c.layer {
			t.Errorf("LayerOf(%s) = %d, want %d", c.name, l, c.layer)
		}
		if m := ModuleType(c.name); m != c.typ {
			t.Errorf("ModuleType(%s) = %s, want %s", c.name, m, c.typ)
		}
	}
}

func TestBlockOf(t *testing.T) {
	for _, c := range []struct{ name, block string }{
		{"model.layers.12.mlp.up_proj", "model.layers.12"},
		{"encoder.block.3.layer.0.SelfAttention.q", "encoder.block.3"},
		{"decoder.block.3.layer.1.EncDecAttention.q", "decoder.block.3"},
		{"up_blocks.1.attentions.0.proj_in", "up_blocks.1"},
		{"classifier", ""},
		{"lora_unet_down_blocks_1_attentions_0_proj_in", "lora_unet_down_blocks_1"},
	} {
		if b := BlockOf(c.name); b != c.block {
			t.Errorf("BlockOf(%s) = %q, want %q", c.name, b, c.block)
		}
	}
	if !blockLess("model.layers.2", "model.layers.10") || blockLess("encoder.block.0", "decoder.block.5") == blockLess("decoder.block.5", "encoder.block.0") {
		t.Error("block order")
	}
}
