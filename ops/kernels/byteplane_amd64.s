//go:build amd64 && !noasm && gc

// Hand-written AVX2 byte-plane split/merge for widths 2 and 4, the fast
// paths of byteplane.go (whose pure-Go loops are the reference twin, tested
// against these on every length and offset). Each function handles whole
// groups only (32 elements of 2 bytes or 32 elements of 4 bytes); the Go
// wrappers in byteplane_amd64.go pass exactly that many and run the twin on
// the rest.
//
// Sign rotation without a branch: every element x is replaced by
// x<<s | x>>(bits-s) (split) or x>>s | x<<(bits-s) (merge) with s = 1 when
// rotating and s = 0 otherwise; a vector shift by ≥ the lane width gives 0,
// so s = 0 is the identity.

#include "textflag.h"

// Per 128-bit lane: the 8 even bytes, then the 8 odd bytes.
DATA planeShuf2<>+0(SB)/8, $0x0e0c0a0806040200
DATA planeShuf2<>+8(SB)/8, $0x0f0d0b0907050301
DATA planeShuf2<>+16(SB)/8, $0x0e0c0a0806040200
DATA planeShuf2<>+24(SB)/8, $0x0f0d0b0907050301
GLOBL planeShuf2<>(SB), RODATA|NOPTR, $32

// Per 128-bit lane: the 4×4 byte transpose (byte 4e+p <-> 4p+e); it is its
// own inverse, so split and merge share it.
DATA planeShuf4<>+0(SB)/8, $0x0d0905010c080400
DATA planeShuf4<>+8(SB)/8, $0x0f0b07030e0a0602
DATA planeShuf4<>+16(SB)/8, $0x0d0905010c080400
DATA planeShuf4<>+24(SB)/8, $0x0f0b07030e0a0602
GLOBL planeShuf4<>(SB), RODATA|NOPTR, $32

// VPERMD indices: split gathers dwords [0 4 1 5 2 6 3 7], merge [0 2 4 6 1 3 5 7].
DATA planePermSplit4<>+0(SB)/8, $0x0000000400000000
DATA planePermSplit4<>+8(SB)/8, $0x0000000500000001
DATA planePermSplit4<>+16(SB)/8, $0x0000000600000002
DATA planePermSplit4<>+24(SB)/8, $0x0000000700000003
GLOBL planePermSplit4<>(SB), RODATA|NOPTR, $32

DATA planePermMerge4<>+0(SB)/8, $0x0000000200000000
DATA planePermMerge4<>+8(SB)/8, $0x0000000600000004
DATA planePermMerge4<>+16(SB)/8, $0x0000000300000001
DATA planePermMerge4<>+24(SB)/8, $0x0000000700000005
GLOBL planePermMerge4<>(SB), RODATA|NOPTR, $32

// func split2AVX2(d0, d1, src []byte, rotate bool)
// len(src)/64 groups of 32 elements; d0, d1 get 32 bytes per group.
TEXT ·split2AVX2(SB), NOSPLIT, $0-73
	MOVQ    d0_base+0(FP), DI
	MOVQ    d1_base+24(FP), SI
	MOVQ    src_base+48(FP), AX
	MOVQ    src_len+56(FP), CX
	MOVBQZX rotate+72(FP), DX
	SHRQ    $6, CX
	JZ      split2done
	MOVQ    $16, BX
	SUBQ    DX, BX
	VMOVQ   DX, X14                // left shift s
	VMOVQ   BX, X15                // right shift 16-s
	VMOVDQU planeShuf2<>(SB), Y13

split2loop:
	VMOVDQU     (AX), Y0           // elements 0-15
	VMOVDQU     32(AX), Y1         // elements 16-31
	VPSLLW      X14, Y0, Y2
	VPSRLW      X15, Y0, Y3
	VPOR        Y2, Y3, Y0
	VPSLLW      X14, Y1, Y2
	VPSRLW      X15, Y1, Y3
	VPOR        Y2, Y3, Y1
	VPSHUFB     Y13, Y0, Y0        // qwords [E0 O0 | E1 O1]: even/odd bytes of elements 0-7, 8-15
	VPSHUFB     Y13, Y1, Y1        // [E2 O2 | E3 O3]
	VPUNPCKLQDQ Y1, Y0, Y2         // [E0 E2 | E1 E3]
	VPUNPCKHQDQ Y1, Y0, Y3         // [O0 O2 | O1 O3]
	VPERMQ      $0xd8, Y2, Y2      // [E0 E1 E2 E3]
	VPERMQ      $0xd8, Y3, Y3      // [O0 O1 O2 O3]
	VMOVDQU     Y2, (DI)
	VMOVDQU     Y3, (SI)
	ADDQ        $64, AX
	ADDQ        $32, DI
	ADDQ        $32, SI
	DECQ        CX
	JNZ         split2loop
	VZEROUPPER

