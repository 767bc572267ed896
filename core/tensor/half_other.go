//go:build !amd64

package tensor

const (
	haveF16C = false
	haveAVX2 = false
)

// The vector conversions are never called off amd64 (haveF16C and haveAVX2 are false).
func f16ToF32F16C(dst *float32, src *uint16, n int) {}

func bf16ToF32AVX2(dst *float32, src *uint16, n int) {}
