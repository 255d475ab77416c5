package adapter

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// zt returns a zero-filled F32 tensor of the given shape.
func zt(name string, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = 0.5
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: f32bytes(v...)}
}

func writeRaw(t *testing.T, dir, file, cfg string, meta map[string]string, tensors ...safetensors.Tensor) string {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	if err := safetensors.WriteFile(filepath.Join(dir, file), tensors, meta); err != nil {
		t.Fatal(err)
	}
	if cfg != "" {
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644)
	}
	return dir
}

func TestLyCORISVeRAAndOthers(t *testing.T) {
	base := t.TempDir()
	type want struct {
		module  string
		kind    Kind
		rank    int
		in, out int
		scale   float64
	}
	for _, tc := range []struct {
		name    string
		file    string
		cfg     string
		meta    map[string]string
		tensors []safetensors.Tensor
		dialect Dialect
		prod    string
		arch    string
		mods    []want
		unknown int
	}{
		{"loha", PEFTWeightsFile, `{"peft_type":"LOHA","r":8,"alpha":4,"alpha_pattern":{"v":16},"target_modules":["q","v"]}`, nil,
			[]safetensors.Tensor{zt("base_model.model.m.q.hada_w1_a", 6, 8), zt("base_model.model.m.q.hada_w1_b", 8, 5), zt("base_model.model.m.q.hada_w2_a", 6, 8), zt("base_model.model.m.q.hada_w2_b", 8, 5),
				zt("base_model.model.m.v.hada_w1_a", 6, 8), zt("base_model.model.m.v.hada_w1_b", 8, 5), zt("base_model.model.m.v.hada_w2_a", 6, 8), zt("base_model.model.m.v.hada_w2_b", 8, 5)},
			DialectPEFT, "peft", "", []want{{"m.q", KindLoHa, 8, 5, 6, 0.5}, {"m.v", KindLoHa, 8, 5, 6, 2}}, 0},
		{"lokr", PEFTWeightsFile, `{"peft_type":"LOKR","r":4,"alpha":8,"target_modules":["q"]}`, nil,
			[]safetensors.Tensor{zt("base_model.model.m.q.lokr_w1", 2, 3), zt("base_model.model.m.q.lokr_w2_a", 5, 4), zt("base_model.model.m.q.lokr_w2_b", 4, 7)},
			DialectPEFT, "peft", "", []want{{"m.q", KindLoKr, 4, 21, 10, 2}}, 0},
		{"vera", PEFTWeightsFile, `{"peft_type":"VERA","r":4,"target_modules":["q"]}`, nil,
			[]safetensors.Tensor{zt("base_model.vera_A", 4, 16), zt("base_model.vera_B", 16, 4), zt("base_model.model.m.q.vera_lambda_b", 12), zt("base_model.model.m.q.vera_lambda_d", 4)},
			DialectPEFT, "peft", "", []want{{"m.q", KindVeRA, 4, 0, 12, 1}}, 0},
		{"trainable tokens + unknown", PEFTWeightsFile, `{"peft_type":"LORA","r":2,"lora_alpha":2,"target_modules":["q"]}`, nil,
			[]safetensors.Tensor{zt("base_model.model.emb.token_adapter.trainable_tokens_delta", 3, 8), zt("base_model.model.q.lora_A.weight", 2, 8), zt("base_model.model.q.lora_B.weight", 8, 2), zt("weird")},
			DialectPEFT, "peft", "", []want{{"emb", KindFull, 0, 0, 0, 1}, {"q", KindLoRA, 2, 8, 8, 1}, {"weird", KindFull, 0, 0, 0, 1}}, 1},
		{"kohya te + conv + loha", "lora.safetensors", "", map[string]string{"ss_network_module": "networks.lora"},
			[]safetensors.Tensor{
				zt("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", 4, 12), zt("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", 12, 4),
				{Name: "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha", DType: safetensors.F16, Shape: []int{}, Data: []byte{0x00, 0x40}}, // 2.0
				zt("lora_unet_conv_in.lora_down.weight", 4, 3, 3, 3), zt("lora_unet_conv_in.lora_up.weight", 8, 4, 1, 1), zt("lora_unet_conv_in.alpha"),
				zt("lora_unet_mid_block_attn.hada_w1_a", 6, 2), zt("lora_unet_mid_block_attn.hada_w1_b", 2, 6), zt("lora_unet_mid_block_attn.hada_w2_a", 6, 2), zt("lora_unet_mid_block_attn.hada_w2_b", 2, 6), zt("lora_unet_mid_block_attn.alpha")},
			DialectKohya, "kohya-ss", "unet", []want{
				{"lora_te_text_model_encoder_layers_0_self_attn_q_proj", KindLoRA, 4, 12, 12, 0.5},
				{"lora_unet_conv_in", KindLoRAConv, 4, 3, 8, 0.125},
				{"lora_unet_mid_block_attn", KindLoHa, 2, 6, 6, 0.25}}, 0},
		{"diffusers unet prefix + metadata patterns", DiffusersLoRAFile, "", map[string]string{"lora_adapter_metadata": `{"r":4,"lora_alpha":4,"rank_pattern":{"to_q":2},"alpha_pattern":{"mid_block.attn.to_k":8},"peft_type":"LORA"}`},
			[]safetensors.Tensor{zt("unet.mid_block.attn.to_q.lora_A.weight", 2, 6), zt("unet.mid_block.attn.to_q.lora_B.weight", 6, 2),
				zt("unet.mid_block.attn.to_k.lora_A.weight", 4, 6), zt("unet.mid_block.attn.to_k.lora_B.weight", 6, 4)},
			DialectDiffusers, "diffusers", "unet", []want{{"unet.mid_block.attn.to_k", KindLoRA, 4, 6, 6, 2}, {"unet.mid_block.attn.to_q", KindLoRA, 2, 6, 6, 2}}, 0},
		{"ai-toolkit software", "lora.safetensors", "", map[string]string{"software": `{"name": "ai-toolkit", "version": "0.1.0"}`},
			[]safetensors.Tensor{zt("transformer.transformer_blocks.0.attn.to_q.lora_A.weight", 2, 6), zt("transformer.transformer_blocks.0.attn.to_q.lora_B.weight", 6, 2)},
			DialectDiffusers, "ai-toolkit", "flux", []want{{"transformer.transformer_blocks.0.attn.to_q", KindLoRA, 2, 6, 6, 1}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRaw(t, filepath.Join(base, strings.ReplaceAll(tc.name, " ", "_")), tc.file, tc.cfg, tc.meta, tc.tensors...)
			a := mustLoad(t, dir)
			if a.Dialect != tc.dialect || a.Producer != tc.prod || a.Architecture != tc.arch || len(a.Unknown) != tc.unknown {
				t.Errorf("dialect %s producer %q arch %q unknown %v", a.Dialect, a.Producer, a.Architecture, a.Unknown)
			}
			if len(a.Modules) != len(tc.mods) {
				t.Fatalf("%d modules: %+v", len(a.Modules), a.Modules)
			}
			for i, w := range tc.mods {
				m := a.Modules[i]
				if m.Name != w.module || m.Kind != w.kind || m.Rank != w.rank || m.InFeatures != w.in || m.OutFeatures != w.out || m.Scale != w.scale {
					t.Errorf("module %d: %s %s r=%d in=%d out=%d scale=%g; want %+v", i, m.Name, m.Kind, m.Rank, m.InFeatures, m.OutFeatures, m.Scale, w)
				}
			}
			rep, err := a.Validate()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range rep.Findings {
				if f.Severity == SeverityError {
					t.Errorf("unexpected error finding %+v", f)
				}
			}
		})
	}
	// VeRA without the shared projections is an error finding.
	dir := writeRaw(t, filepath.Join(base, "vera-noproj"), PEFTWeightsFile, `{"peft_type":"VERA","r":4,"save_projection":false,"target_modules":["q"]}`, nil,
		zt("base_model.model.m.q.vera_lambda_b", 12), zt("base_model.model.m.q.vera_lambda_d", 4))
	rep, err := Validate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Rule != RuleVeRAProjection {
		t.Errorf("findings %+v", rep.Findings)
	}
}

