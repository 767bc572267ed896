#include "textflag.h"

DATA midLanes<>+0(SB)/4, $0
DATA midLanes<>+4(SB)/4, $1
DATA midLanes<>+8(SB)/4, $2
DATA midLanes<>+12(SB)/4, $3
DATA midLanes<>+16(SB)/4, $4
DATA midLanes<>+20(SB)/4, $5
DATA midLanes<>+24(SB)/4, $6
DATA midLanes<>+28(SB)/4, $7
GLOBL midLanes<>(SB), RODATA|NOPTR, $32

// func midsFMA(dst *float32, n int, c, s, half float32, i0, di int32)
//
// dst[t] = fma(s, float32(i0+t*di), c) + half for t < n (n a positive multiple of 8): one
// float32 fused multiply-add and one float32 addition per value, as linspaceAt(...) + half.
// The index is converted from int32 like Go's float32(int) (round to nearest even).
TEXT ·midsFMA(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS c+16(FP), Y1
	VBROADCASTSS s+20(FP), Y2
	VBROADCASTSS half+24(FP), Y3
	MOVL i0+28(FP), AX
	MOVL di+32(FP), DX
	VMOVD AX, X4
	VPBROADCASTD X4, Y4
	VMOVD DX, X5
	VPBROADCASTD X5, Y5
	VMOVDQU midLanes<>(SB), Y6
	VPMULLD Y6, Y5, Y6
	VPADDD Y6, Y4, Y4 // i0 + di*[0..7]
	VPSLLD $3, Y5, Y5 // 8*di

loop:
	VCVTDQ2PS Y4, Y0
	VFMADD213PS Y1, Y2, Y0 // s*idx + c, rounded once
	VADDPS Y3, Y0, Y0
	VMOVUPS Y0, (DI)
	VPADDD Y5, Y4, Y4
	ADDQ $32, DI
	SUBQ $8, CX
	JG   loop
	VZEROUPPER
	RET
