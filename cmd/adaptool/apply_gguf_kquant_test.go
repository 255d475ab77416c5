package main

import (
	"bytes"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/internal/testgen"
	"github.com/adaptool/adaptool/quant"
)

// TestApplyGGUFKQuantMix folds a PEFT LoRA into a llama GGUF whose weights
// mix Q2_K, Q3_K, Q5_K (and Q4_K, Q6_K) as llama.cpp's Q2_K/Q3_K_M/Q5_K_M
// files do. With --requantize --verify every merged tensor keeps its type
// and holds exactly quant's (ggml-exact) quantization of dequant(base)+ΔW
// rounded to float32; without --requantize the merged tensors are F16 of
// the same float32 values; untouched tensors of every type are
// byte-identical.
func TestApplyGGUFKQuantMix(t *testing.T) {
	const embd = 256
	tmp := t.TempDir()
	specs := []struct {
		name string
		typ  gguf.GGMLType
	}{
		{"token_embd.weight", gguf.Q6_K},
		{"blk.0.attn_q.weight", gguf.Q4_K},
		{"blk.0.attn_v.weight", gguf.Q5_K},      // touched (v_proj)
		{"blk.0.attn_output.weight", gguf.Q3_K}, // touched (o_proj)
		{"blk.0.ffn_up.weight", gguf.Q2_K},      // touched (up_proj)
		{"blk.0.ffn_down.weight", gguf.Q2_K},
		{"blk.0.ffn_gate.weight", gguf.Q3_K},
		{"output.weight", gguf.Q5_K},
	}
	vals, raw := map[string][]float32{}, map[string][]byte{}
	var ts []gguf.Tensor
	for i, s := range specs {
		v := make([]float32, embd*embd)
		for k := range v {
			v[k] = float32(math.Sin(float64(k*7+i)*0.37)) * 0.05
		}
		qt := quant.GGUFType(s.typ)
		n, err := qt.RowSize(len(v))
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		if err := quant.QuantizeGGUF(b, v, qt); err != nil {
			t.Fatal(err)
		}
		if vals[s.name], err = gguf.Decode(b, s.typ, int64(len(v))); err != nil {
			t.Fatal(err)
		}
		raw[s.name] = b
		ts = append(ts, gguf.Tensor{Name: s.name, Type: s.typ, Dims: []uint64{embd, embd}, Data: b})
	}
	base := filepath.Join(tmp, "mix.gguf")
	if err := gguf.WriteFile(base, []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.file_type", Value: gguf.Uint32(12)}, // Q3_K_M
		{Key: "llama.attention.head_count", Value: gguf.Uint32(2)},
		{Key: "llama.attention.head_count_kv", Value: gguf.Uint32(2)},
	}, ts); err != nil {
		t.Fatal(err)
	}
	gen, err := testgen.WriteLoRA(filepath.Join(tmp, "peft"), testgen.LoRA{Seed: 9, R: 4, Alpha: 8, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.v_proj", In: embd, Out: embd},
		{Name: "model.layers.0.self_attn.o_proj", In: embd, Out: embd},
		{Name: "model.layers.0.mlp.up_proj", In: embd, Out: embd},
	}})
	if err != nil {
		t.Fatal(err)
	}
	touched := map[string]string{
		"blk.0.attn_v.weight":      "model.layers.0.self_attn.v_proj",
		"blk.0.attn_output.weight": "model.layers.0.self_attn.o_proj",
		"blk.0.ffn_up.weight":      "model.layers.0.mlp.up_proj",
	}
	const lambda = 0.5
	for _, requant := range []bool{true, false} {
		out := filepath.Join(tmp, "out-f16.gguf")
		args := []string{"apply", "--base", base, "--adapter", gen.Dir + ":0.5", "--json", "-o", out}
		if requant {
			out = filepath.Join(tmp, "out-requant.gguf")
			args = []string{"apply", "--base", base, "--adapter", gen.Dir + ":0.5", "--requantize", "--verify", "--json", "-o", out}
		}
		code, stdout, stderr := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("requantize %v: code %d; stderr %q", requant, code, stderr)
		}
		var rep struct {
			Applied        int  `json:"applied"`
			Touched        int  `json:"tensors_touched"`
			Copied         int  `json:"tensors_copied"`
			Verified       bool `json:"verified"`
			VerifyFailures int  `json:"verify_failures"`
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		if rep.Applied != 3 || rep.Touched != 3 || rep.Copied != len(specs)-3 || rep.Verified != requant || rep.VerifyFailures != 0 {
			t.Fatalf("requantize %v: report %+v", requant, rep)
		}
		f, err := gguf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			ti, _ := f.Tensor(s.name)
			data, err := f.Data(s.name)
			if err != nil {
				t.Fatal(err)
			}
			mod, isTouched := touched[s.name]
			if !isTouched {
				if ti.Type != s.typ || !bytes.Equal(data, raw[s.name]) {
					t.Errorf("%s (%s): untouched tensor not byte-identical", s.name, s.typ)
				}
				continue
			}
			// exact: dequantized base + λ·(alpha/r)·B·A (no q/k permutation for v, o, up)
			d := gen.Modules[mod].RefDelta(lambda * 8 / 4)
			ref := make([]float32, len(d))
			for k := range d {
				ref[k] = float32(float64(vals[s.name][k]) + d[k])
			}
			var want []byte
			wantType := gguf.F16
			if requant {
				wantType = s.typ
				qt := quant.GGUFType(s.typ)
				n, _ := qt.RowSize(len(ref))
				want = make([]byte, n)
				if err := quant.QuantizeGGUF(want, ref, qt); err != nil {
					t.Fatal(err)
				}
			} else if want, err = gguf.Encode(ref, gguf.F16); err != nil {
				t.Fatal(err)
			}
			if ti.Type != wantType || !bytes.Equal(data, want) {
				t.Errorf("%s: written as %s, want %s; bytes equal to quantize(dequant(base)+ΔW): %v", s.name, ti.Type, wantType, bytes.Equal(data, want))
			}
		}
		if ft, _ := f.Get("general.file_type"); (ft.X.(uint32) == 12) != requant {
			t.Errorf("requantize %v: general.file_type %v", requant, ft.X)
		}
		f.Close()
		if !requant && !strings.Contains(stdout, "written as F16") {
			t.Errorf("no F16 warning in %s", stdout)
		}
	}
}
