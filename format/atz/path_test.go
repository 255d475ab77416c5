package atz

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// pathTree writes a small adapter-like tree: two safetensors files (one in
// a subdirectory), a config and an index, and returns relative path → bytes.
func pathTree(t *testing.T, dir string, seed uint64) map[string][]byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	weights := func(n int) []byte {
		b := make([]byte, 4*n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"adapter_model.safetensors":        buildST([]stTensor{{"a.lora_A.weight", "F32", []int{64, 32}, weights(64 * 32)}}, 8),
		"sub/model-1.safetensors":          buildST([]stTensor{{"w", "F32", []int{300}, weights(300)}}, 8),
		"adapter_config.json":              []byte(`{"peft_type":"LORA","r":4}`),
		"sub/model.safetensors.index.json": []byte(`{"weight_map":{"w":"model-1.safetensors"}}`),
	}
	for rel, b := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func treeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// A directory packs to a directory of the same files, safetensors files
// packed and the others copied, and unpacks to the original bytes; the
// report's sizes are the files'.
func TestPackPathDirectoryRoundTrip(t *testing.T) {
	root := t.TempDir()
	in, packed, back := filepath.Join(root, "in"), filepath.Join(root, "packed"), filepath.Join(root, "back")
	files := pathTree(t, in, 1)
	rep, err := PackPath(in, packed, PathOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) != len(files) {
		t.Fatalf("%d files reported, want %d", len(rep.Files), len(files))
	}
	var orig, pk int64
	for _, f := range rep.Files {
		rel, _ := filepath.Rel(in, f.Input)
		want := files[rel]
		st, err := os.Stat(f.Output)
		if err != nil {
			t.Fatal(err)
		}
		isST := filepath.Ext(rel) == ".safetensors"
		if (f.Action == "pack") != isST || f.OriginalBytes != int64(len(want)) || f.PackedBytes != st.Size() {
			t.Errorf("%s: %+v (packed file %d bytes)", rel, f, st.Size())
		}
		if isST {
			sum := sha256.Sum256(want)
			if f.SHA256 != hex.EncodeToString(sum[:]) || !f.SHA256Equal {
				t.Errorf("%s: sha256 %s verified %v", rel, f.SHA256, f.SHA256Equal)
			}
			head := make([]byte, len(Magic))
			fh, _ := os.Open(f.Output)
			fh.Read(head)
			fh.Close()
			if !Detect(head) {
				t.Errorf("%s was not packed", f.Output)
			}
		}
		orig += f.OriginalBytes
		pk += f.PackedBytes
	}
	if rep.OriginalBytes != orig || rep.PackedBytes != pk {
		t.Errorf("totals %d/%d, files sum to %d/%d", rep.OriginalBytes, rep.PackedBytes, orig, pk)
	}
	// Packing an already packed tree packs nothing again.
	again, err := PackPath(packed, filepath.Join(root, "again"), PathOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range again.Files {
		if f.Action != "copy" {
			t.Errorf("re-pack of a packed tree: %s %s", f.Action, f.Input)
		}
	}
	if _, err := UnpackPath(packed, back, PathOptions{}); err != nil {
		t.Fatal(err)
	}
	for rel, want := range files {
		got, err := os.ReadFile(filepath.Join(back, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs after the round trip (%v)", rel, err)
		}
	}
	if got := treeFiles(t, back); len(got) != len(files) {
		t.Errorf("restored tree %v", got)
	}
}

// DryRun writes and creates nothing, reports what the real run does, and
// still fails on a corrupt container.
func TestPathDryRun(t *testing.T) {
	root := t.TempDir()
	in, packed := filepath.Join(root, "in"), filepath.Join(root, "packed")
	pathTree(t, in, 2)
	plan, err := PackPath(in, filepath.Join(root, "never"), PathOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "never")); !os.IsNotExist(err) {
		t.Fatal("dry run created the output directory")
	}
	real, err := PackPath(in, packed, PathOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.DryRun || plan.PackedBytes != real.PackedBytes || plan.OriginalBytes != real.OriginalBytes {
		t.Fatalf("dry run %+v, real %+v", plan, real)
	}
	check, err := UnpackPath(packed, filepath.Join(root, "never2"), PathOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "never2")); !os.IsNotExist(err) || check.OriginalBytes != real.OriginalBytes {
		t.Fatalf("unpack dry run: %+v, %v", check, err)
	}
	// Flip a byte inside the first chunk of a container: the check fails.
	p := filepath.Join(packed, "adapter_model.safetensors")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0x40
	os.WriteFile(p, b, 0o644)
	if _, err := UnpackPath(packed, filepath.Join(root, "never3"), PathOptions{DryRun: true}); err == nil || !IsFormatError(err) {
		t.Fatalf("corrupt container: err = %v", err)
	}
}

// A base directory supplies the base of each file with the same relative
// path; unpacking needs it.
func TestPackPathBase(t *testing.T) {
	root := t.TempDir()
	base, in := filepath.Join(root, "base"), filepath.Join(root, "in")
	pathTree(t, base, 3)
	files := pathTree(t, in, 3) // identical to the base: every tensor XORs to zero
	packed := filepath.Join(root, "packed")
	rep, err := PackPath(in, packed, PathOptions{Base: base, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	delta := 0
	for _, f := range rep.Files {
		delta += f.DeltaChunks
	}
	if delta == 0 {
		t.Fatal("no chunk was coded against the base")
	}
	if _, err := UnpackPath(packed, filepath.Join(root, "nobase"), PathOptions{}); err == nil {
		t.Fatal("unpacking a delta container without its base succeeded")
	}
	back := filepath.Join(root, "back")
	if _, err := UnpackPath(packed, back, PathOptions{Base: base}); err != nil {
		t.Fatal(err)
	}
	for rel, want := range files {
		if got, _ := os.ReadFile(filepath.Join(back, rel)); !bytes.Equal(got, want) {
			t.Errorf("%s differs", rel)
		}
	}
}