split2done:
	RET

// func merge2AVX2(dst, s0, s1 []byte, rotate bool)
// len(dst)/64 groups of 32 elements; s0, s1 give 32 bytes per group.
TEXT ·merge2AVX2(SB), NOSPLIT, $0-73
	MOVQ    dst_base+0(FP), DI
	MOVQ    dst_len+8(FP), CX
	MOVQ    s0_base+24(FP), AX
	MOVQ    s1_base+48(FP), SI
	MOVBQZX rotate+72(FP), DX
	SHRQ    $6, CX
	JZ      merge2done
	MOVQ    $16, BX
	SUBQ    DX, BX
	VMOVQ   DX, X14                // right shift s
	VMOVQ   BX, X15                // left shift 16-s

merge2loop:
	VMOVDQU    (AX), Y0            // low bytes of elements 0-31
	VMOVDQU    (SI), Y1            // high bytes
	VPERMQ     $0xd8, Y0, Y0       // qwords [0 2 | 1 3]
	VPERMQ     $0xd8, Y1, Y1
	VPUNPCKLBW Y1, Y0, Y2          // elements 0-15
	VPUNPCKHBW Y1, Y0, Y3          // elements 16-31
	VPSRLW     X14, Y2, Y4
	VPSLLW     X15, Y2, Y5
	VPOR       Y4, Y5, Y2
	VPSRLW     X14, Y3, Y4
	VPSLLW     X15, Y3, Y5
	VPOR       Y4, Y5, Y3
	VMOVDQU    Y2, (DI)
	VMOVDQU    Y3, 32(DI)
	ADDQ       $32, AX
	ADDQ       $32, SI
	ADDQ       $64, DI
	DECQ       CX
	JNZ        merge2loop
	VZEROUPPER

merge2done:
	RET

// func split4AVX2(d0, d1, d2, d3, src []byte, rotate bool)
// len(src)/128 groups of 32 elements; each plane gets 32 bytes per group.
TEXT ·split4AVX2(SB), NOSPLIT, $0-121
	MOVQ    d0_base+0(FP), DI
	MOVQ    d1_base+24(FP), SI
	MOVQ    d2_base+48(FP), R8
	MOVQ    d3_base+72(FP), R9
	MOVQ    src_base+96(FP), AX
	MOVQ    src_len+104(FP), CX
	MOVBQZX rotate+120(FP), DX
	SHRQ    $7, CX
	JZ      split4done
	MOVQ    $32, BX
	SUBQ    DX, BX
	VMOVQ   DX, X14                // left shift s
	VMOVQ   BX, X15                // right shift 32-s
	VMOVDQU planeShuf4<>(SB), Y13
	VMOVDQU planePermSplit4<>(SB), Y12

split4loop:
	VMOVDQU (AX), Y0               // elements 0-7
	VMOVDQU 32(AX), Y1             // 8-15
	VMOVDQU 64(AX), Y2             // 16-23
	VMOVDQU 96(AX), Y3             // 24-31
	VPSLLD  X14, Y0, Y4
	VPSRLD  X15, Y0, Y5
	VPOR    Y4, Y5, Y0
	VPSLLD  X14, Y1, Y4
	VPSRLD  X15, Y1, Y5
	VPOR    Y4, Y5, Y1
	VPSLLD  X14, Y2, Y4
	VPSRLD  X15, Y2, Y5
	VPOR    Y4, Y5, Y2
	VPSLLD  X14, Y3, Y4
	VPSRLD  X15, Y3, Y5
	VPOR    Y4, Y5, Y3
	VPSHUFB Y13, Y0, Y0            // per lane: dwords = planes 0..3 of 4 elements
	VPSHUFB Y13, Y1, Y1
	VPSHUFB Y13, Y2, Y2
	VPSHUFB Y13, Y3, Y3
	VPERMD  Y0, Y12, Y0            // qword p = plane p of the 8 elements
	VPERMD  Y1, Y12, Y1
	VPERMD  Y2, Y12, Y2
	VPERMD  Y3, Y12, Y3
	VPUNPCKLQDQ Y1, Y0, Y4         // [p0 p0 | p2 p2] elements 0-15
	VPUNPCKHQDQ Y1, Y0, Y5         // [p1 p1 | p3 p3] elements 0-15
	VPUNPCKLQDQ Y3, Y2, Y6         // the same for elements 16-31
	VPUNPCKHQDQ Y3, Y2, Y7
	VPERM2I128  $0x20, Y6, Y4, Y0  // plane 0, elements 0-31
	VPERM2I128  $0x31, Y6, Y4, Y2  // plane 2
	VPERM2I128  $0x20, Y7, Y5, Y1  // plane 1
	VPERM2I128  $0x31, Y7, Y5, Y3  // plane 3
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, (SI)
	VMOVDQU Y2, (R8)
	VMOVDQU Y3, (R9)
	ADDQ    $128, AX
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, R8
	ADDQ    $32, R9
	DECQ    CX
	JNZ     split4loop
	VZEROUPPER

