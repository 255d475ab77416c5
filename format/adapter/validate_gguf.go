package adapter

import (
	"bytes"
	"fmt"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
)

// Validation rules of GGUF adapters.
const (
	// RuleGGUFAdapter: what llama.cpp's adapter loader would reject
	// (general.type not "adapter", unpaired .lora_a/.lora_b, rank
	// mismatch, tensors that are neither LoRA factors nor norm vectors).
	RuleGGUFAdapter = "gguf-adapter"
)

// validateGGUF checks a GGUF file: the format (errors from format/gguf are
// returned, as for safetensors), the adapter rules of llama.cpp's loader as
// findings, and NaN/Inf in every float tensor.
func validateGGUF(path string) (*Report, error) {
	s, err := gguf.Summarize(path)
	if err != nil {
		return nil, err
	}
	rep := &Report{Path: path, File: path, Dialect: DialectGGUF, Tensors: s.TensorCount, Modules: s.LoraPairs}
	if s.AdapterType != "" {
		rep.PeftType = "LORA"
	}
	if s.Type != "adapter" {
		rep.add(Finding{Severity: SeverityError, File: path, Rule: RuleGGUFAdapter,
			Message: "general.type is " + quoteOr(s.Type, "missing") + ", not \"adapter\": this GGUF file is not a LoRA adapter"})
	}
	for _, p := range s.Problems {
		rep.add(Finding{Severity: SeverityError, File: path, Rule: RuleGGUFAdapter, Message: p})
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, t := range f.Tensors {
		v, err := f.Float32(t.Name)
		if err != nil {
			// A type adaptool cannot decode is not an adapter defect; say so.
			rep.add(Finding{Severity: SeverityInfo, File: path, Tensor: t.Name, Rule: RuleDType,
				Message: "data not checked for NaN/Inf: " + err.Error()})
			continue
		}
		st, err := scanFloats(bytes.NewReader(safetensors.Float32Bytes(v)), safetensors.F32, nil)
		if err != nil {
			return nil, err
		}
		if st.nan+st.inf > 0 {
			rep.add(Finding{Severity: SeverityError, File: path, Tensor: t.Name, Rule: RuleNonFinite,
				Message: fmt.Sprintf("%d NaN and %d ±Inf values (first at element %d)", st.nan, st.inf, st.first)})
		}
	}
	return rep, nil
}

func quoteOr(s, empty string) string {
	if s == "" {
		return empty
	}
	return "\"" + s + "\""
}
