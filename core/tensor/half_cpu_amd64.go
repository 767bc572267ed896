//go:build !asan

package tensor

import "golang.org/x/sys/cpu"

// haveF16C and haveAVX2 select the vector F16 → F32 and BF16 → F32 conversions.
var (
	haveF16C = cpu.X86.HasAVX && cpu.X86.HasF16C
	haveAVX2 = cpu.X86.HasAVX2
)