split4done:
	RET

// func merge4AVX2(dst, s0, s1, s2, s3 []byte, rotate bool)
// len(dst)/128 groups of 32 elements; each plane gives 32 bytes per group.
TEXT ·merge4AVX2(SB), NOSPLIT, $0-121
	MOVQ    dst_base+0(FP), DI
	MOVQ    dst_len+8(FP), CX
	MOVQ    s0_base+24(FP), AX
	MOVQ    s1_base+48(FP), SI
	MOVQ    s2_base+72(FP), R8
	MOVQ    s3_base+96(FP), R9
	MOVBQZX rotate+120(FP), DX
	SHRQ    $7, CX
	JZ      merge4done
	MOVQ    $32, BX
	SUBQ    DX, BX
	VMOVQ   DX, X14                // right shift s
	VMOVQ   BX, X15                // left shift 32-s
	VMOVDQU planeShuf4<>(SB), Y13
	VMOVDQU planePermMerge4<>(SB), Y12

merge4loop:
	VMOVDQU (AX), Y0               // plane 0 of elements 0-31
	VMOVDQU (SI), Y1               // plane 1
	VMOVDQU (R8), Y2               // plane 2
	VMOVDQU (R9), Y3               // plane 3
	VPERM2I128  $0x20, Y2, Y0, Y4  // [p0 | p2] elements 0-15
	VPERM2I128  $0x31, Y2, Y0, Y6  // [p0 | p2] elements 16-31
	VPERM2I128  $0x20, Y3, Y1, Y5  // [p1 | p3] elements 0-15
	VPERM2I128  $0x31, Y3, Y1, Y7  // [p1 | p3] elements 16-31
	VPUNPCKLQDQ Y5, Y4, Y0         // qwords p0..p3 of elements 0-7
	VPUNPCKHQDQ Y5, Y4, Y1         // 8-15
	VPUNPCKLQDQ Y7, Y6, Y2         // 16-23
	VPUNPCKHQDQ Y7, Y6, Y3         // 24-31
	VPERMD  Y0, Y12, Y0            // per lane: dwords = planes 0..3 of 4 elements
	VPERMD  Y1, Y12, Y1
	VPERMD  Y2, Y12, Y2
	VPERMD  Y3, Y12, Y3
	VPSHUFB Y13, Y0, Y0            // 4×4 byte transpose: whole elements
	VPSHUFB Y13, Y1, Y1
	VPSHUFB Y13, Y2, Y2
	VPSHUFB Y13, Y3, Y3
	VPSRLD  X14, Y0, Y4
	VPSLLD  X15, Y0, Y5
	VPOR    Y4, Y5, Y0
	VPSRLD  X14, Y1, Y4
	VPSLLD  X15, Y1, Y5
	VPOR    Y4, Y5, Y1
	VPSRLD  X14, Y2, Y4
	VPSLLD  X15, Y2, Y5
	VPOR    Y4, Y5, Y2
	VPSRLD  X14, Y3, Y4
	VPSLLD  X15, Y3, Y5
	VPOR    Y4, Y5, Y3
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	ADDQ    $32, AX
	ADDQ    $32, SI
	ADDQ    $32, R8
	ADDQ    $32, R9
	ADDQ    $128, DI
	DECQ    CX
	JNZ     merge4loop
	VZEROUPPER

merge4done:
	RET
