package observer

import (
	"math"
	"os"
	"strings"

	"golang.org/x/sys/cpu"
)

// This file reproduces, bit for bit, the few ATen CPU kernels whose rounding the histogram
// observer depends on: torch.sum's cascade order over float32, torch.linspace (which the CPU
// build computes with fused multiply-adds), and torch.div(..., rounding_mode="floor").

// sumLanes is the width of ATen's Vectorized<float> on the machine torch would run on: torch
// dispatches to its AVX512 kernels when the CPU has AVX512 VL/BW/DQ and FMA, else AVX2 (8 lanes).
// ATEN_CPU_CAPABILITY overrides the choice in torch, so it does here too. The lane count changes the
// order of torch.sum, hence the last bits of the histogram total and of the search's error terms.
var sumLanes = detectSumLanes()

func detectSumLanes() int {
	switch strings.ToLower(os.Getenv("ATEN_CPU_CAPABILITY")) {
	case "avx512":
		return 16
	case "avx2", "default":
		return 8
	}
	if cpu.X86.HasAVX512VL && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ && cpu.X86.HasFMA {
		return 16
	}
	return 8
}

// ceilLog2 is ATen's utils::CeilLog2 (1 for x <= 2).
func ceilLog2(x int) int {
	if x <= 2 {
		return 1
	}
	n := 0
	for v := uint64(x - 1); v != 0; v >>= 1 {
		n++
	}
	return n
}

// cascadeSum is torch.sum of a contiguous float32 vector on one CPU thread (SumKernel.cpp:
// vectorized_inner_sum → row_sum → multi_row_sum with 4 levels and 4 accumulators of `lanes`
// float32 lanes each). Every addition is one float32 rounding, in exactly ATen's order.
// Below one vector's worth of elements torch takes its scalar path (4 scalar accumulators).
func cascadeSum(v []float32, lanes int) float32 {
	n := len(v)
	if n < lanes {
		return scalarRowSum(v)
	}
	const ilp, levels = 4, 4
	nvec := n / lanes
	rows := nvec / ilp
	var accBuf [levels * ilp * 16]float32
	acc := func(level, k int) []float32 {
		o := (level*ilp + k) * lanes
		return accBuf[o : o+lanes]
	}
	addVec := func(dst []float32, src []float32) {
		for j := range dst {
			dst[j] = dst[j] + src[j]
		}
	}
	power := max(4, ceilLog2(rows)/levels)
	step := 1 << power
	mask := step - 1
	i := 0
	for i+step <= rows {
		for j := 0; j < step; j, i = j+1, i+1 {
			for k := 0; k < ilp; k++ {
				o := (i*ilp + k) * lanes
				addVec(acc(0, k), v[o:o+lanes])
			}
		}
		for j := 1; j < levels; j++ {
			for k := 0; k < ilp; k++ {
				addVec(acc(j, k), acc(j-1, k))
				clear(acc(j-1, k))
			}
			if i&(mask<<(j*power)) != 0 {
				break
			}
		}
	}
	for ; i < rows; i++ {
		for k := 0; k < ilp; k++ {
			o := (i*ilp + k) * lanes
			addVec(acc(0, k), v[o:o+lanes])
		}
	}
	for j := 1; j < levels; j++ {
		for k := 0; k < ilp; k++ {
			addVec(acc(0, k), acc(j, k))
		}
	}
	// row_sum: vectors left over after the ilp rows go to partial 0, then partials fold into 0.
	for r := rows * ilp; r < nvec; r++ {
		addVec(acc(0, 0), v[r*lanes:(r+1)*lanes])
	}
	for k := 1; k < ilp; k++ {
		addVec(acc(0, 0), acc(0, k))
	}
	var s float32
	for _, x := range v[nvec*lanes:] {
		s += x
	}
	for _, x := range acc(0, 0) {
		s += x
	}
	return s
}

// scalarRowSum is row_sum with the scalar load policy (inputs shorter than one vector).
func scalarRowSum(v []float32) float32 {
	var p [4]float32
	rows := len(v) / 4
	for i := 0; i < rows; i++ {
		for k := 0; k < 4; k++ {
			p[k] += v[4*i+k]
		}
	}
	for _, x := range v[rows*4:] {
		p[0] += x
	}
	s := ((p[0] + p[1]) + p[2]) + p[3]
	return 0 + s
}

