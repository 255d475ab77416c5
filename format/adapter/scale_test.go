package adapter

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestRankAlphaPatterns(t *testing.T) {
	cfg := func(src string) *Config {
		c, err := ParseConfig([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	q0, q1, v0 := "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
	for _, tc := range []struct {
		name, src, module string
		mode              PatternMode
		r                 int
		alpha, scale      float64
	}{
		{"global", `{"r":8,"lora_alpha":16}`, q0, PatternsModern, 8, 16, 2},
		{"rslora", `{"r":16,"lora_alpha":16,"use_rslora":true}`, q0, PatternsModern, 16, 16, 4},
		{"rank only", `{"r":8,"lora_alpha":16,"rank_pattern":{"q_proj":4},"alpha_pattern":{"v_proj":32}}`, q0, PatternsModern, 4, 16, 4},
		{"alpha only", `{"r":8,"lora_alpha":16,"rank_pattern":{"q_proj":4},"alpha_pattern":{"v_proj":32}}`, v0, PatternsModern, 8, 32, 4},
		{"first key wins", `{"r":8,"lora_alpha":8,"rank_pattern":{"layers\\.0\\.self_attn\\.q_proj":2,"q_proj":4}}`, q0, PatternsModern, 2, 8, 4},
		{"first key wins 2", `{"r":8,"lora_alpha":8,"rank_pattern":{"layers\\.0\\.self_attn\\.q_proj":2,"q_proj":4}}`, q1, PatternsModern, 4, 8, 2},
		{"order reversed", `{"r":8,"lora_alpha":8,"rank_pattern":{"q_proj":4,"layers\\.0\\.self_attn\\.q_proj":2}}`, q0, PatternsModern, 4, 8, 2},
		{"suffix needs dot", `{"r":8,"lora_alpha":8,"rank_pattern":{"proj":4}}`, q0, PatternsModern, 8, 8, 1},
		{"regex key", `{"r":8,"lora_alpha":8,"rank_pattern":{"layers\\.[01]\\..*_proj":2}}`, v0, PatternsModern, 2, 8, 4},
		{"top-level modern", `{"r":8,"lora_alpha":8,"rank_pattern":{"lm_head":2}}`, "lm_head", PatternsModern, 2, 8, 4},
		{"top-level old regex", `{"r":8,"lora_alpha":8,"rank_pattern":{"lm_.*":2}}`, "lm_head", PatternsOld, 8, 8, 1},
		{"top-level modern regex", `{"r":8,"lora_alpha":8,"rank_pattern":{"lm_.*":2}}`, "lm_head", PatternsModern, 2, 8, 4},
		// old PEFT falls back to rank_pattern.get(module name): a literal key still hits
		{"top-level old literal", `{"r":8,"lora_alpha":8,"rank_pattern":{"lm_head":2}}`, "lm_head", PatternsOld, 2, 8, 4},
		{"old shared key", `{"r":8,"lora_alpha":16,"rank_pattern":{"q_proj":4},"alpha_pattern":{"self_attn.q_proj":64}}`, q0, PatternsOld, 4, 16, 4},
		{"modern independent", `{"r":8,"lora_alpha":16,"rank_pattern":{"q_proj":4},"alpha_pattern":{"self_attn.q_proj":64}}`, q0, PatternsModern, 4, 64, 16},
		{"old alpha key", `{"r":8,"lora_alpha":16,"alpha_pattern":{"q_proj":64}}`, q0, PatternsOld, 8, 64, 8},
		{"rslora pattern", `{"r":8,"lora_alpha":8,"use_rslora":true,"rank_pattern":{"q_proj":64}}`, q0, PatternsModern, 64, 8, 1},
		{"loha alpha", `{"peft_type":"LOHA","r":8,"alpha":4,"lora_alpha":99}`, q0, PatternsModern, 8, 4, 0.5},
		{"lokr pattern", `{"peft_type":"LOKR","r":8,"alpha":4,"alpha_pattern":{"q_proj":16}}`, q0, PatternsModern, 8, 16, 2},
		{"ia3", `{"peft_type":"IA3"}`, q0, PatternsModern, 8, 8, 1},
	} {
		r, alpha, scale, err := cfg(tc.src).ModuleScale(tc.module, tc.mode)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if r != tc.r || alpha != tc.alpha || math.Abs(scale-tc.scale) > 1e-15 {
			t.Errorf("%s: got r=%d alpha=%g scale=%g, want %d %g %g", tc.name, r, alpha, scale, tc.r, tc.alpha, tc.scale)
		}
	}
}

func TestAdaLoRAScale(t *testing.T) {
	c, err := ParseConfig([]byte(`{"peft_type":"ADALORA","r":16,"init_r":12,"target_r":8,"lora_alpha":32,"rank_pattern":null}`))
	if err != nil {
		t.Fatal(err)
	}
	r, alpha, s, err := c.ModuleScale("bert.encoder.layer.0.attention.self.query", PatternsModern)
	initR, eps, a32 := 12.0, 1e-5, 32.0
	want := a32 / (initR + eps) // evaluated in float64 like Python
	if err != nil || r != 12 || alpha != 32 || s != want {
		t.Errorf("AdaLoRA = %d %g %.17g %v; want 12 32 %.17g", r, alpha, s, err, want)
	}
	if AdaLoRAScale(12, 0) != 12/(12+1e-5) {
		t.Error("alpha <= 0 must mean alpha = init_r")
	}
	c, err = ParseConfig([]byte(`{"peft_type":"ADALORA","rank_pattern":{"x.lora_E":[true,false,true]}}`))
	if err != nil || len(c.AdaLoRAMask) != 1 || len(c.AdaLoRAMask[0].Mask) != 3 || c.AdaLoRAMask[0].Mask[1] {
		t.Errorf("AdaLoRA mask = %+v %v", c.AdaLoRAMask, err)
	}
}

func TestPatternCompileError(t *testing.T) {
	c, err := ParseConfig([]byte(`{"r":8,"rank_pattern":{"q_proj":4,"(?<!k)_proj":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.RankAlpha("model.layers.0.self_attn.v_proj", PatternsModern)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "(?<!k)_proj") || !strings.Contains(err.Error(), "rank_pattern") {
		t.Errorf("err = %v; want ErrConfig naming the pattern", err)
	}
	if err := c.CheckPatterns(); err == nil {
		t.Error("CheckPatterns accepted a look-behind")
	}
}

func TestLoRAScale(t *testing.T) {
	if LoRAScale(0, 8, false) != 0 || LoRAScale(10, 1, false) != 0.1 || LoRAScale(4, 8, true) != 4 {
		t.Error("LoRAScale")
	}
}
