package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/provenance"
)

// convert --dtype, quantize and dequantize record the SPEC §1 provenance
// with the CLI's version; the sha256 is recomputed here from the file bytes.
func TestWritersProvenance(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	data := make([]byte, 4*64*64)
	for i := 0; i < 64*64; i++ {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(i%97)*0.01-0.5))
	}
	if err := safetensors.WriteFile(in, []safetensors.Tensor{
		{Name: "m.lora_A.weight", DType: safetensors.F32, Shape: []int{64, 64}, Data: data},
	}, nil); err != nil {
		t.Fatal(err)
	}
	sum := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	bf := filepath.Join(dir, "bf.safetensors")
	q := filepath.Join(dir, "q.safetensors")
	dq := filepath.Join(dir, "dq.safetensors")
	steps := []struct {
		args       []string
		in, out    string
		op, params string
		scheme     string // the scheme in adaptool.params (quantize: "scheme", dequantize: "schemes")
	}{
		{[]string{"convert", "--dtype", "bf16", in, "-o", bf}, in, bf, "convert-dtype", `{"dtype":"BF16"}`, ""},
		{[]string{"quantize", "--scheme", "int8", bf, "-o", q}, bf, q, "quantize", "", "int8"},
		{[]string{"dequantize", q, "-o", dq}, q, dq, "dequantize", "", "int8"},
	}
	for _, s := range steps {
		want := sum(s.in) // before the command: it must not change its input
		if code, _, stderr := runCLI(t, s.args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", s.args, code, stderr)
		}
		f, err := safetensors.Open(s.out)
		if err != nil {
			t.Fatal(err)
		}
		m := f.Metadata
		f.Close()
		var ins []struct{ Path, SHA256 string }
		if err := json.Unmarshal([]byte(m["adaptool.inputs"]), &ins); err != nil {
			t.Fatalf("%v: adaptool.inputs %q: %v", s.args, m["adaptool.inputs"], err)
		}
		if m["adaptool.operation"] != s.op || len(ins) != 1 || ins[0].Path != s.in || ins[0].SHA256 != want {
			t.Errorf("%v: operation %q inputs %v; want %s and [{%s %s}]", s.args, m["adaptool.operation"], ins, s.op, s.in, want)
		}
		if m["adaptool.version"] != "adaptool "+version {
			t.Errorf("%v: adaptool.version %q, want %q", s.args, m["adaptool.version"], "adaptool "+version)
		}
		if s.params != "" && m["adaptool.params"] != s.params {
			t.Errorf("%v: adaptool.params %s, want %s", s.args, m["adaptool.params"], s.params)
		}
		var p struct {
			Scheme  string   `json:"scheme"`
			Schemes []string `json:"schemes"`
		}
		if err := json.Unmarshal([]byte(m["adaptool.params"]), &p); err != nil {
			t.Errorf("%v: adaptool.params %q: %v", s.args, m["adaptool.params"], err)
		}
		if s.scheme != "" && p.Scheme != s.scheme && (len(p.Schemes) != 1 || p.Schemes[0] != s.scheme) {
			t.Errorf("%v: adaptool.params %s, want scheme %s", s.args, m["adaptool.params"], s.scheme)
		}
	}
}

// With the digest cache on, the second run on an unchanged input takes the
// input's sha256 from the cache and records the same, correct digest; a
// rewritten input is hashed again.
func TestDigestCacheCLI(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the digest cache is Linux-only")
	}
	cache := t.TempDir()
	t.Setenv("ADAPTOOL_CACHE_DIR", cache)
	t.Setenv("ADAPTOOL_DIGEST_CACHE", "")
	oldMin, oldWin := provenance.CacheMinSize, provenance.RacyWindow
	provenance.CacheMinSize, provenance.RacyWindow = 1, 50*time.Millisecond
	t.Cleanup(func() { provenance.CacheMinSize, provenance.RacyWindow = oldMin, oldWin })

	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	write := func(seed float32) {
		data := make([]byte, 4*8*16)
		for i := 0; i < 8*16; i++ {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(seed+float32(i)*0.01))
		}
		if err := safetensors.WriteFile(in, []safetensors.Tensor{
			{Name: "base_model.model.l.q_proj.lora_A.weight", DType: safetensors.F32, Shape: []int{8, 16}, Data: data},
			{Name: "base_model.model.l.q_proj.lora_B.weight", DType: safetensors.F32, Shape: []int{16, 8}, Data: data},
		}, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(80 * time.Millisecond) // older than the racy window
	}
	recorded := func(out string) string {
		f, err := safetensors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var ins []struct{ Path, SHA256 string }
		if err := json.Unmarshal([]byte(f.Metadata["adaptool.inputs"]), &ins); err != nil || len(ins) != 1 {
			t.Fatalf("adaptool.inputs %q: %v", f.Metadata["adaptool.inputs"], err)
		}
		return ins[0].SHA256
	}
	real := func() string {
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	write(0.5)
	for _, args := range [][]string{
		{"scale", "--by", "0.5", in, "-o", filepath.Join(dir, "s.safetensors")},
		{"convert", "--dtype", "bf16", in, "-o", filepath.Join(dir, "c.safetensors")},
		{"neg", in, "-o", filepath.Join(dir, "n.safetensors")},
	} {
		out := args[len(args)-1]
		for run := 0; run < 2; run++ {
			if code, _, stderr := runCLI(t, args...); code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, stderr)
			}
			if got, want := recorded(out), real(); got != want {
				t.Fatalf("%v run %d: recorded sha256 %s, want %s", args, run, got, want)
			}
			if ents, _ := os.ReadDir(filepath.Join(cache, "sha256")); len(ents) != 1 {
				t.Fatalf("%v run %d: %d cache entries, want 1", args, run, len(ents))
			}
		}
	}
	// The digest does come from the cache: a replaced entry is what the
	// next output records.
	ents, _ := os.ReadDir(filepath.Join(cache, "sha256"))
	entry := filepath.Join(cache, "sha256", ents[0].Name())
	b, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	fake := strings.Repeat("0f", 32)
	if err := os.WriteFile(entry, []byte(strings.Replace(string(b), real(), fake, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	hit := []string{"scale", "--by", "3", in, "-o", filepath.Join(dir, "hit.safetensors")}
	if code, _, stderr := runCLI(t, hit...); code != 0 {
		t.Fatalf("%v: exit %d: %s", hit, code, stderr)
	}
	if got := recorded(hit[len(hit)-1]); got != fake {
		t.Fatalf("with a replaced cache entry the output records %s, want %s", got, fake)
	}
	write(-0.25) // same size, other bytes
	args := []string{"scale", "--by", "2", in, "-o", filepath.Join(dir, "s2.safetensors")}
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	if got, want := recorded(args[len(args)-1]), real(); got != want {
		t.Fatalf("after rewriting the input: recorded %s, want %s", got, want)
	}
}
