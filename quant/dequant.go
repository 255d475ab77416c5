package quant

import (
	"fmt"
	"slices"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
)

// readF32 reads a float tensor of any float or integer dtype as float32,
// checking its element count.
func readF32(src Source, key string, want int) ([]float32, safetensors.TensorInfo, error) {
	ti, ok := src.Tensor(key)
	if !ok {
		return nil, ti, fmt.Errorf("%w: tensor %q is missing", ErrLayout, key)
	}
	if want >= 0 && ti.NumElements() != int64(want) {
		return nil, ti, fmt.Errorf("%w: tensor %q has %d elements, the layout needs %d", ErrLayout, key, ti.NumElements(), want)
	}
	b, err := src.Data(key)
	if err != nil {
		return nil, ti, err
	}
	x := make([]float32, ti.NumElements())
	if err := safetensors.ToFloat32(x, b, ti.DType); err != nil {
		return nil, ti, fmt.Errorf("%w: tensor %q: %v", ErrLayout, key, err)
	}
	return x, ti, nil
}

// rawOf returns a tensor's bytes after checking its dtype and size.
func rawOf(src Source, key string, dt safetensors.DType, n int) ([]byte, safetensors.TensorInfo, error) {
	ti, ok := src.Tensor(key)
	if !ok {
		return nil, ti, fmt.Errorf("%w: tensor %q is missing", ErrLayout, key)
	}
	if ti.DType != dt {
		return nil, ti, fmt.Errorf("%w: tensor %q is %s, the layout needs %s", ErrLayout, key, ti.DType, dt)
	}
	if n >= 0 && ti.NumElements() != int64(n) {
		return nil, ti, fmt.Errorf("%w: tensor %q has %d elements, the layout needs %d", ErrLayout, key, ti.NumElements(), n)
	}
	b, err := src.Data(key)
	return b, ti, err
}

// Full returns the complete parameters of d, reading what the header does
// not tell (the bitsandbytes quant_state), with the original shape and
// dtype when the layout records them (bitsandbytes); otherwise shape is the
// weight's and dtype F32.
func Full(src Source, d Detected) (Params, []int, safetensors.DType, error) {
	p := d.Params
	switch d.Layout {
	case "bitsandbytes":
		qs, err := ReadQuantState(src, d.Keys[len(d.Keys)-1])
		if err != nil {
			return p, nil, 0, err
		}
		if qs.QuantType != string(d.Scheme) {
			return p, nil, 0, fmt.Errorf("%w: %s: quant_state quant_type %q does not match its key", ErrLayout, d.Name, qs.QuantType)
		}
		if err := CheckBlockSize(qs.BlockSize); err != nil {
			return p, nil, 0, fmt.Errorf("%w: %s: quant_state: %v", ErrLayout, d.Name, err)
		}
		dt, ok := dtypeFromTorch(qs.DType)
		if !ok {
			return p, nil, 0, fmt.Errorf("%w: %s: quant_state dtype %q", ErrLayout, d.Name, qs.DType)
		}
		n := 1
		for _, v := range qs.Shape {
			if v < 0 || (v > 0 && n > (1<<50)/v) {
				return p, nil, 0, fmt.Errorf("%w: %s: quant_state shape %v", ErrLayout, d.Name, qs.Shape)
			}
			n *= v
		}
		p.BlockSize = qs.BlockSize
		if p.DoubleQuant && (qs.NestedOffset == nil || qs.NestedBlockSize < 1) {
			return p, nil, 0, fmt.Errorf("%w: %s: nested tensors present but quant_state has no nested_offset/nested_blocksize", ErrLayout, d.Name)
		}
		return p, slices.Clone(qs.Shape), dt, nil
	}
	ti, ok := src.Tensor(d.Name)
	if !ok {
		return p, nil, 0, fmt.Errorf("%w: tensor %q is missing", ErrLayout, d.Name)
	}
	if d.Layout != "bitsandbytes-int8" {
		if _, err := ParseGranularity(p.Granularity); err != nil {
			return p, nil, 0, fmt.Errorf("%w: %s: the scale shape matches no supported granularity", ErrLayout, d.Name)
		}
	}
	return p, slices.Clone(ti.Shape), safetensors.F32, nil
}

