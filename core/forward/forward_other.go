//go:build !amd64

package forward

const haveDotAVX2 = false

// dot4AVX2 is never called off amd64 (haveDotAVX2 is false).
func dot4AVX2(w, x0, x1, x2, x3 *float32, n int) (a0, a1, a2, a3 float64) { return 0, 0, 0, 0 }
