package observer

import "golang.org/x/sys/cpu"

// haveHistcAVX2 selects the vector histc kernels. VDIVPS rounds each lane exactly as the scalar
// float32 division does, so the vector and scalar kernels give the same bins; the vector ones
// only divide eight or sixteen values per instruction.
var haveHistcAVX2 = histcAVX2Available

// histcAVX2Available is whether the machine can run the vector kernel (tests switch
// haveHistcAVX2 off to compare it with the portable one).
var histcAVX2Available = cpu.X86.HasAVX2

// useHistcAVX512 picks the 16-lane kernel over the 8-lane one when vector kernels are on (tests
// switch it to run both).
var useHistcAVX512 = histcAVX512Available

var histcAVX512Available = cpu.X86.HasAVX512F

//go:noescape
func histcAVX2(counts *uint32, xs *float32, n int, left, right, nb, width, lastBin float32, dump uint32, buf *uint32)

//go:noescape
func histcAVX512(counts *uint32, xs *float32, n int, left, right, nb, width, lastBin float32, dump uint32, buf *uint32)
