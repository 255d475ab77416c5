package adapter

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConfigFields(t *testing.T) {
	src := `{
  "peft_type": "LORA", "r": 16, "lora_alpha": 32, "use_rslora": true, "use_dora": true,
  "fan_in_fan_out": false, "rank_pattern": {"z_proj": 4, "a_proj": 2}, "alpha_pattern": null,
  "target_modules": ["q_proj", "v_proj"], "exclude_modules": "lm_head",
  "layers_to_transform": [0, 2], "layers_pattern": "layers", "modules_to_save": ["score"],
  "bias": "lora_only", "lora_bias": true, "init_lora_weights": "pissa_niter_4",
  "task_type": "CAUSAL_LM", "base_model_name_or_path": "E:\\models\\x", "some_future_key": {"a": [1, 2]}
}`
	c, err := ParseConfig([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.PeftType != "LORA" || c.R != 16 || c.LoraAlpha != 32 || !c.UseRSLoRA || !c.UseDoRA || c.FanInFanOut {
		t.Errorf("scalar fields wrong: %+v", c)
	}
	if len(c.RankPattern) != 2 || c.RankPattern[0] != (Pattern{"z_proj", 4}) || c.RankPattern[1] != (Pattern{"a_proj", 2}) {
		t.Errorf("rank_pattern order not kept: %v", c.RankPattern)
	}
	if c.AlphaPattern != nil {
		t.Errorf("null alpha_pattern should be nil, got %v", c.AlphaPattern)
	}
	if !c.TargetModules.Set || c.TargetModules.IsRegex || strings.Join(c.TargetModules.List, ",") != "q_proj,v_proj" {
		t.Errorf("target_modules = %+v", c.TargetModules)
	}
	if !c.ExcludeModules.IsRegex || c.ExcludeModules.Regex != "lm_head" {
		t.Errorf("exclude_modules = %+v", c.ExcludeModules)
	}
	if len(c.LayersToTransform) != 2 || c.LayersToTransform[1] != 2 || len(c.LayersPattern) != 1 || c.LayersPattern[0] != "layers" {
		t.Errorf("layers: %v %v", c.LayersToTransform, c.LayersPattern)
	}
	if c.Bias != "lora_only" || !c.LoraBias || c.InitLoraWeights != "pissa_niter_4" || !c.MutatesBase() {
		t.Errorf("bias/init: %q %v %q", c.Bias, c.LoraBias, c.InitLoraWeights)
	}
	if c.BaseModelNameOrPath != `E:\models\x` || c.TaskType != "CAUSAL_LM" {
		t.Errorf("base model %q task %q", c.BaseModelNameOrPath, c.TaskType)
	}
	if got := string(c.Raw["some_future_key"]); got != `{"a": [1, 2]}` {
		t.Errorf("unknown key not kept verbatim: %s", got)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	// A PEFT ≈0.3-era config: no patterns, no use_dora/use_rslora/lora_bias.
	c, err := ParseConfig([]byte(`{"peft_type":"LORA","target_modules":["q","v"],"rank_pattern":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.R != 8 || c.LoraAlpha != 8 || c.UseRSLoRA || c.UseDoRA || c.RankPattern != nil || c.Bias != "none" || c.InitLoraWeights != "true" {
		t.Errorf("defaults wrong: %+v", c)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"not json", `{"r":`, ""},
		{"array", `[1,2]`, ""},
		{"r string", `{"r":"8"}`, `"r"`},
		{"r fraction", `{"r":8.5}`, `"r"`},
		{"r zero", `{"r":0}`, `"r"`},
		{"r negative", `{"peft_type":"LORA","r":-4}`, `"r" = -4`},
		{"alpha bool", `{"lora_alpha":true}`, `"lora_alpha"`},
		{"rank_pattern list", `{"rank_pattern":[1]}`, `"rank_pattern"`},
		{"rank_pattern value", `{"rank_pattern":{"q":"x"}}`, `"rank_pattern"`},
		{"rank_pattern fraction", `{"rank_pattern":{"q":1.5}}`, `rank_pattern`},
		{"target number", `{"target_modules":3}`, `"target_modules"`},
		{"use_dora string", `{"use_dora":"yes"}`, `"use_dora"`},
	} {
		_, err := ParseConfig([]byte(tc.src))
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not name %s", tc.name, err, tc.want)
		}
	}
}

func TestParseConfigMLX(t *testing.T) {
	c, err := ParseConfig([]byte(`{"lora_layers": 8, "lora_parameters": {"rank": 8, "alpha": 16, "dropout": 0.0, "scale": 10.0}, "model": "m"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsMLX() || c.MLX.Rank != 8 || c.MLX.Scale != 10 || c.MLX.Alpha != 16 || c.MLX.NumLayers != 8 || !c.MLX.HasScale {
		t.Errorf("MLX = %+v", c.MLX)
	}
	c, err = ParseConfig([]byte(`{"num_layers": 4, "fine_tune_type": "dora", "lora_parameters": {"rank": 4, "keys": ["self_attn.q_proj"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.MLX.NumLayers != 4 || c.MLX.FineTuneType != "dora" || c.MLX.Scale != 20 || c.MLX.HasScale || len(c.MLX.Keys) != 1 {
		t.Errorf("MLX = %+v", c.MLX)
	}
	r, alpha, s, err := c.ModuleScale("model.layers.0.self_attn.q_proj", PatternsModern)
	if err != nil || r != 4 || s != 20 || alpha != 80 {
		t.Errorf("MLX ModuleScale = %d %g %g %v", r, alpha, s, err)
	}
}

func TestTargetMatches(t *testing.T) {
	unsloth := `(?:.*?(?:language|text).*?(?:self_attn|attention|attn|mlp|feed_forward|ffn|dense).*?(?:qkv|proj|gate_proj|up_proj|down_proj|q_proj|k_proj|v_proj|o_proj).*?)|(?:\bmodel\.layers\.[\d]{1,}\.(?:self_attn|attention|attn|mlp|feed_forward|ffn|dense)\.(?:(?:qkv|proj|gate_proj|up_proj|down_proj|q_proj|k_proj|v_proj|o_proj)))`
	for _, tc := range []struct {
		spec   TargetSpec
		module string
		want   bool
	}{
		{TargetSpec{Set: true, List: []string{"c_proj"}}, "transformer.h.0.attn.c_proj", true},
		{TargetSpec{Set: true, List: []string{"c_proj"}}, "transformer.h.0.mlp.c_proj", true},
		{TargetSpec{Set: true, List: []string{"c_proj"}}, "transformer.h.0.mlp.xc_proj", false},
		{TargetSpec{Set: true, List: []string{"classifier"}}, "classifier", true},
		{TargetSpec{Set: true, Regex: "classifier", IsRegex: true}, "pre_classifier", false},
		{TargetSpec{Set: true, Regex: ".*q_proj", IsRegex: true}, "model.layers.0.self_attn.q_proj", true},
		{TargetSpec{Set: true, Regex: "q_proj", IsRegex: true}, "model.layers.0.self_attn.q_proj", false},
		{TargetSpec{Set: true, Regex: unsloth, IsRegex: true}, "model.language_model.layers.0.self_attn.q_proj", true},
		{TargetSpec{Set: true, Regex: unsloth, IsRegex: true}, "model.layers.3.mlp.down_proj", true},
		{TargetSpec{Set: true, Regex: unsloth, IsRegex: true}, "model.visual.blocks.0.attn.qkv", false},
		{TargetSpec{Set: true, Regex: "all-linear", IsRegex: true, AllLinear: true}, "anything", true},
		{TargetSpec{}, "x", false},
	} {
		got, err := tc.spec.Matches(tc.module)
		if err != nil || got != tc.want {
			t.Errorf("%+v.Matches(%q) = %v, %v; want %v", tc.spec, tc.module, got, err, tc.want)
		}
	}
	_, err := TargetSpec{Set: true, Regex: `(?<=a)b`, IsRegex: true}.Matches("ab")
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `(?<=a)b`) {
		t.Errorf("look-behind regex: err = %v", err)
	}
}

func TestTargetsLayersToTransform(t *testing.T) {
	c, err := ParseConfig([]byte(`{"peft_type":"LORA","target_modules":["q_proj"],"layers_to_transform":[1],"exclude_modules":["model.layers.1.self_attn.q_proj"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m    string
		want bool
	}{
		{"model.layers.0.self_attn.q_proj", false},
		{"model.layers.1.self_attn.q_proj", false}, // excluded
		{"model.layers.1.self_attn.k_proj", false},
	} {
		if got, err := c.Targets(tc.m); err != nil || got != tc.want {
			t.Errorf("Targets(%q) = %v %v", tc.m, got, err)
		}
	}
	c.ExcludeModules = TargetSpec{}
	if got, _ := c.Targets("model.layers.1.self_attn.q_proj"); !got {
		t.Error("layer 1 should be targeted")
	}
	// PEFT: re.match(r".*\.[^.]*\.(\d+)\.", key) is greedy (last index wins);
	// an exact list entry bypasses the layer filter; layers_pattern narrows it.
	for _, tc := range []struct {
		cfg, module string
		want        bool
	}{
		{`{"target_modules":["w1"],"layers_to_transform":[7]}`, "model.layers.3.experts.7.w1", true},
		{`{"target_modules":["w1"],"layers_to_transform":[3]}`, "model.layers.3.experts.7.w1", false},
		{`{"target_modules":["w1"],"layers_to_transform":3,"layers_pattern":"layers"}`, "model.layers.3.experts.7.w1", true},
		{`{"target_modules":["w1"],"layers_to_transform":[3],"layers_pattern":["h","layers"]}`, "model.layers.3.experts.7.w1", true},
		{`{"target_modules":["q"],"layers_to_transform":[0]}`, "layers.0.q", false}, // needs a dot before the segment
		{`{"target_modules":["layers.5.q"],"layers_to_transform":[0]}`, "layers.5.q", true},
		{`{"target_modules":".*q","layers_to_transform":[0]}`, "model.layers.5.q", true}, // regex: no layer filter
	} {
		c, err := ParseConfig([]byte(tc.cfg))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Targets(tc.module); err != nil || got != tc.want {
			t.Errorf("%s Targets(%q) = %v, %v; want %v", tc.cfg, tc.module, got, err, tc.want)
		}
	}
}
