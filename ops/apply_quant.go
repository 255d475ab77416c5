package ops

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

// RequantError is what folding into a quantized base weight costs on top of
// the update itself: the updated float weight W' = W_deq + ΔW (W_deq the
// dequantized base) against its requantization Q(W') with the base's scheme
// and parameters, plus how much of the intended change the quantized result
// still carries.
type RequantError struct {
	Tensor string       `json:"tensor"` // the weight key
	Scheme string       `json:"scheme"` // nf4, fp4, int8, fp8-e4m3, fp8-e5m2
	Layout string       `json:"layout"` // bitsandbytes, bitsandbytes-int8, compressed-tensors, fp8-scale-inv
	Params quant.Params `json:"params"`
	// RMSE and MaxAbs are √(Σ(Q(W')−W')²/n) and max |Q(W')−W'|.
	RMSE   float64 `json:"rmse"`
	MaxAbs float64 `json:"max_abs_error"`
	// SNRdB is 10·log10(‖W'‖²/‖Q(W')−W'‖²); null when the requantization
	// is exact.
	SNRdB *float64 `json:"snr_db"`
	// DeltaFro is ‖ΔW‖_F, the change folded in (in float32, before
	// requantization); RelDelta = ‖Q(W')−W'‖_F/‖ΔW‖_F, the extra error in
	// units of the change (null when ΔW = 0). Above 1 the requantization
	// noise is larger than the adapter's change.
	DeltaFro float64  `json:"delta_fro_norm"`
	RelDelta *float64 `json:"rel_delta_error"`
	// AppliedFro is ‖Q(W')−W_deq‖_F, the change the quantized weight
	// really carries, and Cosine its cosine with ΔW (null when either is
	// zero): how much of the adapter survives requantization.
	AppliedFro float64  `json:"applied_delta_fro_norm"`
	Cosine     *float64 `json:"delta_cosine"`
	// ValuesChanged is the fraction of the weight's elements whose
	// dequantized value changed.
	ValuesChanged float64 `json:"values_changed"`
}

// qjob is one quantized base weight changed by modules: every tensor of its
// layout (weight, absmax, SCB, scales, quant_state, ...) is rewritten from
// one fold; the ops live on the weight key's tensorJob.
type qjob struct {
	d    quant.Detected
	src  quant.Source
	info safetensors.TensorInfo // Name = weight key, Shape = logical shape, DType F32
	w    *tensorJob             // the weight key's job (carries the ops)
	// shapes are output shapes that differ from the base's (the
	// bitsandbytes quant_state JSON, whose length follows the double
	// quantization offset), found by a first fold before writing.
	shapes map[string][]int
	res    *quant.FoldResult
	kept   bool // res is accounted in the foldCache
	left   int  // layout tensors not yet written
	stats  *RequantError
}

// logicalInfo returns the logical description of quantized weight d: its
// original shape (bitsandbytes records it) and dtype F32.
func logicalInfo(src quant.Source, d quant.Detected) (safetensors.TensorInfo, error) {
	_, shape, _, err := quant.Full(src, d)
	if err != nil {
		return safetensors.TensorInfo{}, err
	}
	return safetensors.TensorInfo{Name: d.Name, DType: safetensors.F32, Shape: shape}, nil
}

// fold dequantizes the weight, applies the ops in float32, requantizes and
// measures the cost.
func (q *qjob) fold() (*quant.FoldResult, error) {
	var w0, w1 []float32
	res, err := quant.Fold(q.src, q.d, func(w []float32, shape []int) error {
		if !slices.Equal(shape, q.info.Shape) {
			return fmt.Errorf("%w: dequantized shape %v, planned %v", ErrIncompatible, shape, q.info.Shape)
		}
		w0 = slices.Clone(w)
		before := countNonFinite32(w)
		for _, op := range q.w.ops {
			if err := applyOp32(w, q.info, op); err != nil {
				return err
			}
		}
		if n := countNonFinite32(w); n > before {
			return overflowErr(q.d.Name, safetensors.F32, n-before, q.w.ops)
		}
		w1 = w
		return nil
	})
	if err != nil {
		return nil, err
	}
	back, err := dequantizeTensors(res.Tensors, q.d.Name)
	if err != nil {
		return nil, err
	}
	q.stats = requantStats(q.d, res.Extra, w0, w1, back)
	q.stats.Params, _, _, _ = quant.Full(q.src, q.d)
	return res, nil
}