func TestMLXSwitchLinearAndEmbedding(t *testing.T) {
	seq := func(name string, shape ...int) safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i)
		}
		return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: f32bytes(v...)}
	}
	dir := writeRaw(t, t.TempDir(), MLXWeightsFile, `{"lora_parameters":{"rank":2,"scale":5.0},"num_layers":1}`, nil,
		seq("model.embed_tokens.lora_a", 10, 2), seq("model.embed_tokens.lora_b", 2, 3), // (num,r), (r,dim)
		seq("model.layers.0.mlp.switch_mlp.up_proj.lora_a", 4, 2, 3), seq("model.layers.0.mlp.switch_mlp.up_proj.lora_b", 4, 5, 2)) // (E,r,in), (E,out,r)
	a := mustLoad(t, dir)
	emb, sw := a.Module("model.embed_tokens"), a.Module("model.layers.0.mlp.switch_mlp.up_proj")
	if emb.Kind != KindLoRAEmbedding || emb.Rank != 2 || emb.InFeatures != 10 || emb.OutFeatures != 3 || emb.Scale != 5 {
		t.Errorf("embedding %+v", emb)
	}
	if sw.Kind != KindLoRA || sw.Experts != 4 || sw.Rank != 2 || sw.InFeatures != 3 || sw.OutFeatures != 5 {
		t.Errorf("switch %+v", sw)
	}
	f, err := a.Factors(emb)
	if err != nil {
		t.Fatal(err)
	}
	// PEFT embedding: A (r,num) = lora_aᵀ, B (dim,r) = lora_bᵀ; lora_a[i][k] = 2i+k, lora_b[k][d] = 3k+d
	for k := 0; k < 2; k++ {
		for i := 0; i < 10; i++ {
			if f.A[k*10+i] != float32(2*i+k) {
				t.Fatalf("A[%d][%d] = %g", k, i, f.A[k*10+i])
			}
		}
		for d := 0; d < 3; d++ {
			if f.B[d*2+k] != float32(3*k+d) {
				t.Fatalf("B[%d][%d] = %g", d, k, f.B[d*2+k])
			}
		}
	}
	// (B·A)ᵀ·s is the MLX delta s·lora_a·lora_b (num × dim)
	delta := f.Delta() // dim × num
	for i := 0; i < 10; i++ {
		for d := 0; d < 3; d++ {
			want := 0.0
			for k := 0; k < 2; k++ {
				want += float64(2*i+k) * float64(3*k+d)
			}
			if float64(delta[d*10+i]) != 5*want {
				t.Fatalf("delta[%d][%d] = %g, want %g", d, i, delta[d*10+i], 5*want)
			}
		}
	}
	fs, err := a.Factors(sw)
	if err != nil {
		t.Fatal(err)
	}
	if fs.Experts != 4 || len(fs.A) != 4*2*3 || len(fs.B) != 4*5*2 || fs.A[7] != 7 || fs.B[11] != 11 {
		t.Errorf("switch factors: experts %d A %d B %d", fs.Experts, len(fs.A), len(fs.B))
	}
	if _, err := a.Output(); err == nil {
		t.Error("Output accepted a SwitchLinear module")
	}
}

