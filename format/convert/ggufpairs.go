package convert

import (
	"fmt"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
)

// GGUFPair is one LoRA module in llama.cpp's frame, as ToGGUF would write
// it, without the file: the target base tensor and factors whose product is
// the change of that tensor.
type GGUFPair struct {
	Module string       // source module name
	Kind   adapter.Kind // lora, lora_embedding, adalora or kasa
	Tensor string       // llama.cpp base tensor, "<name>.weight"
	// A is r×In, B is Out×r (row-major, torch order), with B's rows permuted
	// (Llama q/k) or reordered (fused QKV) and AdaLoRA E / KaSA diag folded
	// into its columns. The module's Scale is not applied.
	A, B          []float32
	Rank, In, Out int
	Scale         float64 // ΔW = Scale·B·A
	// Embedding is set for token_embd: the base tensor is stored (In, Out)
	// in torch order (ne [Out, In]), i.e. it receives (B·A)ᵀ.
	Embedding bool
}

// GGUFPairs maps the LoRA modules of a to llama.cpp tensor names with the
// rules of ToGGUF (o.Arch, o.Base for head counts and tied embeddings;
// OutType and DryRun are ignored). Modules that have no llama.cpp tensor
// are returned in refused, one "module (reason)" each, rather than as an
// error, next to the pairs of the others; other problems (other module kinds, missing head counts, lm_head
// on tied embeddings) are errors.
func GGUFPairs(a *adapter.Adapter, o GGUFOptions) (pairs []GGUFPair, refused []string, warnings []string, err error) {
	arch, ok := ggufArches[strings.ToLower(strings.ReplaceAll(o.Arch, "_", ""))]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: architecture %q is not one of %s", ErrOptions, o.Arch, strings.Join(GGUFArchitectures(), ", "))
	}
	res := &Result{}
	gms, bad, err := ggufModules(a, o, arch, res, true)
	if err != nil {
		return nil, bad, res.Warnings, err
	}
	for _, g := range gms {
		pairs = append(pairs, GGUFPair{
			Module: g.m.src.Name, Kind: g.m.src.Kind, Tensor: g.base + ".weight",
			A: g.a, B: g.b, Rank: g.r, In: g.in, Out: g.out, Scale: g.scale, Embedding: g.op == "embd",
		})
	}
	return pairs, bad, res.Warnings, nil
}

// NewBaseConfig returns a Base holding the given config.json fields (for
// callers that know head counts or tie_word_embeddings from elsewhere, e.g.
// a GGUF base model's metadata).
func NewBaseConfig(path string, config map[string]any) *Base {
	return &Base{Path: path, Config: config}
}
