#include "textflag.h"

// The quantize-and-measure kernels. For each x of xs[:n] (n a positive multiple of 8, every x
// finite) they compute exactly what grid.q does on the bits of x*inv + magic:
//
//	b = clamp(bits(float32(x*inv) + magic), loB, hiB)
//	q = b + zb                 (the stored value)
//	y = float32(b - magicBits) * scale   (Dequantize's value of q: (q - zp)·scale, one rounding)
//
// store q (a byte per value, or two's-complement nibbles packed two per byte, the even index in
// the low nibble) and, when measure is true, return Σx² and Σ(x − y)² accumulated in float64
// (zeros otherwise: plain Quantize skips that work).
//
// Shared register use:
//   Y15 inv  Y14 magic  Y13 loB  Y12 hiB  Y11 magicBits  Y10 zb  Y9 scale
//   Y8  pack mask/shuffle  Y7 second pack constant
//   Y6  Σx² accumulator  Y5 Σ(x − y)² accumulator  Y0–Y4 scratch

#define SETUP \
	MOVQ dst+0(FP), DI \
	MOVQ xs+8(FP), SI \
	MOVQ n+16(FP), CX \
	VBROADCASTSS inv+24(FP), Y15 \
	MOVL $0x4B400000, AX \
	VMOVD AX, X14 \
	VPBROADCASTD X14, Y14 \
	VMOVDQA Y14, Y11 \
	VPBROADCASTD loB+32(FP), Y13 \
	VPBROADCASTD hiB+36(FP), Y12 \
	VPBROADCASTD zb+40(FP), Y10 \
	VBROADCASTSS scale+28(FP), Y9 \
	VXORPD Y6, Y6, Y6 \
	VXORPD Y5, Y5, Y5 \
	MOVBQZX measure+44(FP), R12

// QUANT8: Y0 = x (8 floats at SI), Y1 = q (int32), Y2 = y (float32).
#define QUANT8 \
	VMOVUPS (SI), Y0 \
	VMULPS Y15, Y0, Y1 \
	VADDPS Y14, Y1, Y1 \
	VPMAXSD Y13, Y1, Y1 \
	VPMINSD Y12, Y1, Y1 \
	VPSUBD Y11, Y1, Y2 \
	VPADDD Y10, Y1, Y1 \
	VCVTDQ2PS Y2, Y2 \
	VMULPS Y9, Y2, Y2

// MEASURE: Y6 += x², Y5 += (x − y)² for the 8 values in Y0 (x) and Y2 (y), in float64.
#define MEASURE \
	VCVTPS2PD X0, Y3 \
	VEXTRACTF128 $1, Y0, X0 \
	VCVTPS2PD X0, Y0 \
	VCVTPS2PD X2, Y4 \
	VEXTRACTF128 $1, Y2, X2 \
	VCVTPS2PD X2, Y2 \
	VSUBPD Y4, Y3, Y4 \
	VSUBPD Y2, Y0, Y2 \
	VMULPD Y3, Y3, Y3 \
	VFMADD231PD Y0, Y0, Y3 \
	VADDPD Y3, Y6, Y6 \
	VMULPD Y4, Y4, Y4 \
	VFMADD231PD Y2, Y2, Y4 \
	VADDPD Y4, Y5, Y5

// RESULT: horizontal sums of Y6 and Y5 stored at sig and noise.
#define RESULT(sig, noise) \
	VEXTRACTF128 $1, Y6, X0 \
	VADDPD X0, X6, X6 \
	VPERMILPD $1, X6, X0 \
	VADDSD X0, X6, X6 \
	VEXTRACTF128 $1, Y5, X0 \
	VADDPD X0, X5, X5 \
	VPERMILPD $1, X5, X0 \
	VADDSD X0, X5, X5 \
	VMOVSD X6, sig \
	VMOVSD X5, noise \
	VZEROUPPER

