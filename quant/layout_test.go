package quant

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

func TestPyFloat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0.5, "0.5"}, {1, "1.0"}, {1e-05, "1e-05"}, {0.0001, "0.0001"}, {1e16, "1e+16"},
		{123.456, "123.456"}, {float64(float32(0.1)), "0.10000000149011612"}, {-2.5e-07, "-2.5e-07"},
		{1234567890123456, "1234567890123456.0"},
	} {
		if got := pyFloat(tc.v); got != tc.want {
			t.Errorf("pyFloat(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestQuantStateJSON(t *testing.T) {
	// Hand-written expectation of json.dumps(non_tensor_dict) in bitsandbytes.
	got := string(quantStateJSON("nf4", 64, safetensors.BF16, []int{4096, 11008}, nil))
	want := `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4096, 11008]}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got = string(quantStateJSON("fp4", 128, safetensors.F32, []int{3, 5}, &DoubleQuant{Offset: 0.5}))
	want = `{"quant_type": "fp4", "blocksize": 128, "dtype": "float32", "shape": [3, 5], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.5}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

type keySpec struct {
	name  string
	dtype safetensors.DType
	shape []int
}

func TestQuantizeTensorLayouts(t *testing.T) {
	shape := []int{6, 100}
	x := normals(600, 8)
	for _, tc := range []struct {
		p    Params
		want []keySpec
	}{
		{Params{Scheme: SchemeNF4}, []keySpec{
			{"m.weight", safetensors.U8, []int{300, 1}},
			{"m.weight.absmax", safetensors.F32, []int{10}},
			{"m.weight.quant_map", safetensors.F32, []int{16}},
			{"m.weight.quant_state.bitsandbytes__nf4", safetensors.U8, nil}}},
		{Params{Scheme: SchemeFP4, BlockSize: 32, DoubleQuant: true}, []keySpec{
			{"m.weight", safetensors.U8, []int{300, 1}},
			{"m.weight.absmax", safetensors.U8, []int{19}},
			{"m.weight.quant_map", safetensors.F32, []int{16}},
			{"m.weight.nested_absmax", safetensors.F32, []int{1}},
			{"m.weight.nested_quant_map", safetensors.F32, []int{256}},
			{"m.weight.quant_state.bitsandbytes__fp4", safetensors.U8, nil}}},
		{Params{Scheme: SchemeInt8}, []keySpec{
			{"m.weight", safetensors.I8, []int{6, 100}},
			{"m.SCB", safetensors.F32, []int{6}},
			{"m.weight_format", safetensors.U8, []int{}}}},
		{Params{Scheme: SchemeInt8, Granularity: "group:20", Asymmetric: true}, []keySpec{
			{"m.weight", safetensors.I8, []int{6, 100}},
			{"m.weight_scale", safetensors.F32, []int{6, 5}},
			{"m.weight_zero_point", safetensors.I8, []int{6, 5}}}},
		{Params{Scheme: SchemeInt8, Granularity: "channel"}, []keySpec{
			{"m.weight", safetensors.I8, []int{6, 100}},
			{"m.weight_scale", safetensors.F32, []int{6, 1}}}},
		{Params{Scheme: SchemeFP8E4M3}, []keySpec{
			{"m.weight", safetensors.F8E4M3, []int{6, 100}},
			{"m.weight_scale", safetensors.F32, []int{1}}}},
		{Params{Scheme: SchemeFP8E5M2, Granularity: "block:128"}, []keySpec{
			{"m.weight", safetensors.F8E5M2, []int{6, 100}},
			{"m.weight_scale", safetensors.F32, []int{1, 1}}}},
	} {
		q, err := QuantizeTensor("m.weight", shape, safetensors.F32, x, tc.p)
		if err != nil {
			t.Fatalf("%+v: %v", tc.p, err)
		}
		if len(q.Tensors) != len(tc.want) {
			t.Fatalf("%+v: %d tensors, want %d", tc.p, len(q.Tensors), len(tc.want))
		}
		for i, w := range tc.want {
			g := q.Tensors[i]
			if g.Name != w.name || g.DType != w.dtype || (w.shape != nil && !slices.Equal(g.Shape, w.shape)) {
				t.Errorf("%+v: tensor %d = %s %s %v, want %s %s %v", tc.p, i, g.Name, g.DType, g.Shape, w.name, w.dtype, w.shape)
			}
			if int64(len(g.Data)) != g.Size() {
				t.Errorf("%s: %d bytes for shape %v", g.Name, len(g.Data), g.Shape)
			}
		}
		// Detect recognizes the layout and the parameters.
		m := memSource{}
		var names []string
		for _, tt := range q.Tensors {
			m[tt.Name] = tt
			names = append(names, tt.Name)
		}
		ds := Detect(m, names)
		if len(ds) != 1 || ds[0].Name != "m.weight" || ds[0].Scheme != tc.p.Scheme {
			t.Fatalf("%+v: Detect = %+v", tc.p, ds)
		}
		full, gotShape, _, err := Full(m, ds[0])
		if err != nil {
			t.Fatal(err)
		}
		if full != q.Params || !slices.Equal(gotShape, shape) {
			t.Errorf("Full = %+v %v, want %+v %v", full, gotShape, q.Params, shape)
		}
		// Round trip equals the scheme's own dequantizer within its error.
		y, err := q.RoundTrip()
		if err != nil {
			t.Fatal(err)
		}
		if e := rmse(x, y); e > 0.2 {
			t.Errorf("%+v: round-trip RMSE %g", tc.p, e)
		}
		// Requantize of the source values reproduces the bytes exactly.
		rq, err := Requantize(m, ds[0], x)
		if err != nil {
			t.Fatal(err)
		}
		for i := range rq {
			if rq[i].Name != q.Tensors[i].Name || !bytes.Equal(rq[i].Data, q.Tensors[i].Data) {
				t.Errorf("%+v: requantized %s differs", tc.p, rq[i].Name)
			}
		}
	}
}

func TestQuantizeTensorErrors(t *testing.T) {
	x := []float32{1, 2, float32(math.NaN()), 4}
	if _, err := QuantizeTensor("w", []int{2, 2}, safetensors.F32, x, Params{Scheme: SchemeNF4}); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN: %v", err)
	}
	if _, err := QuantizeTensor("w", []int{2, 3}, safetensors.F32, x[:2], Params{Scheme: SchemeNF4}); !errors.Is(err, ErrLength) {
		t.Errorf("shape: %v", err)
	}
	for _, p := range []Params{{Scheme: "int4"}, {Scheme: SchemeNF4, BlockSize: 48}, {Scheme: SchemeFP8E4M3, Granularity: "group:2"},
		{Scheme: SchemeInt8, Granularity: "block:128"}, {Scheme: SchemeInt8, Asymmetric: true}, {Scheme: SchemeNF4, Granularity: "tensor"}} {
		if _, err := p.Normalize(); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
}

// TestDequantizeCorrupt checks that inconsistent layouts give ErrLayout.
func TestDequantizeCorrupt(t *testing.T) {
	q, _ := QuantizeTensor("w", []int{4, 64}, safetensors.F32, normals(256, 1), Params{Scheme: SchemeNF4})
	mk := func(mut func(m memSource)) memSource {
		m := memSource{}
		for _, tt := range q.Tensors {
			tt.Data = slices.Clone(tt.Data)
			m[tt.Name] = tt
		}
		mut(m)
		return m
	}
	for name, m := range map[string]memSource{
		"short absmax": mk(func(m memSource) {
			t := m["w.absmax"]
			t.Data, t.Shape = t.Data[:4], []int{1}
			m["w.absmax"] = t
		}),
		"bad json": mk(func(m memSource) {
			t := m["w.quant_state.bitsandbytes__nf4"]
			t.Data = []byte("{")
			m["w.quant_state.bitsandbytes__nf4"] = t
		}),
		"bad blocksize": mk(func(m memSource) {
			t := m["w.quant_state.bitsandbytes__nf4"]
			t.Data = bytes.Replace(t.Data, []byte(`"blocksize": 64`), []byte(`"blocksize": 65`), 1)
			m["w.quant_state.bitsandbytes__nf4"] = t
		}),
		"shape mismatch": mk(func(m memSource) {
			t := m["w.quant_state.bitsandbytes__nf4"]
			t.Data = bytes.Replace(t.Data, []byte(`[4, 64]`), []byte(`[4, 66]`), 1)
			m["w.quant_state.bitsandbytes__nf4"] = t
		}),
		"missing quant_map": mk(func(m memSource) { delete(m, "w.quant_map") }),
		"huge shape": mk(func(m memSource) {
			t := m["w.quant_state.bitsandbytes__nf4"]
			t.Data = bytes.Replace(t.Data, []byte(`[4, 64]`), []byte(`[1048576, 1048576]`), 1)
			m["w.quant_state.bitsandbytes__nf4"] = t
		}),
	} {
		var names []string
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		ds := Detect(m, names)
		if len(ds) != 1 {
			t.Fatalf("%s: Detect = %v", name, ds)
		}
		if _, _, _, err := Dequantize(m, ds[0]); !errors.Is(err, ErrLayout) {
			t.Errorf("%s: err = %v, want ErrLayout", name, err)
		}
	}
}