// PEFT files saved by the transformers integration have no base_model.model.
// prefix; GPT-2's root module "transformer." must not look like a diffusers
// component.
func TestNoPrefixGPT2(t *testing.T) {
	for _, withCfg := range []bool{true, false} {
		cfg := ""
		if withCfg {
			cfg = `{"peft_type":"LORA","r":2,"lora_alpha":4,"fan_in_fan_out":true,"target_modules":["c_attn"]}`
		}
		dir := writeRaw(t, t.TempDir(), PEFTWeightsFile, cfg, nil,
			zt("transformer.h.0.attn.c_attn.lora_A.weight", 2, 8), zt("transformer.h.0.attn.c_attn.lora_B.weight", 24, 2))
		a, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		m := a.Modules[0]
		if a.Dialect != DialectPEFT || a.Architecture != "gpt2" || m.Name != "transformer.h.0.attn.c_attn" || !m.FanInFanOut || m.AlphaKnown != withCfg {
			t.Errorf("config %v: dialect %s arch %s module %+v", withCfg, a.Dialect, a.Architecture, m)
		}
		a.Close()
	}
}

// diffusers pipeline saves flatten one LoraConfig per component into
// lora_adapter_metadata with component prefixes.
func TestDiffusersPerComponentMetadata(t *testing.T) {
	meta := `{"text_encoder.lora_alpha": 8, "text_encoder.r": 2, "unet.lora_alpha": 8, "unet.r": 4, "unet.rank_pattern": {"to_q": 2}}`
	dir := writeRaw(t, t.TempDir(), DiffusersLoRAFile, "", map[string]string{"lora_adapter_metadata": meta},
		zt("unet.mid_block.attentions.0.to_q.lora_A.weight", 2, 6), zt("unet.mid_block.attentions.0.to_q.lora_B.weight", 6, 2),
		zt("unet.mid_block.attentions.0.to_k.lora_A.weight", 4, 6), zt("unet.mid_block.attentions.0.to_k.lora_B.weight", 6, 4),
		zt("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", 2, 6), zt("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight", 6, 2))
	a := mustLoad(t, dir)
	want := map[string]float64{"unet.mid_block.attentions.0.to_q": 4, "unet.mid_block.attentions.0.to_k": 2, "text_encoder.text_model.encoder.layers.0.self_attn.q_proj": 4}
	if a.Dialect != DialectDiffusers || len(a.ComponentConfigs) != 2 || a.Config != nil || len(a.Warnings) != 0 {
		t.Fatalf("dialect %s components %d config %v warnings %v", a.Dialect, len(a.ComponentConfigs), a.Config, a.Warnings)
	}
	for _, m := range a.Modules {
		if m.Scale != want[m.Name] || !m.AlphaKnown {
			t.Errorf("%s: scale %g known %v, want %g", m.Name, m.Scale, m.AlphaKnown, want[m.Name])
		}
	}
	rep, err := a.Validate()
	if err != nil || !rep.Clean() {
		t.Errorf("validate: %v %+v", err, rep)
	}
	if _, err := parseDiffusersMetadata([]byte(`{"weird": 1}`)); err == nil {
		t.Error("unprefixed unknown key accepted")
	}
}

