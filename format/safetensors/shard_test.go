package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func shardTensors(r *rand.Rand) []Tensor {
	return []Tensor{
		randomTensor(r, "a", F32, []int{10}),    // 40
		randomTensor(r, "b", F32, []int{10}),    // 40 -> 80
		randomTensor(r, "big", U8, []int{300}),  // oversized: own shard
		randomTensor(r, "c", F16, []int{30}),    // 60 -> 140 > 100: new shard
		randomTensor(r, "d", BF16, []int{20}),   // 40 -> 100 fits exactly
		randomTensor(r, "e", I64, []int{}),      // 8 -> new shard
		randomTensor(r, "z", F64, []int{0, 3}),  // 0
		randomTensor(r, "模型", F32, []int{2, 2}), // 16
	}
}

func TestWriteCheckpointSharded(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	ts := shardTensors(r)
	if err := WriteCheckpoint(dir, ts, map[string]string{"who": "test"}, 100); err != nil {
		t.Fatal(err)
	}
	// huggingface_hub's split: [a b] then big alone (appended first), then
	// [c d], then [e z 模型].
	wantShards := map[string][]string{
		"model-00001-of-00004.safetensors": {"big"},
		"model-00002-of-00004.safetensors": {"a", "b"},
		"model-00003-of-00004.safetensors": {"c", "d"},
		"model-00004-of-00004.safetensors": {"e", "z", "模型"},
	}
	raw, err := os.ReadFile(filepath.Join(dir, IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	var total, params int64
	for _, tt := range ts {
		total += int64(len(tt.Data))
		params += tt.NumElements()
	}
	if idx.Metadata["total_size"] != total || idx.Metadata["total_parameters"] != params || total != 40+40+300+60+40+8+0+16 {
		t.Fatalf("index metadata %v, want total_size %d total_parameters %d", idx.Metadata, total, params)
	}
	if !strings.HasPrefix(string(raw), "{\n  \"metadata\": {\n") || !strings.HasSuffix(string(raw), "}\n") {
		t.Errorf("index not indented as expected:\n%s", raw)
	}
	for shard, names := range wantShards {
		f, err := Open(filepath.Join(dir, shard))
		if err != nil {
			t.Fatal(err)
		}
		got := f.Names()
		slices.Sort(got)
		if !slices.Equal(got, names) {
			t.Errorf("%s holds %v, want %v", shard, got, names)
		}
		if f.Metadata["format"] != "pt" || f.Metadata["who"] != "test" {
			t.Errorf("%s metadata %v", shard, f.Metadata)
		}
		for _, n := range names {
			if idx.WeightMap[n] != shard {
				t.Errorf("weight_map[%q] = %q, want %q", n, idx.WeightMap[n], shard)
			}
		}
		f.Close()
	}
	if len(idx.WeightMap) != len(ts) {
		t.Errorf("weight_map has %d entries", len(idx.WeightMap))
	}
	for _, p := range []string{dir, filepath.Join(dir, IndexFileName)} {
		c, err := OpenCheckpoint(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) != 0 || c.TotalSize != total || c.DeclaredTotalSize != total || len(c.Shards) != 4 {
			t.Errorf("checkpoint: warnings %v total %d declared %d shards %d", c.Warnings, c.TotalSize, c.DeclaredTotalSize, len(c.Shards))
		}
		for _, tt := range ts {
			got, err := c.Data(tt.Name)
			if err != nil || !bytes.Equal(got, tt.Data) {
				t.Errorf("tensor %q differs (%v)", tt.Name, err)
			}
		}
		if _, err := c.Data("nope"); !errors.Is(err, ErrTensorNotFound) {
			t.Errorf("missing tensor: %v", err)
		}
		c.Close()
	}
	// Rewriting as one shard removes the old shards and the index.
	if err := WriteCheckpoint(dir, ts[:2], nil, 0); err != nil {
		t.Fatal(err)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{SingleFileName}) {
		t.Fatalf("directory holds %v after single-shard rewrite", names)
	}
	c, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Index != nil || len(c.Names()) != 2 {
		t.Fatalf("single file checkpoint: index %v names %v", c.Index, c.Names())
	}
}

// writeIndexed writes two shards and an index built by hand.
func writeIndexed(t *testing.T, dir string, weightMap map[string]string, meta string) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	if err := WriteFile(filepath.Join(dir, "s1.safetensors"), []Tensor{randomTensor(r, "a", F32, []int{2}), randomTensor(r, "b", F16, []int{2})}, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(dir, "s2.safetensors"), []Tensor{randomTensor(r, "c", U8, []int{3})}, nil); err != nil {
		t.Fatal(err)
	}
	wm, _ := json.Marshal(weightMap)
	idx := `{"metadata":` + meta + `,"weight_map":` + string(wm) + `}`
	if err := os.WriteFile(filepath.Join(dir, IndexFileName), []byte(idx), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCheckpointChecks(t *testing.T) {
	good := map[string]string{"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name     string
		wm       map[string]string
		meta     string
		want     error
		warnings int
	}{
		{"good with extra metadata keys", good, `{"total_size":15,"total_parameters":7,"format":"pt"}`, nil, 0},
		{"no metadata", good, `null`, nil, 0},
		{"total_size mismatch warns", good, `{"total_size":1000}`, nil, 1},
		{"missing shard file", with("x", "s3.safetensors"), `{}`, ErrInvalidIndex, 0},
		{"tensor listed but absent", with("x", "s2.safetensors"), `{}`, ErrInvalidIndex, 0},
		{"tensor stored but not listed", with("b", ""), `{}`, ErrInvalidIndex, 0},
		{"tensor listed in the wrong shard", with("c", "s1.safetensors"), `{}`, ErrInvalidIndex, 0},
		{"path escapes directory", with("x", "../s1.safetensors"), `{}`, ErrInvalidIndex, 0},
		{"absolute path", with("x", "/etc/passwd"), `{}`, ErrInvalidIndex, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeIndexed(t, dir, c.wm, c.meta)
			ck, err := OpenCheckpoint(dir)
			if c.want != nil {
				if !errors.Is(err, c.want) || !IsFormatError(err) {
					t.Fatalf("error %v, want %v", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			if len(ck.Warnings) != c.warnings || ck.TotalSize != 15 {
				t.Fatalf("warnings %v, total %d", ck.Warnings, ck.TotalSize)
			}
		})
	}
	// The same tensor name in two shards.
	dir := t.TempDir()
	writeIndexed(t, dir, good, `{}`)
	r := rand.New(rand.NewPCG(1, 1))
	if err := WriteFile(filepath.Join(dir, "s2.safetensors"), []Tensor{randomTensor(r, "c", U8, []int{3}), randomTensor(r, "a", U8, []int{1})}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCheckpoint(dir); !errors.Is(err, ErrInvalidIndex) || !strings.Contains(err.Error(), "both") {
		t.Fatalf("duplicate across shards: %v", err)
	}
	// A malformed shard reports its own format error.
	dir = t.TempDir()
	writeIndexed(t, dir, good, `{}`)
	os.WriteFile(filepath.Join(dir, "s2.safetensors"), []byte{1, 2}, 0o644)
	if _, err := OpenCheckpoint(dir); !errors.Is(err, ErrHeaderTooSmall) {
		t.Fatalf("bad shard: %v", err)
	}
	// A malformed index.
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"weight_map":[]}`), 0o644)
	if _, err := OpenCheckpoint(dir); !errors.Is(err, ErrInvalidIndex) {
		t.Fatalf("bad index: %v", err)
	}
	// An empty directory.
	if _, err := OpenCheckpoint(t.TempDir()); !errors.Is(err, ErrInvalidIndex) {
		t.Fatalf("empty dir: %v", err)
	}
}

// xorContainer is a toy container: magic "XORC" + 8-byte size + payload^0x5A.
type xorContainer struct{}

func (xorContainer) Detect(p []byte) bool { return bytes.HasPrefix(p, []byte("XORC")) }

func (xorContainer) Open(r io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	if size < 4 {
		return nil, 0, errors.New("xorc: short")
	}
	return xorReader{r}, size - 4, nil
}

type xorReader struct{ r io.ReaderAt }

func (x xorReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := x.r.ReadAt(p, off+4)
	for i := range p[:n] {
		p[i] ^= 0x5A
	}
	return n, err
}

func TestContainer(t *testing.T) {
	RegisterContainer(xorContainer{})
	r := rand.New(rand.NewPCG(9, 9))
	ts := []Tensor{randomTensor(r, "w", F32, []int{5, 3})}
	plain := writeBytes(t, ts, nil)
	wrapped := append([]byte("XORC"), plain...)
	for i := 4; i < len(wrapped); i++ {
		wrapped[i] ^= 0x5A
	}
	dir := t.TempDir()
	name := filepath.Join(dir, SingleFileName)
	os.WriteFile(name, wrapped, 0o644)
	f, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := f.Data("w")
	if f.Mapped() || !bytes.Equal(got, ts[0].Data) {
		t.Fatal("container data differs")
	}
	h, err := OpenHeader(name)
	if err != nil || len(h.Tensors) != 1 {
		t.Fatalf("OpenHeader through container: %v", err)
	}
	c, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Plain files are unaffected by the registration.
	os.WriteFile(name, plain, 0o644)
	f2, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if got, _ := f2.Data("w"); !bytes.Equal(got, ts[0].Data) {
		t.Fatal("plain file data differs")
	}
}
