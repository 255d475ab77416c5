package kernels

// F16ToF32 widens IEEE binary16 values (given as their bits) to float32:
//
//	for i, h := range src { dst[i] = exact value of h }
//
// Every finite value, subnormals included, converts exactly; ±Inf stays
// ±Inf; a NaN keeps its sign and payload (shifted left 13 bits) and gets the
// quiet bit (0x00400000), as VCVTPH2PS does. It panics if len(dst) != len(src).
func F16ToF32(dst []float32, src []uint16) {
	if len(dst) != len(src) {
		mismatch("F16ToF32", "dst", len(dst), "src", len(src))
	}
	f := cur.f16ToF32
	if len(src) < parMin {
		f(dst, src)
		return
	}
	parallel(len(src), func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
}

// F32ToF16 rounds float32 values to IEEE binary16 bits with
// round-to-nearest-even:
//
//	for i, v := range src { dst[i] = RNE(v) }
//
// Results below the smallest subnormal round to ±0 (ties to even), results
// subnormal in binary16 are rounded exactly, magnitudes ≥ 65520 and ±Inf
// give ±Inf (IEEE overflow), and a NaN stays NaN: sign kept, top ten payload
// bits kept, quiet bit 0x0200 set (the VCVTPS2PH rule). It panics if
// len(dst) != len(src).
func F32ToF16(dst []uint16, src []float32) {
	if len(dst) != len(src) {
		mismatch("F32ToF16", "dst", len(dst), "src", len(src))
	}
	f := cur.f32ToF16
	if len(src) < parMin {
		f(dst, src)
		return
	}
	parallel(len(src), func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
}

// BF16ToF32 widens bfloat16 values (given as their bits) to float32:
//
//	for i, h := range src { dst[i] = math.Float32frombits(uint32(h) << 16) }
//
// The widening is exact for every pattern, NaN payloads included. It panics
// if len(dst) != len(src).
func BF16ToF32(dst []float32, src []uint16) {
	if len(dst) != len(src) {
		mismatch("BF16ToF32", "dst", len(dst), "src", len(src))
	}
	f := cur.bf16ToF32
	if len(src) < parMin {
		f(dst, src)
		return
	}
	parallel(len(src), func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
}

// F32ToBF16 rounds float32 values to bfloat16 bits with round-to-nearest-even:
//
//	for i, v := range src {
//		u := math.Float32bits(v)
//		if u&0x7fffffff > 0x7f800000 { dst[i] = uint16(u>>16) | 0x0040; continue } // NaN stays a quiet NaN
//		dst[i] = uint16((u + 0x7fff + (u>>16)&1) >> 16)
//	}
//
// Overflow rounds to ±Inf as IEEE rounding does; subnormals round like any
// other value. It panics if len(dst) != len(src).
func F32ToBF16(dst []uint16, src []float32) {
	if len(dst) != len(src) {
		mismatch("F32ToBF16", "dst", len(dst), "src", len(src))
	}
	f := cur.f32ToBF16
	if len(src) < parMin {
		f(dst, src)
		return
	}
	parallel(len(src), func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
}

// F8E4M3ToF32 decodes F8 E4M3FN codes (safetensors F8_E4M3: bias 7, no
// infinities, max ±448):
//
//	for i, c := range src { dst[i] = (-1)^s · 2^(e-7) · (1 + m/8), or (-1)^s · 2⁻⁶ · m/8 when e == 0 }
//
// The two NaN codes 0x7f and 0xff decode to a quiet float32 NaN with the
// code's sign. It panics if len(dst) != len(src).
func F8E4M3ToF32(dst []float32, src []uint8) {
	if len(dst) != len(src) {
		mismatch("F8E4M3ToF32", "dst", len(dst), "src", len(src))
	}
	f := cur.f8E4M3ToF32
	if len(src) < parMin {
		f(dst, src)
		return
	}
	parallel(len(src), func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
}

// F32ToF8E4M3 rounds float32 values to F8 E4M3FN codes with
// round-to-nearest-even, saturating:
//
//	for i, v := range src { dst[i] = RNE(clamp(v, -448, 448)) }
//
// Magnitudes at or above 448 — finite or ±Inf — give ±448 (0x7e/0xfe), as
// writers clamp before casting (PyTorch's own cast is non-saturating and
// would give NaN above 464); a NaN gives 0x7f with its sign (0xff when
// negative); values below 2⁻¹⁰ round to ±0 (2⁻¹⁰ itself ties to even, 0). It
// panics if len(dst) != len(src).
func F32ToF8E4M3(dst []uint8, src []float32) {
	if len(dst) != len(src) {
		mismatch("F32ToF8E4M3", "dst", len(dst), "src", len(src))
	}
	f := cur.f32ToF8E4M3
	if len(src) < parMin {
		f(dst, src)
		return
	}
	parallel(len(src), func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
}

// F8E5M2ToF32 decodes F8 E5M2 codes (bias 15, max ±57344, ±Inf at
// 0x7c/0xfc, NaN 0x7d–0x7f and 0xfd–0xff):
//
//	for i, c := range src { dst[i] = F16ToF32 of the binary16 bits uint16(c) << 8 }
//
// A NaN code keeps its sign and payload and gets the quiet bit. It panics if
// len(dst) != len(src).
func F8E5M2ToF32(dst []float32, src []uint8) {
	if len(dst) != len(src) {
		mismatch("F8E5M2ToF32", "dst", len(dst), "src", len(src))
	}
	f := cur.f8E5M2ToF32
	if len(src) < parMin {
		f(dst, src)
		return
	}
	parallel(len(src), func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
}

// F32ToF8E5M2 rounds float32 values to F8 E5M2 codes with
// round-to-nearest-even, saturating finite overflow:
//
//	for i, v := range src { dst[i] = RNE(v) with finite |v| ≥ 61440 → ±57344 }
//
// Finite magnitudes that IEEE rounding would send to Inf (≥ 61440) give
// ±57344 (0x7b/0xfb); ±Inf stays ±Inf (0x7c/0xfc); a NaN gives 0x7f with its
// sign. It panics if len(dst) != len(src).
func F32ToF8E5M2(dst []uint8, src []float32) {
	if len(dst) != len(src) {
		mismatch("F32ToF8E5M2", "dst", len(dst), "src", len(src))
	}
	f := cur.f32ToF8E5M2
	if len(src) < parMin {
		f(dst, src)
		return
	}
	parallel(len(src), func(lo, hi int) { f(dst[lo:hi], src[lo:hi]) })
}
