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
	for _, c := range [][2]float32{{0, 1}, {3, 0.0625}, {1 << 20, 1}, {1 << 23, 1}, {1<<24 - 8, 0.5}, {0.1, 0.1}, {1e30, 3}, {5, 0}, {0, 0}, {7, 3.25}, {1 << 22, 0.75}} {
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
