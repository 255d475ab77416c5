package quant

import (
	"fmt"

	"github.com/adaptool/adaptool/format/safetensors"
)

// Index maps the tensors of a file or checkpoint to the quantized weights
// they belong to, for commands (apply, inspect) that treat a quantized base
// tensor by tensor.
type Index struct {
	// Weights maps a weight key ("X.weight") to its detected layout.
	Weights map[string]Detected
	// Owner maps every key of a quantized layout (weight, absmax, SCB,
	// weight_scale, quant_state, ...) to its weight key.
	Owner map[string]string
}

// NewIndex detects the quantized weights among names (see Detect).
func NewIndex(h Header, names []string) *Index {
	ix := &Index{Weights: map[string]Detected{}, Owner: map[string]string{}}
	for _, d := range Detect(h, names) {
		ix.Weights[d.Name] = d
		for _, k := range d.Keys {
			ix.Owner[k] = d.Name
		}
	}
	return ix
}

// FoldResult is the outcome of Fold for one quantized weight.
type FoldResult struct {
	// Tensors replace d.Keys one for one (same names, dtypes and shapes;
	// the bitsandbytes quant_state JSON may change length).
	Tensors []safetensors.Tensor
	Shape   []int             // the weight's logical shape
	DType   safetensors.DType // its original dtype (F32 when unrecorded)
	// Extra is the requantization error: the updated float weight against
	// its round trip through the scheme, i.e. what quantizing again costs
	// on top of the update.
	Extra Stats
}

// Fold is the fold hook for applying an adapter to a quantized base: it
// dequantizes the weight d of src to float32, lets update modify it in place
// (w has len = product of shape, row-major; typically w += s·B·A), then
// requantizes it with the same scheme and parameters (Requantize) and
// measures the extra error. Tensors of src outside d.Keys are not touched,
// so the caller copies them byte-identically.
func Fold(src Source, d Detected, update func(w []float32, shape []int) error) (*FoldResult, error) {
	w, shape, dt, err := Dequantize(src, d)
	if err != nil {
		return nil, err
	}
	if err := update(w, shape); err != nil {
		return nil, fmt.Errorf("%s: %w", d.Name, err)
	}
	ts, err := Requantize(src, d, w)
	if err != nil {
		return nil, err
	}
	m := memSource{}
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		m[t.Name] = t
		names = append(names, t.Name)
	}
	var back []float32
	for _, nd := range Detect(m, names) {
		if nd.Name == d.Name {
			// The round trip of the new tensors, with the original layout's
			// parameters (the quant_state and shapes travel with them).
			back, _, _, err = Dequantize(m, nd)
			if err != nil {
				return nil, err
			}
		}
	}
	if back == nil {
		return nil, fmt.Errorf("%w: %s: requantized tensors not recognized", ErrLayout, d.Name)
	}
	return &FoldResult{Tensors: ts, Shape: shape, DType: dt, Extra: ErrorStats(w, back)}, nil
}
