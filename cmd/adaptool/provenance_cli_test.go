package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
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
