package adapter

import (
	"fmt"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

// tensorRefs returns the file's tensors as classify sees them, or nil when
// they are the header's own (nothing is quantized). Quantized weights
// (quant.Detect, from the header) are recorded in a.Quantized and given
// their logical shape; their auxiliary tensors are left out, so a quantized
// adapter has the modules, ranks and features of the adapter it was
// quantized from.
func (a *Adapter) tensorRefs() ([]TensorRef, error) {
	f := a.File
	// quant.Detect finds a scheme only from a name holding
	// ".quant_state.bitsandbytes__" or a tensor of dtype I8, F8_E4M3 or
	// F8_E5M2, each independently of the other names: handing it just those
	// (in order) gives the same detections without a header lookup per
	// tensor (TestQuantCandidates).
	var names []string
	for _, t := range f.Tensors {
		if quantCandidate(t) {
			names = append(names, t.Name)
		}
	}
	aux := map[string]bool{}
	for _, d := range quant.Detect(f, names) {
		if a.Quantized == nil {
			a.Quantized = map[string]quant.Detected{}
		}
		a.Quantized[d.Name] = d
		for _, k := range d.Keys[1:] {
			aux[k] = true
		}
	}
	if len(aux) == 0 && len(a.Quantized) == 0 {
		return nil, nil // classify f.Tensors themselves
	}
	refs := make([]TensorRef, 0, len(f.Tensors))
	for _, t := range f.Tensors {
		if aux[t.Name] {
			continue
		}
		r := refOf(t)
		if d, ok := a.Quantized[t.Name]; ok {
			shape, err := a.logicalShape(d, r)
			if err != nil {
				return nil, err
			}
			r.Shape = shape
		}
		refs = append(refs, r)
	}
	if n := len(a.Quantized); n > 0 {
		schemes := map[quant.Scheme]bool{}
		var list []string
		for _, d := range a.Quantized {
			if !schemes[d.Scheme] {
				schemes[d.Scheme] = true
				list = append(list, string(d.Scheme))
			}
		}
		a.warn("%s holds %d quantized tensors (%v): shapes and ranks are the logical ones; their values need `adaptool dequantize` first", a.WeightsPath, n, list)
	}
	return refs, nil
}

// logicalShape returns the unquantized shape of quantized weight r: the
// quant_state's shape for packed 4-bit tensors (checked against the packed
// size), else the stored shape (int8 and FP8 keep it).
func (a *Adapter) logicalShape(d quant.Detected, r TensorRef) ([]int, error) {
	if d.Scheme != quant.SchemeNF4 && d.Scheme != quant.SchemeFP4 {
		return r.Shape, nil
	}
	key := d.Keys[len(d.Keys)-1]
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: tensor %q: %w: %s", a.WeightsPath, key, ErrShape, fmt.Sprintf(format, args...))
	}
	qs, err := quant.ReadQuantState(a.File, key)
	if err != nil {
		return nil, bad("%v", err)
	}
	if len(qs.Shape) == 0 || len(qs.Shape) > 6 {
		return nil, bad("quant_state shape %v: want 1 to 6 dims", qs.Shape)
	}
	n := int64(1)
	for _, v := range qs.Shape {
		if v <= 0 || v > 1<<31 {
			return nil, bad("quant_state shape %v has a dimension out of range", qs.Shape)
		}
		n *= int64(v)
		if n > 1<<40 {
			return nil, bad("quant_state shape %v is too large", qs.Shape)
		}
	}
	info, _ := a.File.Tensor(r.Name)
	if packed := info.NumElements(); packed*int64(info.DType.Bits())/8 != (n+1)/2 {
		return nil, bad("quant_state shape %v (%d values) does not fit the %d packed bytes of %s", qs.Shape, n, packed*int64(info.DType.Bits())/8, r.Name)
	}
	return append([]int(nil), qs.Shape...), nil
}

// float32 returns tensor t's values; a quantized tensor is ErrQuantized.
func (a *Adapter) float32(t TensorRef) ([]float32, error) {
	if d, ok := a.Quantized[t.Name]; ok {
		return nil, fmt.Errorf("%s: tensor %q: %w: stored %s (%s layout)", a.WeightsPath, t.Name, ErrQuantized, d.Scheme, d.Layout)
	}
	return a.File.Float32(t.Name)
}

// quantCandidate reports whether quant.Detect can find a scheme starting
// from tensor t.
func quantCandidate(t safetensors.TensorInfo) bool {
	switch t.DType {
	case safetensors.I8, safetensors.F8E4M3, safetensors.F8E5M2:
		return true
	}
	return strings.Contains(t.Name, ".quant_state.bitsandbytes__")
}
