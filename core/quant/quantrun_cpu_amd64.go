//go:build !asan

package quant

import "golang.org/x/sys/cpu"

// haveQuantAVX2 selects the vector quantize-and-measure kernels. They do the same float32
// multiply and add and the same integer clamp as grid.q, so the bytes they store are the scalar
// loop's; their sums differ from a sequential float64 loop only in the order of additions.
var haveQuantAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// haveHalfAVX2 selects the vector Float16/BFloat16 cast-and-measure kernel (F16C's
// round-to-nearest-even conversion, the same bits as tensor.Float32ToF16 for every finite value
// that does not overflow; the rest goes through the scalar rules).
var haveHalfAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

// haveHalfAVX512 selects the AVX-512 form of that kernel (sixteen values a step, the error
// taken in float32 where it is exact): fewer instructions per value than the AVX2 one; the
// cast is mostly memory-bound, so it gains 5-15% (BenchmarkCastHalf).
var haveHalfAVX512 = haveHalfAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL
