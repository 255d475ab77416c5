package inspect

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// Hashes are provenance hashes of one safetensors file, always recomputed
// (stored values are never trusted: the corpus has a kohya hash of empty input).
type Hashes struct {
	// SHA256 is the sha256 of the whole file.
	SHA256 string `json:"sha256"`
	// DataSHA256 is the sha256 of the data section (the bytes after the
	// 8-byte length prefix and the N-byte header). It equals kohya's
	// sshs_model_hash ("addnet hash"), which hashes exactly these bytes.
	DataSHA256 string `json:"data_sha256"`
	// KohyaModelHash is sshs_model_hash as kohya sd-scripts computes it.
	KohyaModelHash string `json:"sshs_model_hash"`
	// KohyaLegacyHash is sshs_legacy_hash: the first 8 hex digits of the
	// sha256 of the 64 KiB at file offset 1 MiB (fewer bytes, possibly none,
	// when the file is shorter).
	KohyaLegacyHash string `json:"sshs_legacy_hash"`
	// StoredModelHash and StoredLegacyHash are the values found in
	// __metadata__, if any, for comparison.
	StoredModelHash  string `json:"stored_sshs_model_hash,omitempty"`
	StoredLegacyHash string `json:"stored_sshs_legacy_hash,omitempty"`
}

const (
	legacyOffset = 1 << 20
	legacyLen    = 64 << 10
)

// HashFile computes the hashes of a safetensors file in one streaming pass.
// The header itself is not parsed. When the 8-byte length prefix is missing
// or points past the end of the file, only SHA256 (of the whole file) is
// filled and the error says why. metadata (may be nil) supplies the stored
// values.
func HashFile(path string, metadata map[string]string) (*Hashes, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	var prefix [8]byte
	var bad error
	if _, err := io.ReadFull(f, prefix[:]); err != nil {
		bad = asInput(fmt.Errorf("inspect: %s: cannot read the 8-byte header length: file is %d bytes", path, size))
	} else if n := binary.LittleEndian.Uint64(prefix[:]); n > uint64(size-8) {
		bad = asInput(fmt.Errorf("inspect: %s: header length %d exceeds the file size %d (not a plain safetensors file?)", path, n, size))
	}
	if bad != nil {
		// still give the whole-file hash (e.g. of a packed .atz container)
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		whole := sha256.New()
		if _, err := io.Copy(whole, f); err != nil {
			return nil, fmt.Errorf("inspect: %s: %w", path, err)
		}
		return &Hashes{SHA256: hex.EncodeToString(whole.Sum(nil))}, bad
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	whole, data, legacy := sha256.New(), sha256.New(), sha256.New()
	whole.Write(prefix[:])
	if _, err := io.CopyN(whole, f, int64(n)); err != nil {
		return nil, fmt.Errorf("inspect: %s: %w", path, err)
	}
	pos := 8 + int64(n)
	buf := make([]byte, 1<<20)
	for {
		k, rerr := f.Read(buf)
		if k > 0 {
			chunk := buf[:k]
			whole.Write(chunk)
			data.Write(chunk)
			// overlap of [pos, pos+k) with [1 MiB, 1 MiB + 64 KiB)
			lo, hi := max(pos, legacyOffset), min(pos+int64(k), legacyOffset+legacyLen)
			if lo < hi {
				legacy.Write(chunk[lo-pos : hi-pos])
			}
			pos += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("inspect: %s: %w", path, rerr)
		}
	}
	if 8+int64(n) > legacyOffset {
		// the legacy window starts inside the header: hash it from the file
		if _, err := f.Seek(legacyOffset, io.SeekStart); err != nil {
			return nil, err
		}
		legacy.Reset()
		if _, err := io.CopyN(legacy, f, legacyLen); err != nil && err != io.EOF {
			return nil, fmt.Errorf("inspect: %s: %w", path, err)
		}
	}
	h := &Hashes{
		SHA256:          hex.EncodeToString(whole.Sum(nil)),
		DataSHA256:      hex.EncodeToString(data.Sum(nil)),
		KohyaLegacyHash: hex.EncodeToString(legacy.Sum(nil))[:8],
	}
	h.KohyaModelHash = h.DataSHA256
	if metadata != nil {
		h.StoredModelHash = metadata["sshs_model_hash"]
		h.StoredLegacyHash = metadata["sshs_legacy_hash"]
	}
	return h, nil
}

// Mismatches returns a warning for each stored kohya hash that differs from
// the recomputed one.
func (h *Hashes) Mismatches() []string {
	var w []string
	if h.StoredModelHash != "" && h.StoredModelHash != h.KohyaModelHash {
		w = append(w, fmt.Sprintf("stored sshs_model_hash %s does not match the recomputed %s", h.StoredModelHash, h.KohyaModelHash))
	}
	if h.StoredLegacyHash != "" && h.StoredLegacyHash != h.KohyaLegacyHash {
		w = append(w, fmt.Sprintf("stored sshs_legacy_hash %s does not match the recomputed %s", h.StoredLegacyHash, h.KohyaLegacyHash))
	}
	return w
}