func TestMLXWithoutScale(t *testing.T) {
	dir := writeRaw(t, t.TempDir(), MLXWeightsFile, `{"lora_parameters":{"rank":2}}`, nil,
		zt("model.layers.0.self_attn.q_proj.lora_a", 6, 2), zt("model.layers.0.self_attn.q_proj.lora_b", 2, 6))
	a := mustLoad(t, dir)
	m := a.Modules[0]
	if m.Scale != 20 || m.AlphaKnown || len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "default scale 20") {
		t.Errorf("scale %g known %v warnings %v", m.Scale, m.AlphaKnown, a.Warnings)
	}
}

// Output keeps passthrough tensors under their own names.
func TestOutputPassthroughNames(t *testing.T) {
	dir := writeRaw(t, t.TempDir(), PEFTWeightsFile, `{"peft_type":"LORA","r":2,"lora_alpha":2,"target_modules":["q"]}`, nil,
		zt("base_model.model.emb.token_adapter.trainable_tokens_delta", 3, 8), zt("base_model.model.q.lora_A.weight", 2, 8),
		zt("base_model.model.q.lora_B.weight", 8, 2), zt("base_model.model.score.weight", 2, 8), zt("weird"))
	a := mustLoad(t, dir)
	out, err := a.Output()
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := WritePEFT(dst, out); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dst, PEFTWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []string{"base_model.model.emb.token_adapter.trainable_tokens_delta", "base_model.model.score.weight", "base_model.model.weird",
		"base_model.model.q.lora_A.weight", "base_model.model.q.lora_B.weight"} {
		if _, ok := f.Tensor(n); !ok {
			t.Errorf("missing %s in %v", n, f.Names())
		}
	}
}

