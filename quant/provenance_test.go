package quant

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// sha256Of hashes a file with crypto/sha256 over its whole bytes (an
// independent check of the streamed digest).
func sha256Of(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type provInput struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// checkProvenance asserts the record of op in the metadata of the
// safetensors file at out: operation, params (compared as JSON values) and
// the inputs with their sha256.
func checkProvenance(t *testing.T, out, op, params string, inputs []provInput) map[string]string {
	t.Helper()
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := f.Metadata
	if m["adaptool.operation"] != op {
		t.Errorf("%s: adaptool.operation %q, want %q", out, m["adaptool.operation"], op)
	}
	var got, want any
	if err := json.Unmarshal([]byte(m["adaptool.params"]), &got); err != nil {
		t.Errorf("%s: adaptool.params %q: %v", out, m["adaptool.params"], err)
	}
	json.Unmarshal([]byte(params), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: adaptool.params %s, want %s", out, m["adaptool.params"], params)
	}
	var ins []provInput
	if err := json.Unmarshal([]byte(m["adaptool.inputs"]), &ins); err != nil {
		t.Errorf("%s: adaptool.inputs %q: %v", out, m["adaptool.inputs"], err)
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].Path < ins[j].Path })
	sort.Slice(inputs, func(i, j int) bool { return inputs[i].Path < inputs[j].Path })
	if !reflect.DeepEqual(ins, inputs) {
		t.Errorf("%s: adaptool.inputs %v, want %v", out, ins, inputs)
	}
	if m["adaptool.version"] == "" {
		t.Errorf("%s: no adaptool.version", out)
	}
	return m
}

func TestFileProvenance(t *testing.T) {
	cases := []struct {
		name       string
		p          Params
		params     string // the quantize params, as the CLI documents them
		deqSchemes string
	}{
		{"nf4", Params{Scheme: SchemeNF4, BlockSize: 32}, `{"scheme":"nf4","blocksize":32}`, `["nf4"]`},
		{"int8-group", Params{Scheme: SchemeInt8, Granularity: "group:4", Asymmetric: true}, `{"scheme":"int8","granularity":"group:4","asymmetric":true}`, `["int8"]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in, _ := writeAdapter(t, dir)
			inSum := sha256Of(t, in)
			out := filepath.Join(dir, "q.safetensors")
			if _, err := QuantizeFile(in, out, FileOptions{Params: c.p}); err != nil {
				t.Fatal(err)
			}
			m := checkProvenance(t, out, "quantize", c.params, []provInput{{in, inSum}})
			if m["note"] != "test" || m[MetaQuantization] != m["adaptool.params"] {
				t.Errorf("input metadata or adaptool.quantization lost: %v", m)
			}
			back := filepath.Join(dir, "back.safetensors")
			if _, err := DequantizeFile(out, back, DequantizeOptions{}); err != nil {
				t.Fatal(err)
			}
			m = checkProvenance(t, back, "dequantize", `{"schemes":`+c.deqSchemes+`,"quantization":`+c.params+`}`,
				[]provInput{{out, sha256Of(t, out)}})
			if _, ok := m[MetaQuantization]; ok || m["note"] != "test" {
				t.Errorf("dequantized metadata: %v", m)
			}
		})
	}
}

// Every shard of a checkpoint input is recorded with its own sha256, and
// the same record is in every output shard.
func TestFileProvenanceSharded(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	var ts []safetensors.Tensor
	for i := 0; i < 3; i++ {
		ts = append(ts, safetensors.Tensor{Name: "layers." + itoa(i) + ".weight", DType: safetensors.F32, Shape: []int{32, 64}, Data: f32Bytes(normals(32*64, int64(i)))})
	}
	if err := safetensors.WriteCheckpoint(ck, ts, nil, 10000); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(ck, "*.safetensors"))
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3", len(shards))
	}
	var want []provInput
	for _, s := range shards {
		want = append(want, provInput{s, sha256Of(t, s)})
	}
	out := filepath.Join(dir, "q")
	if _, err := QuantizeFile(ck, out, FileOptions{Params: Params{Scheme: SchemeFP8E4M3, Granularity: "channel"}}); err != nil {
		t.Fatal(err)
	}
	outShards, _ := filepath.Glob(filepath.Join(out, "*.safetensors"))
	if len(outShards) == 0 {
		t.Fatal("no output shards")
	}
	for _, s := range outShards {
		checkProvenance(t, s, "quantize", `{"scheme":"fp8-e4m3","granularity":"channel"}`, append([]provInput(nil), want...))
	}
}
