package testcorpus

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadManifest(t *testing.T) {
	name := filepath.Join(t.TempDir(), "MANIFEST.tsv")
	text := "dir\tfile\tsource\tsha256\tbytes\tkind\tpeft_type\trank\ttensors\tdtypes\texpect\tnotes\n" +
		"a\tx.safetensors\trepo@c:x\tabc\t12\tpeft-lora\tLORA\t8\t3\tF32:2,F16:1\tok\tnote\n" +
		"b\ty.safetensors\trepo@c:y\tdef\t2\tcorrupt-stub\t-\t-\t-\t-\terror:HeaderTooSmall\t\n"
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := ReadManifest(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	a, b := rows[0], rows[1]
	if a.Dir != "a" || a.PeftType != "LORA" || a.Rank != 8 || a.Tensors != 3 || a.DTypes["F32"] != 2 || a.DTypes["F16"] != 1 || !a.OK() || a.Bytes != 12 || a.Notes != "note" {
		t.Errorf("row a = %+v", a)
	}
	if b.PeftType != "" || b.Rank != 0 || b.Tensors != 0 || len(b.DTypes) != 0 || b.OK() || b.WantError() != "HeaderTooSmall" {
		t.Errorf("row b = %+v", b)
	}
	if a.Path("/c") != "/c/a/x.safetensors" {
		t.Errorf("Path = %s", a.Path("/c"))
	}
}

func TestReadManifestRejectsBadRows(t *testing.T) {
	for _, text := range []string{
		"header\nonly\tthree\tcolumns\n",
		"header\na\tx\ts\th\tNaN\tk\tLORA\t8\t3\tF32:3\tok\n",
		"header\na\tx\ts\th\t1\tk\tLORA\t8\t3\tF32\tok\n",
		"header\n",
	} {
		name := filepath.Join(t.TempDir(), "MANIFEST.tsv")
		os.WriteFile(name, []byte(text), 0o644)
		if _, err := ReadManifest(name); err == nil {
			t.Errorf("no error for %q", text)
		}
	}
}

// The real manifest, when present, has the 30 rows the project was given.
func TestRealManifest(t *testing.T) {
	root, rows := Manifest(t)
	if len(rows) != 30 {
		t.Fatalf("%d rows, want 30", len(rows))
	}
	for _, r := range rows {
		if _, err := os.Stat(r.Path(root)); err != nil {
			t.Errorf("%s: %v", r.Dir, err)
		}
	}
}