// fmaF32 is C's fmaf: a*b+c rounded once to float32.
func fmaF32(a, b, c float32) float32 {
	if r, ok := fmaF32Fast(a, b, c); ok {
		return r
	}
	return fmaF32Tie(a, b, c)
}

// fmaF32Fast is fmaF32 where rounding the float64 sum to float32 is rounding once, reporting
// false where it may not be. The product of two float32 is exact in float64, so only the sum
// rounds before the conversion, and that can only go wrong when the sum sits exactly on a
// float32 tie (the low 29 of its 52 mantissa bits are 1000…0): float32 ties are float64
// numbers, so the sum and the exact value lie on the same side of every other one. Below the
// float32 normal range (exponent field under 1023-126) ties sit elsewhere, so that range is
// left to fmaF32Tie too. Small enough to inline into loops over many values.
func fmaF32Fast(a, b, c float32) (float32, bool) {
	s := float64(a)*float64(b) + float64(c)
	sb := math.Float64bits(s)
	return float32(s), sb&(1<<29-1) != 1<<28 && sb<<1 >= (1023-126)<<53
}

// fmaF32Tie is fmaF32 for a float64 sum on a float32 tie or in the subnormal range: the sum is
// made exact with TwoSum, so that a tie is pushed the way the exact value lies.
func fmaF32Tie(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	cc := float64(c)
	s := p + cc
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return float32(s)
	}
	bb := s - p
	errTerm := (p - (s - bb)) + (cc - bb)
	r := float32(s)
	if errTerm == 0 || math.IsInf(float64(r), 0) {
		return r
	}
	// s rounds to r; check whether s is exactly halfway between r and its neighbour.
	var other float32
	if float64(r) < s {
		other = math.Nextafter32(r, float32(math.Inf(1)))
	} else if float64(r) > s {
		other = math.Nextafter32(r, float32(math.Inf(-1)))
	} else {
		return r // s is a float32: the exact value is within half an ulp of it
	}
	mid := (float64(r) + float64(other)) / 2
	if s != mid {
		return r
	}
	// A tie in float64 that the exact sum breaks: go toward the sign of the lost error.
	if (errTerm > 0) == (float64(other) > float64(r)) {
		return other
	}
	return r
}

// linspaceAt is element i of torch.linspace(start, end, steps) in float32 on CPU: the first half
// counts up from start, the second half down from end, each value one fused multiply-add.
func linspaceAt(start, end, step float32, steps, i int) float32 {
	if i < steps/2 {
		return fmaF32(step, float32(i), start)
	}
	return fmaF32(-step, float32(steps-i-1), end)
}

// linspaceFill sets dst[t] to linspaceAt(start, end, step, steps, from+t), with the rounding
// check inlined (the upscale's mid-points are its hot loop).
func linspaceFill(dst []float32, start, end, step float32, steps, from int) {
	for t := range dst {
		i := from + t
		a, b, c := step, float32(i), start
		if i >= steps/2 {
			a, b, c = -step, float32(steps-i-1), end
		}
		r, ok := fmaF32Fast(a, b, c)
		if !ok {
			r = fmaF32Tie(a, b, c)
		}
		dst[t] = r
	}
}

// linspaceStep is the float32 step torch.linspace uses.
func linspaceStep(start, end float32, steps int) float32 {
	return (end - start) / float32(steps-1)
}

// floorDivF32 is c10::div_floor_floating for float32 (torch.div(a, b, rounding_mode="floor")).
// For finite a and non-zero finite b it equals the exact floor of the real quotient, which a
// float64 division gives (a float32 quotient is never within 2^-53 of an integer it is not).
func floorDivF32(a, b float32) float32 {
	if b != 0 && isFinite(a) && isFinite(b) {
		return float32(math.Floor(float64(a) / float64(b)))
	}
	if b == 0 {
		return a / b
	}
	mod := float32(math.Mod(float64(a), float64(b)))
	div := (a - mod) / b
	if mod != 0 && (b < 0) != (mod < 0) {
		div -= 1
	}
	if div != 0 {
		f := float32(math.Floor(float64(div)))
		if div-f > 0.5 {
			f += 1
		}
		return f
	}
	return float32(math.Copysign(0, float64(a/b)))
}

func isFinite(f float32) bool { return f-f == 0 }

// clampF32 is torch.clamp: NaN stays NaN.
func clampF32(x, lo, hi float32) float32 {
	if x != x {
		return x
	}
	return min(max(x, lo), hi)
}
