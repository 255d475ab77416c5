package inspect

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// writeSparseShard writes a safetensors header by hand (independent of the
// format package's writer) and extends the file to its declared size with
// Truncate, so the data section is a hole costing no disk.
func writeSparseShard(tb testing.TB, path string, names []string, rows, cols int) int64 {
	tb.Helper()
	sort.Strings(names)
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var off int64
	size := int64(rows) * int64(cols) * 2
	for _, n := range names {
		hdr[n] = map[string]any{"dtype": "BF16", "shape": []int{rows, cols}, "data_offsets": []int64{off, off + size}}
		off += size
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		tb.Fatal(err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var pre [8]byte
	binary.LittleEndian.PutUint64(pre[:], uint64(len(js)))
	f.Write(pre[:])
	f.Write(js)
	if err := f.Truncate(8 + int64(len(js)) + off); err != nil {
		tb.Fatal(err)
	}
	return off
}

// makeShardedCheckpoint builds a 20-shard checkpoint declaring ~10 GB of data.
func makeShardedCheckpoint(tb testing.TB) (dir string, tensors int, total int64) {
	dir = tb.TempDir()
	const shards, perShard = 20, 16
	weightMap := map[string]string{}
	for s := 0; s < shards; s++ {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		var names []string
		for i := 0; i < perShard; i++ {
			n := fmt.Sprintf("model.layers.%d.mlp.proj_%02d.weight", s, i)
			names = append(names, n)
			weightMap[n] = file
		}
		// 16 tensors × 4096×4096 BF16 = 512 MiB per shard, 10 GiB in all
		total += writeSparseShard(tb, filepath.Join(dir, file), names, 4096, 4096)
		tensors += perShard
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap})
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir, tensors, total
}

func TestSummarizeSharded(t *testing.T) {
	dir, n, total := makeShardedCheckpoint(t)
	for _, p := range []string{dir, filepath.Join(dir, "model.safetensors.index.json")} {
		s, err := Summarize(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Container != "safetensors-sharded" || s.Format != "checkpoint" || len(s.Files) != 20 {
			t.Errorf("container %q format %q files %d", s.Container, s.Format, len(s.Files))
		}
		if s.Totals.Tensors != n || s.Totals.Bytes != total || s.Totals.Parameters != total/2 || s.Totals.DTypes["BF16"] != n {
			t.Errorf("totals %+v, want %d tensors %d bytes", s.Totals, n, total)
		}
		if s.Tensors[0].File == "" {
			t.Error("shard file not recorded")
		}
	}
	// an index naming a tensor that no shard holds
	idx := filepath.Join(dir, "model.safetensors.index.json")
	b, _ := os.ReadFile(idx)
	var m map[string]any
	json.Unmarshal(b, &m)
	m["weight_map"].(map[string]any)["ghost.weight"] = "model-00001-of-00020.safetensors"
	b, _ = json.Marshal(m)
	os.WriteFile(idx, b, 0o644)
	s, _ := Summarize(idx, Options{})
	found := false
	for _, w := range s.Warnings {
		if strings.Contains(w, "ghost.weight") {
			found = true
		}
	}
	if !found {
		t.Errorf("missing tensor not reported: %v", s.Warnings)
	}
}

// BenchmarkSummarizeSharded is header-only inspection of a 20-shard index
// declaring 10 GiB of (sparse) data; the target is < 100 ms per op.
func BenchmarkSummarizeSharded(b *testing.B) {
	dir, _, _ := makeShardedCheckpoint(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Summarize(dir, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
