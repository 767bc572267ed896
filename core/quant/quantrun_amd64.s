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
// output has an all-ones exponent (a NaN or ±Inf input, or a finite value that overflows) and
// returns how many values it did, for the caller to cast that block with the scalar rules.
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
	VPSRLD $16, Y0, Y1
	VPAND Y12, Y1, Y1
	VPADDD Y11, Y1, Y1
	VPADDD Y0, Y1, Y1
	VPAND Y10, Y1, Y2
	VPAND Y9, Y2, Y3
	VPCMPEQD Y9, Y3, Y3
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
