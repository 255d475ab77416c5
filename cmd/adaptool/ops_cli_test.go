package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
)

// writeTestAdapter writes a small PEFT LoRA directory with two modules
// (16×12, rank r, scale s) through adapter.WritePEFT; dora adds magnitudes.
func writeTestAdapter(t *testing.T, dir string, seed uint64, r int, s float64, dora bool) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	var mods []adapter.OutModule
	for _, name := range []string{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"} {
		m := adapter.OutModule{Name: name, Rank: r, In: 12, Out: 16, Scale: s, A: make([]float32, r*12), B: make([]float32, 16*r)}
		for i := range m.A {
			m.A[i] = float32(rng.NormFloat64())
		}
		for i := range m.B {
			m.B[i] = float32(rng.NormFloat64())
		}
		if dora {
			m.Kind, m.Magnitude = adapter.KindDoRA, make([]float32, 16)
			for i := range m.Magnitude {
				m.Magnitude[i] = 1
			}
		}
		mods = append(mods, m)
	}
	if err := adapter.WritePEFT(dir, &adapter.Output{Modules: mods}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpsCommands(t *testing.T) {
	tmp := t.TempDir()
	a := writeTestAdapter(t, filepath.Join(tmp, "a"), 1, 4, 2, false)
	b := writeTestAdapter(t, filepath.Join(tmp, "b"), 2, 8, 0.5, false)
	d := writeTestAdapter(t, filepath.Join(tmp, "d"), 3, 4, 1, true)
	out := func(name string) string { return filepath.Join(tmp, name) }

	// Dry run: a plan in JSON, nothing written.
	code, stdout, stderr := runCLI(t, "merge", a, b, "--weights", "1,-0.5", "--dry-run", "--json")
	if code != exitOK {
		t.Fatalf("merge --dry-run: code %d, stderr %q", code, stderr)
	}
	var plan struct {
		Operation string `json:"operation"`
		DryRun    bool   `json:"dry_run"`
		Matched   int    `json:"matched"`
		Bytes     int64  `json:"bytes"`
		Modules   []struct {
			Name string `json:"name"`
			Rank int    `json:"rank"`
		} `json:"modules"`
	}
	if err := json.Unmarshal([]byte(stdout), &plan); err != nil {
		t.Fatalf("plan is not JSON: %v\n%s", err, stdout)
	}
	if !plan.DryRun || plan.Operation != "merge" || plan.Matched != 2 || len(plan.Modules) != 2 || plan.Modules[0].Rank != 8 || plan.Bytes != 2*8*(16+12)*4 {
		t.Errorf("plan %+v", plan)
	}

	// The memory plan: the budget as given, at least one worker, a peak.
	code, stdout, stderr = runCLI(t, "merge", a, b, "--method", "ties", "--max-memory", "1KiB", "--dry-run", "--json")
	var mem struct {
		Memory struct {
			MaxMemory int64 `json:"max_memory"`
			Workers   int   `json:"workers"`
			Peak      int64 `json:"peak_bytes"`
		} `json:"memory"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(stdout), &mem); err != nil || code != exitOK {
		t.Fatalf("merge --max-memory 1KiB: code %d, %v, stderr %q", code, err, stderr)
	}
	if mem.Memory.MaxMemory != 1024 || mem.Memory.Workers != 1 || mem.Memory.Peak <= 1024 || len(mem.Warnings) == 0 || !strings.Contains(mem.Warnings[len(mem.Warnings)-1], "exceeds the budget") {
		t.Errorf("memory plan %+v, warnings %q", mem.Memory, mem.Warnings)
	}

	for _, c := range []struct {
		args []string
		code int
		want string // substring of stderr (errors) or of the output listing
	}{
		{[]string{"merge", a, b, "-o", out("svd")}, exitOK, ""},
		{[]string{"merge", a, b, "--method", "ties", "--density", "0.5", "--seed", "7", "-o", out("ties")}, exitOK, ""},
		{[]string{"add", a, b, "-o", out("add")}, exitOK, ""},
		{[]string{"sub", a, b, "-o", out("sub")}, exitOK, ""},
		{[]string{"neg", a, "-o", out("neg")}, exitOK, ""},
		{[]string{"scale", a, "--by", "0.5", "-o", out("scale")}, exitOK, ""},
		{[]string{"resize", a, "--energy", "0.9", "-o", out("resize")}, exitOK, ""},
		{[]string{"reweight", a, "--fn", "soft:0.1", "--layout", "kasa", "-o", out("reweight")}, exitOK, ""},
		{[]string{"prune", a, "--ranks", "module-fraction:0.5", "-o", out("prune")}, exitOK, ""},
		{[]string{"merge", a, b, "--method", "slerp", "-o", out("x")}, exitUsage, "unknown method"},
		{[]string{"merge", a, b, "--max-memory", "2parsecs", "-o", out("x")}, exitUsage, "unknown unit"},
		{[]string{"merge", a, b, "--weights", "1", "-o", out("x")}, exitUsage, "2 inputs"},
		{[]string{"merge", a, b}, exitUsage, "missing -o"},
		{[]string{"merge", a, filepath.Join(tmp, "nope"), "-o", out("x")}, exitInput, "nope"},
		{[]string{"merge", a, d, "-o", out("x")}, exitFailed, "DoRA"},
		{[]string{"resize", a, "-o", out("x")}, exitUsage, "--rank"},
		{[]string{"reweight", a, "--fn", "cube:2", "-o", out("x")}, exitUsage, "unknown op"},
		{[]string{"prune", a, "--ranks", "energy:2", "-o", out("x")}, exitUsage, "out of range"},
		{[]string{"scale", a, "-o", out("x")}, exitUsage, "--by"},
	} {
		code, stdout, stderr := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(stderr+stdout, c.want) {
			t.Errorf("%q: code %d (want %d), stderr %q", c.args, code, c.code, stderr)
		}
	}
	if _, err := os.Stat(out("x")); err == nil {
		t.Error("a failed command wrote its output")
	}
	// Outputs load back with provenance.
	for _, name := range []string{"svd", "ties", "add", "sub", "resize", "reweight", "prune"} {
		ad, err := adapter.Load(out(name))
		if err != nil {
			t.Errorf("%s: reload: %v", name, err)
			continue
		}
		if ad.Metadata["adaptool.operation"] == "" || ad.Metadata["adaptool.inputs"] == "" {
			t.Errorf("%s: no provenance in %v", name, ad.Metadata)
		}
		ad.Close()
	}
}

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{{"2GiB", 2 << 30}, {"512MiB", 512 << 20}, {"1.5G", 3 << 29}, {"100", 100}, {" 64 kb", 64 << 10}, {"1T", 1 << 40}} {
		if got, err := parseBytes(c.in); err != nil || got != c.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "GiB", "-1GiB", "0", "1.2.3M", "5 furlongs", "1e30TiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q): no error", bad)
		}
	}
}
