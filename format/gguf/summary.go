package gguf

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// IsGGUF reports whether the file at path starts with the GGUF magic. It
// reads four bytes; errors (missing file, short file) give false.
func IsGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return false
	}
	return bytes.Equal(b[:], []byte("GGUF"))
}

// TensorSummary is one row of a Summary.
type TensorSummary struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Dims  []uint64 `json:"ne"` // ggml order
	Bytes int64    `json:"bytes"`
}

// Summary is what inspect and validate report about a GGUF file.
type Summary struct {
	Path         string            `json:"path"`
	Version      uint32            `json:"version"`
	Type         string            `json:"general_type,omitempty"`         // general.type ("model", "adapter")
	Architecture string            `json:"general_architecture,omitempty"` // general.architecture
	AdapterType  string            `json:"adapter_type,omitempty"`         // adapter.type ("lora")
	LoraAlpha    *float64          `json:"lora_alpha,omitempty"`           // adapter.lora.alpha
	Alignment    uint64            `json:"alignment"`
	KVCount      int               `json:"kv_count"`
	TensorCount  int               `json:"tensor_count"`
	DataBytes    int64             `json:"data_bytes"`
	TypeCounts   map[string]int    `json:"type_counts"`
	Metadata     map[string]string `json:"metadata"` // every KV rendered as text (long arrays elided)
	Tensors      []TensorSummary   `json:"tensors"`
	LoraPairs    int               `json:"lora_pairs,omitempty"`
	Ranks        map[int]int       `json:"ranks,omitempty"` // rank -> number of lora pairs
	// Problems lists rule violations of a LoRA adapter file as llama.cpp's
	// loader checks them (unpaired lora_a/lora_b, rank mismatch, names that
	// are neither .lora_a, .lora_b nor a norm vector, missing KV). Empty for a
	// valid adapter and for non-adapter files.
	Problems []string `json:"problems,omitempty"`
}

// Summarize parses the GGUF file at path (header only; tensor data is not
// read) and returns its summary. Parse errors are returned as errors (they
// wrap the package sentinels); adapter rule violations go to Problems.
func Summarize(path string) (*Summary, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Summary(), nil
}

// Summary summarizes an open file (see Summarize).
func (f *File) Summary() *Summary {
	s := &Summary{
		Path: f.name, Version: f.Version, Alignment: f.Alignment,
		KVCount: len(f.KV), TensorCount: len(f.Tensors),
		TypeCounts: map[string]int{}, Metadata: map[string]string{},
	}
	s.Type, _ = f.String("general.type")
	s.Architecture, _ = f.String("general.architecture")
	s.AdapterType, _ = f.String("adapter.type")
	if v, ok := f.Get("adapter.lora.alpha"); ok {
		if a, ok := v.Float64(); ok {
			s.LoraAlpha = &a
		}
	}
	for _, kv := range f.KV {
		s.Metadata[kv.Key] = kv.Value.String()
	}
	for _, t := range f.Tensors {
		s.Tensors = append(s.Tensors, TensorSummary{Name: t.Name, Type: t.Type.String(), Dims: t.Dims, Bytes: t.Size()})
		s.TypeCounts[t.Type.String()]++
		if end := int64(t.Offset) + t.Size(); end > s.DataBytes {
			s.DataBytes = end
		}
	}
	if s.Type == "adapter" {
		s.checkAdapter(f)
	}
	return s
}

func (s *Summary) checkAdapter(f *File) {
	if s.AdapterType != "lora" {
		s.Problems = append(s.Problems, fmt.Sprintf("adapter.type is %q, llama.cpp loads only \"lora\"", s.AdapterType))
	}
	if s.Architecture == "" {
		s.Problems = append(s.Problems, "general.architecture is missing")
	}
	if v, ok := f.Get("adapter.lora.alpha"); ok && v.Type != TypeFloat32 {
		s.Problems = append(s.Problems, fmt.Sprintf("adapter.lora.alpha is %s, want f32", v.Type))
	}
	s.Ranks = map[int]int{}
	bases := map[string]bool{}
	for _, t := range f.Tensors {
		switch {
		case strings.HasSuffix(t.Name, ".lora_a"):
			bases[strings.TrimSuffix(t.Name, ".lora_a")] = true
		case strings.HasSuffix(t.Name, ".lora_b"):
			bases[strings.TrimSuffix(t.Name, ".lora_b")] = true
		case strings.Contains(t.Name, "_norm") && len(t.Dims) == 1:
			// norm vectors (mergekit-extract-lora) are accepted and ignored by llama.cpp
		default:
			s.Problems = append(s.Problems, fmt.Sprintf("tensor %q is neither .lora_a nor .lora_b", t.Name))
		}
	}
	names := make([]string, 0, len(bases))
	for b := range bases {
		names = append(names, b)
	}
	sort.Strings(names)
	for _, b := range names {
		a, okA := f.Tensor(b + ".lora_a")
		bb, okB := f.Tensor(b + ".lora_b")
		if !okA || !okB {
			s.Problems = append(s.Problems, fmt.Sprintf("%s: lora_a/lora_b pair incomplete", b))
			continue
		}
		if len(a.Dims) != 2 || len(bb.Dims) != 2 {
			s.Problems = append(s.Problems, fmt.Sprintf("%s: lora tensors must be 2-D (ne %v, %v)", b, a.Dims, bb.Dims))
			continue
		}
		s.LoraPairs++
		if strings.HasPrefix(b, "token_embd") {
			// flipped: lora_a ne [r, n_vocab], lora_b ne [r, n_embd]
			if a.Dims[0] != bb.Dims[0] {
				s.Problems = append(s.Problems, fmt.Sprintf("%s: token_embd lora_a ne[0]=%d != lora_b ne[0]=%d", b, a.Dims[0], bb.Dims[0]))
			}
		} else if a.Dims[1] != bb.Dims[0] {
			s.Problems = append(s.Problems, fmt.Sprintf("%s: lora_a ne[1]=%d != lora_b ne[0]=%d (rank)", b, a.Dims[1], bb.Dims[0]))
		}
		s.Ranks[int(bb.Dims[0])]++
	}
}
