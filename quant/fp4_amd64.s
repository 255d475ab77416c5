//go:build amd64 && !noasm && gc

#include "textflag.h"

// func packFP4VBMI(out *byte, x *float32, n int, inv float32, base *[128]uint8, th *[16]float32, scaleBias *[2]float32, rank2code *[16]int32)
TEXT ·packFP4VBMI(SB), NOSPLIT, $0-64
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ base+32(FP), R8
	MOVQ th+40(FP), R9
	MOVQ scaleBias+48(FP), R10
	MOVQ rank2code+56(FP), R11
	VBROADCASTSS inv+24(FP), Z15
	VBROADCASTSS 0(R10), Z14      // bucket scale
	VBROADCASTSS 4(R10), Z13      // bucket bias
	VMOVUPS (R9), Z11             // thresholds (+Inf padded)
	VMOVDQU8 (R8), Z8             // buckets 0…63
	VMOVDQU8 64(R8), Z9           // buckets 64…127
	VMOVDQU32 (R11), Z7           // rank → code bits
	MOVL $127, AX
	VPBROADCASTD AX, Z12          // bucket mask
	MOVL $1, AX
	VPBROADCASTD AX, Z10          // ones
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z6           // |·| mask
	MOVL $8, AX
	VPBROADCASTD AX, Z5           // sign code bit
	VPXORD Z16, Z16, Z16          // 0.0
	SHRQ $4, CX
	JZ done

loop:
	VMULPS (SI), Z15, Z0          // s = x·inv
	VPANDD Z6, Z0, Z1             // a = |s|
	VMULPS Z14, Z1, Z2            // a·scale
	VADDPS Z13, Z2, Z2            // + bias
	VCVTTPS2DQ Z2, Z2             // int32 (NaN → 0x80000000)
	VPANDD Z12, Z2, Z2            // bucket 0…127
	VPERMI2B Z9, Z8, Z2           // base (table[0] = 0 fills the upper bytes)
	VPERMPS Z11, Z2, Z3           // th[b]
	VCMPPS $0x1e, Z3, Z1, K2      // a > th
	VPADDD Z10, Z2, K2, Z2        // rank
	VPERMD Z7, Z2, Z2             // code bits
	VCMPPS $0x11, Z16, Z0, K3     // s < 0
	VPORD Z5, Z2, K3, Z2          // sign
	VPSLLQ $4, Z2, Z4
	VPSRLQ $32, Z2, Z17
	VPORQ Z4, Z17, Z4
	VPMOVQB Z4, X3
	MOVQ X3, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	RET

// func quantFP4BlocksVBMI(out *byte, x *float32, nblocks, bs int, absmax *float32, base *[128]uint8, th *[16]float32, scaleBias *[2]float32, rank2code *[16]int32)
// The fused FP4 quantizer: per full block of bs (a multiple of 16) values
// absmax (NaN ignored), inv = 1/max(absmax, 1e-38), then packFP4VBMI's loop.
TEXT ·quantFP4BlocksVBMI(SB), NOSPLIT, $0-72
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ nblocks+16(FP), CX
	MOVQ bs+24(FP), DX
	MOVQ absmax+32(FP), R12
	MOVQ base+40(FP), R8
	MOVQ th+48(FP), R9
	MOVQ scaleBias+56(FP), R10
	MOVQ rank2code+64(FP), R11
	VBROADCASTSS 0(R10), Z14
	VBROADCASTSS 4(R10), Z13
	VMOVUPS (R9), Z11
	VMOVDQU8 (R8), Z8
	VMOVDQU8 64(R8), Z9
	VMOVDQU32 (R11), Z7
	MOVL $127, AX
	VPBROADCASTD AX, Z12
	MOVL $1, AX
	VPBROADCASTD AX, Z10
	MOVL $0x7fffffff, AX
	VPBROADCASTD AX, Z6
	MOVL $8, AX
	VPBROADCASTD AX, Z5
	VPXORD Z16, Z16, Z16
	MOVL $0x006ce3ee, AX          // 1e-38f
	VMOVD AX, X20
	MOVL $0x3f800000, AX          // 1.0f
	VMOVD AX, X21
	SHRQ $4, DX
	TESTQ CX, CX
	JZ fdone

fblock:
	VPXORD Z22, Z22, Z22
	MOVQ SI, R13
	MOVQ DX, BX
fmax:
	VPANDD (R13), Z6, Z23
	VMAXPS Z22, Z23, Z22          // NaN in x keeps the accumulator
	ADDQ $64, R13
	DECQ BX
	JNZ fmax
	VEXTRACTF64X4 $1, Z22, Y23
	VMAXPS Y23, Y22, Y22
	VEXTRACTF32X4 $1, Y22, X23
	VMAXPS X23, X22, X22
	VPERMILPS $0x4e, X22, X23
	VMAXPS X23, X22, X22
	VPERMILPS $0xb1, X22, X23
	VMAXPS X23, X22, X22
	VMOVSS X22, (R12)
	VMAXSS X20, X22, X22
	VDIVSS X22, X21, X22
	VBROADCASTSS X22, Z15
	MOVQ DX, BX

floop:
	VMULPS (SI), Z15, Z0
	VPANDD Z6, Z0, Z1
	VMULPS Z14, Z1, Z2
	VADDPS Z13, Z2, Z2
	VCVTTPS2DQ Z2, Z2
	VPANDD Z12, Z2, Z2
	VPERMI2B Z9, Z8, Z2
	VPERMPS Z11, Z2, Z3
	VCMPPS $0x1e, Z3, Z1, K2
	VPADDD Z10, Z2, K2, Z2
	VPERMD Z7, Z2, Z2
	VCMPPS $0x11, Z16, Z0, K3
	VPORD Z5, Z2, K3, Z2
	VPSLLQ $4, Z2, Z4
	VPSRLQ $32, Z2, Z17
	VPORQ Z4, Z17, Z4
	VPMOVQB Z4, X3
	MOVQ X3, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	DECQ BX
	JNZ floop

	ADDQ $4, R12
	DECQ CX
	JNZ fblock

fdone:
	VZEROUPPER
	RET
