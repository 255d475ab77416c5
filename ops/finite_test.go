package ops

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/svd"
)

// finAdapter writes a PEFT LoRA directory (q_proj 8×8 and v_proj 4×8, r 2)
// with lora_alpha alpha; poke, when set, edits the tensors first.
func finAdapter(t *testing.T, name string, alpha string, poke func(ts []safetensors.Tensor)) (dir, weights string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const p = "base_model.model.model.layers.0.self_attn."
	ts := []safetensors.Tensor{
		r0Tensor(p+"q_proj.lora_A.weight", 1, 2, 8), r0Tensor(p+"q_proj.lora_B.weight", -1, 8, 2),
		r0Tensor(p+"v_proj.lora_A.weight", 1, 2, 8), r0Tensor(p+"v_proj.lora_B.weight", 1, 4, 2),
	}
	if poke != nil {
		poke(ts)
	}
	weights = filepath.Join(dir, "adapter_model.safetensors")
	if err := safetensors.WriteFile(weights, ts, nil); err != nil {
		t.Fatal(err)
	}
	cfg := `{"peft_type": "LORA", "r": 2, "lora_alpha": ` + alpha + `, "target_modules": ["q_proj", "v_proj"]}`
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, weights
}

// finBase writes a base checkpoint with the two weights of finAdapter in
// dtype dt, every value v.
func finBase(t *testing.T, dt safetensors.DType, v float64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.safetensors")
	fill := func(n int) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = v
		}
		return x
	}
	writeBase(t, path, []baseTensor{
		{Name: "model.layers.0.self_attn.q_proj.weight", DType: dt, Shape: []int{8, 8}, Values: fill(64)},
		{Name: "model.layers.0.self_attn.v_proj.weight", DType: dt, Shape: []int{4, 8}, Values: fill(32)},
	})
	return path
}

// An adapter whose own values are NaN or ±Inf failed apply as an
// "incompatible inputs" overflow (exit 4) while the merges call it a bad
// input (ErrNonFinite, exit 2). Apply now checks the adapters before
// writing and names the file, module and tensor; a finite adapter whose
// result overflows the base dtype (F16 above 65504 was written as +Inf)
// is refused as an overflow, not as a bad input.
func TestApplyNonFiniteAdapter(t *testing.T) {
	const q = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
	nanDir, nanWeights := finAdapter(t, "nan", "4", func(ts []safetensors.Tensor) {
		binary.LittleEndian.PutUint32(ts[0].Data[12:], math.Float32bits(float32(math.NaN())))
	})
	infDir, infWeights := finAdapter(t, "inf", "4", func(ts []safetensors.Tensor) {
		binary.LittleEndian.PutUint32(ts[3].Data[4:], math.Float32bits(float32(math.Inf(-1))))
	})
	okDir, okWeights := finAdapter(t, "ok", "4", nil)
	for _, tc := range []struct {
		name  string
		base  string
		dir   string
		scale float64
		input bool     // ErrNonFinite (bad input) rather than an overflow
		in    []string // substrings of the error
	}{
		{"NaN in lora_A", finBase(t, safetensors.F32, 0.5), nanDir, 1, true, []string{nanWeights, "model.layers.0.self_attn.q_proj", q, "NaN at index 3"}},
		{"-Inf in lora_B, BF16 base", finBase(t, safetensors.BF16, 0.5), infDir, 1, true, []string{infWeights, "v_proj.lora_B.weight", "-Inf at index 1"}},
		{"F16 result above 65504", finBase(t, safetensors.F16, 60000), okDir, 1e6, false, []string{"model.layers.0.self_attn.q_proj.weight", okWeights, "not finite in F16", "overflows"}},
		{"F32 result beyond float32", finBase(t, safetensors.F32, 1), okDir, 1e39, false, []string{"not finite in F32", "overflows"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkApplyRefused(t, tc.base, tc.dir, tc.scale, "out.safetensors", tc.input, tc.in)
		})
	}
}

