package inspect

import (
	"fmt"

	"github.com/adaptool/adaptool/format/gguf"
)

// maxMetaArray is the longest GGUF array value rendered into metadata.
const maxMetaArray = 16

// summarizeGGUF fills a summary from a GGUF file's header (tensor data is
// not read).
func summarizeGGUF(s *Summary, path string, opts Options) (*Summary, error) {
	s.Container = "gguf"
	f, err := gguf.Open(path)
	if err != nil {
		s.err = err
		s.Error = err.Error()
		return s, err
	}
	defer f.Close()
	s.Files = []FileInfo{{Path: path, FileBytes: f.FileSize, DataBytes: f.FileSize - f.DataOffset, HeaderBytes: f.DataOffset, Tensors: len(f.Tensors)}}
	for _, kv := range f.KV {
		v := kv.Value.String()
		if len(v) > 4096 {
			v = v[:4096] + "…"
		}
		s.Metadata[kv.Key] = v
	}
	s.Architecture, _ = f.String("general.architecture")
	s.Format = "gguf"
	if t, _ := f.String("general.type"); t == "adapter" {
		at, _ := f.String("adapter.type")
		s.Format = "gguf-" + at
		s.PeftType = map[string]string{"lora": "LORA"}[at]
	}
	names := make([]string, 0, len(f.Tensors))
	for _, t := range f.Tensors {
		shape := make([]int, len(t.Dims))
		for i, d := range t.Dims { // ggml ne order → row-major shape
			shape[len(t.Dims)-1-i] = int(d)
		}
		var bytes int64
		if t.Type.Known() && t.Type.BlockSize() > 0 {
			bytes = t.NumElements() / t.Type.BlockSize() * t.Type.TypeSize()
		}
		s.Tensors = append(s.Tensors, TensorSummary{Name: t.Name, DType: t.Type.String(), Shape: shape, Bytes: bytes})
		names = append(names, t.Name)
	}
	s.fillTotals()
	s.Classification = classify(names)
	if opts.Stats {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s: --stats is not computed for GGUF files", path))
	}
	s.fillLayers()
	return s, nil
}