// Tensors of PEFT methods adaptool does not compute are recognised by name:
// their modules take the method as their kind (not "full", which --keep-full
// would pass through as a whole-module replacement), they are not listed as
// unknown, validate warns once per method, and a peft_type naming the
// method is no mismatch. A modules_to_save tensor next to them stays full.
func TestOtherPEFTMethods(t *testing.T) {
	cases := []struct {
		name    string
		cfg     string
		tensors []safetensors.Tensor
		want    map[string]Kind
	}{
		{"oft and boft", "", []safetensors.Tensor{
			zt("base_model.model.l.0.q.oft_r", 4, 2, 2), zt("base_model.model.l.0.k.oft_R.weight", 4, 2, 2),
			zt("base_model.model.l.0.v.boft_R", 1, 4, 2, 2), zt("base_model.model.l.0.v.boft_s", 8, 1),
			zt("base_model.model.score.weight", 2, 8)},
			map[string]Kind{"l.0.q": "oft", "l.0.k.oft_R": "oft", "l.0.v": "boft", "score": KindFull}},
		{"fourierft with its peft_type", `{"peft_type":"FOURIERFT","target_modules":["q"]}`, []safetensors.Tensor{
			zt("base_model.model.l.0.q.fourierft_spectrum", 16), zt("base_model.model.l.1.q.fourierft_spectrum", 16)},
			map[string]Kind{"l.0.q": "fourierft", "l.1.q": "fourierft"}},
		{"vb-lora shared bank, hra, ln tuning", "", []safetensors.Tensor{
			zt("base_model.model.vblora_vector_bank", 4, 4), zt("base_model.model.l.0.o.vblora_logits_A", 2, 4, 2),
			zt("base_model.model.l.0.k.hra_u", 8, 2), zt("base_model.model.l.0.norm.ln_tuning_layers.weight", 8)},
			map[string]Kind{"vblora_vector_bank": "vblora", "l.0.o": "vblora", "l.0.k": "hra", "l.0.norm.ln_tuning_layers": "ln_tuning"}},
		// Names that only resemble a method's stay what they were.
		{"look-alikes", "", []safetensors.Tensor{
			zt("base_model.model.poly_proj.weight", 2, 2), zt("base_model.model.road_head.lora_A.weight", 1, 2),
			zt("base_model.model.road_head.lora_B.weight", 2, 1)},
			map[string]Kind{"poly_proj": KindFull, "road_head": KindLoRA}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeRaw(t, t.TempDir(), PEFTWeightsFile, c.cfg, nil, c.tensors...)
			a := mustLoad(t, dir)
			got := map[string]Kind{}
			for _, m := range a.Modules {
				got[m.Name] = m.Kind
			}
			if len(got) != len(c.want) {
				t.Fatalf("modules %v, want %v", got, c.want)
			}
			methods := map[Kind]bool{}
			for n, k := range c.want {
				if got[n] != k {
					t.Errorf("module %s: kind %q, want %q", n, got[n], k)
				}
				if k.Supported() != (k == KindFull || k == KindLoRA) {
					t.Errorf("kind %q: Supported() = %v", k, k.Supported())
				}
				if !k.Supported() {
					methods[k] = true
				}
			}
			if len(a.Unknown) != 0 {
				t.Errorf("unknown tensors %v", a.Unknown)
			}
			r, err := Validate(dir)
			if err != nil {
				t.Fatal(err)
			}
			warned := map[string]bool{}
			for _, f := range r.Findings {
				switch f.Rule {
				case RuleOtherMethod:
					for k := range methods {
						if strings.Contains(f.Message, "PEFT method "+string(k)+",") {
							warned[string(k)] = true
						}
					}
				case RulePeftTypeMismatch, RuleUnknownTensor:
					t.Errorf("finding %s: %s", f.Rule, f.Message)
				}
			}
			if len(warned) != len(methods) {
				t.Errorf("warned about %v, want one warning per method of %v", warned, methods)
			}
		})
	}
}

// Additive full-size deltas — kohya/LyCORIS .diff/.diff_b and norm
// .w_norm/.b_norm, ComfyUI names too — are KindDiff modules (not
// replacements) with scale 1, their frame from the diff's shape, and the
// diff itself as the module's ΔW.
func TestDiffModules(t *testing.T) {
	dir := writeRaw(t, t.TempDir(), "lora.safetensors", "", map[string]string{"ss_network_module": "lycoris.kohya"},
		zt("lora_unet_mid_block_attentions_0_proj_in.diff", 6, 4), zt("lora_unet_mid_block_attentions_0_proj_in.diff_b", 6),
		zt("lora_unet_mid_block_attentions_0_norm.w_norm", 6), zt("lora_unet_mid_block_attentions_0_norm.b_norm", 6),
		zt("lora_unet_conv_in.diff", 8, 3, 3, 3),
		zt("lora_unet_x.lora_down.weight", 2, 4), zt("lora_unet_x.lora_up.weight", 4, 2))
	a := mustLoad(t, dir)
	want := map[string]struct {
		kind    Kind
		out, in int
		kernel  []int
	}{
		"lora_unet_mid_block_attentions_0_proj_in": {KindDiff, 6, 4, nil},
		"lora_unet_mid_block_attentions_0_norm":    {KindDiff, 6, 1, nil},
		"lora_unet_conv_in":                        {KindDiff, 8, 3, []int{3, 3}},
		"lora_unet_x":                              {KindLoRA, 4, 4, nil},
	}
	if len(a.Modules) != len(want) {
		t.Fatalf("%d modules, want %d", len(a.Modules), len(want))
	}
	for _, m := range a.Modules {
		w := want[m.Name]
		if m.Kind != w.kind || m.OutFeatures != w.out || m.InFeatures != w.in || !slices.Equal(m.Kernel, w.kernel) {
			t.Errorf("%s: %s %d×%d %v, want %s %d×%d %v", m.Name, m.Kind, m.OutFeatures, m.InFeatures, m.Kernel, w.kind, w.out, w.in, w.kernel)
		}
		if m.Kind != KindDiff {
			continue
		}
		if m.Scale != 1 || !m.AlphaKnown {
			t.Errorf("%s: scale %v known %v, want 1 true", m.Name, m.Scale, m.AlphaKnown)
		}
		d, v, err := a.Delta64(m)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if d.Out != w.out || len(v) != d.Out*d.Cols() {
			t.Fatalf("%s: ΔW %d×%d with %d values", m.Name, d.Out, d.Cols(), len(v))
		}
		for _, x := range v {
			if x != 0.5 { // zt fills 0.5
				t.Fatalf("%s: ΔW value %v, want the diff's 0.5", m.Name, x)
			}
		}
	}
	if len(a.Unknown) != 0 || len(a.Warnings) != 0 {
		t.Errorf("unknown %v, warnings %v", a.Unknown, a.Warnings)
	}
}

