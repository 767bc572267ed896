#include "textflag.h"

// The vector histc kernels count xs[0:n] into counts, a block of up to 256 values at a time in
// two loops: the first computes the block's bins with vector instructions into buf (256 uint32),
// the second adds one to counts[bin] for each with scalar increments. Splitting the work this way
// lets the core run the increments (the kernel's floor: one read-modify-write of a counter per
// value) back to back, instead of waiting on a lane extraction before each one; it is ~1.6x
// faster per value than extracting the lanes of each vector in turn.
//
// For each value: q = ((x-left)*nb)/width with one float32 rounding per operation (as the scalar
// loop), bin = trunc(min(q, lastBin)), and values outside [left, right] (NaN, ±Inf, out of
// range) go to counts[dump].

// func histcAVX2(counts *uint32, xs *float32, n int, left, right, nb, width, lastBin float32, dump uint32, buf *uint32)
//
// Eight values per vector; n must be a multiple of 8.
TEXT ·histcAVX2(SB), NOSPLIT, $0-56
	MOVQ counts+0(FP), DI
	MOVQ xs+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS left+24(FP), Y10
	VBROADCASTSS right+28(FP), Y11
	VBROADCASTSS nb+32(FP), Y12
	VBROADCASTSS width+36(FP), Y13
	VBROADCASTSS lastBin+40(FP), Y14
	MOVL dump+44(FP), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVQ buf+48(FP), R9
	LEAQ (SI)(CX*4), CX // end of xs

block2:
	CMPQ SI, CX
	JGE  done2
	MOVQ CX, R10
	SUBQ SI, R10        // bytes left
	CMPQ R10, $1024
	JLE  sized2
	MOVQ $1024, R10     // 256 values
sized2:
	LEAQ (SI)(R10*1), R11
	MOVQ R9, R8

bins2:
	VMOVUPS (SI), Y0
	// valid = x >= left && x <= right (ordered: false for NaN)
	VCMPPS $0x1D, Y10, Y0, Y1 // GE_OQ: Y1 = Y0 >= Y10
	VCMPPS $0x12, Y11, Y0, Y2 // LE_OQ: Y2 = Y0 <= Y11
	VANDPS Y1, Y2, Y1
	VSUBPS Y10, Y0, Y3        // x - left
	VMULPS Y12, Y3, Y3        // * nb
	VDIVPS Y13, Y3, Y3        // / width
	VMINPS Y14, Y3, Y3        // q < lastBin ? q : lastBin (NaN -> lastBin)
	VCVTTPS2DQ Y3, Y3
	// bin = valid ? bin : dump, as ((bin ^ dump) & valid) ^ dump
	VPXOR Y15, Y3, Y3
	VPAND Y1, Y3, Y3
	VPXOR Y15, Y3, Y3
	VMOVDQU Y3, (R8)
	ADDQ $32, SI
	ADDQ $32, R8
	CMPQ SI, R11
	JLT  bins2

	MOVQ R9, R8
	LEAQ (R9)(R10*1), R11
count2:
	MOVL 0(R8), AX
	MOVL 4(R8), BX
	MOVL 8(R8), DX
	MOVL 12(R8), R12
	INCL (DI)(AX*4)
	INCL (DI)(BX*4)
	INCL (DI)(DX*4)
	INCL (DI)(R12*4)
	MOVL 16(R8), AX
	MOVL 20(R8), BX
	MOVL 24(R8), DX
	MOVL 28(R8), R12
	INCL (DI)(AX*4)
	INCL (DI)(BX*4)
	INCL (DI)(DX*4)
	INCL (DI)(R12*4)
	ADDQ $32, R8
	CMPQ R8, R11
	JLT  count2
	JMP  block2

done2:
	VZEROUPPER
	RET

// func histcAVX512(counts *uint32, xs *float32, n int, left, right, nb, width, lastBin float32, dump uint32, buf *uint32)
//
// histcAVX2 with sixteen values per vector (AVX-512F); n must be a multiple of 16.
TEXT ·histcAVX512(SB), NOSPLIT, $0-56
	MOVQ counts+0(FP), DI
	MOVQ xs+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS left+24(FP), Z10
	VBROADCASTSS right+28(FP), Z11
	VBROADCASTSS nb+32(FP), Z12
	VBROADCASTSS width+36(FP), Z13
	VBROADCASTSS lastBin+40(FP), Z14
	MOVL dump+44(FP), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Z15
	MOVQ buf+48(FP), R9
	LEAQ (SI)(CX*4), CX

block16:
	CMPQ SI, CX
	JGE  done16
	MOVQ CX, R10
	SUBQ SI, R10
	CMPQ R10, $1024
	JLE  sized16
	MOVQ $1024, R10
sized16:
	LEAQ (SI)(R10*1), R11
	MOVQ R9, R8

bins16:
	VMOVUPS (SI), Z0
	VCMPPS $0x1D, Z10, Z0, K1     // K1 = x >= left
	VCMPPS $0x12, Z11, Z0, K1, K1 // K1 &= x <= right
	VSUBPS Z10, Z0, Z3
	VMULPS Z12, Z3, Z3
	VDIVPS Z13, Z3, Z3
	VMINPS Z14, Z3, Z3
	VCVTTPS2DQ Z3, Z3
	VMOVDQA32 Z15, Z4             // dump, with the valid lanes' bins merged in
	VMOVDQA32 Z3, K1, Z4
	VMOVDQU32 Z4, (R8)
	ADDQ $64, SI
	ADDQ $64, R8
	CMPQ SI, R11
	JLT  bins16

	MOVQ R9, R8
	LEAQ (R9)(R10*1), R11
count16:
	MOVL 0(R8), AX
	MOVL 4(R8), BX
	MOVL 8(R8), DX
	MOVL 12(R8), R12
	INCL (DI)(AX*4)
	INCL (DI)(BX*4)
	INCL (DI)(DX*4)
	INCL (DI)(R12*4)
	MOVL 16(R8), AX
	MOVL 20(R8), BX
	MOVL 24(R8), DX
	MOVL 28(R8), R12
	INCL (DI)(AX*4)
	INCL (DI)(BX*4)
	INCL (DI)(DX*4)
	INCL (DI)(R12*4)
	ADDQ $32, R8
	CMPQ R8, R11
	JLT  count16
	JMP  block16

done16:
	VZEROUPPER
	RET
