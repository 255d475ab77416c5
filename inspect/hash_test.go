package inspect

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func TestHashFile(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	for _, c := range []struct {
		name      string
		headerLen int
		dataLen   int
	}{
		{"small (legacy window empty)", 16, 100},
		{"straddles 1 MiB", 64, legacyOffset + 1000},
		{"large", 40, 3 << 20},
		{"header over 1 MiB", legacyOffset + 8, 100 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := make([]byte, 8+c.headerLen+c.dataLen)
			binary.LittleEndian.PutUint64(b, uint64(c.headerLen))
			for i := 8; i < len(b); i++ {
				b[i] = byte(rng.Uint32())
			}
			p := filepath.Join(dir, "f.safetensors")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			h, err := HashFile(p, map[string]string{"sshs_model_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
			if err != nil {
				t.Fatal(err)
			}
			sum := func(x []byte) string { s := sha256.Sum256(x); return hex.EncodeToString(s[:]) }
			if h.SHA256 != sum(b) {
				t.Error("file hash")
			}
			if h.DataSHA256 != sum(b[8+c.headerLen:]) || h.KohyaModelHash != h.DataSHA256 {
				t.Error("data hash")
			}
			lo, hi := min(len(b), legacyOffset), min(len(b), legacyOffset+legacyLen)
			if want := sum(b[lo:hi])[:8]; h.KohyaLegacyHash != want {
				t.Errorf("legacy %s, want %s", h.KohyaLegacyHash, want)
			}
			if len(h.Mismatches()) != 1 {
				t.Errorf("mismatches %v", h.Mismatches())
			}
		})
	}
	// unreadable prefixes
	for _, b := range [][]byte{{0x0d, 0x0a}, {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1}} {
		p := filepath.Join(dir, "bad.safetensors")
		os.WriteFile(p, b, 0o644)
		h, err := HashFile(p, nil)
		if err == nil {
			t.Errorf("%x accepted", b)
		}
		if sum := sha256.Sum256(b); h == nil || h.SHA256 != hex.EncodeToString(sum[:]) || h.DataSHA256 != "" {
			t.Errorf("%x: whole-file hash missing: %+v", b, h)
		}
	}
}
