package inspect

import (
	"iter"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
)

// Classes of how an adapter changes the model (adapter-formats.md §12).
const (
	ClassLowRank     = "additive-low-rank"        // ΔW = s·B·A (LoRA and dialects)
	ClassSVDForm     = "svd-form"                 // ΔW = s·B·diag(d)·A (KaSA lora_diag, AdaLoRA lora_E)
	ClassRescaled    = "rescaled-addition"        // DoRA: magnitude·(W+ΔW)/‖W+ΔW‖
	ClassRescaling   = "rescaling"                // IA3: W ⊙ l
	ClassLyCORIS     = "lycoris"                  // LoHa (Hadamard) / LoKr (Kronecker) additive deltas
	ClassVeRA        = "vera"                     // shared random projections scaled by λ vectors
	ClassPrompt      = "prompt-prefix"            // virtual tokens / prefixes; no weight delta
	ClassReplacement = "whole-module-replacement" // full tensors (modules_to_save, biases, trainable tokens)
	ClassFullDelta   = "additive-full"            // full-size deltas added to the base (.diff, .diff_b, .w_norm, .b_norm)
	ClassOther       = "other-method"             // a PEFT method recognised but not computed (OFT, BOFT, FourierFT, HRA, VB-LoRA, LN tuning, …)
	ClassUnknown     = "unknown"                  // tensors of no known adapter layout
)

// Class is one way the adapter changes the model, with the method that
// revealed it and how many tensors belong to it.
type Class struct {
	Class   string `json:"class"`
	Method  string `json:"method"`
	Tensors int    `json:"tensors"`
}

// classifyTensor returns the class and method of one tensor name from its
// key alone (no shapes, no config).
func classifyTensor(name string) (class, method string) {
	// the last three dot-separated segments, as strings.Split would give them
	var seg [3]string
	n := 0
	for end := len(name); n < 3; n++ {
		i := strings.LastIndexByte(name[:end], '.')
		seg[n] = name[i+1 : end]
		if i < 0 {
			n++
			break
		}
		end = i
	}
	last, prev := seg[0], seg[1] // prev is "" for a one-segment name
	switch {
	case last == "lora_diag":
		return ClassSVDForm, "kasa"
	case last == "lora_E":
		return ClassSVDForm, "adalora"
	case strings.HasPrefix(last, "lora_magnitude_vector") || prev == "lora_magnitude_vector" || last == "dora_scale":
		return ClassRescaled, "dora"
	case last == "ia3_l":
		return ClassRescaling, "ia3"
	case strings.HasPrefix(last, "hada_"):
		return ClassLyCORIS, "loha"
	case strings.HasPrefix(last, "lokr_"):
		return ClassLyCORIS, "lokr"
	case strings.HasPrefix(last, "vera_"):
		return ClassVeRA, "vera"
	case last == "prompt_embeddings" || strings.HasPrefix(last, "prefix_task_"):
		return ClassPrompt, "prompt"
	case last == "trainable_tokens_delta":
		return ClassReplacement, "trainable-tokens"
	case n > 1 && (last == "diff" || last == "diff_b" || last == "w_norm" || last == "b_norm"):
		return ClassFullDelta, "diff"
	}
	for _, k := range []string{"lora_A", "lora_B", "lora_down", "lora_up", "lora_a", "lora_b", "lora_embedding_A", "lora_embedding_B"} {
		if last == k || prev == k || (k == "lora_A" || k == "lora_B") && (last == "weight" || last == "bias") && n > 2 && seg[2] == k {
			if hasSegment(name, "modules_to_save") || hasSegment(name, "original_module") {
				return ClassLowRank, "lora-on-wrapper"
			}
			return ClassLowRank, "lora"
		}
	}
	if (prev == "down" || prev == "up") && n > 2 && (strings.HasSuffix(seg[2], "_lora") || seg[2] == "lora") {
		return ClassLowRank, "lora"
	}
	for _, sg := range seg[:n] {
		if k := adapter.OtherMethod(sg); k != "" {
			return ClassOther, string(k)
		}
	}
	if last == "alpha" && n > 1 {
		return "", "" // kohya alpha scalar: belongs to its module
	}
	if strings.HasPrefix(last, "w_a_") || strings.HasPrefix(last, "w_b_") {
		return ClassUnknown, "custom"
	}
	if last == "weight" || last == "bias" || strings.HasSuffix(name, "base_layer.weight") {
		return ClassReplacement, "full"
	}
	return ClassUnknown, "unknown"
}

// hasSegment reports whether one of the dot-separated segments of name is s.
func hasSegment(name, s string) bool {
	if !strings.Contains(name, s) {
		return false
	}
	for {
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return name == s
		}
		if name[:i] == s {
			return true
		}
		name = name[i+1:]
	}
}

