package observer

import "golang.org/x/sys/cpu"

// haveMidsFMA selects the vector mid-point kernel of the upscale. A hardware float32 fused
// multiply-add rounds once, as fmaF32 does, so both give the same mid-points
// (TestMidPointKernelsAgree).
var haveMidsFMA = midsFMAAvailable

var midsFMAAvailable = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func midsFMA(dst *float32, n int, c, s, half float32, i0, di int32)
