// Package kernels holds adaptool's loops over tensor data: float32
// arithmetic (axpy, scale, add, sub, neg, mul), reductions (absolute
// maximum, sum of squares, dot product), dtype conversions between float32
// and f16, bf16, F8 E4M3FN and F8 E5M2, an O(n) top-k selector on |x| and the
// rank-r update W += s·B·A.
//
// Every kernel has a pure-Go twin (generic.go). On amd64 (without the noasm
// build tag, with the gc toolchain) AVX2+FMA+F16C and AVX-512F assembly paths
// generated with avo are chosen at run time with golang.org/x/sys/cpu; [Impl]
// names the active path. The fast paths give bit-identical results to the
// twins: arithmetic kernels use separate multiply and add (no fused
// multiply-add), reductions accumulate in a fixed 16-lane float64 order shared
// by both paths, and conversions are exact bit manipulations. The only
// documented difference is the payload of a NaN produced by arithmetic on two
// NaN operands (conversions keep NaN bits exactly as documented).
//
// Slices of one million elements or more are split across GOMAXPROCS
// goroutines; results do not depend on the split.
//
// Exported functions panic with a message starting "kernels: " when the
// caller passes slices of mismatched length; they never panic on values.
//
// See SPEC.md §10 for the rounding, NaN and saturation rules and the
// measured throughput.
package kernels