// classify tallies the classes of a tensor list, in a fixed order.
func classify(names []string) []Class { return classifySeq(slices.Values(names)) }

// classifyTensors is classify of the tensors' names.
func classifyTensors(ts []TensorSummary) []Class {
	return classifySeq(func(yield func(string) bool) {
		for i := range ts {
			if !yield(ts[i].Name) {
				return
			}
		}
	})
}

func classifySeq(names iter.Seq[string]) []Class {
	type key struct{ c, m string }
	counts := map[key]int{}
	for n := range names {
		c, m := classifyTensor(n)
		if c == "" {
			continue
		}
		counts[key{c, m}]++
	}
	out := make([]Class, 0, len(counts))
	for k, n := range counts {
		out = append(out, Class{Class: k.c, Method: k.m, Tensors: n})
	}
	order := map[string]int{ClassLowRank: 0, ClassSVDForm: 1, ClassRescaled: 2, ClassRescaling: 3, ClassLyCORIS: 4, ClassVeRA: 5, ClassPrompt: 6, ClassFullDelta: 7, ClassReplacement: 8, ClassOther: 9, ClassUnknown: 10}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Class != out[j].Class {
			return order[out[i].Class] < order[out[j].Class]
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// LayerOf returns the layer index of a module path: the first purely
// numeric dotted segment (model.layers.12.mlp.up_proj → 12,
// encoder.block.3.layer.0.SelfAttention.q → 3), or -1 when there is none.
// kohya names (lora_unet_down_blocks_1_…, no dots) are split on underscores.
func LayerOf(module string) int {
	sep := separator(module)
	for rest := module; ; {
		seg, tail, more := strings.Cut(rest, sep)
		if n, ok := atoi(seg); ok && n >= 0 {
			return n
		}
		if !more {
			return -1
		}
		rest = tail
	}
}

// ModuleType returns the last non-numeric segment of a module path
// (q_proj, c_attn, to_q; "to_out" for to_out.0).
func ModuleType(module string) string {
	if kohyaLike(module) {
		// lora_unet_..._0_attn1_to_q → attn1_to_q (the part after the last number)
		end := len(module)
		for {
			i := strings.LastIndexByte(module[:end], '_')
			if _, ok := atoi(module[i+1 : end]); ok {
				if end < len(module) {
					return module[end+1:]
				}
				break
			}
			if i < 0 {
				break
			}
			end = i
		}
		return module
	}
	for end := len(module); ; {
		i := strings.LastIndexByte(module[:end], '.')
		if seg := module[i+1 : end]; seg != "" {
			if _, ok := atoi(seg); !ok {
				return seg
			}
		}
		if i < 0 {
			return module
		}
		end = i
	}
}

// kohyaLike reports a kohya-style name: no dots, underscore-separated,
// starting with lora_.
func kohyaLike(module string) bool {
	return !strings.Contains(module, ".") && strings.HasPrefix(module, "lora_")
}

// separator is the segment separator of a module path: "." ("_" for
// kohya names).
func separator(module string) string {
	if kohyaLike(module) {
		return "_"
	}
	return "."
}

// atoi is strconv.Atoi for the strings it accepts ([+-]digits within int
// range), without building an error for the many it rejects.
func atoi(s string) (int, bool) {
	d := s
	if len(d) > 0 && (d[0] == '+' || d[0] == '-') {
		d = d[1:]
	}
	if d == "" {
		return 0, false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s) // fails only on overflow here
	return n, err == nil
}

// BlockOf returns the path of the block a module belongs to: everything up
// to and including the first numeric segment ("model.layers.12",
// "encoder.block.3", "down_blocks.1"), or "" when the path has none. Unlike
// LayerOf it keeps encoder/decoder and down/up blocks apart.
func BlockOf(module string) string {
	sep := separator(module)
	for start := 0; ; {
		seg, _, more := strings.Cut(module[start:], sep)
		if _, ok := atoi(seg); ok {
			return module[:start+len(seg)]
		}
		if !more {
			return ""
		}
		start += len(seg) + len(sep)
	}
}

// blockKey orders block paths: by the text before the number, then by the
// number ("model.layers.2" before "model.layers.10").
func blockLess(a, b string) bool {
	pa, na := splitBlock(a)
	pb, nb := splitBlock(b)
	if pa != pb {
		return pa < pb
	}
	return na < nb
}

func splitBlock(b string) (string, int) {
	i := strings.LastIndexAny(b, "._")
	if i < 0 {
		n, _ := strconv.Atoi(b)
		return "", n
	}
	n, _ := strconv.Atoi(b[i+1:])
	return b[:i], n
}
