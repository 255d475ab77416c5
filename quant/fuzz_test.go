package quant

import (
	"encoding/binary"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// FuzzDequantize builds quantized layouts with fuzzed quant_state JSON,
// shapes, dtypes and data, and requires Detect + Dequantize (+ Requantize)
// to return values or an error, never to panic or allocate beyond what the
// tensors hold.
func FuzzDequantize(f *testing.F) {
	for _, p := range []Params{{Scheme: SchemeNF4}, {Scheme: SchemeFP4, DoubleQuant: true, BlockSize: 32}, {Scheme: SchemeInt8},
		{Scheme: SchemeInt8, Granularity: "group:8", Asymmetric: true}, {Scheme: SchemeFP8E5M2, Granularity: "block:16"}} {
		q, err := QuantizeTensor("w", []int{4, 32}, safetensors.BF16, normals(128, 1), p)
		if err != nil {
			f.Fatal(err)
		}
		var blob []byte
		for _, t := range q.Tensors {
			blob = binary.LittleEndian.AppendUint32(blob, uint32(len(t.Data)))
			blob = append(blob, t.Data...)
		}
		f.Add(string(p.Scheme), uint8(len(q.Tensors)), blob, uint16(4), uint16(32), uint8(0))
	}
	f.Fuzz(func(t *testing.T, scheme string, nt uint8, blob []byte, d0, d1 uint16, dtSel uint8) {
		p, err := Params{Scheme: Scheme(scheme)}.Normalize()
		if err != nil {
			return
		}
		keys := Keys("w", p)
		m := memSource{}
		dts := []safetensors.DType{safetensors.U8, safetensors.F32, safetensors.I8, safetensors.F8E4M3, safetensors.F8E5M2, safetensors.BF16}
		for i, k := range keys {
			if i >= int(nt) || len(blob) < 4 {
				break
			}
			n := int(binary.LittleEndian.Uint32(blob))
			blob = blob[4:]
			n = min(n, len(blob))
			data := blob[:n]
			blob = blob[n:]
			dt := dts[(int(dtSel)+i)%len(dts)]
			if i == 0 || (dtSel == 0) {
				// keep the layout's own dtype for a valid-looking file
				q, _ := QuantizeTensor("w", []int{1, 32}, safetensors.F32, make([]float32, 32), p)
				dt = q.Tensors[i].DType
			}
			elems := n * 8 / dt.Bits()
			shape := []int{elems}
			if i == 0 && d0 > 0 && int(d0)*int(d1) == elems {
				shape = []int{int(d0), int(d1)}
			}
			m[k] = safetensors.Tensor{Name: k, DType: dt, Shape: shape, Data: data[:elems*dt.Bits()/8]}
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		for _, d := range Detect(m, names) {
			x, _, _, err := Dequantize(m, d)
			if err != nil {
				continue
			}
			for i := range x {
				if x[i] != x[i] || x[i] > 3e38 || x[i] < -3e38 {
					x[i] = 0
				}
			}
			_, _ = Requantize(m, d, x)
		}
	})
}
