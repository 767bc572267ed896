//go:build !asan

package quant

import "golang.org/x/sys/cpu"

// haveQuantAVX2 selects the vector quantize-and-measure kernels. They do the same float32
// multiply and add and the same integer clamp as grid.q, so the bytes they store are the scalar
// loop's; their sums differ from a sequential float64 loop only in the order of additions.
var haveQuantAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA
