#include "textflag.h"

// HSUM stores the sum of the four doubles of ymm (whose low half is xmm) at dst.
#define HSUM(ymm, xmm, dst) \
	VEXTRACTF128 $1, ymm, X0 \
	VADDPD X0, xmm, X0 \
	VPERMILPD $1, X0, X1 \
	VADDSD X1, X0, X0 \
	VMOVSD X0, dst

// func dot4AVX2(w, x0, x1, x2, x3 *float32, n int) (a0, a1, a2, a3 float64)
//
// The four dot products Σ w[i]·xk[i] over i < n (n a positive multiple of 8), in float64: each
// float32 is widened and the products (exact in float64) are accumulated with FMA, eight
// independent sums per input row (two four-lane accumulators), added together at the end.
TEXT ·dot4AVX2(SB), NOSPLIT, $0-80
	MOVQ w+0(FP), SI
	MOVQ x0+8(FP), R8
	MOVQ x1+16(FP), R9
	MOVQ x2+24(FP), R10
	MOVQ x3+32(FP), R11
	MOVQ n+40(FP), CX
	SHLQ $2, CX // bytes
	XORQ BX, BX
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	VXORPD Y10, Y10, Y10
	VXORPD Y11, Y11, Y11
	VXORPD Y12, Y12, Y12
	VXORPD Y13, Y13, Y13
	VXORPD Y14, Y14, Y14
	VXORPD Y15, Y15, Y15

loop:
	VCVTPS2PD (SI)(BX*1), Y0
	VCVTPS2PD 16(SI)(BX*1), Y1
	VCVTPS2PD (R8)(BX*1), Y2
	VCVTPS2PD 16(R8)(BX*1), Y3
	VFMADD231PD Y0, Y2, Y8
	VFMADD231PD Y1, Y3, Y12
	VCVTPS2PD (R9)(BX*1), Y4
	VCVTPS2PD 16(R9)(BX*1), Y5
	VFMADD231PD Y0, Y4, Y9
	VFMADD231PD Y1, Y5, Y13
	VCVTPS2PD (R10)(BX*1), Y2
	VCVTPS2PD 16(R10)(BX*1), Y3
	VFMADD231PD Y0, Y2, Y10
	VFMADD231PD Y1, Y3, Y14
	VCVTPS2PD (R11)(BX*1), Y4
	VCVTPS2PD 16(R11)(BX*1), Y5
	VFMADD231PD Y0, Y4, Y11
	VFMADD231PD Y1, Y5, Y15
	ADDQ $32, BX
	CMPQ BX, CX
	JLT  loop

	VADDPD Y12, Y8, Y8
	VADDPD Y13, Y9, Y9
	VADDPD Y14, Y10, Y10
	VADDPD Y15, Y11, Y11
	HSUM(Y8, X8, a0+48(FP))
	HSUM(Y9, X9, a1+56(FP))
	HSUM(Y10, X10, a2+64(FP))
	HSUM(Y11, X11, a3+72(FP))
	VZEROUPPER
	RET
