package observer

import "golang.org/x/sys/cpu"

// haveHistcAVX2 selects the vector histc kernel. VDIVPS rounds each lane exactly as the scalar
// float32 division does, so both kernels give the same bins; the vector one only divides eight
// values per instruction.
var haveHistcAVX2 = histcAVX2Available

// histcAVX2Available is whether the machine can run the vector kernel (tests switch
// haveHistcAVX2 off to compare it with the portable one).
var histcAVX2Available = cpu.X86.HasAVX2

//go:noescape
func histcAVX2(counts *uint32, xs *float32, n int, left, right, nb, width, lastBin float32, dump uint32, buf *uint32)
