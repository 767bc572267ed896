#include "textflag.h"

// func minMaxKeysAVX2(xs *float32, n int) (mn, mx int32)
//
// The minimum and maximum floatKey of xs[:n] (n a positive multiple of 8): the key map is
// k ^ ((k >> 31) & 0x7FFFFFFF), reduced with signed integer min/max, eight lanes at a time in
// two independent accumulator pairs.
TEXT ·minMaxKeysAVX2(SB), NOSPLIT, $0-24
	MOVQ xs+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL $0x7FFFFFFF, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15

	VMOVDQU (SI), Y0
	VPSRAD $31, Y0, Y1
	VPAND  Y15, Y1, Y1
	VPXOR  Y1, Y0, Y0
	VMOVDQA Y0, Y2 // min pair A
	VMOVDQA Y0, Y3 // max pair A
	VMOVDQA Y0, Y4 // min pair B
	VMOVDQA Y0, Y5 // max pair B
	MOVQ $8, BX

loop16:
	LEAQ 16(BX), DX
	CMPQ DX, CX
	JGT  tail8
	VMOVDQU (SI)(BX*4), Y0
	VMOVDQU 32(SI)(BX*4), Y6
	VPSRAD $31, Y0, Y1
	VPSRAD $31, Y6, Y7
	VPAND  Y15, Y1, Y1
	VPAND  Y15, Y7, Y7
	VPXOR  Y1, Y0, Y0
	VPXOR  Y7, Y6, Y6
	VPMINSD Y0, Y2, Y2
	VPMAXSD Y0, Y3, Y3
	VPMINSD Y6, Y4, Y4
	VPMAXSD Y6, Y5, Y5
	MOVQ DX, BX
	JMP  loop16

tail8:
	CMPQ BX, CX
	JGE  reduce
	VMOVDQU (SI)(BX*4), Y0
	VPSRAD $31, Y0, Y1
	VPAND  Y15, Y1, Y1
	VPXOR  Y1, Y0, Y0
	VPMINSD Y0, Y2, Y2
	VPMAXSD Y0, Y3, Y3

reduce:
	VPMINSD Y4, Y2, Y2
	VPMAXSD Y5, Y3, Y3
	VEXTRACTI128 $1, Y2, X4
	VEXTRACTI128 $1, Y3, X5
	VPMINSD X4, X2, X2
	VPMAXSD X5, X3, X3
	VPSHUFD $0x4E, X2, X4
	VPSHUFD $0x4E, X3, X5
	VPMINSD X4, X2, X2
	VPMAXSD X5, X3, X3
	VPSHUFD $0xB1, X2, X4
	VPSHUFD $0xB1, X3, X5
	VPMINSD X4, X2, X2
	VPMAXSD X5, X3, X3
	VMOVD X2, AX
	VMOVD X3, DX
	MOVL AX, mn+16(FP)
	MOVL DX, mx+20(FP)
	VZEROUPPER
	RET
