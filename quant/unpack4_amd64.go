//go:build amd64 && !noasm && gc

package quant

// unpack4AVX512 dequantizes nblocks full blocks of 4-bit codes with
// AVX-512F, bit-identical to the Go loop of dequantize4: per block
// lut = code·absmax[b] (16 float32 products, VMULPS); then per 8 packed
// bytes, VPMOVZXBD, the high (VPSRLD) and low (VPANDD) nibbles interleaved
// high first (VPERMT2D), looked up in lut (VPERMPS) and stored as 16
// floats. bytesPerBlock is blockSize/2, a multiple of 8.
//
//go:noescape
func unpack4AVX512(out *float32, packed *byte, nblocks, bytesPerBlock int, absmax *float32, code *[16]float32, perm *[16]int32)

var unpackPerm = [16]int32{0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23}

// unpack4Fast dequantizes the full blocks [b0, b1) with the AVX-512 kernel
// and reports whether it did.
func unpack4Fast(dst []float32, src []byte, absmax []float32, code *[16]float32, bs, b0, b1 int) bool {
	if !hasNF4AVX512 || b1 <= b0 {
		return false
	}
	unpack4AVX512(&dst[b0*bs], &src[b0*bs/2], b1-b0, bs/2, &absmax[b0], code, &unpackPerm)
	return true
}