// func quantMeasure8AVX2(dst *byte, xs *float32, n int, inv, scale float32, loB, hiB, zb int32, measure bool) (sig, noise float64)
TEXT ·quantMeasure8AVX2(SB), NOSPLIT, $0-64
	SETUP
	// Y8: in each 128-bit lane, bytes 0, 4, 8, 12 (the low byte of each int32) to bytes 0–3.
	MOVQ $0x808080800C080400, AX
	VMOVQ AX, X8
	VPBROADCASTQ X8, Y8
	MOVQ $0x8080808080808080, AX
	VMOVQ AX, X7
	VPBROADCASTQ X7, Y7
	VPUNPCKLQDQ Y7, Y8, Y8

loop8:
	QUANT8
	VPSHUFB Y8, Y1, Y1
	VEXTRACTI128 $1, Y1, X3
	VPUNPCKLDQ X3, X1, X1
	VMOVQ X1, (DI)
	TESTQ R12, R12
	JZ   next8
	MEASURE

next8:
	ADDQ $32, SI
	ADDQ $8, DI
	SUBQ $8, CX
	JNZ  loop8

	RESULT(sig+48(FP), noise+56(FP))
	RET

// func quantMeasure4AVX2(dst *byte, xs *float32, n int, inv, scale float32, loB, hiB, zb int32, measure bool) (sig, noise float64)
TEXT ·quantMeasure4AVX2(SB), NOSPLIT, $0-64
	SETUP
	// Y7: 0x0F in every int32 (the nibble); Y8: in each lane, bytes 0 and 8 to bytes 0–1.
	MOVL $0x0F, AX
	VMOVD AX, X7
	VPBROADCASTD X7, Y7
	MOVQ $0x8080808080800800, AX
	VMOVQ AX, X8
	VPBROADCASTQ X8, Y8
	MOVQ $0x8080808080808080, AX
	VMOVQ AX, X0
	VPBROADCASTQ X0, Y0
	VPUNPCKLQDQ Y0, Y8, Y8

loop4:
	QUANT8
	// Each 64-bit pair (even, odd) becomes one byte: even | odd<<4 in its low byte.
	VPAND Y7, Y1, Y1
	VPSRLQ $28, Y1, Y3
	VPOR Y3, Y1, Y1
	VPSHUFB Y8, Y1, Y1
	VEXTRACTI128 $1, Y1, X3
	VPUNPCKLWD X3, X1, X1
	VMOVD X1, AX
	MOVL AX, (DI)
	TESTQ R12, R12
	JZ   next4
	MEASURE

next4:
	ADDQ $32, SI
	ADDQ $4, DI
	SUBQ $8, CX
	JNZ  loop4

	RESULT(sig+48(FP), noise+56(FP))
	RET

