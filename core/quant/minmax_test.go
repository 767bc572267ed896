package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// minMaxKeysRef is minMaxRun's definition one element at a time: the float whose key is the
// smallest and the one whose key is the largest.
func minMaxKeysRef(xs []float32) (float32, float32) {
	if len(xs) == 0 {
		return float32(math.Inf(1)), float32(math.Inf(-1))
	}
	mn, mx := floatKey(xs[0]), floatKey(xs[0])
	for _, x := range xs[1:] {
		mn, mx = min(mn, floatKey(x)), max(mx, floatKey(x))
	}
	return keyFloat(mn), keyFloat(mx)
}

// TestMinMaxRunMatchesKeyOrder holds minMaxRun (vector body and scalar tail) to the key order
// bit for bit: every length remainder, and each special value at every position of the vector
// body and the tail.
func TestMinMaxRunMatchesKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	negZero := float32(math.Copysign(0, -1))
	specials := []float32{
		float32(math.NaN()), math.Float32frombits(0xFFC00001), math.Float32frombits(0x7F800001),
		float32(math.Inf(1)), float32(math.Inf(-1)), negZero, 0,
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32,
	}
	bits := func(f float32) uint32 { return math.Float32bits(f) }
	for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 31, 33, 40, 1000} {
		base := make([]float32, n)
		for i := range base {
			base[i] = float32(rng.NormFloat64())
		}
		check := func(what string, xs []float32) {
			gotMn, gotMx := minMaxRun(xs)
			wantMn, wantMx := minMaxKeysRef(xs)
			if bits(gotMn) != bits(wantMn) || bits(gotMx) != bits(wantMx) {
				t.Fatalf("%d values, %s: got (%v %#x, %v %#x), want (%v %#x, %v %#x)", n, what,
					gotMn, bits(gotMn), gotMx, bits(gotMx), wantMn, bits(wantMn), wantMx, bits(wantMx))
			}
		}
		check("gaussian", base)
		zeros := make([]float32, n)
		for i := range zeros {
			if i%3 == 1 {
				zeros[i] = negZero
			}
		}
		check("signed zeros", zeros)
		for _, s := range specials {
			for p := 0; p < n; p += max(1, n/37) {
				xs := append([]float32(nil), base...)
				xs[p] = s
				check(fmt.Sprintf("special %#x at %d", math.Float32bits(s), p), xs)
			}
		}
	}
}
