package observer

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// kernelInputs returns values that stress the bin arithmetic for the range [left, right]: every
// bin edge and its float32 neighbours, the outer edges, values just outside, ±Inf, NaN,
// subnormals, signed zeros and random values inside, in a shuffled order.
func kernelInputs(rng *rand.Rand, left, right float32, bins int) []float32 {
	var xs []float32
	width := right - left
	for i := 0; i <= bins; i++ {
		e := left + width*float32(i)/float32(bins)
		xs = append(xs, e, math.Nextafter32(e, float32(math.Inf(-1))), math.Nextafter32(e, float32(math.Inf(1))))
	}
	inf := float32(math.Inf(1))
	xs = append(xs, left, right, math.Nextafter32(left, -inf), math.Nextafter32(right, inf),
		inf, -inf, float32(math.NaN()), 0, float32(math.Copysign(0, -1)),
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32)
	for range 3000 {
		xs = append(xs, left+float32(rng.Float64())*width)
	}
	rng.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
	return xs
}

// histcKernel is one of countBins's kernels, selected by use.
type histcKernel struct {
	name string
	use  func()
}

// histcKernels lists the portable histc kernel and each vector one this machine can run.
func histcKernels() []histcKernel {
	ks := []histcKernel{{"portable", func() { haveHistcAVX2 = false }}}
	if histcAVX2Available {
		ks = append(ks, histcKernel{"AVX2", func() { haveHistcAVX2 = true }})
	}
	return ks
}

// TestCountBinsKernelsAgree holds the vector histc kernel to the scalar one, bin for bin and in
// the count of values left out, on ranges from subnormal to overflowing widths, on every length
// remainder modulo 16 and on lengths around the kernel's pipeline (128 values in flight) and ring
// buffer (histcRing values). The inputs hold every bin edge and its float32 neighbours, where a
// wrong rounding moves a value to the next bin.
func TestCountBinsKernelsAgree(t *testing.T) {
	defer func(v bool) { haveHistcAVX2 = v }(haveHistcAVX2)
	ks := histcKernels()[1:]
	if len(ks) == 0 {
		t.Skip("no vector histc kernel on this machine")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	ranges := []struct{ lo, hi float32 }{
		{-1, 1}, {0, 1}, {-3.5, 120.25}, {1e-40, 3e-40}, {-1e-30, 1e-30},
		{5, 5}, {-3e38, 3e38}, {-math.MaxFloat32, math.MaxFloat32}, {1e30, 3e38}, {-7, -6.999},
		{math.SmallestNonzeroFloat32, 5 * math.SmallestNonzeroFloat32}, {-0.1, 0.30000001},
	}
	lengths := []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 120, 127, 128, 136, 144, histcRing - 1,
		histcRing, histcRing + 8, histcRing + 16, 2*histcRing + 24, 3*histcRing + 7}
	for _, r := range ranges {
		for _, bins := range []int{1, 3, 256, 2048} {
			left, right := histBounds(r.lo, r.hi)
			width, nb := right-left, float32(bins)
			xs := kernelInputs(rng, left, right, bins)
			want := make([]uint32, bins)
			for _, n := range append(lengths, len(xs)) {
				n = min(n, len(xs))
				clear(want)
				wantOut := countBinsScalar(want, xs[:n], left, right, nb, width)
				for _, k := range ks {
					k.use()
					got := make([]uint32, bins+1)
					gotOut := countBins(got, xs[:n], left, right, nb, width)
					if gotOut != wantOut {
						t.Errorf("%s, range [%g, %g], %d bins, %d values: %d left out, want %d", k.name, r.lo, r.hi, bins, n, gotOut, wantOut)
					}
					if !slices.Equal(got[:bins], want) {
						for i := range want {
							if got[i] != want[i] {
								t.Fatalf("%s, range [%g, %g], %d bins, %d values: bin %d got %d, want %d", k.name, r.lo, r.hi, bins, n, i, got[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}
