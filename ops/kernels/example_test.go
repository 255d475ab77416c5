package kernels_test

import (
	"fmt"

	"github.com/adaptool/adaptool/ops/kernels"
)

func ExampleAxpy() {
	x := []float32{1, 2, 3}
	y := []float32{10, 20, 30}
	kernels.Axpy(0.5, x, y)
	fmt.Println(y)
	// Output: [10.5 21 31.5]
}

func ExampleF32ToBF16() {
	src := []float32{1, 1.00390625, 1.01171875, 3.14159}
	dst := make([]uint16, len(src))
	kernels.F32ToBF16(dst, src)
	back := make([]float32, len(dst))
	kernels.BF16ToF32(back, dst)
	fmt.Printf("%#04x %v\n", dst, back)
	// Output: [0x3f80 0x3f80 0x3f82 0x4049] [1 1 1.015625 3.140625]
}

func ExampleF32ToF8E4M3() {
	src := []float32{17, 19, 464, 1e9}
	dst := make([]uint8, len(src))
	kernels.F32ToF8E4M3(dst, src)
	back := make([]float32, len(dst))
	kernels.F8E4M3ToF32(back, dst)
	fmt.Println(back)
	// Output: [16 20 448 448]
}

func ExampleTopKMask() {
	x := []float32{0.1, -3, 2, -2, 0.5, 2}
	mask := make([]bool, len(x))
	kernels.TopKMask(mask, x, 3)
	fmt.Println(mask, kernels.AbsThreshold(x, 3))
	// Output: [false true true true false false] 2
}

func ExampleRankUpdate() {
	w := make([]float32, 2*3)                 // 2×3
	b := []float32{1, 2}                      // 2×1
	a := []float32{1, 0, -1}                  // 1×3
	kernels.RankUpdate(w, 2, 3, 0.5, b, a, 1) // W += 0.5·B·A
	fmt.Println(w)
	// Output: [0.5 0 -0.5 1 0 -1]
}