// requantStats fills a RequantError from the dequantized base w0, the
// updated weight w1 and its requantized round trip back.
func requantStats(d quant.Detected, extra quant.Stats, w0, w1, back []float32) *RequantError {
	r := &RequantError{Tensor: d.Name, Scheme: string(d.Scheme), Layout: d.Layout, RMSE: extra.RMSE, MaxAbs: extra.MaxAbsError}
	if !math.IsInf(extra.SNRdB, 0) && !math.IsNaN(extra.SNRdB) {
		v := extra.SNRdB
		r.SNRdB = &v
	}
	var dd, aa, da, ee float64
	changed := 0
	for i := range w0 {
		dv := float64(w1[i]) - float64(w0[i])
		av := float64(back[i]) - float64(w0[i])
		ev := float64(back[i]) - float64(w1[i])
		dd += dv * dv
		aa += av * av
		da += dv * av
		ee += ev * ev
		if back[i] != w0[i] {
			changed++
		}
	}
	r.DeltaFro, r.AppliedFro = math.Sqrt(dd), math.Sqrt(aa)
	if dd > 0 {
		v := math.Sqrt(ee / dd)
		r.RelDelta = &v
		if aa > 0 {
			c := da / math.Sqrt(dd*aa)
			r.Cosine = &c
		}
	}
	if len(w0) > 0 {
		r.ValuesChanged = float64(changed) / float64(len(w0))
	}
	return r
}

// tensorSource is a quant.Source over in-memory tensors.
type tensorSource map[string]safetensors.Tensor

func (m tensorSource) Tensor(name string) (safetensors.TensorInfo, bool) {
	t, ok := m[name]
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return safetensors.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape, Offsets: [2]int64{0, int64(len(t.Data))}}, true
}

func (m tensorSource) Data(name string) ([]byte, error) {
	t, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", safetensors.ErrTensorNotFound, name)
	}
	return t.Data, nil
}

// dequantizeTensors dequantizes weight name from its layout tensors.
func dequantizeTensors(ts []safetensors.Tensor, name string) ([]float32, error) {
	m := tensorSource{}
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		m[t.Name] = t
		names = append(names, t.Name)
	}
	d, ok := quant.NewIndex(m, names).Weights[name]
	if !ok {
		return nil, fmt.Errorf("%w: requantized tensors of %s not recognized", ErrIncompatible, name)
	}
	v, _, _, err := quant.Dequantize(m, d)
	return v, err
}

// foldCacheBytes bounds the folded layouts kept in memory between the
// writes of their tensors. The canonical writer orders tensors by dtype,
// so a layout's tensors (F32 absmax and scales first, U8/I8/F8 codes
// later) are far apart in a file; beyond the budget a weight is folded
// again for each of its tensors instead of being kept.
var foldCacheBytes int64 = 256 << 20

// foldCache accounts the fold results kept in memory.
type foldCache struct {
	used, limit int64
}

func resultSize(res *quant.FoldResult) int64 {
	var n int64
	for _, t := range res.Tensors {
		n += int64(len(t.Data))
	}
	return n
}

// keep reports whether a result of size bytes fits in the budget, and
// reserves it.
func (c *foldCache) keep(size int64) bool {
	if c.used+size > c.limit {
		return false
	}
	c.used += size
	return true
}

// prepare runs a first fold when an output shape may differ from the base
// (bitsandbytes double quantization: the quant_state JSON holds the new
// absmax offset), since the header is written before any data; the result
// is kept for the write when the cache allows.
func (q *qjob) prepare(c *foldCache) error {
	if q.d.Layout != "bitsandbytes" || !q.d.Params.DoubleQuant {
		return nil
	}
	res, err := q.fold()
	if err != nil {
		return err
	}
	q.shapes = map[string][]int{}
	for _, t := range res.Tensors {
		if bt, ok := q.src.Tensor(t.Name); ok && !slices.Equal(bt.Shape, t.Shape) {
			q.shapes[t.Name] = slices.Clone(t.Shape)
		}
	}
	if c.keep(resultSize(res)) {
		q.res, q.kept = res, true
	}
	return nil
}

// keyTensor returns the streaming tensor of one layout key. The weight is
// folded when a key is written and no result is kept; the result is kept
// until the layout's last key is written when the cache allows, else
// dropped after this key.
func (q *qjob) keyTensor(info safetensors.TensorInfo, c *foldCache, tick func()) safetensors.Tensor {
	shape := slices.Clone(info.Shape)
	if s, ok := q.shapes[info.Name]; ok {
		shape = slices.Clone(s)
	}
	return safetensors.Tensor{Name: info.Name, DType: info.DType, Shape: shape, WriteTo: func(w io.Writer) error {
		if q.res == nil {
			res, err := q.fold()
			if err != nil {
				return err
			}
			q.res = res
			q.kept = q.left > 1 && c.keep(resultSize(res))
		}
		var data []byte
		found := false
		for _, t := range q.res.Tensors {
			if t.Name == info.Name {
				data, found = t.Data, true
			}
		}
		if !found {
			return fmt.Errorf("%w: requantizing %s gave no tensor %s", ErrIncompatible, q.d.Name, info.Name)
		}
		if want := int64(len(data)); want*8 != int64(prodShape(shape))*int64(info.DType.Bits()) {
			return fmt.Errorf("%w: requantized %s has %d bytes, its header entry %v (%s)", ErrIncompatible, info.Name, len(data), shape, info.DType)
		}
		tick()
		q.left--
		if q.left == 0 || !q.kept {
			if q.kept {
				c.used -= resultSize(q.res)
			}
			q.res, q.kept = nil, false
		}
		_, err := w.Write(data)
		return err
	}}
}

func prodShape(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}