// Dequantize reads the quantized tensor d from src and returns its float32
// values, its original shape and its original dtype (bitsandbytes records
// it; other layouts give F32). Every inconsistency between the tensors of
// the layout is an ErrLayout error naming the tensor.
func Dequantize(src Source, d Detected) ([]float32, []int, safetensors.DType, error) {
	p, shape, dt, err := Full(src, d)
	if err != nil {
		return nil, nil, 0, err
	}
	n := 1
	for _, v := range shape {
		n *= v
	}
	// The element count comes from the quantized weight's own size (bounded
	// by the file) or is checked against it before anything is allocated.
	var x []float32
	switch d.Layout {
	case "bitsandbytes":
		packed, _, err := rawOf(src, d.Name, safetensors.U8, PackedLen(n))
		if err != nil {
			return nil, nil, 0, err
		}
		x = make([]float32, n)
		nb := NumBlocks(n, p.BlockSize)
		codeF, _, err := readF32(src, d.Name+suffixQuantMap, 16)
		if err != nil {
			return nil, nil, 0, err
		}
		var code [16]float32
		copy(code[:], codeF)
		var absmax []float32
		if p.DoubleQuant {
			qs, _ := ReadQuantState(src, d.Keys[len(d.Keys)-1])
			q, _, err := rawOf(src, d.Name+suffixAbsmax, safetensors.U8, nb)
			if err != nil {
				return nil, nil, 0, err
			}
			nmapF, _, err := readF32(src, d.Name+suffixNestedQuantMap, 256)
			if err != nil {
				return nil, nil, 0, err
			}
			var nmap [256]float32
			copy(nmap[:], nmapF)
			nabs, _, err := readF32(src, d.Name+suffixNestedAbsmax, NumBlocks(nb, qs.NestedBlockSize))
			if err != nil {
				return nil, nil, 0, err
			}
			absmax = make([]float32, nb)
			if err := DequantizeNested(absmax, q, nabs, &nmap, qs.NestedBlockSize, float32(*qs.NestedOffset)); err != nil {
				return nil, nil, 0, fmt.Errorf("%s: %w", d.Name, err)
			}
		} else {
			var ai safetensors.TensorInfo
			if absmax, ai, err = readF32(src, d.Name+suffixAbsmax, nb); err != nil {
				return nil, nil, 0, err
			}
			if !ai.DType.IsFloat() {
				return nil, nil, 0, fmt.Errorf("%w: tensor %q is %s; without nested_absmax the absmax must be a float tensor", ErrLayout, ai.Name, ai.DType)
			}
		}
		if err := Dequantize4(x, packed, absmax, &code, p.BlockSize); err != nil {
			return nil, nil, 0, fmt.Errorf("%s: %w", d.Name, err)
		}
	case "bitsandbytes-int8":
		x = make([]float32, n)
		rows, cols := matrixShape(shape)
		q, _, err := rawOf(src, d.Name, safetensors.I8, n)
		if err != nil {
			return nil, nil, 0, err
		}
		scb, _, err := readF32(src, d.Keys[1], rows)
		if err != nil {
			return nil, nil, 0, err
		}
		if err := DequantizeInt8Rows(x, asInt8(q), scb, rows, cols); err != nil {
			return nil, nil, 0, fmt.Errorf("%s: %w", d.Name, err)
		}
	default: // compressed-tensors int8, FP8
		x = make([]float32, n)
		rows, cols := matrixShape(shape)
		g, err := ParseGranularity(p.Granularity)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%w: %s: unsupported scale shape", ErrLayout, d.Name)
		}
		ns, err := g.numScales(rows, cols)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%w: %s: %v", ErrLayout, d.Name, err)
		}
		scale, _, err := readF32(src, d.Keys[1], ns)
		if err != nil {
			return nil, nil, 0, err
		}
		if d.Scheme == SchemeInt8 {
			q, _, err := rawOf(src, d.Name, safetensors.I8, n)
			if err != nil {
				return nil, nil, 0, err
			}
			var zp []int8
			if p.Asymmetric {
				zf, _, err := readF32(src, d.Keys[2], ns)
				if err != nil {
					return nil, nil, 0, err
				}
				zp = make([]int8, ns)
				for i, v := range zf {
					zp[i] = int8(v)
				}
			}
			err = DequantizeInt8Groups(x, asInt8(q), scale, zp, rows, cols, g)
		} else {
			dtq := safetensors.F8E4M3
			if d.Scheme == SchemeFP8E5M2 {
				dtq = safetensors.F8E5M2
			}
			q, _, err2 := rawOf(src, d.Name, dtq, n)
			if err2 != nil {
				return nil, nil, 0, err2
			}
			err = DequantizeFP8(x, q, scale, rows, cols, p.fp8Format(), g)
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("%s: %w", d.Name, err)
		}
	}
	return x, shape, dt, nil
}

