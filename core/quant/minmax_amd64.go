package quant

import "golang.org/x/sys/cpu"

// haveMinMaxAVX2 selects the vector key reduction in minMaxRun. Integer min/max over the same
// keys is exact, so the vector path returns what the scalar loop does, NaN and -0 included.
var haveMinMaxAVX2 = cpu.X86.HasAVX2

//go:noescape
func minMaxKeysAVX2(xs *float32, n int) (mn, mx int32)
