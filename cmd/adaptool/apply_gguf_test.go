package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/internal/testgen"
)

// writeCLIGGUFBase writes a 1-layer llama GGUF (n_embd 64, 2 heads) with
// its 2-D weights in typ and returns each tensor's decoded values and bytes.
func writeCLIGGUFBase(t *testing.T, path string, typ gguf.GGMLType) (map[string][]float32, map[string][]byte) {
	t.Helper()
	vals, raw := map[string][]float32{}, map[string][]byte{}
	var ts []gguf.Tensor
	for i, s := range []struct {
		name string
		ne   []uint64
	}{
		{"token_embd.weight", []uint64{64, 32}},
		{"blk.0.attn_q.weight", []uint64{64, 64}},
		{"blk.0.attn_v.weight", []uint64{64, 64}},
		{"blk.0.attn_norm.weight", []uint64{64}},
	} {
		n := int(s.ne[0])
		if len(s.ne) == 2 {
			n *= int(s.ne[1])
		}
		v := make([]float32, n)
		for k := range v {
			v[k] = float32(math.Sin(float64(k*7+i))) * 0.05
		}
		tt := typ
		if len(s.ne) == 1 {
			tt = gguf.F32
		}
		b, err := gguf.Encode(v, tt)
		if err != nil {
			t.Fatal(err)
		}
		if vals[s.name], err = gguf.Decode(b, tt, int64(n)); err != nil {
			t.Fatal(err)
		}
		raw[s.name] = b
		ts = append(ts, gguf.Tensor{Name: s.name, Type: tt, Dims: s.ne, Data: b})
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "llama.attention.head_count", Value: gguf.Uint32(2)},
		{Key: "llama.attention.head_count_kv", Value: gguf.Uint32(2)},
	}
	if err := gguf.WriteFile(path, kv, ts); err != nil {
		t.Fatal(err)
	}
	return vals, raw
}

func TestApplyGGUFCommand(t *testing.T) {
	tmp := t.TempDir()
	f32Base := filepath.Join(tmp, "f32.gguf")
	f32Vals, f32Raw := writeCLIGGUFBase(t, f32Base, gguf.F32)
	q8Base := filepath.Join(tmp, "q8.gguf")
	writeCLIGGUFBase(t, q8Base, gguf.Q8_0)
	gen, err := testgen.WriteLoRA(filepath.Join(tmp, "peft"), testgen.LoRA{Seed: 3, R: 4, Alpha: 8, Modules: []testgen.Module{
		{Name: "model.layers.0.self_attn.v_proj", In: 64, Out: 64},
		{Name: "model.layers.0.self_attn.q_proj", In: 64, Out: 64},
	}})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := testgen.WriteLoRA(filepath.Join(tmp, "bad"), testgen.LoRA{Seed: 4, Modules: []testgen.Module{
		{Name: "model.layers.3.self_attn.v_proj", In: 64, Out: 64}}})
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(tmp, "garbage.gguf")
	if err := os.WriteFile(garbage, []byte("GGUF\x03\x00\x00\x00 not a header"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(tmp, "base.safetensors")
	writeTestBase(t, st, false)

	cases := []struct {
		name     string
		args     []string
		code     int
		out      string // output path, which must exist exactly when writes
		writes   bool
		typ      gguf.GGMLType // of the merged tensors
		stderrIn string
		stdoutIn string
	}{
		{"dry run", []string{"--base", f32Base, "--adapter", gen.Dir, "--dry-run", "--json"}, exitOK, "dry.gguf", false, 0, "", ""},
		{"f32", []string{"--base", f32Base, "--adapter", gen.Dir + ":0.5"}, exitOK, "f32-out.gguf", true, gguf.F32, "", "2 applied"},
		{"q8_0 as export-lora", []string{"--base", q8Base, "--adapter", gen.Dir}, exitOK, "q8-f16.gguf", true, gguf.F16, "", "written as F16 (as llama.cpp's export-lora does"},
		{"q8_0 requantize", []string{"--base", q8Base, "--adapter", gen.Dir, "--requantize", "--verify"}, exitOK, "q8-q8.gguf", true, gguf.Q8_0, "", "verify: untouched tensors identical; 0 module(s) above"},
		{"bad base", []string{"--base", garbage, "--adapter", gen.Dir}, exitInput, "x1.gguf", false, 0, "garbage.gguf", ""},
		{"missing base", []string{"--base", filepath.Join(tmp, "none.gguf"), "--adapter", gen.Dir}, exitInput, "x2.gguf", false, 0, "", ""},
		{"unmatched module", []string{"--base", f32Base, "--adapter", bad.Dir}, exitFailed, "x3.gguf", false, 0, "model.layers.3.self_attn.v_proj (no base tensor blk.3.attn_v.weight)", "refused"},
		{"requantize safetensors", []string{"--base", st, "--adapter", gen.Dir, "--requantize"}, exitUsage, "x4.safetensors", false, 0, "--requantize", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(tmp, c.out)
			code, stdout, stderr := runCLI(t, append(append([]string{"apply"}, c.args...), "-o", out)...)
			if code != c.code {
				t.Fatalf("code %d, want %d; stderr %q", code, c.code, stderr)
			}
			if !strings.Contains(stderr, c.stderrIn) || !strings.Contains(stdout, c.stdoutIn) {
				t.Fatalf("stderr %q lacks %q or stdout %q lacks %q", stderr, c.stderrIn, stdout, c.stdoutIn)
			}
			_, statErr := os.Stat(out)
			if !c.writes {
				if statErr == nil {
					t.Fatal("output written")
				}
				if c.name == "dry run" {
					var rep struct {
						DryRun  bool `json:"dry_run"`
						Applied int  `json:"applied"`
						Touched int  `json:"tensors_touched"`
						Copied  int  `json:"tensors_copied"`
					}
					if err := json.Unmarshal([]byte(stdout), &rep); err != nil || !rep.DryRun || rep.Applied != 2 || rep.Touched != 2 || rep.Copied != 2 {
						t.Fatalf("report %+v (%v)\n%s", rep, err, stdout)
					}
				}
				return
			}
			f, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, n := range []string{"blk.0.attn_q.weight", "blk.0.attn_v.weight"} {
				if ti, _ := f.Tensor(n); ti.Type != c.typ {
					t.Fatalf("%s written as %s, want %s", n, ti.Type, c.typ)
				}
			}
			if c.typ != gguf.F32 {
				return
			}
			// untouched bytes identical; v = base + 0.5·(8/4)·B·A within float32 rounding
			for _, n := range []string{"token_embd.weight", "blk.0.attn_norm.weight"} {
				if d, err := f.Data(n); err != nil || !bytes.Equal(d, f32Raw[n]) {
					t.Fatalf("%s not byte-identical (%v)", n, err)
				}
			}
			got, err := f.Float32("blk.0.attn_v.weight")
			if err != nil {
				t.Fatal(err)
			}
			d := gen.Modules["model.layers.0.self_attn.v_proj"].RefDelta(0.5 * 8 / 4)
			for k, g := range got {
				w := float64(f32Vals["blk.0.attn_v.weight"][k]) + d[k]
				if math.Abs(float64(g)-w) > 0x1p-24*math.Abs(w)*(1+1e-9) {
					t.Fatalf("v[%d] = %v, exact %v", k, g, w)
				}
			}
		})
	}
}
