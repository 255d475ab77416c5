package inspect

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/convert"
	"github.com/adaptool/adaptool/format/gguf"
)

// loadAdapter opens path with adapter.Load; a GGUF LoRA adapter (llama.cpp)
// is first converted to a PEFT directory in a temporary directory with
// convert.GGUFToPEFT (exact: tensors widened to float32 as stored, llama.cpp
// q/k row permutation undone, scale alpha/r, Hugging Face module names), so
// that diff and check treat it like any other adapter. baseConfig (a
// config.json, "" for none) gives the head counts the permutation needs.
// The returned close removes the temporary directory.
func loadAdapter(path, baseConfig string) (*adapter.Adapter, func(), error) {
	if !isGGUF(path) {
		a, err := adapter.Load(path)
		if err != nil {
			return nil, nil, err
		}
		return a, func() { a.Close() }, nil
	}
	var base *convert.Base
	if baseConfig != "" {
		b, err := convert.LoadBase(baseConfig)
		if err != nil {
			return nil, nil, err
		}
		base = b
	}
	dir, err := os.MkdirTemp("", "adaptool-gguf-*")
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok { // an error return, or a panic (a fault on a mapped input) unwinding
			os.RemoveAll(dir)
		}
	}()
	if _, err := convert.GGUFToPEFT(path, dir, convert.Options{Base: base}, ""); err != nil {
		return nil, nil, err
	}
	a, err := adapter.Load(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("inspect: %s: the PEFT form of the GGUF adapter does not load: %w", path, err)
	}
	ok = true
	a.Warnings = append(a.Warnings, fmt.Sprintf("%s: GGUF adapter read through its PEFT conversion (Hugging Face module names)", path))
	return a, func() { a.Close(); os.RemoveAll(dir) }, nil
}

// isGGUF tells whether path is a GGUF file (by magic, or by extension when
// it cannot be read, so that the GGUF reader reports the error).
func isGGUF(path string) bool {
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return false
	}
	return gguf.IsGGUF(path) || strings.EqualFold(filepath.Ext(path), ".gguf")
}
