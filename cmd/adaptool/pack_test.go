package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/atz"
	"github.com/adaptool/adaptool/internal/testcorpus"
)

// packCorpus returns the shared corpus root, or skips the test when it is absent.
func packCorpus(t *testing.T) string { return testcorpus.Dir(t) }

func TestPackUnpackFile(t *testing.T) {
	src := filepath.Join(packCorpus(t), "opt125m-bf16", "adapter_model.safetensors")
	tmp := t.TempDir()
	packed := filepath.Join(tmp, "a.atz")
	code, out, errOut := runCLI(t, "pack", src, "-o", packed, "--json")
	if code != 0 {
		t.Fatalf("pack exit %d: %s", code, errOut)
	}
	var rep atz.PathReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("pack --json: %v\n%s", err, out)
	}
	orig, _ := os.ReadFile(src)
	sum := sha256.Sum256(orig)
	st, _ := os.Stat(packed)
	if len(rep.Files) != 1 || !rep.Files[0].SHA256Equal || rep.Files[0].OriginalBytes != int64(len(orig)) ||
		rep.Files[0].PackedBytes != st.Size() || rep.Files[0].SHA256 != sprintf("%x", sum) || rep.Ratio < 1.3 {
		t.Fatalf("pack report %+v (packed file %d bytes)", rep, st.Size())
	}
	back := filepath.Join(tmp, "back.safetensors")
	if code, _, errOut := runCLI(t, "unpack", packed, "-o", back); code != 0 {
		t.Fatalf("unpack exit %d: %s", code, errOut)
	}
	got, _ := os.ReadFile(back)
	if sha256.Sum256(got) != sum {
		t.Fatal("unpacked file differs from the original")
	}
	// A corrupt container is invalid input (exit 2), and no output appears.
	b, _ := os.ReadFile(packed)
	b[100] ^= 1
	bad := filepath.Join(tmp, "bad.atz")
	os.WriteFile(bad, b, 0o644)
	if code, _, errOut := runCLI(t, "unpack", bad, "-o", filepath.Join(tmp, "x")); code != exitInput {
		t.Fatalf("corrupt unpack exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(tmp, "x")); err == nil {
		t.Fatal("output written for a corrupt container")
	}
	if code, _, _ := runCLI(t, "pack", src); code != exitUsage {
		t.Fatalf("pack without -o: exit %d", code)
	}
	if code, _, _ := runCLI(t, "pack", src, "-o", packed, "--level", "max"); code != exitUsage {
		t.Fatalf("bad level: exit %d", code)
	}
	if code, _, _ := runCLI(t, "unpack", filepath.Join(tmp, "missing.atz"), "-o", back); code != exitInput {
		t.Fatalf("missing input: exit %d", code)
	}
}

func TestPackUnpackDir(t *testing.T) {
	src := filepath.Join(packCorpus(t), "bert-seqcls")
	tmp := t.TempDir()
	packed, back := filepath.Join(tmp, "packed"), filepath.Join(tmp, "back")
	if code, _, errOut := runCLI(t, "pack", src, "-o", packed); code != 0 {
		t.Fatalf("pack dir exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "unpack", packed, "-o", back); code != 0 {
		t.Fatalf("unpack dir exit %d: %s", code, errOut)
	}
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		a, _ := os.ReadFile(filepath.Join(src, e.Name()))
		p, _ := os.ReadFile(filepath.Join(packed, e.Name()))
		b, err := os.ReadFile(filepath.Join(back, e.Name()))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s: restored file differs: %v", e.Name(), err)
		}
		if filepath.Ext(e.Name()) == ".safetensors" && len(p) >= len(a) {
			t.Errorf("%s: packed %d bytes, original %d", e.Name(), len(p), len(a))
		}
	}
}
