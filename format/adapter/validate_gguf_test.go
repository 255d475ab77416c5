package adapter

import (
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
)

// writeGGUF writes a GGUF file with the given general.type and F32 tensors
// (ggml dims; data filled with fill(i)).
func writeGGUF(t *testing.T, generalType string, tensors map[string][]uint64, fill func(name string, i int) float32) string {
	t.Helper()
	kv := []gguf.KV{{Key: "general.architecture", Value: gguf.String("llama")}}
	if generalType != "" {
		kv = append(kv, gguf.KV{Key: "general.type", Value: gguf.String(generalType)})
	}
	if generalType == "adapter" {
		kv = append(kv, gguf.KV{Key: "adapter.type", Value: gguf.String("lora")},
			gguf.KV{Key: "adapter.lora.alpha", Value: gguf.Float32(16)})
	}
	var ts []gguf.Tensor
	for _, name := range slices.Sorted(maps.Keys(tensors)) {
		dims := tensors[name]
		n := 1
		for _, d := range dims {
			n *= int(d)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = fill(name, i)
		}
		ts = append(ts, gguf.Tensor{Name: name, Type: gguf.F32, Dims: dims, Data: append([]byte(nil), safetensors.Float32Bytes(v)...)})
	}
	path := filepath.Join(t.TempDir(), "adapter.gguf")
	if err := gguf.WriteFile(path, kv, ts); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateGGUF(t *testing.T) {
	pair := map[string][]uint64{
		"blk.0.attn_q.weight.lora_a": {16, 4}, // ne = [n_in, r]
		"blk.0.attn_q.weight.lora_b": {4, 16}, // ne = [r, n_out]
	}
	finite := func(string, int) float32 { return 0.01 }
	tests := []struct {
		name      string
		path      func(t *testing.T) string
		wantRules []string // rules of error findings, in any order; nil = clean
		wantErr   bool
	}{
		{"clean adapter", func(t *testing.T) string { return writeGGUF(t, "adapter", pair, finite) }, nil, false},
		{"NaN in lora_b", func(t *testing.T) string {
			return writeGGUF(t, "adapter", pair, func(name string, i int) float32 {
				if strings.HasSuffix(name, "lora_b") && i == 5 {
					return float32(math.NaN())
				}
				return 0.01
			})
		}, []string{RuleNonFinite}, false},
		{"unpaired lora_a", func(t *testing.T) string {
			return writeGGUF(t, "adapter", map[string][]uint64{"blk.0.attn_q.weight.lora_a": {16, 4}}, finite)
		}, []string{RuleGGUFAdapter}, false},
		{"not an adapter", func(t *testing.T) string {
			return writeGGUF(t, "model", map[string][]uint64{"blk.0.attn_q.weight": {16, 16}}, finite)
		}, []string{RuleGGUFAdapter}, false},
		{"truncated", func(t *testing.T) string {
			p := writeGGUF(t, "adapter", pair, finite)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:40], 0o644)
			return p
		}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.path(t)
			rep, err := Validate(p)
			if tt.wantErr {
				if err == nil || !gguf.IsFormatError(err) {
					t.Fatalf("err = %v, want a gguf format error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Dialect != DialectGGUF {
				t.Errorf("dialect %q", rep.Dialect)
			}
			got := map[string]bool{}
			for _, f := range rep.Findings {
				if f.Severity == SeverityError {
					got[f.Rule] = true
					if f.File != p {
						t.Errorf("finding names file %q, want %q", f.File, p)
					}
				}
			}
			if len(tt.wantRules) == 0 && !rep.Clean() {
				t.Fatalf("findings on a clean adapter: %+v", rep.Findings)
			}
			for _, r := range tt.wantRules {
				if !got[r] {
					t.Errorf("no %s finding in %+v", r, rep.Findings)
				}
			}
			if tt.name == "NaN in lora_b" {
				for _, f := range rep.Findings {
					if f.Rule == RuleNonFinite && (f.Tensor != "blk.0.attn_q.weight.lora_b" || !strings.Contains(f.Message, "1 NaN") || !strings.Contains(f.Message, "element 5")) {
						t.Errorf("nonfinite finding %+v", f)
					}
				}
			}
		})
	}
	if _, err := Validate(filepath.Join(t.TempDir(), "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
