package inspect

import (
	"fmt"

	"github.com/adaptool/adaptool/format/gguf"
)

// summarizeGGUF fills a summary from a GGUF file's header through
// gguf.Summarize (tensor data is not read).
func summarizeGGUF(s *Summary, path string, opts Options) (*Summary, error) {
	s.Container = "gguf"
	g, err := gguf.Summarize(path)
	if err != nil {
		s.err = err
		s.Error = err.Error()
		return s, err
	}
	s.Files = []FileInfo{{Path: path, DataBytes: g.DataBytes, Tensors: g.TensorCount}}
	s.Metadata = g.Metadata
	s.Architecture = g.Architecture
	s.Format = "gguf"
	if g.Type == "adapter" {
		s.Format = "gguf-" + g.AdapterType
		if g.AdapterType == "lora" {
			s.PeftType = "LORA"
		}
	}
	names := make([]string, 0, len(g.Tensors))
	for _, t := range g.Tensors {
		shape := make([]int, len(t.Dims))
		for i, d := range t.Dims { // ggml ne order → row-major shape
			shape[len(t.Dims)-1-i] = int(d)
		}
		s.Tensors = append(s.Tensors, TensorSummary{Name: t.Name, DType: t.Type, Shape: shape, Bytes: t.Bytes})
		names = append(names, t.Name)
	}
	for _, p := range g.Problems {
		s.Warnings = append(s.Warnings, "gguf: "+p)
	}
	s.fillTotals()
	s.Classification = classify(names)
	if opts.Stats {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s: --stats is not computed for GGUF files (header summary only)", path))
	}
	s.fillLayers()
	return s, nil
}