func asInt8(b []byte) []int8 {
	q := make([]int8, len(b))
	for i, v := range b {
		q[i] = int8(v)
	}
	return q
}

// Requantize is the fold hook for applying an adapter to a quantized base:
// given a quantized tensor d of src (see Detect) and new float32 values w
// for it (typically Dequantize's result plus ΔW), it quantizes w with the
// same scheme and parameters and returns tensors with exactly the names,
// dtypes and shapes of d.Keys in src, so the caller can replace them one for
// one and copy every other tensor byte-identically (the bitsandbytes
// quant_state JSON may change length when the double-quantization offset
// changes). srcDType is taken from
// the layout (bitsandbytes quant_state) so the new quant_state matches.
// A scale stored in a dtype other than F32 is converted back to it.
func Requantize(src Source, d Detected, w []float32) ([]safetensors.Tensor, error) {
	p, shape, dt, err := Full(src, d)
	if err != nil {
		return nil, err
	}
	if d.Layout == "bitsandbytes-int8" {
		p.Granularity = ""
	}
	q, err := QuantizeTensor(d.Name, shape, dt, w, p)
	if err != nil {
		return nil, err
	}
	byName := map[string]safetensors.Tensor{}
	for _, t := range q.Tensors {
		byName[t.Name] = t
	}
	if d.Layout == "fp8-scale-inv" {
		t := byName[d.Name+suffixScale]
		t.Name = d.Name + suffixScaleInv
		byName[t.Name] = t
	}
	out := make([]safetensors.Tensor, 0, len(d.Keys))
	for _, k := range d.Keys {
		t, ok := byName[k]
		orig, ok2 := src.Tensor(k)
		if !ok || !ok2 {
			return nil, fmt.Errorf("%w: %s: cannot reproduce tensor %q", ErrLayout, d.Name, k)
		}
		if orig.DType != t.DType {
			if !orig.DType.IsFloat() || t.DType != safetensors.F32 {
				return nil, fmt.Errorf("%w: %s: tensor %q is %s, requantization gives %s", ErrLayout, d.Name, k, orig.DType, t.DType)
			}
			f := make([]float32, len(t.Data)/4)
			if err := safetensors.ToFloat32(f, t.Data, safetensors.F32); err != nil {
				return nil, err
			}
			b := make([]byte, int(orig.Size()))
			if err := safetensors.FromFloat32(b, f, orig.DType); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrLayout, k, err)
			}
			t.DType, t.Data = orig.DType, b
		}
		if !slices.Equal(orig.Shape, t.Shape) && !strings.Contains(k, suffixQuantStatePrefx) {
			if orig.NumElements() != int64(len(t.Data)*8/t.DType.Bits()) {
				return nil, fmt.Errorf("%w: %s: tensor %q has shape %v, requantization gives %v", ErrLayout, d.Name, k, orig.Shape, t.Shape)
			}
			t.Shape = slices.Clone(orig.Shape) // e.g. a per-tensor scale stored as a scalar
		}
		out = append(out, t)
	}
	return out, nil
}
