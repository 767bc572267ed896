package observer

import (
	"math"
	"math/rand/v2"
	"testing"
)

// upscaleReference is _upscale_histogram written out plainly: every mid-point computed, placed
// by a binary search and added in turn.
func upscaleReference(hist []float32, oldMin, oldMax, newMin, newMax float32) []float32 {
	bins := len(hist)
	out := make([]float32, bins)
	edges := make([]float32, bins+1)
	stepE := linspaceStep(newMin, newMax, bins+1)
	for i := range edges {
		edges[i] = linspaceAt(newMin, newMax, stepE, bins+1, i)
	}
	nu := bins * upsampleRate
	half := float32(0.5) * ((oldMax - oldMin) / float32(nu))
	stepM := linspaceStep(oldMin, oldMax, nu+1)
	for j := 0; j < nu; j++ {
		mid := linspaceAt(oldMin, oldMax, stepM, nu+1, j) + half
		idx := min(max(upperBound(edges, mid)-1, 0), bins-1)
		out[idx] += hist[j/upsampleRate] / upsampleRate
	}
	return out
}

// TestUpscaleMatchesReference checks the upscale shortcut (whole old bins placed at once, sixteen
// exact additions done as one, bins split between two new ones) against the plain algorithm, bit for bit, on integer counts (the
// exact case), huge and fractional counts (where the additions round) and ranges that widen a
// little or a lot.
func TestUpscaleMatchesReference(t *testing.T) {
	defer func(v bool) { haveMidsFMA = v }(haveMidsFMA)
	for _, vec := range []bool{false, true} {
		haveMidsFMA = vec && midsFMAAvailable
		t.Run(map[bool]string{false: "portable", true: "vector"}[haveMidsFMA], testUpscaleMatchesReference)
	}
}

func testUpscaleMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 40; trial++ {
		obs, _ := New(Options{Kind: Histogram})
		h := obs.(*HistogramObserver)
		h.min = float32(-1 - rng.Float64())
		h.max = float32(1 + 3*rng.Float64())
		for i := range h.hist {
			switch trial % 4 {
			case 0:
				h.hist[i] = float32(rng.IntN(5000))
			case 1:
				h.hist[i] = float32(rng.IntN(1 << 26)) // sums round
			case 2:
				h.hist[i] = float32(rng.Float64() * 1000)
			default:
				if rng.IntN(3) == 0 {
					h.hist[i] = float32(rng.IntN(300))
				}
			}
		}
		grow := []float64{1.0001, 1.01, 1.5, 10}[trial%4]
		newMin, newMax := h.min*float32(grow), h.max*float32(1+rng.Float64()*(grow-1))
		want := upscaleReference(h.hist, h.min, h.max, newMin, newMax)
		h.upscale(newMin, newMax)
		for i := range want {
			if math.Float32bits(h.tmp[i]) != math.Float32bits(want[i]) {
				t.Fatalf("trial %d: bin %d is %v, the plain algorithm gives %v", trial, i, h.tmp[i], want[i])
			}
		}
	}
}

func TestAddTimes(t *testing.T) {
	cases := [][2]float32{{0, 1}, {3, 0.0625}, {1 << 20, 1}, {1 << 23, 1}, {1<<24 - 8, 0.5}, {0.1, 0.1}, {1e30, 3}, {5, 0}, {0, 0}, {7, 3.25}, {1 << 22, 0.75},
		// ties (w's remainder exactly half an ulp of acc), binade crossings, subnormals, huge values
		{1 << 24, 1}, {1 << 24, 3}, {1<<24 + 2, 1}, {1 << 25, 2}, {1<<24 - 1, 1.5}, {2 - 1.0/(1<<23), 1.0 / (1 << 24)},
		{1, 1.0 / (1 << 24)}, {1, 3.0 / (1 << 24)}, {1e-40, 1e-41}, {1.2e-38, 1e-45}, {3e38, 1e31}, {math.MaxFloat32, 1e38},
		{1000.1, 0.3}, {12345.678, 0.015625}, {4096.5, 1.0 / 3}}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		// running histogram values after many combines: arbitrary floats, increments of c/16
		e := rng.IntN(60) - 20
		acc := float32(math.Ldexp(rng.Float64(), e))
		w := float32(math.Ldexp(float64(rng.IntN(1<<20)), e-rng.IntN(40)) / 16)
		if rng.IntN(4) == 0 {
			w = float32(math.Ldexp(1, int(math.Float32bits(acc)>>23&0xff)-127-24)) * float32(1+2*rng.IntN(3)) // remainder u/2
		}
		cases = append(cases, [2]float32{acc, w})
	}
	for _, c := range cases {
		for n := 1; n <= 16; n++ {
			want := c[0]
			for range n {
				want += c[1]
			}
			if got := addTimes(c[0], c[1], n); math.Float32bits(got) != math.Float32bits(want) {
				t.Errorf("addTimes(%v, %v, %d) = %v, %d additions give %v", c[0], c[1], n, got, n, want)
			}
		}
	}
}

// TestMidPointKernelsAgree holds the vector mid-point kernel (one hardware float32 fma per
// value) to fmaF32 bit for bit, on every mid-point of ranges from subnormal to overflowing
// widths and bin counts whose blocks end ragged.
func TestMidPointKernelsAgree(t *testing.T) {
	if !midsFMAAvailable {
		t.Skip("no vector mid-point kernel on this machine")
	}
	defer func(v bool) { haveMidsFMA = v }(haveMidsFMA)
	ranges := []struct{ lo, hi float32 }{
		{-1, 1}, {0, 1}, {-3.5, 120.25}, {1e-40, 3e-40}, {-1e-44, 1e-44}, {-1e-30, 1e-30},
		{5, 5.000001}, {-3e38, 3e38}, {-math.MaxFloat32 / 2, math.MaxFloat32 / 2}, {1e30, 3e38},
		{-7, -6.999}, {0.1, 0.3}, {-2.5e-38, 1e-38}, {-1, 0}, {0, 0}, {-3, -3},
	}
	for _, r := range ranges {
		for _, bins := range []int{1, 3, 256, 2048, 5000} {
			nu := bins * upsampleRate
			stepM := linspaceStep(r.lo, r.hi, nu+1)
			half := float32(0.5) * ((r.hi - r.lo) / float32(nu))
			var vec, plain midSource
			haveMidsFMA = true
			vec.reset(r.lo, r.hi, stepM, half, nu+1)
			haveMidsFMA = false
			plain.reset(r.lo, r.hi, stepM, half, nu+1)
			haveMidsFMA = true
			for j := 0; j < nu; j++ {
				vec.cover(j &^ (upsampleRate - 1))
				if a, b := vec.get(j), plain.get(j); math.Float32bits(a) != math.Float32bits(b) {
					t.Fatalf("range [%g, %g], %d bins: mid-point %d is %v from the vector kernel, %v from fmaF32", r.lo, r.hi, bins, j, a, b)
				}
			}
			// The new range's edges: bins+1 values (an odd or even count, halves meeting
			// anywhere), plus -0, through the vector kernel and its scalar tails.
			edges := make([]float32, bins+1)
			stepE := linspaceStep(r.lo, r.hi, bins+1)
			linspaceAdd(edges, r.lo, r.hi, stepE, negZero, bins+1, 0)
			for i, e := range edges {
				if want := linspaceAt(r.lo, r.hi, stepE, bins+1, i); math.Float32bits(e) != math.Float32bits(want) {
					t.Fatalf("range [%g, %g], %d bins: edge %d is %v from the vector kernel, %v from fmaF32", r.lo, r.hi, bins, i, e, want)
				}
			}
		}
	}
}
