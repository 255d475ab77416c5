//go:build amd64 && !noasm && gc

#include "textflag.h"

// func unpack4AVX512(out *float32, packed *byte, nblocks, bytesPerBlock int, absmax *float32, code *[16]float32, perm *[16]int32)
TEXT ·unpack4AVX512(SB), NOSPLIT, $0-56
	MOVQ out+0(FP), DI
	MOVQ packed+8(FP), SI
	MOVQ nblocks+16(FP), CX
	MOVQ bytesPerBlock+24(FP), DX
	MOVQ absmax+32(FP), R8
	MOVQ code+40(FP), R9
	MOVQ perm+48(FP), R10
	VMOVUPS (R9), Z10             // code
	VMOVDQU32 (R10), Z11          // interleave permutation
	MOVL $15, AX
	VPBROADCASTD AX, Z12          // low-nibble mask
	SHRQ $3, DX                   // 8-byte steps per block
	TESTQ CX, CX
	JZ done

block:
	VBROADCASTSS (R8), Z9
	VMULPS Z9, Z10, Z8            // lut = code·absmax
	MOVQ DX, BX

inner:
	VPMOVZXBD (SI), Y0            // 8 bytes → 8 dwords
	VPSRLD $4, Z0, Z1             // high nibbles (first elements)
	VPANDD Z12, Z0, Z2            // low nibbles
	VPERMT2D Z2, Z11, Z1          // h0 l0 h1 l1 …
	VPERMPS Z8, Z1, Z3            // lut[code]
	VMOVUPS Z3, (DI)
	ADDQ $8, SI
	ADDQ $64, DI
	DECQ BX
	JNZ inner

	ADDQ $4, R8
	DECQ CX
	JNZ block

done:
	VZEROUPPER
	RET
