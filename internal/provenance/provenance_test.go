package provenance

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FIPS 180-2 / NIST test vectors, computed independently of this package.
func TestFileSHA256(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("a", 1_000_000) // spans the 1 MiB read size
	cases := []struct {
		name, data, want string
	}{
		{"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"448bit", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"million-a", big, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
		{"million-a-twice", big + big, "bcf7f9d1b4311c3352e60502255ce09a6744df84e8f2c89f79c4b5d74933a95a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, []byte(c.data), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := FileSHA256(p)
			if err != nil {
				t.Fatal(err)
			}
			if c.want != "" && got != c.want {
				t.Errorf("FileSHA256 = %s, want %s", got, c.want)
			}
			async, err := HashAsync(p).Wait()
			if err != nil || async != got {
				t.Errorf("HashAsync = %s, %v; want %s", async, err, got)
			}
			mem, err := HashMappedAsync(p, []byte(c.data)).Wait()
			if err != nil || mem != got {
				t.Errorf("HashMappedAsync = %s, %v; want %s", mem, err, got)
			}
		})
	}
	if _, err := FileSHA256(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
	if _, err := HashAsync(filepath.Join(dir, "missing")).Wait(); err == nil {
		t.Error("HashAsync missing file: no error")
	}
}

func TestCancel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	h := HashAsync(p)
	h.Cancel()
	h.Cancel() // idempotent
	if sum, err := h.Wait(); err == nil && sum != "2daeb1f36095b44b318410b3f4e8b5d989dcc7bb023d1426c492dab0a3053e74" {
		t.Errorf("canceled hash returned a wrong digest %s", sum)
	}
}

func TestRecord(t *testing.T) {
	seed := uint64(42)
	cases := []struct {
		name    string
		op, m   string
		params  any
		weights []float64
		seed    *uint64
		inputs  []Input
		want    map[string]string
	}{
		{"single", "neg", "", map[string]int{"k": 1}, nil, nil, []Input{{"a/b.safetensors", "00ff"}},
			map[string]string{MetaOperation: "neg", MetaParams: `{"k":1}`, MetaInputs: `[{"path":"a/b.safetensors","sha256":"00ff"}]`, MetaVersion: "adaptool"}},
		{"merge", "merge", "ties", struct {
			Density float64 `json:"density"`
		}{0.5}, []float64{1, -0.5}, &seed, []Input{{"x", "1"}, {"y", "2"}},
			map[string]string{MetaOperation: "merge", MetaMethod: "ties", MetaParams: `{"density":0.5}`, MetaWeights: "[1,-0.5]",
				MetaSeed: "42", MetaInputs: `[{"path":"x","sha256":"1"},{"path":"y","sha256":"2"}]`, MetaVersion: "adaptool"}},
		{"no inputs, unmarshalable params", "op", "", func() {}, nil, nil, nil,
			map[string]string{MetaOperation: "op", MetaInputs: "[]", MetaVersion: "adaptool"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Record(c.op, c.m, c.params, c.weights, c.seed, c.inputs)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Record =\n%v\nwant\n%v", got, c.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	dst := map[string]string{"format": "pt", MetaMethod: "ties", MetaSeed: "1", MetaOperation: "merge", "adaptool.quantization": "{}"}
	got := Merge(dst, map[string]string{MetaOperation: "quantize", MetaInputs: "[]"})
	want := map[string]string{"format": "pt", "adaptool.quantization": "{}", MetaOperation: "quantize", MetaInputs: "[]"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Merge = %v, want %v", got, want)
	}
	if got := Merge(nil, map[string]string{"a": "b"}); !reflect.DeepEqual(got, map[string]string{"a": "b"}) {
		t.Errorf("Merge(nil) = %v", got)
	}
}

func ExampleRecord() {
	m := Record("scale", "", map[string]float64{"factor": 0.5}, nil, nil,
		[]Input{{Path: "lora/adapter_model.safetensors", SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}})
	fmt.Println(m[MetaOperation])
	fmt.Println(m[MetaParams])
	fmt.Println(m[MetaInputs])
	// Output:
	// scale
	// {"factor":0.5}
	// [{"path":"lora/adapter_model.safetensors","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]
}