// validate checks a diff_b against its diff.
func TestValidateDiffShapes(t *testing.T) {
	for _, c := range []struct {
		name    string
		tensors []safetensors.Tensor
		bad     bool
	}{
		{"matching", []safetensors.Tensor{zt("m.q.diff", 6, 4), zt("m.q.diff_b", 6)}, false},
		{"bias only", []safetensors.Tensor{zt("m.q.diff_b", 6)}, false},
		{"rows differ", []safetensors.Tensor{zt("m.q.diff", 6, 4), zt("m.q.diff_b", 5)}, true},
		{"bias not a vector", []safetensors.Tensor{zt("m.q.diff", 6, 4), zt("m.q.diff_b", 6, 1)}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeRaw(t, t.TempDir(), "d.safetensors", "", nil, c.tensors...)
			r, err := Validate(filepath.Join(dir, "d.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			shape := false
			for _, f := range r.Findings {
				shape = shape || f.Rule == RuleShape
			}
			if shape != c.bad {
				t.Errorf("shape finding %v, want %v: %+v", shape, c.bad, r.Findings)
			}
		})
	}
}

// Keys that carry an adapter name other than "default" (a PeftModel's own
// state_dict) are read as that adapter, with a warning; keys carrying
// several names are refused (several adapters in one file), never taken
// for whole-module replacements.
func TestKeyAdapterNames(t *testing.T) {
	one := []safetensors.Tensor{
		zt("base_model.model.l.0.q.lora_A.my_task.weight", 2, 8), zt("base_model.model.l.0.q.lora_B.my_task.weight", 8, 2),
		zt("base_model.model.embed.lora_embedding_A.my_task", 2, 10), zt("base_model.model.embed.lora_embedding_B.my_task", 8, 2),
		zt("base_model.model.l.0.k.lora_A.default.weight", 2, 8), zt("base_model.model.l.0.k.lora_B.default.weight", 8, 2),
	}
	a := mustLoad(t, writeRaw(t, t.TempDir(), PEFTWeightsFile, `{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q","k","embed"]}`, nil, one...))
	kinds := map[string]Kind{}
	for _, m := range a.Modules {
		kinds[m.Name] = m.Kind
	}
	want := map[string]Kind{"l.0.q": KindLoRA, "l.0.k": KindLoRA, "embed": KindLoRAEmbedding}
	if !maps.Equal(kinds, want) {
		t.Errorf("modules %v, want %v", kinds, want)
	}
	if len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], `adapter name "my_task"`) {
		t.Errorf("warnings %v", a.Warnings)
	}
	two := append(one, zt("base_model.model.l.1.q.lora_A.other.weight", 2, 8), zt("base_model.model.l.1.q.lora_B.other.weight", 8, 2))
	_, err := Load(writeRaw(t, t.TempDir(), PEFTWeightsFile, "", nil, two...))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "my_task, other") {
		t.Errorf("two adapter names: %v, want ErrUnsupported naming both", err)
	}
}
