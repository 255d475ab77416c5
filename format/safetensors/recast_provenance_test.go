package safetensors

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	"github.com/adaptool/adaptool/internal/provenance"
)

// fileDigest is crypto/sha256 over the whole file read at once (an
// independent check of the digest Recast streams in the background).
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type recordedInput struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// recastRecord opens out (which must be a valid safetensors file after the
// header patch) and returns its metadata and decoded inputs.
func recastRecord(t *testing.T, out string) (map[string]string, []recordedInput) {
	t.Helper()
	f, err := Open(out)
	if err != nil {
		t.Fatalf("output not readable after the provenance patch: %v", err)
	}
	defer f.Close()
	var ins []recordedInput
	if err := json.Unmarshal([]byte(f.Metadata["adaptool.inputs"]), &ins); err != nil {
		t.Fatalf("%s: adaptool.inputs %q: %v", out, f.Metadata["adaptool.inputs"], err)
	}
	return f.Metadata, ins
}

func TestRecastProvenance(t *testing.T) {
	defer func(c int64) { recastChunk = c }(recastChunk)
	recastChunk = 64
	dir := t.TempDir()
	vals := make([]float32, 5000)
	for i := range vals {
		vals[i] = float32(i) * 0.37
	}
	in := filepath.Join(dir, "in.safetensors")
	// The input carries the record of an earlier merge: its method and
	// seed must not survive into the new record.
	err := WriteFile(in, []Tensor{
		{Name: "a.lora_A.weight", DType: F32, Shape: []int{50, 100}, Data: f32Data(vals)},
		{Name: "b", DType: F32, Shape: []int{2}, Data: f32Data([]float32{1, 2})},
	}, map[string]string{"note": "kept", "adaptool.operation": "merge", "adaptool.method": "ties", "adaptool.seed": "7"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, out string
		opts      RecastOptions
		params    string
	}{
		{"bf16-only", filepath.Join(dir, "o1.safetensors"), RecastOptions{DType: BF16, Only: regexp.MustCompile(`lora`)}, `{"dtype":"BF16","only":"lora"}`},
		{"f8", filepath.Join(dir, "o2.safetensors"), RecastOptions{DType: F8E5M2}, `{"dtype":"F8_E5M2"}`},
		{"same-dtype", filepath.Join(dir, "o3.safetensors"), RecastOptions{DType: F32}, `{"dtype":"F32"}`},
	}
	want := fileDigest(t, in)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Recast(in, c.out, c.opts); err != nil {
				t.Fatal(err)
			}
			m, ins := recastRecord(t, c.out)
			if m["adaptool.operation"] != "convert-dtype" || m["adaptool.params"] != c.params || m["note"] != "kept" || m["adaptool.version"] == "" {
				t.Errorf("metadata %v, want operation convert-dtype, params %s, note kept, a version", m, c.params)
			}
			if _, ok := m["adaptool.method"]; ok {
				t.Errorf("stale adaptool.method kept: %v", m)
			}
			if _, ok := m["adaptool.seed"]; ok {
				t.Errorf("stale adaptool.seed kept: %v", m)
			}
			if !reflect.DeepEqual(ins, []recordedInput{{in, want}}) {
				t.Errorf("inputs %v, want [{%s %s}]", ins, in, want)
			}
		})
	}

	// In place: the digest is that of the bytes before the rewrite.
	before := fileDigest(t, cases[0].out)
	if _, err := Recast(cases[0].out, cases[0].out, RecastOptions{DType: F16}); err != nil {
		t.Fatal(err)
	}
	if _, ins := recastRecord(t, cases[0].out); !reflect.DeepEqual(ins, []recordedInput{{cases[0].out, before}}) {
		t.Errorf("in place: inputs %v, want the sha256 %s of the replaced file", ins, before)
	}

	// A sharded directory: each output shard records its own source shard.
	ck := filepath.Join(dir, "ck")
	if err := WriteCheckpoint(ck, []Tensor{
		{Name: "x", DType: F32, Shape: []int{1000}, Data: f32Data(vals[:1000])},
		{Name: "y", DType: F32, Shape: []int{1000}, Data: f32Data(vals[1000:2000])},
	}, nil, 4000); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(ck, "*.safetensors"))
	if len(shards) != 2 {
		t.Fatalf("%d shards, want 2", len(shards))
	}
	sums := map[string]string{}
	for _, s := range shards {
		sums[filepath.Base(s)] = fileDigest(t, s)
	}
	out := filepath.Join(dir, "ck16")
	if _, err := Recast(ck, out, RecastOptions{DType: F16}); err != nil {
		t.Fatal(err)
	}
	for base, sum := range sums {
		m, ins := recastRecord(t, filepath.Join(out, base))
		if m["adaptool.operation"] != "convert-dtype" || len(ins) != 1 || filepath.Base(ins[0].Path) != base || ins[0].SHA256 != sum {
			t.Errorf("%s: operation %q inputs %v, want its own shard with sha256 %s", base, m["adaptool.operation"], ins, sum)
		}
	}
}

// BenchmarkRecastProvenance compares, on the same 64 MiB F32 file, a plain
// file copy (what cp does), the sha256 alone, and Recast to BF16 with its
// concurrent provenance hash. b.SetBytes is the input size for all three.
func BenchmarkRecastProvenance(b *testing.B) {
	dir := b.TempDir()
	const n = 16 << 20 // elements: 64 MiB of F32
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i%1000) * 0.001
	}
	in := filepath.Join(dir, "in.safetensors")
	if err := WriteFile(in, []Tensor{{Name: "w", DType: F32, Shape: []int{n / 1024, 1024}, Data: f32Data(vals)}}, nil); err != nil {
		b.Fatal(err)
	}
	vals = nil
	st, _ := os.Stat(in)
	out := filepath.Join(dir, "out.safetensors")
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(st.Size())
		for range b.N {
			if err := copyFileAtomic(in, out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(st.Size())
		for range b.N {
			if _, err := provenance.FileSHA256(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("recast-bf16", func(b *testing.B) {
		b.SetBytes(st.Size())
		for range b.N {
			if _, err := Recast(in, out, RecastOptions{DType: BF16}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
