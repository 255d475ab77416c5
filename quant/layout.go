package quant

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
)

// Scheme names a quantized storage layout.
type Scheme string

// The schemes of QuantizeTensor and Detect.
const (
	SchemeNF4     Scheme = "nf4"      // bitsandbytes Linear4bit, quant_type "nf4"
	SchemeFP4     Scheme = "fp4"      // bitsandbytes Linear4bit, quant_type "fp4"
	SchemeInt8    Scheme = "int8"     // LLM.int8 (weight I8 + SCB) or compressed-tensors int8 (weight_scale)
	SchemeFP8E4M3 Scheme = "fp8-e4m3" // weight F8_E4M3 + weight_scale F32
	SchemeFP8E5M2 Scheme = "fp8-e5m2" // weight F8_E5M2 + weight_scale F32
)

// Schemes lists the schemes in CLI order.
var Schemes = []Scheme{SchemeNF4, SchemeFP4, SchemeInt8, SchemeFP8E4M3, SchemeFP8E5M2}

// Params selects a scheme and its parameters. The zero value of every field
// but Scheme is the scheme's default.
type Params struct {
	Scheme Scheme `json:"scheme"`
	// BlockSize is the 4-bit block size (default 64).
	BlockSize int `json:"blocksize,omitempty"`
	// DoubleQuant quantizes the 4-bit absmax (compress_statistics).
	DoubleQuant bool `json:"double_quant,omitempty"`
	// Granularity is the scale layout of int8 and FP8: "" (int8: LLM.int8
	// row-wise with SCB; FP8: "tensor"), "tensor", "channel", "group:N"
	// (int8) or "block:N" (FP8). Any int8 granularity other than "" and
	// "row" writes the compressed-tensors layout.
	Granularity string `json:"granularity,omitempty"`
	// Asymmetric adds a zero point (compressed-tensors int8 only).
	Asymmetric bool `json:"asymmetric,omitempty"`
}

// Normalize returns p with defaults filled in, or an error naming the bad
// parameter.
func (p Params) Normalize() (Params, error) {
	switch p.Scheme {
	case SchemeNF4, SchemeFP4:
		if p.BlockSize == 0 {
			p.BlockSize = DefaultBlockSize
		}
		if err := CheckBlockSize(p.BlockSize); err != nil {
			return p, err
		}
		if p.Granularity != "" || p.Asymmetric {
			return p, fmt.Errorf("%w: %s takes --blocksize, not a granularity or zero point", ErrScheme, p.Scheme)
		}
	case SchemeInt8:
		if p.BlockSize != 0 || p.DoubleQuant {
			return p, fmt.Errorf("%w: int8 takes a granularity, not a block size or double quantization", ErrScheme)
		}
		if p.Granularity == "row" {
			p.Granularity = ""
		}
		if p.Granularity == "" && p.Asymmetric {
			return p, fmt.Errorf("%w: LLM.int8 (SCB) is symmetric; use --granularity channel or group:N for a zero point", ErrScheme)
		}
		if p.Granularity != "" {
			g, err := ParseGranularity(p.Granularity)
			if err != nil {
				return p, err
			}
			if g.Kind == PerBlock {
				return p, fmt.Errorf("%w: int8 granularity is tensor, channel or group:N, not %s", ErrScheme, g)
			}
		}
	case SchemeFP8E4M3, SchemeFP8E5M2:
		if p.BlockSize != 0 || p.DoubleQuant || p.Asymmetric {
			return p, fmt.Errorf("%w: %s takes a granularity only", ErrScheme, p.Scheme)
		}
		if p.Granularity == "" {
			p.Granularity = "tensor"
		}
		g, err := ParseGranularity(p.Granularity)
		if err != nil {
			return p, err
		}
		if g.Kind == PerGroup {
			return p, fmt.Errorf("%w: FP8 granularity is tensor, channel or block:N, not %s", ErrScheme, g)
		}
		p.Granularity = g.String()
	default:
		return p, fmt.Errorf("%w: %q (want nf4, fp4, int8, fp8-e4m3 or fp8-e5m2)", ErrScheme, p.Scheme)
	}
	return p, nil
}

func (p Params) fp8Format() FP8Format {
	if p.Scheme == SchemeFP8E5M2 {
		return E5M2
	}
	return E4M3
}

