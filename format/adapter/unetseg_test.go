package adapter

import (
	"regexp"
	"testing"
)

// hasUNetSegment answers what this regular expression (the definition)
// answers.
func TestHasUNetSegment(t *testing.T) {
	def := regexp.MustCompile(`(^|\.)(down_blocks|up_blocks|mid_block|transformer_blocks|single_transformer_blocks)\.`)
	names := []string{
		"", "down_blocks.0.attentions.0.proj_in.lora_A.weight", "unet.down_blocks.1.x", "unet.mid_block.attentions.0",
		"transformer.single_transformer_blocks.7.proj_out.lora_A.weight", "transformer.transformer_blocks.0.attn",
		"transformer.h.0.attn.c_attn.lora_A.weight", "model.layers.0.self_attn.q_proj.lora_A.weight",
		"xdown_blocks.0", "a.xdown_blocks.0", "a.xdown_blocks.0.down_blocks.1", "down_blocks", "a.down_blocks",
		"single_transformer_blocks.1", "xsingle_transformer_blocks.1", "a.single_transformer_blocks.1",
		"up_blocks.", ".up_blocks.", "a..mid_block.", "mid_blockx.1", "transformer_blocksx.transformer_blocks.",
	}
	for _, n := range names {
		if got, want := hasUNetSegment(n), def.MatchString(n); got != want {
			t.Errorf("hasUNetSegment(%q) = %v, want %v", n, got, want)
		}
	}
}