// func energyAVX2(x, y *float32, n int) (sig, noise float64)
//
// Σx² and Σ(x − y)² over n pairs (n a positive multiple of 8), widened to float64 and
// accumulated with FMA: the MEASURE step of the kernels above on caller data.
TEXT ·energyAVX2(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPD Y6, Y6, Y6
	VXORPD Y5, Y5, Y5

loope:
	VMOVUPS (SI), Y0
	VMOVUPS (DI), Y2
	MEASURE
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  loope

	RESULT(sig+24(FP), noise+32(FP))
	RET

// func castMeasureHalfAVX2(dst *byte, xs *float32, n int, bf16 bool) (done int, sig, noise float64)
//
// Casts xs[:n] (n a positive multiple of 8) to IEEE half (VCVTPS2PH, round to nearest even,
// as tensor.Float32ToF16) or, with bf16, to bfloat16 (x + 0x7FFF + bit 16 of x, the top half,
// as tensor.Float32ToBF16), two little-endian bytes each, and measures Σx² and Σ(x − y)² in
// float64 (y the half's value) as MEASURE does. It stops before the first block of 8 whose
// output has an all-ones exponent (a NaN or ±Inf input, or a finite value that overflows), or
// whose input is a NaN or ±Inf, and returns how many values it did, for the caller to cast that block with the scalar rules.
TEXT ·castMeasureHalfAVX2(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ xs+8(FP), SI
	MOVQ n+16(FP), CX
	MOVBQZX bf16+24(FP), R12
	XORQ DX, DX
	VXORPD Y6, Y6, Y6
	VXORPD Y5, Y5, Y5
	TESTQ R12, R12
	JNZ  bfsetup
	// X13: 0x7C00 in every word (the half exponent)
	MOVL $0x7C00, AX
	VMOVD AX, X13
	VPBROADCASTW X13, X13

loophalf:
	CMPQ DX, CX
	JGE  donehalf
	VMOVUPS (SI)(DX*4), Y0
	PREFETCHT0 2048(SI)(DX*4)
	VCVTPS2PH $0, Y0, X1
	VPAND X13, X1, X3
	VPCMPEQW X13, X3, X3
	VPTEST X3, X3
	JNZ  donehalf
	VMOVDQU X1, (DI)(DX*2)
	VCVTPH2PS X1, Y2
	MEASURE
	ADDQ $8, DX
	JMP  loophalf

bfsetup:
	// Y12: 1, Y11: 0x7FFF, Y10: 0xFFFF0000, Y9: 0x7F800000, in every int32
	MOVL $1, AX
	VMOVD AX, X12
	VPBROADCASTD X12, Y12
	MOVL $0x7FFF, AX
	VMOVD AX, X11
	VPBROADCASTD X11, Y11
	MOVL $0xFFFF0000, AX
	VMOVD AX, X10
	VPBROADCASTD X10, Y10
	MOVL $0x7F800000, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9

loopbf:
	CMPQ DX, CX
	JGE  donehalf
	VMOVDQU (SI)(DX*4), Y0
	PREFETCHT0 2048(SI)(DX*4)
	VPSRLD $16, Y0, Y1
	VPAND Y12, Y1, Y1
	VPADDD Y11, Y1, Y1
	VPADDD Y0, Y1, Y1
	VPAND Y10, Y1, Y2
	VPAND Y9, Y2, Y3
	VPCMPEQD Y9, Y3, Y3
	// and a NaN or ±Inf input: a NaN's rounding may carry out of the exponent (0xFFFFFFFF
	// would become +0)
	VPAND Y9, Y0, Y4
	VPCMPEQD Y9, Y4, Y4
	VPOR Y4, Y3, Y3
	VPTEST Y3, Y3
	JNZ  donehalf
	VPSRLD $16, Y2, Y1
	VEXTRACTI128 $1, Y1, X3
	VPACKUSDW X3, X1, X1
	VMOVDQU X1, (DI)(DX*2)
	MEASURE
	ADDQ $8, DX
	JMP  loopbf

donehalf:
	MOVQ DX, done+32(FP)
	RESULT(sig+40(FP), noise+48(FP))
	RET

// MEASURE16: Z6/Z7 += x², Z8/Z9 += d² for the 16 values x in Z0 and d = x − y in Z2, widened
// to float64 (x² and d² are exact there: at most 48 significant bits) and added with FMA.
// Clobbers Z0, Z2, Z3, Z4.
#define MEASURE16 \
	VCVTPS2PD Y0, Z3 \
	VEXTRACTF64X4 $1, Z0, Y0 \
	VCVTPS2PD Y0, Z4 \
	VFMADD231PD Z3, Z3, Z6 \
	VFMADD231PD Z4, Z4, Z7 \
	VCVTPS2PD Y2, Z3 \
	VEXTRACTF64X4 $1, Z2, Y2 \
	VCVTPS2PD Y2, Z4 \
	VFMADD231PD Z3, Z3, Z8 \
	VFMADD231PD Z4, Z4, Z9

// func castMeasureHalfAVX512(dst *byte, xs *float32, n int, bf16 bool) (done int, sig, noise float64)
//
// castMeasureHalfAVX2 sixteen values at a time (n a positive multiple of 16), with AVX-512:
// the same bits out (VCVTPS2PH with round to nearest even, or the same bfloat16 rounding) and
// the same stop before the first block of 16 holding a NaN or ±Inf input or a value whose
// output has an all-ones exponent (it overflowed). The error x − y is taken in float32, where
// it is exact (y, x rounded, is within a factor of two of x: Sterbenz), then squared in
// float64 as castMeasureHalfAVX2 does; the sums differ from its only in the order of additions.
//
// Both kernels prefetch the input 2 KiB ahead: where the output is fresh memory, the page
// faults of its first touch break the hardware prefetcher's stream, and the loads wait on
// memory (about 8% of a 180 MB cast into a fresh buffer, BenchmarkCastHalf).
TEXT ·castMeasureHalfAVX512(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ xs+8(FP), SI
	MOVQ n+16(FP), CX
	MOVBQZX bf16+24(FP), R12
	XORQ DX, DX
	VPXORQ Z6, Z6, Z6
	VPXORQ Z7, Z7, Z7
	VPXORQ Z8, Z8, Z8
	VPXORQ Z9, Z9, Z9
	TESTQ R12, R12
	JNZ  bfsetup16
	// Y13: 0x7C00 in every word (the half exponent)
	MOVL $0x7C00, AX
	VPBROADCASTW AX, Y13

loophalf16:
	CMPQ DX, CX
	JGE  done16
	VMOVUPS (SI)(DX*4), Z0
	PREFETCHT0 2048(SI)(DX*4)
	VCVTPS2PH $0, Z0, Y1
	VPANDD Y13, Y1, Y3
	VPCMPEQW Y13, Y3, K1
	KORTESTW K1, K1
	JNZ  done16
	VMOVDQU Y1, (DI)(DX*2)
	VCVTPH2PS Y1, Z2
	VSUBPS Z2, Z0, Z2
	MEASURE16
	ADDQ $16, DX
	JMP  loophalf16

bfsetup16:
	// Z12: 1, Z11: 0x7FFF, Z10: 0xFFFF0000, Z13: 0x7F800000, in every int32
	MOVL $1, AX
	VPBROADCASTD AX, Z12
	MOVL $0x7FFF, AX
	VPBROADCASTD AX, Z11
	MOVL $0xFFFF0000, AX
	VPBROADCASTD AX, Z10
	MOVL $0x7F800000, AX
	VPBROADCASTD AX, Z13

loopbf16:
	CMPQ DX, CX
	JGE  done16
	VMOVDQU32 (SI)(DX*4), Z0
	PREFETCHT0 2048(SI)(DX*4)
	// A NaN or ±Inf input (its own exponent all ones: a NaN's rounding may carry out of the
	// exponent), or an output exponent of all ones (a finite value that overflowed).
	VPANDD Z13, Z0, Z3
	VPCMPEQD Z13, Z3, K1
	VPSRLD $16, Z0, Z1
	VPANDD Z12, Z1, Z1
	VPADDD Z11, Z1, Z1
	VPADDD Z0, Z1, Z1
	VPANDD Z10, Z1, Z2
	VPANDD Z13, Z2, Z3
	VPCMPEQD Z13, Z3, K2
	KORTESTW K1, K2
	JNZ  done16
	VPSRLD $16, Z2, Z1
	VPMOVDW Z1, Y1
	VMOVDQU Y1, (DI)(DX*2)
	VSUBPS Z2, Z0, Z2
	MEASURE16
	ADDQ $16, DX
	JMP  loopbf16

done16:
	MOVQ DX, done+32(FP)
	VADDPD Z7, Z6, Z6
	VEXTRACTF64X4 $1, Z6, Y0
	VADDPD Y0, Y6, Y6
	VADDPD Z9, Z8, Z8
	VEXTRACTF64X4 $1, Z8, Y0
	VADDPD Y0, Y8, Y5
	RESULT(sig+40(FP), noise+48(FP))
	RET
