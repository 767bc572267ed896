package observer

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// adversarialBatches are calibration sequences that stress the split path's min/max and the
// combine rules: constant batches, signed zeros, subnormals, huge and overflowing ranges,
// batches inside the running range, ±Inf (filtered) and NaN (refused) in a large batch.
func adversarialBatches(n int) map[string][][]float32 {
	rng := rand.New(rand.NewPCG(11, 12))
	fill := func(f func(i int) float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = f(i)
		}
		return v
	}
	gauss := func(s float64) []float32 { return fill(func(int) float32 { return float32(rng.NormFloat64() * s) }) }
	konst := func(c float32) []float32 { return fill(func(int) float32 { return c }) }
	with := func(v []float32, at int, x float32) []float32 { v[at] = x; return v }
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	negZero := float32(math.Copysign(0, -1))
	return map[string][][]float32{
		"gauss widening":   {gauss(1), gauss(1.5), gauss(0.5), gauss(2), gauss(1)},
		"constant first":   {konst(0.37), konst(0.37), gauss(1), konst(-4)},
		"all constant":     {konst(2.5), konst(2.5), konst(2.5)},
		"signed zeros":     {fill(func(i int) float32 { return [2]float32{0, negZero}[i%2] }), konst(negZero), gauss(1e-3)},
		"subnormals":       {fill(func(int) float32 { return float32(rng.Float64()) * 1e-39 }), fill(func(int) float32 { return -float32(rng.Float64()) * 3e-45 })},
		"huge ranges":      {fill(func(int) float32 { return float32((rng.Float64()*2 - 1) * 3.4e38) }), with(gauss(1), 7, math.MaxFloat32), with(gauss(1), n-1, -math.MaxFloat32)},
		"inside the range": {gauss(3), gauss(0.1), gauss(0.2), gauss(0.01)},
		"infinities":       {with(with(gauss(1), 3, inf), n-2, -inf), fill(func(i int) float32 { return [2]float32{inf, -inf}[i%2] }), with(gauss(4), n/2, inf)},
		"nan late":         {gauss(1), with(gauss(5), n-1, nan), gauss(2)},
		"nan first chunk":  {with(gauss(1), 0, nan), gauss(1)},
		// Speculative batches (histc over the current range while reading the min/max):
		// inside the range, widening it at the first or the last value only, hitting both
		// edges exactly, and NaN or ±Inf inside an otherwise speculative batch.
		"widen at first":  {gauss(1), with(gauss(0.5), 0, 9), gauss(0.5), with(gauss(0.5), 0, -9)},
		"widen at last":   {gauss(1), with(gauss(0.5), n-1, -9), gauss(0.5), with(gauss(0.5), n-1, 9)},
		"edges exactly":   edgesExactly(gauss(1), gauss(0.5)),
		"nan in fused":    {gauss(2), with(gauss(0.5), 0, nan), with(gauss(0.5), n-1, nan), gauss(0.5)},
		"inf in fused":    {gauss(2), with(gauss(0.5), 0, inf), with(gauss(0.5), n-1, -inf), with(gauss(0.5), n/3, inf), gauss(0.5)},
		"zero edge fused": {with(fill(func(int) float32 { return float32(math.Abs(rng.NormFloat64())) }), 5, 0), with(fill(func(int) float32 { return float32(math.Abs(rng.NormFloat64()) * 0.5) }), 9, negZero), with(with(fill(func(int) float32 { return float32(math.Abs(rng.NormFloat64()) * 0.1) }), 3, negZero), n-1, 100)},
	}
}

// edgesExactly is a first batch and a second one inside its range that holds its min at the
// first value and its max at the last.
func edgesExactly(first, second []float32) [][]float32 {
	mn, mx := slices.Min(first), slices.Max(first)
	second = slices.Clone(second)
	for i, v := range second {
		second[i] = min(max(v, mn), mx)
	}
	second[0], second[len(second)-1] = mn, mx
	return [][]float32{first, second, second}
}

type histState struct {
	hist     []float32
	min, max float32
	scale    []float32
	zp       []int32
	errs     []string
}

func runHistogram(t *testing.T, batches [][]float32) histState {
	t.Helper()
	obs, err := New(Options{Kind: Histogram})
	if err != nil {
		t.Fatal(err)
	}
	var st histState
	for _, b := range batches {
		err := obs.Observe(tensor.FromFloat32(b, len(b)))
		if err != nil {
			if !errors.Is(err, quant.ErrNonFinite) {
				t.Fatalf("unexpected error: %v", err)
			}
			st.errs = append(st.errs, err.Error())
		} else {
			st.errs = append(st.errs, "")
		}
	}
	h := obs.(*HistogramObserver)
	st.hist, st.min, st.max = h.Histogram(), h.min, h.max
	st.scale, st.zp, err = obs.QParams()
	if err != nil {
		st.errs = append(st.errs, "qparams: "+err.Error()) // e.g. a range too wide for float32
	}
	return st
}

