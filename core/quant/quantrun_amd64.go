package quant

import "golang.org/x/sys/cpu"

// haveQuantAVX2 selects the vector quantize-and-measure kernels. They do the same float32
// multiply and add and the same integer clamp as grid.q, so the bytes they store are the scalar
// loop's; their sums differ from a sequential float64 loop only in the order of additions.
var haveQuantAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// quantMeasure8AVX2 quantizes xs[:n] (n a positive multiple of 8, all finite) to one byte each
// and returns Σx² and Σ(x − x̂)²; see quantrun_amd64.s.
//
//go:noescape
func quantMeasure8AVX2(dst *byte, xs *float32, n int, inv, scale float32, loB, hiB, zb int32) (sig, noise float64)

// quantMeasure4AVX2 is quantMeasure8AVX2 for packed nibbles: dst receives n/2 bytes.
//
//go:noescape
func quantMeasure4AVX2(dst *byte, xs *float32, n int, inv, scale float32, loB, hiB, zb int32) (sig, noise float64)
