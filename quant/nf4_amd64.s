//go:build amd64 && !noasm && gc

#include "textflag.h"

// func packNF4AVX512(out *byte, x *float32, n int, inv float32, base *[256]int32, th *[16]float32, scaleBias *[2]float32)
TEXT ·packNF4AVX512(SB), NOSPLIT, $0-56
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ base+32(FP), R8
	MOVQ th+40(FP), R9
	MOVQ scaleBias+48(FP), R10
	VBROADCASTSS inv+24(FP), Z15
	VBROADCASTSS 0(R10), Z14      // bucket scale
	VBROADCASTSS 4(R10), Z13      // bucket bias
	VMOVUPS (R9), Z11             // 16 thresholds
	MOVL $255, AX
	VPBROADCASTD AX, Z12          // bucket mask
	MOVL $1, AX
	VPBROADCASTD AX, Z10          // ones
	SHRQ $4, CX
	JZ done

loop:
	VMULPS (SI), Z15, Z0          // s = x·inv
	VMULPS Z14, Z0, Z1            // s·scale
	VADDPS Z13, Z1, Z1            // + bias
	VCVTTPS2DQ Z1, Z1             // int32 (NaN → 0x80000000)
	VPANDD Z12, Z1, Z1            // uint8(...)
	KXNORW K1, K1, K1
	VPXORD Z2, Z2, Z2
	VPGATHERDD (R8)(Z1*4), K1, Z2 // b = base[k]
	VPERMPS Z11, Z2, Z3           // th[b & 15]
	VCMPPS $0x1e, Z3, Z0, K2      // s > th (ordered: NaN false)
	VPADDD Z10, Z2, K2, Z2        // b++ where greater
	VPSLLQ $4, Z2, Z4             // low byte of each qword: c(2i)<<4
	VPSRLQ $32, Z2, Z5            // c(2i+1)
	VPORQ Z4, Z5, Z4
	VPMOVQB Z4, X6                // 8 packed bytes
	MOVQ X6, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	RET

// func packNF4VBMI(out *byte, x *float32, n int, inv float32, base *[128]uint8, th *[16]float32, scaleBias *[2]float32)
TEXT ·packNF4VBMI(SB), NOSPLIT, $0-56
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ base+32(FP), R8
	MOVQ th+40(FP), R9
	MOVQ scaleBias+48(FP), R10
	VBROADCASTSS inv+24(FP), Z15
	VBROADCASTSS 0(R10), Z14      // bucket scale
	VBROADCASTSS 4(R10), Z13      // bucket bias
	VMOVUPS (R9), Z11             // 16 thresholds
	VMOVDQU8 (R8), Z8             // buckets 0…63
	VMOVDQU8 64(R8), Z9           // buckets 64…127
	MOVL $127, AX
	VPBROADCASTD AX, Z12          // bucket mask
	MOVL $1, AX
	VPBROADCASTD AX, Z10          // ones
	SHRQ $4, CX
	JZ vdone

vloop:
	VMULPS (SI), Z15, Z0          // s = x·inv
	VMULPS Z14, Z0, Z1            // s·scale
	VADDPS Z13, Z1, Z1            // + bias
	VCVTTPS2DQ Z1, Z1             // int32 (NaN → 0x80000000)
	VPANDD Z12, Z1, Z2            // bucket 0…127; the other bytes of each dword are 0
	VPERMI2B Z9, Z8, Z2           // every byte → table[byte]; table[0] = 0, so dword = base[k]
	VPERMPS Z11, Z2, Z3           // th[b]
	VCMPPS $0x1e, Z3, Z0, K2      // s > th (ordered: NaN false)
	VPADDD Z10, Z2, K2, Z2        // b++ where greater
	VPSLLQ $4, Z2, Z4             // low byte of each qword: c(2i)<<4
	VPSRLQ $32, Z2, Z5            // c(2i+1)
	VPORQ Z4, Z5, Z4
	VPMOVQB Z4, X6                // 8 packed bytes
	MOVQ X6, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JNZ vloop

vdone:
	VZEROUPPER
	RET

// func quantNF4BlocksVBMI(out *byte, x *float32, nblocks, bs int, absmax *float32, base *[128]uint8, th *[16]float32, scaleBias *[2]float32)
// For each of nblocks full blocks of bs (a multiple of 16) values:
// absmax[b] = max|x| (NaN ignored: VMAXPS keeps the accumulator when x is
// NaN), inv = 1/max(absmax, 1e-38) (VMAXSS, VDIVSS), then the packing loop
// of packNF4VBMI.
TEXT ·quantNF4BlocksVBMI(SB), NOSPLIT, $0-64
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ nblocks+16(FP), CX
	MOVQ bs+24(FP), DX
	MOVQ absmax+32(FP), R11
	MOVQ base+40(FP), R8
	MOVQ th+48(FP), R9
	MOVQ scaleBias+56(FP), R10
	VBROADCASTSS 0(R10), Z14      // bucket scale
	VBROADCASTSS 4(R10), Z13      // bucket bias
	VMOVUPS (R9), Z11             // 16 thresholds
	VMOVDQU8 (R8), Z8             // buckets 0…63
	VMOVDQU8 64(R8), Z9           // buckets 64…127
	MOVL $127, AX
	VPBROADCASTD AX, Z12          // bucket mask
	MOVL $1, AX
	VPBROADCASTD AX, Z10          // ones
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z7           // |·| mask
	MOVL $0x006ce3ee, AX          // 1e-38f (absmaxFloor)
	VMOVD AX, X6
	MOVL $0x3f800000, AX          // 1.0f
	VMOVD AX, X5
	SHRQ $4, DX                   // 16-lane steps per block
	TESTQ CX, CX
	JZ qdone

qblock:
	// absmax over the block
	VPXORD Z16, Z16, Z16
	MOVQ SI, R12
	MOVQ DX, BX
qmax:
	VPANDD (R12), Z7, Z17
	VMAXPS Z16, Z17, Z16          // max(x, acc): acc kept when x is NaN
	ADDQ $64, R12
	DECQ BX
	JNZ qmax
	VEXTRACTF64X4 $1, Z16, Y17
	VMAXPS Y17, Y16, Y16
	VEXTRACTF32X4 $1, Y16, X17
	VMAXPS X17, X16, X16
	VPERMILPS $0x4e, X16, X17
	VMAXPS X17, X16, X16
	VPERMILPS $0xb1, X16, X17
	VMAXPS X17, X16, X16
	VMOVSS X16, (R11)             // absmax[b]
	VMAXSS X6, X16, X16           // max(absmax, 1e-38)
	VDIVSS X16, X5, X16           // inv = 1/…
	VBROADCASTSS X16, Z15
	MOVQ DX, BX

qloop:
	VMULPS (SI), Z15, Z0          // s = x·inv
	VMULPS Z14, Z0, Z1
	VADDPS Z13, Z1, Z1
	VCVTTPS2DQ Z1, Z1
	VPANDD Z12, Z1, Z2
	VPERMI2B Z9, Z8, Z2
	VPERMPS Z11, Z2, Z3
	VCMPPS $0x1e, Z3, Z0, K2
	VPADDD Z10, Z2, K2, Z2
	VPSLLQ $4, Z2, Z4
	VPSRLQ $32, Z2, Z18
	VPORQ Z4, Z18, Z4
	VPMOVQB Z4, X3
	MOVQ X3, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ BX
	JNZ qloop

	ADDQ $4, R11
	DECQ CX
	JNZ qblock

qdone:
	VZEROUPPER
	RET
