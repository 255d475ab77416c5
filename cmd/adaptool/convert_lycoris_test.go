package main

import (
	"bytes"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

const (
	lycoQ    = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
	lycoConv = "down_blocks.0.resnets.0.conv1"
)

// lycoDeltas loads path and returns each module's float64 ΔW
// (adapter.Delta64) keyed by its kohya name (testgen.KohyaName of a PEFT
// path), plus the loaded adapter.
func lycoDeltas(t *testing.T, path string) (map[string][]float64, *adapter.Adapter) {
	t.Helper()
	a, err := adapter.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	t.Cleanup(func() { a.Close() })
	out := map[string][]float64{}
	for _, m := range a.Modules {
		_, v, err := a.Delta64(m)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		name := m.Name
		if a.Dialect != adapter.DialectKohya {
			name = testgen.KohyaName(name)
		}
		out[name] = v
	}
	return out, a
}

// sameWithin32 fails unless every module of want is in got with equal ΔW
// within float32 rounding of its largest value.
func sameWithin32(t *testing.T, what string, want, got map[string][]float64) {
	t.Helper()
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("%s: %d modules, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			t.Fatalf("%s: %s has %d values, want %d", what, k, len(g), len(w))
		}
		var d, m float64
		for i := range w {
			d, m = math.Max(d, math.Abs(w[i]-g[i])), math.Max(m, math.Abs(w[i]))
		}
		if m == 0 || d > m*0x1p-24 {
			t.Errorf("%s: %s max |ΔW diff| %g (max |ΔW| %g)", what, k, d, m)
		}
	}
}

type convertJSON struct {
	From, To string
	Modules  []struct {
		From, To, Kind string
		Rank           int
		Scale          float64
	}
	Warnings []string
}

func cliConvert(t *testing.T, src, to, out string) convertJSON {
	t.Helper()
	code, stdout, stderr := runCLI(t, "convert", src, "--to", to, "-o", out, "--json")
	if code != 0 {
		t.Fatalf("convert %s --to %s: exit %d: %s", src, to, code, stderr)
	}
	var res convertJSON
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout)
	}
	return res
}

// TestConvertLycorisCLI runs convert --to kohya / --to peft end to end on
// generated LoHa, LoKr and DoRA adapters, checking each output's ΔW (and
// DoRA magnitude bytes) against the input's.
func TestConvertLycorisCLI(t *testing.T) {
	dir := t.TempDir()
	mods := []testgen.LycoModule{{Name: lycoQ, In: 16, Out: 24, Alpha: 5}, {Name: lycoConv, In: 8, Out: 12, Kernel: []int{3, 3}, Rank: 3}}
	loha, err := testgen.WriteLoHa(filepath.Join(dir, "loha"), testgen.Lyco{Seed: 1, R: 4, Alpha: 6, EffectiveConv: true, Modules: mods})
	if err != nil {
		t.Fatal(err)
	}
	lokr, err := testgen.WriteLoKr(filepath.Join(dir, "lokr"), testgen.Lyco{Seed: 2, R: 1, Alpha: 6, Modules: mods}) // conv: whole w1, w2 at scale 2
	if err != nil {
		t.Fatal(err)
	}
	dora, err := testgen.WriteLoRA(filepath.Join(dir, "dora"), testgen.LoRA{Seed: 3, R: 4, Alpha: 8, DoRA: true, DType: safetensors.BF16,
		Modules: []testgen.Module{{Name: lycoQ, In: 16, Out: 24}, {Name: lycoConv, In: 8, Out: 12, Kernel: []int{3, 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	native, err := testgen.WriteKohyaLyco(filepath.Join(dir, "native.safetensors"), testgen.KohyaLyco{Seed: 4, Modules: []testgen.KohyaLycoModule{
		{Name: testgen.KohyaName(lycoQ), Kind: "lokr", In: 64, Out: 96, Rank: 2, Alpha: 4, W1Decomposed: true},
		{Name: testgen.KohyaName(lycoConv), Kind: "lokr", In: 8, Out: 12, Kernel: []int{3, 3}, Rank: 8, Alpha: 2, W2Whole: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, src, kind string
		warn            string // a warning the first conversion must give
	}{
		{"loha", loha.Dir, "loha", ""},
		{"lokr", lokr.Dir, "lokr", "identity factor"},
		{"dora", dora.Dir, "dora", "wd_on_out"},
		{"lycoris lokr", native.Path, "lokr", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, a0 := lycoDeltas(t, c.src)
			first, second := "kohya", "peft"
			o1, o2 := filepath.Join(dir, c.name+"-1.safetensors"), filepath.Join(dir, c.name+"-2")
			if a0.Dialect == adapter.DialectKohya {
				first, second = "peft", "kohya"
				o1, o2 = filepath.Join(dir, c.name+"-1"), filepath.Join(dir, c.name+"-2.safetensors")
			}
			res := cliConvert(t, c.src, first, o1)
			if c.warn != "" && !strings.Contains(strings.Join(res.Warnings, "\n"), c.warn) {
				t.Errorf("no warning containing %q: %q", c.warn, res.Warnings)
			}
			if len(res.Modules) != len(want) {
				t.Fatalf("%d modules converted, want %d", len(res.Modules), len(want))
			}
			for _, m := range res.Modules {
				if m.Kind != c.kind {
					t.Errorf("module %s kind %q, want %s", m.From, m.Kind, c.kind)
				}
			}
			got1, a1 := lycoDeltas(t, o1)
			sameWithin32(t, first, want, got1)
			cliConvert(t, o1, second, o2)
			got2, a2 := lycoDeltas(t, o2)
			sameWithin32(t, second, want, got2)
			for _, o := range []string{o1, o2} {
				if code, stdout, stderr := runCLI(t, "validate", o); code != 0 {
					t.Errorf("validate %s: exit %d\n%s%s", o, code, stdout, stderr)
				}
			}
			if c.kind == "dora" {
				for _, m := range a0.Modules {
					b0, _ := a0.File.Data(m.Tensors[adapter.RoleMagnitude].Name)
					b1, _ := a1.File.Data(a1.Module(testgen.KohyaName(m.Name)).Tensors[adapter.RoleMagnitude].Name)
					b2, _ := a2.File.Data(a2.Module(m.Name).Tensors[adapter.RoleMagnitude].Name)
					if len(b0) == 0 || !bytes.Equal(b0, b1) || !bytes.Equal(b0, b2) {
						t.Errorf("%s: DoRA magnitude bytes changed", m.Name)
					}
				}
			}
		})
	}
	// LyCORIS' input-column dora_scale has no PEFT form: exit 4, naming the
	// file, the tensor and the rule; nothing written.
	bad := filepath.Join(dir, "wd-in.safetensors")
	if _, err := testgen.WriteKohyaLyco(bad, testgen.KohyaLyco{Seed: 5, Modules: []testgen.KohyaLycoModule{
		{Name: testgen.KohyaName(lycoQ), Kind: "dora", In: 16, Out: 24, Rank: 4, DoRAInput: true}}}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "never")
	code, _, stderr := runCLI(t, "convert", bad, "--to", "peft", "-o", out)
	if code != 4 {
		t.Errorf("input-axis dora_scale → peft: exit %d, want 4 (%s)", code, stderr)
	}
	for _, s := range []string{bad, testgen.KohyaName(lycoQ) + ".dora_scale", "input columns"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr %q does not name %q", stderr, s)
		}
	}
	if _, err := adapter.Load(out); err == nil {
		t.Error("a refused conversion wrote an output")
	}
}
