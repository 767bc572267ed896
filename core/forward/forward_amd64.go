package forward

import "golang.org/x/sys/cpu"

// haveDotAVX2 selects the vector dot products in Linear.
var haveDotAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dot4AVX2 returns Σ w[i]·xk[i] for k = 0..3 over n values (a positive multiple of 8); see
// forward_amd64.s.
//
//go:noescape
func dot4AVX2(w, x0, x1, x2, x3 *float32, n int) (a0, a1, a2, a3 float64)
