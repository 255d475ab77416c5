package atz

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestVerify(t *testing.T) {
	src := buildST(allDTypes(200000), 8)
	packed := pack(t, src, PackOptions{})
	rd, err := NewReader(bytes.NewReader(packed), int64(len(packed)))
	if err != nil {
		t.Fatal(err)
	}
	hl := int64(len(rd.Header()))
	mid := rd.dir.chunks[len(rd.dir.chunks)/2]
	flip := func(off int64) []byte {
		b := bytes.Clone(src)
		b[off] ^= 1
		return b
	}
	cases := []struct {
		name   string
		orig   []byte
		ok     bool
		tensor bool // the error names a tensor
	}{
		{"same", src, true, false},
		{"tensor byte", flip(mid.origOff + int64(mid.origLen) - 1), false, true},
		{"header byte", flip(hl / 2), false, false},
		{"last byte", flip(int64(len(src)) - 1), false, true},
		{"shorter", src[:len(src)-1], false, false},
		{"longer", append(bytes.Clone(src), 0), false, false},
	}
	for _, c := range cases {
		for _, asMem := range []bool{false, true} {
			var err error
			if asMem {
				err = Verify(bytes.NewReader(packed), int64(len(packed)), byteSource(c.orig), int64(len(c.orig)))
			} else {
				err = Verify(bytes.NewReader(packed), int64(len(packed)), bytes.NewReader(c.orig), int64(len(c.orig)))
			}
			if c.ok {
				if err != nil {
					t.Fatalf("%s (mem %v): %v", c.name, asMem, err)
				}
				continue
			}
			var ae *Error
			if !errors.Is(err, ErrChecksum) || !errors.As(err, &ae) {
				t.Fatalf("%s (mem %v): got %v, want an *Error wrapping ErrChecksum", c.name, asMem, err)
			}
			if c.tensor && ae.Tensor == "" {
				t.Fatalf("%s: error does not name the tensor: %v", c.name, err)
			}
		}
	}
	// A corrupt container is reported as such (not as a source mismatch).
	bad := bytes.Clone(packed)
	bad[mid.storedOff+1] ^= 0x10
	if err := Verify(bytes.NewReader(bad), int64(len(bad)), bytes.NewReader(src), int64(len(src))); !errors.Is(err, ErrChecksum) {
		t.Fatalf("corrupt container: %v", err)
	}
	// Files, through the mapped path.
	dir := t.TempDir()
	in, out := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "a.atz")
	if err := os.WriteFile(in, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, packed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(out, in); err != nil {
		t.Fatalf("VerifyFile: %v", err)
	}
	if err := os.WriteFile(in, cases[1].orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(out, in); !errors.Is(err, ErrChecksum) {
		t.Fatalf("VerifyFile on a changed original: %v", err)
	}
}

// TestVerifyDelta verifies a delta container: it needs the base.
func TestVerifyDelta(t *testing.T) {
	n := 100000
	base := buildST([]stTensor{{"w", "BF16", []int{n}, normalBF16(n, 0.02, 30)}}, 8)
	tuned := bytes.Clone(base)
	for i := len(tuned) - 2*n; i < len(tuned); i += 97 {
		tuned[i] ^= 3
	}
	packed := pack(t, tuned, PackOptions{Base: bytes.NewReader(base), BaseSize: int64(len(base))})
	if err := Verify(bytes.NewReader(packed), int64(len(packed)), bytes.NewReader(tuned), int64(len(tuned)), WithBase(bytes.NewReader(base), int64(len(base)))); err != nil {
		t.Fatalf("with the base: %v", err)
	}
	if err := Verify(bytes.NewReader(packed), int64(len(packed)), bytes.NewReader(tuned), int64(len(tuned))); !errors.Is(err, ErrBase) {
		t.Fatalf("without the base: %v, want ErrBase", err)
	}
}
