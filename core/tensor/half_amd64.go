package tensor

// f16ToF32F16C converts n halves (a positive multiple of 16) to float32; see half_amd64.s.
//
//go:noescape
func f16ToF32F16C(dst *float32, src *uint16, n int)

// bf16ToF32AVX2 widens n bfloat16 values (a positive multiple of 16) to float32.
//
//go:noescape
func bf16ToF32AVX2(dst *float32, src *uint16, n int)