// Key-name suffixes of the layouts.
const (
	suffixAbsmax          = ".absmax"
	suffixQuantMap        = ".quant_map"
	suffixNestedAbsmax    = ".nested_absmax"
	suffixNestedQuantMap  = ".nested_quant_map"
	suffixQuantStatePrefx = ".quant_state.bitsandbytes__"
	keySCB                = "SCB"
	keyWeightFormat       = "weight_format"
	suffixScale           = "_scale"
	suffixScaleInv        = "_scale_inv"
	suffixZeroPoint       = "_zero_point"
)

// moduleKey returns the key of a per-module tensor next to weight name w:
// "X.weight" → "X.<leaf>", a name without ".weight" → "<w>.<leaf>".
func moduleKey(w, leaf string) string {
	if p, ok := strings.CutSuffix(w, ".weight"); ok {
		return p + "." + leaf
	}
	return w + "." + leaf
}

// Keys returns the tensor names that the quantized form of tensor name
// occupies under p (p normalized), the weight key first:
//
//	nf4/fp4:  name (U8 [(n+1)/2, 1]), name.absmax (F32 [nblocks], U8 when
//	          double-quantized), name.quant_map (F32 [16]),
//	          [name.nested_absmax (F32), name.nested_quant_map (F32 [256])],
//	          name.quant_state.bitsandbytes__<nf4|fp4> (U8 JSON)
//	int8 rows: name (I8), X.SCB (F32 [out]), X.weight_format (U8 scalar 0)
//	int8 c-t:  name (I8), name_scale (F32), [name_zero_point (I8)]
//	fp8:       name (F8_E4M3/F8_E5M2), name_scale (F32)
//
// where X is name without its ".weight" suffix.
func Keys(name string, p Params) []string {
	switch p.Scheme {
	case SchemeNF4, SchemeFP4:
		k := []string{name, name + suffixAbsmax, name + suffixQuantMap}
		if p.DoubleQuant {
			k = append(k, name+suffixNestedAbsmax, name+suffixNestedQuantMap)
		}
		return append(k, name+suffixQuantStatePrefx+string(p.Scheme))
	case SchemeInt8:
		if p.Granularity == "" {
			return []string{name, moduleKey(name, keySCB), moduleKey(name, keyWeightFormat)}
		}
		k := []string{name, name + suffixScale}
		if p.Asymmetric {
			k = append(k, name+suffixZeroPoint)
		}
		return k
	case SchemeFP8E4M3, SchemeFP8E5M2:
		return []string{name, name + suffixScale}
	}
	return nil
}

// Quantized is one tensor in quantized form.
type Quantized struct {
	Name        string            // the source (and weight) tensor name
	Params      Params            // normalized
	Shape       []int             // the source shape
	SourceDType safetensors.DType // the source dtype
	// Tensors are the output tensors, Keys(Name, Params) order, data filled.
	Tensors []safetensors.Tensor
}

// Bytes returns the total size of the output tensors.
func (q *Quantized) Bytes() int64 {
	var n int64
	for _, t := range q.Tensors {
		n += int64(len(t.Data))
	}
	return n
}

// matrixShape returns the rows×cols view of a shape for scale-based
// schemes: a 2-D tensor as is, an N-D one as shape[0] × the rest, a 1-D
// one as 1×n, a scalar as 1×1.
func matrixShape(shape []int) (int, int) {
	switch len(shape) {
	case 0:
		return 1, 1
	case 1:
		return 1, shape[0]
	}
	c := 1
	for _, d := range shape[1:] {
		c *= d
	}
	return shape[0], c
}

// torchDType is the bitsandbytes quant_state "dtype" string of a source
// dtype (str(torch.dtype) without "torch.").
func torchDType(dt safetensors.DType) string {
	switch dt {
	case safetensors.F16:
		return "float16"
	case safetensors.BF16:
		return "bfloat16"
	case safetensors.F64:
		return "float64"
	}
	return "float32"
}

func dtypeFromTorch(s string) (safetensors.DType, bool) {
	switch s {
	case "float32":
		return safetensors.F32, true
	case "float16":
		return safetensors.F16, true
	case "bfloat16":
		return safetensors.BF16, true
	case "float64":
		return safetensors.F64, true
	}
	return 0, false
}

