package quant_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/quant"
)

func ExampleQuantizeNF4() {
	x := make([]float32, 64)
	for i := range x {
		x[i] = float32(i-32) / 32 // −1 … 0.97
	}
	packed := make([]byte, quant.PackedLen(len(x)))
	absmax := make([]float32, quant.NumBlocks(len(x), 64))
	if err := quant.QuantizeNF4(packed, absmax, x, 64); err != nil {
		panic(err)
	}
	y := make([]float32, len(x))
	if err := quant.DequantizeNF4(y, packed, absmax, 64); err != nil {
		panic(err)
	}
	fmt.Printf("absmax %g, first bytes % x\n", absmax[0], packed[:4])
	fmt.Printf("x[40] = %g → %.4f\n", x[40], y[40])
	// Output:
	// absmax 1, first bytes 00 00 01 11
	// x[40] = 0.25 → 0.2461
}

func ExampleQuantizeGGUF() {
	x := make([]float32, quant.GGUFQ8_0.BlockSize())
	x[0], x[1] = 127, -2.5
	b := make([]byte, quant.GGUFQ8_0.TypeSize())
	if err := quant.QuantizeGGUF(b, x, quant.GGUFQ8_0); err != nil {
		panic(err)
	}
	fmt.Printf("%s: %d values in %d bytes: d=% x q=%d %d\n", quant.GGUFQ8_0, len(x), len(b), b[:2], int8(b[2]), int8(b[3]))
	// Output:
	// Q8_0: 32 values in 34 bytes: d=00 3c q=127 -3
}

func ExampleQuantizeTensor() {
	w := make([]float32, 4*64)
	for i := range w {
		w[i] = float32(i%7) - 3
	}
	q, err := quant.QuantizeTensor("layer.weight", []int{4, 64}, safetensors.BF16, w,
		quant.Params{Scheme: quant.SchemeNF4, DoubleQuant: true})
	if err != nil {
		panic(err)
	}
	for _, t := range q.Tensors {
		fmt.Println(t.Name, t.DType, t.Shape)
	}
	fmt.Println(string(q.Tensors[len(q.Tensors)-1].Data))
	// Output:
	// layer.weight U8 [128 1]
	// layer.weight.absmax U8 [4]
	// layer.weight.quant_map F32 [16]
	// layer.weight.nested_absmax F32 [1]
	// layer.weight.nested_quant_map F32 [256]
	// layer.weight.quant_state.bitsandbytes__nf4 U8 [151]
	// {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 3.0}
}

func ExampleFold() {
	dir, _ := os.MkdirTemp("", "fold")
	defer os.RemoveAll(dir)
	// A base with one int8 (LLM.int8) weight.
	w := make([]float32, 2*8)
	for i := range w {
		w[i] = float32(i%5) - 2
	}
	q, _ := quant.QuantizeTensor("l.weight", []int{2, 8}, safetensors.F32, w, quant.Params{Scheme: quant.SchemeInt8})
	path := filepath.Join(dir, "base.safetensors")
	if err := safetensors.WriteFile(path, q.Tensors, nil); err != nil {
		panic(err)
	}
	f, _ := safetensors.Open(path)
	defer f.Close()
	ix := quant.NewIndex(f, f.Names())
	d := ix.Weights["l.weight"]
	res, err := quant.Fold(f, d, func(w []float32, shape []int) error {
		w[0] += 0.5 // the adapter's ΔW
		return nil
	})
	if err != nil {
		panic(err)
	}
	for _, t := range res.Tensors {
		fmt.Println(t.Name, t.DType, t.Shape)
	}
	fmt.Printf("scheme %s, extra max error %.4f\n", d.Scheme, res.Extra.MaxAbsError)
	// Output:
	// l.weight I8 [2 8]
	// l.SCB F32 [2]
	// l.weight_format U8 []
	// scheme int8, extra max error 0.0039
}
