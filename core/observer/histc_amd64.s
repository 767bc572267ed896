#include "textflag.h"

// func histcAVX2(counts *uint32, xs *float32, n int, left, right, nb, width, lastBin float32, dump uint32)
//
// Eight values per step: q = ((x-left)*nb)/width with one float32 rounding per operation (as
// the scalar loop), bin = trunc(min(q, lastBin)), and values outside [left, right] (NaN, ±Inf,
// out of range) go to counts[dump]. n must be a multiple of 8.
TEXT ·histcAVX2(SB), NOSPLIT, $0-48
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
	XORQ BX, BX

loop:
	CMPQ BX, CX
	JGE  done
	VMOVUPS (SI)(BX*4), Y0
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
	VEXTRACTI128 $1, Y3, X4
	VMOVD   X3, AX
	VPEXTRD $1, X3, R8
	VPEXTRD $2, X3, R9
	VPEXTRD $3, X3, R10
	INCL (DI)(AX*4)
	INCL (DI)(R8*4)
	INCL (DI)(R9*4)
	INCL (DI)(R10*4)
	VMOVD   X4, AX
	VPEXTRD $1, X4, R8
	VPEXTRD $2, X4, R9
	VPEXTRD $3, X4, R10
	INCL (DI)(AX*4)
	INCL (DI)(R8*4)
	INCL (DI)(R9*4)
	INCL (DI)(R10*4)
	ADDQ $8, BX
	JMP  loop

done:
	VZEROUPPER
	RET