// pyFloat formats v as Python's repr(float) (json.dumps): the shortest
// round-trip digits, fixed notation for exponents −4…15 (with ".0" when
// integral), else d.ddde±XX.
func pyFloat(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return map[bool]string{true: "Infinity", false: "-Infinity"}[v > 0]
	}
	e := strconv.FormatFloat(v, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		return s
	}
	return e
}

// QuantState is the decoded bitsandbytes quant_state JSON.
type QuantState struct {
	QuantType       string   `json:"quant_type"`
	BlockSize       int      `json:"blocksize"`
	DType           string   `json:"dtype"`
	Shape           []int    `json:"shape"`
	NestedBlockSize int      `json:"nested_blocksize,omitempty"`
	NestedDType     string   `json:"nested_dtype,omitempty"`
	NestedOffset    *float64 `json:"nested_offset,omitempty"`
}

// quantStateJSON is bitsandbytes' pack_dict_to_tensor(QuantState.as_dict()):
// json.dumps of quant_type, blocksize, dtype, shape (and nested_blocksize,
// nested_dtype, nested_offset) in that order, with ", " and ": " separators.
func quantStateJSON(qt string, bs int, dt safetensors.DType, shape []int, dq *DoubleQuant) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"quant_type": %q, "blocksize": %d, "dtype": %q, "shape": [`, qt, bs, torchDType(dt))
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(d))
	}
	b.WriteString("]")
	if dq != nil {
		fmt.Fprintf(&b, `, "nested_blocksize": %d, "nested_dtype": "float32", "nested_offset": %s`, NestedBlockSize, pyFloat(float64(dq.Offset)))
	}
	b.WriteString("}")
	return []byte(b.String())
}

// QuantizeTensor quantizes one tensor (x, the float32 values of a tensor of
// the given name, shape and source dtype) with p and returns its output
// tensors. It refuses NaN or ±Inf values (ErrNonFinite), since no scheme
// represents them consistently.
func QuantizeTensor(name string, shape []int, srcDType safetensors.DType, x []float32, p Params) (*Quantized, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(x) {
		return nil, fmt.Errorf("%w: tensor %q: shape %v has %d elements, got %d values", ErrLength, name, shape, n, len(x))
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%w: tensor %q: element %d is %v", ErrNonFinite, name, i, v)
		}
	}
	q := &Quantized{Name: name, Params: p, Shape: slices.Clone(shape), SourceDType: srcDType}
	keys := Keys(name, p)
	add := func(i int, dt safetensors.DType, shp []int, data []byte) {
		q.Tensors = append(q.Tensors, safetensors.Tensor{Name: keys[i], DType: dt, Shape: shp, Data: data})
	}
	switch p.Scheme {
	case SchemeNF4, SchemeFP4:
		packed := make([]byte, PackedLen(n))
		absmax := make([]float32, NumBlocks(n, p.BlockSize))
		code := &NF4Code
		if p.Scheme == SchemeFP4 {
			err = QuantizeFP4(packed, absmax, x, p.BlockSize)
			code = &FP4Code
		} else {
			err = QuantizeNF4(packed, absmax, x, p.BlockSize)
		}
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		add(0, safetensors.U8, []int{len(packed), 1}, packed)
		var dq *DoubleQuant
		if p.DoubleQuant {
			d := DoubleQuantize(absmax)
			dq = &d
			add(1, safetensors.U8, []int{len(d.Q)}, d.Q)
		} else {
			add(1, safetensors.F32, []int{len(absmax)}, f32Bytes(absmax))
		}
		add(2, safetensors.F32, []int{16}, f32Bytes(code[:]))
		i := 3
		if dq != nil {
			add(3, safetensors.F32, []int{len(dq.Absmax)}, f32Bytes(dq.Absmax))
			add(4, safetensors.F32, []int{256}, f32Bytes(DynamicMap[:]))
			i = 5
		}
		js := quantStateJSON(string(p.Scheme), p.BlockSize, srcDType, shape, dq)
		add(i, safetensors.U8, []int{len(js)}, js)
	case SchemeInt8:
		rows, cols := matrixShape(shape)
		qv := make([]int8, n)
		if p.Granularity == "" {
			scb := make([]float32, rows)
			if err := QuantizeInt8Rows(qv, scb, x, rows, cols); err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
			add(0, safetensors.I8, slices.Clone(shape), i8Bytes(qv))
			add(1, safetensors.F32, []int{rows}, f32Bytes(scb))
			add(2, safetensors.U8, []int{}, []byte{0})
			break
		}
		g, _ := ParseGranularity(p.Granularity)
		ss, err := g.ScaleShape(rows, cols)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		ns := 1
		for _, d := range ss {
			ns *= d
		}
		scale := make([]float32, ns)
		var zp []int8
		if p.Asymmetric {
			zp = make([]int8, ns)
		}
		if err := QuantizeInt8Groups(qv, scale, zp, x, rows, cols, g); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		add(0, safetensors.I8, slices.Clone(shape), i8Bytes(qv))
		add(1, safetensors.F32, ss, f32Bytes(scale))
		if zp != nil {
			add(2, safetensors.I8, slices.Clone(ss), i8Bytes(zp))
		}
	case SchemeFP8E4M3, SchemeFP8E5M2:
		rows, cols := matrixShape(shape)
		g, _ := ParseGranularity(p.Granularity)
		ss, err := g.ScaleShape(rows, cols)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		ns := 1
		for _, d := range ss {
			ns *= d
		}
		codes := make([]uint8, n)
		scale := make([]float32, ns)
		if err := QuantizeFP8(codes, scale, x, rows, cols, p.fp8Format(), g); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		dt := safetensors.F8E4M3
		if p.Scheme == SchemeFP8E5M2 {
			dt = safetensors.F8E5M2
		}
		add(0, dt, slices.Clone(shape), codes)
		add(1, safetensors.F32, ss, f32Bytes(scale))
	}
	return q, nil
}

// f32Bytes returns the little-endian bytes of s (a fresh copy).
func f32Bytes(s []float32) []byte {
	b := make([]byte, 4*len(s))
	for i, v := range s {
		u := math.Float32bits(v)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

func i8Bytes(s []int8) []byte {
	b := make([]byte, len(s))
	for i, v := range s {
		b[i] = byte(v)
	}
	return b
}

// Detected describes one quantized tensor found in a header.
type Detected struct {
	Name   string   `json:"name"`   // the weight key
	Scheme Scheme   `json:"scheme"` // nf4, fp4, int8, fp8-e4m3, fp8-e5m2
	Layout string   `json:"layout"` // "bitsandbytes", "bitsandbytes-int8", "compressed-tensors", "fp8-scale-inv"
	Keys   []string `json:"keys"`   // every tensor of this quantized weight, weight first
	// Params as far as the header tells: the 4-bit block size is inferred
	// from the absmax count (the quant_state JSON is authoritative), FP8
	// and int8 granularity from the scale shape.
	Params Params `json:"params"`
}

// Header is the part of a safetensors header (or checkpoint) Detect needs.
type Header interface {
	Tensor(name string) (safetensors.TensorInfo, bool)
}

// Detect recognizes the quantized tensors of a file or checkpoint from its
// tensor names, dtypes and shapes (no data is read): bitsandbytes 4-bit
// (a quant_state.bitsandbytes__nf4/__fp4 key), LLM.int8 (an I8 weight with
// an SCB), compressed-tensors int8 (I8 weight + weight_scale) and FP8
// (F8_E4M3/F8_E5M2 weight + weight_scale or weight_scale_inv). names lists
// the tensor names; the result is sorted by weight name.
func Detect(h Header, names []string) []Detected {
	var out []Detected
	have := func(n string) bool { _, ok := h.Tensor(n); return ok }
	for _, n := range names {
		if i := strings.Index(n, suffixQuantStatePrefx); i > 0 {
			w, qt := n[:i], n[i+len(suffixQuantStatePrefx):]
			if qt != "nf4" && qt != "fp4" {
				continue
			}
			d := Detected{Name: w, Scheme: Scheme(qt), Layout: "bitsandbytes", Params: Params{Scheme: Scheme(qt)}}
			d.Keys = []string{w, w + suffixAbsmax, w + suffixQuantMap}
			if have(w + suffixNestedAbsmax) {
				d.Params.DoubleQuant = true
				d.Keys = append(d.Keys, w+suffixNestedAbsmax, w+suffixNestedQuantMap)
			}
			d.Keys = append(d.Keys, n)
			if wi, ok := h.Tensor(w); ok {
				if ai, ok := h.Tensor(w + suffixAbsmax); ok && len(ai.Shape) == 1 {
					d.Params.BlockSize = inferBlockSize(int(wi.NumElements()), ai.Shape[0])
				}
			}
			out = append(out, d)
			continue
		}
		ti, ok := h.Tensor(n)
		if !ok {
			continue
		}
		switch ti.DType {
		case safetensors.I8:
			if scb := moduleKey(n, keySCB); have(scb) {
				d := Detected{Name: n, Scheme: SchemeInt8, Layout: "bitsandbytes-int8", Params: Params{Scheme: SchemeInt8}, Keys: []string{n, scb}}
				if wf := moduleKey(n, keyWeightFormat); have(wf) {
					d.Keys = append(d.Keys, wf)
				}
				out = append(out, d)
			} else if si, ok := h.Tensor(n + suffixScale); ok {
				d := Detected{Name: n, Scheme: SchemeInt8, Layout: "compressed-tensors", Params: Params{Scheme: SchemeInt8}, Keys: []string{n, n + suffixScale}}
				rows, cols := matrixShape(ti.Shape)
				d.Params.Granularity = inferGranularity(rows, cols, si.Shape, false).String()
				if have(n + suffixZeroPoint) {
					d.Params.Asymmetric = true
					d.Keys = append(d.Keys, n+suffixZeroPoint)
				}
				out = append(out, d)
			}
		case safetensors.F8E4M3, safetensors.F8E5M2:
			sc := n + suffixScale
			layout := "compressed-tensors"
			si, ok := h.Tensor(sc)
			if !ok {
				sc = n + suffixScaleInv
				layout = "fp8-scale-inv"
				si, ok = h.Tensor(sc)
			}
			if !ok {
				continue
			}
			s := SchemeFP8E4M3
			if ti.DType == safetensors.F8E5M2 {
				s = SchemeFP8E5M2
			}
			rows, cols := matrixShape(ti.Shape)
			d := Detected{Name: n, Scheme: s, Layout: layout, Keys: []string{n, sc},
				Params: Params{Scheme: s, Granularity: inferGranularity(rows, cols, si.Shape, true).String()}}
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// inferBlockSize returns the 4-bit block size that gives nblocks blocks for
// a packed tensor of packedLen bytes (n = 2·packedLen or one less), or 0.
func inferBlockSize(packedLen, nblocks int) int {
	for bs := MinBlockSize; bs <= MaxBlockSize; bs *= 2 {
		for _, n := range []int{2 * packedLen, 2*packedLen - 1} {
			if n > 0 && NumBlocks(n, bs) == nblocks {
				return bs
			}
		}
	}
	return 0
}

// inferGranularity maps a scale shape to its granularity for a rows×cols
// weight: one element in a 0-/1-D scale is per tensor, [rows, 1] per
// channel, [rows, cols/g] per group (int8), [⌈rows/b⌉, ⌈cols/b⌉] per block
// (FP8; b searched, 128 first). Anything else has Kind 255 (unsupported).
func inferGranularity(rows, cols int, ss []int, fp8 bool) Granularity {
	n := 1
	for _, d := range ss {
		n *= d
	}
	switch {
	case len(ss) <= 1 && n == 1:
		return Granularity{Kind: PerTensor}
	case len(ss) != 2:
		return Granularity{Kind: 255}
	case ss[0] == rows && ss[1] == 1:
		return Granularity{Kind: PerChannel}
	case !fp8 && ss[0] == rows && ss[1] > 0 && cols%ss[1] == 0:
		return Granularity{Kind: PerGroup, Size: cols / ss[1]}
	case fp8:
		for _, b := range []int{128, 64, 256, 32, 16, 512, 1024} {
			if (rows+b-1)/b == ss[0] && (cols+b-1)/b == ss[1] {
				return Granularity{Kind: PerBlock, Size: b}
			}
		}
	}
	return Granularity{Kind: 255}
}

// Source is what Dequantize reads tensors from: a *safetensors.File or a
// *safetensors.Checkpoint.
type Source interface {
	Tensor(name string) (safetensors.TensorInfo, bool)
	Data(name string) ([]byte, error)
}

// ReadQuantState decodes the quant_state JSON of a bitsandbytes tensor.
func ReadQuantState(src Source, key string) (*QuantState, error) {
	b, err := src.Data(key)
	if err != nil {
		return nil, err
	}
	var qs QuantState
	if err := json.Unmarshal(b, &qs); err != nil {
		return nil, fmt.Errorf("%w: %s: quant_state is not valid JSON: %v", ErrLayout, key, err)
	}
	return &qs, nil
}