// The same into a GGUF base: NaN factors of a GGUF LoRA or of a PEFT
// adapter are a bad input naming the file, module and tensor (exit 2); a
// merged F16 tensor above 65504 was written as +Inf and a float32
// overflow was reported as ErrNonFinite (exit 2): both are overflow
// refusals now.
func TestApplyGGUFNonFinite(t *testing.T) {
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base.gguf")
	writeGGUFBase(t, basePath, gguf.F16, 3)
	lora := func(name string, a0 float32) string {
		p := filepath.Join(dir, name)
		a := make([]byte, gEmbd*2*4)
		b := make([]byte, gEmbd*2*4)
		for i := 0; i < gEmbd*2; i++ {
			binary.LittleEndian.PutUint32(a[4*i:], math.Float32bits(0.5))
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(0.5))
		}
		binary.LittleEndian.PutUint32(a[8:], math.Float32bits(a0))
		if err := gguf.WriteFile(p, []gguf.KV{{Key: "general.architecture", Value: gguf.String("llama")},
			{Key: "general.type", Value: gguf.String("adapter")}, {Key: "adapter.type", Value: gguf.String("lora")}},
			[]gguf.Tensor{
				{Name: "blk.0.attn_q.weight.lora_a", Type: gguf.F32, Dims: []uint64{gEmbd, 2}, Data: a},
				{Name: "blk.0.attn_q.weight.lora_b", Type: gguf.F32, Dims: []uint64{2, gEmbd}, Data: b},
			}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nan := lora("nan.gguf", float32(math.NaN()))
	ok := lora("ok.gguf", 0.5)
	// a PEFT adapter of the base's q_proj (256×256) with +Inf in lora_B
	peft := filepath.Join(dir, "peft")
	if err := os.MkdirAll(peft, 0o755); err != nil {
		t.Fatal(err)
	}
	const pq = "base_model.model.model.layers.0.self_attn.q_proj."
	ts := []safetensors.Tensor{r0Tensor(pq+"lora_A.weight", 1, 2, gEmbd), r0Tensor(pq+"lora_B.weight", 1, gEmbd, 2)}
	binary.LittleEndian.PutUint32(ts[1].Data[20:], math.Float32bits(float32(math.Inf(1))))
	peftWeights := filepath.Join(peft, "adapter_model.safetensors")
	if err := safetensors.WriteFile(peftWeights, ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(peft, "adapter_config.json"), []byte(`{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		adapter string
		scale   float64
		input   bool
		in      []string
	}{
		{"NaN in a GGUF lora_a", nan, 1, true, []string{nan, "blk.0.attn_q", "blk.0.attn_q.weight.lora_a", "NaN at index 2"}},
		{"+Inf in a PEFT lora_B", peft, 1, true, []string{peftWeights, "model.layers.0.self_attn.q_proj", pq + "lora_B.weight", "+Inf at index 5"}},
		{"F16 result above 65504", ok, 1e6, false, []string{"blk.0.attn_q.weight", ok, "not finite in F16", "overflows"}},
		{"float32 overflow", ok, 1e37, false, []string{"blk.0.attn_q.weight", "overflows"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkApplyRefused(t, basePath, tc.adapter, tc.scale, "out.gguf", tc.input, tc.in)
		})
	}
}

// ties, dare and magnitude_prune reported a delta that overflows float32
// (finite factors, lora_alpha 1e39) as "module M: svd: non-finite value",
// naming no file. The refusal names the file and says it is an overflow.
func TestMergeOverflowNamesFile(t *testing.T) {
	dir, weights := finAdapter(t, "huge", "1e39", nil)
	for _, method := range []string{"ties", "dare_linear", "magnitude_prune"} {
		out := filepath.Join(t.TempDir(), "out")
		_, err := Merge([]string{dir, dir}, MergeParams{Method: method}, RunOptions{Output: out})
		if err == nil {
			t.Fatalf("%s: merged", method)
		}
		if !errors.Is(err, ErrIncompatible) || !errors.Is(err, svd.ErrNonFinite) || errors.Is(err, ErrNonFinite) {
			t.Errorf("%s: err %v: want an overflow refusal (ErrIncompatible wrapping svd.ErrNonFinite), not a bad input", method, err)
		}
		for _, s := range []string{weights, "module model.layers.0.self_attn.", "overflows float32"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q lacks %q", method, err, s)
			}
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("%s: output written", method)
		}
	}
}

// extract of a tuned checkpoint holding NaN failed as "incompatible
// inputs: the difference has NaN or Inf values" (exit 4); a checkpoint's
// own NaN/Inf is a bad input naming the file and tensor (ErrNonFinite),
// and only a difference of finite weights that overflows is refused as
// such.
func TestExtractNonFinite(t *testing.T) {
	base := finBase(t, safetensors.F32, 0.5)
	nan := finBase(t, safetensors.F32, 1)
	f, err := os.ReadFile(nan)
	if err != nil {
		t.Fatal(err)
	}
	// the first value of the first tensor in the data section
	n := binary.LittleEndian.Uint64(f)
	binary.LittleEndian.PutUint32(f[8+n:], math.Float32bits(float32(math.NaN())))
	if err := os.WriteFile(nan, f, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Extract(ExtractParams{Base: base, Tuned: nan, RankParams: RankParams{Rank: 1}}, RunOptions{Output: filepath.Join(t.TempDir(), "x")})
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), nan) || !strings.Contains(err.Error(), "NaN at index 0") {
		t.Errorf("NaN in the tuned checkpoint: err %v, want ErrNonFinite naming %s", err, nan)
	}
	// 3e38 − (−3e38) overflows float32 in every module
	_, err = Extract(ExtractParams{Base: finBase(t, safetensors.F32, -3e38), Tuned: finBase(t, safetensors.F32, 3e38), RankParams: RankParams{Rank: 1}},
		RunOptions{Output: filepath.Join(t.TempDir(), "x")})
	if !errors.Is(err, ErrIncompatible) || errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "overflows float32") {
		t.Errorf("overflowing difference: err %v, want an overflow refusal", err)
	}
}

// checkApplyRefused applies adapter at scale onto base and checks the
// refusal: ErrNonFinite (a bad input) when input, else an overflow
// (ErrIncompatible); the message holds every string of in; no output.
func checkApplyRefused(t *testing.T, base, adapter string, scale float64, outName string, input bool, in []string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), outName)
	_, err := Apply(ApplyParams{Base: base, Adapters: []AdapterScale{{Path: adapter, Scale: scale}}}, RunOptions{Output: out})
	if err == nil {
		t.Fatal("applied")
	}
	if errors.Is(err, ErrNonFinite) != input || errors.Is(err, ErrIncompatible) == input {
		t.Errorf("err %v: ErrNonFinite %v, want %v", err, errors.Is(err, ErrNonFinite), input)
	}
	for _, s := range in {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Error("output written")
	}
}
