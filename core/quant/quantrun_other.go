//go:build !amd64

package quant

const haveQuantAVX2, haveHalfAVX2, haveHalfAVX512 = false, false, false

// The vector kernels are never called off amd64 (haveQuantAVX2 is false); these exist so that
// the callers compile everywhere.
func quantMeasure8AVX2(dst *byte, xs *float32, n int, inv, scale float32, loB, hiB, zb int32, measure bool) (sig, noise float64) {
	return 0, 0
}

func quantMeasure4AVX2(dst *byte, xs *float32, n int, inv, scale float32, loB, hiB, zb int32, measure bool) (sig, noise float64) {
	return 0, 0
}

func energyAVX2(x, y *float32, n int) (sig, noise float64) { return 0, 0 }

func castMeasureHalfAVX2(dst *byte, xs *float32, n int, bf16 bool) (done int, sig, noise float64) {
	return 0, 0, 0
}

func castMeasureHalfAVX512(dst *byte, xs *float32, n int, bf16 bool) (done int, sig, noise float64) {
	return 0, 0, 0
}