func sameHistState(a, b histState) bool {
	f32eq := func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }
	return slices.EqualFunc(a.hist, b.hist, f32eq) && f32eq(a.min, b.min) && f32eq(a.max, b.max) &&
		slices.EqualFunc(a.scale, b.scale, f32eq) && slices.Equal(a.zp, b.zp) && slices.Equal(a.errs, b.errs)
}

// TestSplitPathMatchesGeneral holds the two-goroutine path for large float32 batches
// (histpar.go) to the general one, bit for bit (histogram, range, qparams and errors), on
// adversarial sequences, with each vector histc kernel the machine runs and with the portable one. Batch sizes
// cover a whole number of chunks and a ragged last chunk. With GOMAXPROCS 1 the caller takes
// the chunks in order alone, so a speculative batch's early chunks are left pending before a
// later one aborts it (their min/max then computed afterwards) on every run.
func TestSplitPathMatchesGeneral(t *testing.T) {
	defer func(m int, v bool) { splitMin, haveHistcAVX2 = m, v }(splitMin, haveHistcAVX2)
	for _, procs := range []int{1, runtime.GOMAXPROCS(0)} {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		testSplitPath(t)
	}
}

func testSplitPath(t *testing.T) {
	for _, n := range []int{4 * parChunk, 5*parChunk + 13} {
		for name, batches := range adversarialBatches(n) {
			splitMin, haveHistcAVX2 = math.MaxInt, false
			want := runHistogram(t, batches) // general path, scalar histc: the reference
			for _, k := range histcKernels() {
				splitMin = 4 * parChunk
				k.use()
				got := runHistogram(t, batches)
				if !sameHistState(got, want) {
					t.Errorf("%s, n=%d, GOMAXPROCS %d, %s histc kernel: split path differs: min/max %v/%v vs %v/%v, qparams %v %v vs %v %v, errs %q vs %q",
						name, n, runtime.GOMAXPROCS(0), k.name, got.min, got.max, want.min, want.max, got.scale, got.zp, want.scale, want.zp, got.errs, want.errs)
				}
			}
		}
	}
}

// TestSplitPathConcurrentObservers runs several observers at once, so that the package's one
// helper goroutine is busy with one batch while others arrive (they run alone), and checks each
// against a sequential run.
func TestSplitPathConcurrentObservers(t *testing.T) {
	batches := adversarialBatches(4 * parChunk)["gauss widening"]
	want := runHistogram(t, batches)
	got := make([]histState, 4)
	done := make(chan int)
	for i := range got {
		go func() {
			got[i] = runHistogram(t, batches)
			done <- i
		}()
	}
	for range got {
		<-done
	}
	for i, g := range got {
		if !sameHistState(g, want) {
			t.Errorf("observer %d differs from the sequential run", i)
		}
	}
}

// TestSplitPathConvertedInput sends BF16 and F64 batches (converted to float32 first, as torch's
// x.to(float32)) down both paths.
func TestSplitPathConvertedInput(t *testing.T) {
	defer func(m int) { splitMin = m }(splitMin)
	rng := rand.New(rand.NewPCG(21, 22))
	n := 5*parChunk + 7
	var batches []*tensor.Tensor
	for b := range 4 {
		bf := make([]byte, 2*n)
		f64 := make([]byte, 8*n)
		for i := range n {
			v := float32(rng.NormFloat64() * float64(1+b))
			h := tensor.Float32ToBF16(v)
			bf[2*i], bf[2*i+1] = byte(h), byte(h>>8)
			binary.LittleEndian.PutUint64(f64[8*i:], math.Float64bits(rng.NormFloat64()*1e-3*float64(b+1)))
		}
		batches = append(batches, &tensor.Tensor{DType: tensor.BF16, Shape: []int{n}, Data: bf},
			&tensor.Tensor{DType: tensor.F64, Shape: []int{n}, Data: f64})
	}
	run := func() ([]float32, []float32, []int32) {
		obs, _ := New(Options{Kind: Histogram})
		for _, b := range batches {
			if err := obs.Observe(b); err != nil {
				t.Fatal(err)
			}
		}
		s, z, err := obs.QParams()
		if err != nil {
			t.Fatal(err)
		}
		return obs.(*HistogramObserver).Histogram(), s, z
	}
	splitMin = math.MaxInt
	wh, ws, wz := run()
	splitMin = 4 * parChunk
	gh, gs, gz := run()
	f32eq := func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }
	if !slices.EqualFunc(gh, wh, f32eq) || !slices.EqualFunc(gs, ws, f32eq) || !slices.Equal(gz, wz) {
		t.Fatalf("converted input: the split path differs (qparams %v %v vs %v %v)", gs, gz, ws, wz)
	}
}
