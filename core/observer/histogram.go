package observer

import (
	"math"
	"math/bits"
	"runtime"
	"sync"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// upsampleRate is torch's HistogramObserver.upsample_rate (hard-coded 16 since torch 2.5).
const upsampleRate = 16

// minChunk is the smallest share of a batch worth its own goroutine.
const minChunk = 1 << 15

// HistogramObserver is torch's HistogramObserver (torch ≥ 2.5 algorithm): a running histogram
// of Bins float32 counts over [min, max], re-binned whenever a batch widens the range, and an
// L2 search over it for the range that quantizes best.
type HistogramObserver struct {
	opts     Options
	rng      quant.Range
	dstBins  float64 // 2^bits of the dtype: the destination grid of the error model
	min, max float32
	hist     []float32

	// Scratch reused across batches so the steady state allocates nothing per element.
	conv   []float32  // non-F32 input converted to float32
	upd    []float32  // this batch's histogram
	tmp    []float32  // the old histogram re-binned into the new range
	edges  []float32  // linspace edges of the new range
	counts [][]uint32 // one integer histogram per worker
	spec   quant.Spec
	job    histJob   // a large batch's work shared with the helper goroutine (histpar.go)
	mids   midSource // the upscale's mid-points
}

func newHistogram(o Options, r quant.Range) *HistogramObserver {
	bits := 8
	if o.DType == quant.QInt32 {
		bits = 32
	}
	h := &HistogramObserver{opts: o, rng: r, dstBins: math.Ldexp(1, bits),
		hist: make([]float32, o.Bins), upd: make([]float32, o.Bins),
		spec: quant.Spec{Format: quant.Int8, Granularity: quant.PerTensor, NonFinite: quant.ClampNonFinite}}
	h.Reset()
	return h
}

// Observe folds x into the histogram (torch's forward). ±Inf values are left out, as torch
// does; NaN is an error and leaves the state as it was.
func (h *HistogramObserver) Observe(x *tensor.Tensor) error {
	if err := checkTensor(x); err != nil {
		return err
	}
	n := x.Len()
	if n == 0 {
		return nil
	}
	xs := h.float32s(x)
	if n >= splitMin && h.observeSplit(xs) {
		return nil
	}
	xt := x
	if x.DType != tensor.F32 {
		xt = &tensor.Tensor{DType: tensor.F32, Shape: x.Shape, Data: tensor.Float32Bytes(xs)}
	}
	xmin, xmax, _, err := batchMinMax(xt, &h.spec, true)
	if err != nil {
		return err
	}
	if math.IsInf(float64(xmin), 1) {
		return nil // nothing but infinities: torch ignores the batch
	}
	if math.IsInf(float64(h.min), 1) || math.IsInf(float64(h.max), -1) {
		h.min, h.max = xmin, xmax
		h.histc(h.hist, xs, xmin, xmax)
		return nil
	}
	newMin, newMax := min(h.min, xmin), max(h.max, xmax)
	widened := newMin != h.min || newMax != h.max
	var wg sync.WaitGroup
	if widened && h.min != h.max {
		// Re-binning the old histogram needs only the new range, so it runs beside the batch's
		// counting (whose workers leave a core idle while they wait for each other otherwise).
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.upscale(newMin, newMax)
		}()
	}
	h.histc(h.upd, xs, newMin, newMax)
	wg.Wait()
	if !widened {
		for i, v := range h.upd {
			h.hist[i] += v
		}
		return nil
	}
	h.combine(newMin, newMax)
	h.min, h.max = newMin, newMax
	return nil
}

// float32s returns x's values as float32: the caller's memory for F32, else one conversion into
// a buffer kept for the next batch (torch's x.to(float32)).
func (h *HistogramObserver) float32s(x *tensor.Tensor) []float32 {
	n := x.Len()
	if x.DType == tensor.F32 {
		return tensor.View[float32](x.Data)
	}
	if cap(h.conv) < n {
		h.conv = make([]float32, n)
	}
	out := h.conv[:n]
	es := x.DType.Size()
	parallelRange(n, func(_, lo, hi int) {
		tensor.ConvertToFloat32(out[lo:hi], x.DType, x.Data[lo*es:hi*es])
	})
	return out
}

// parallelRange splits [0, n) into one contiguous range per worker (at most GOMAXPROCS, and none
// smaller than minChunk) and waits for all of them.
func parallelRange(n int, fn func(w, lo, hi int)) int {
	w := min(runtime.GOMAXPROCS(0), max(n/minChunk, 1))
	if w <= 1 {
		fn(0, 0, n)
		return 1
	}
	per := (n + w - 1) / w
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		lo, hi := min(i*per, n), min((i+1)*per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, lo, hi)
		}()
	}
	wg.Wait()
	return w
}

// histBounds is histc's choice of outer edges for the range [lo, hi] (Histogram.cpp): a
// degenerate range is widened by one on each side, or by one float32 ulp where one is lost in
// float64 (huge magnitudes).
func histBounds(lo, hi float32) (left, right float32) {
	l, r := float64(lo), float64(hi)
	if l == r {
		l = min(float64(math.Nextafter32(lo, -math.MaxFloat32)), l-1)
		r = max(float64(math.Nextafter32(hi, math.MaxFloat32)), r+1)
	}
	return float32(l), float32(r)
}

// histc is torch.histc(x, bins, lo, hi) on CPU into dst: values outside [left, right] (and so
// ±Inf) are dropped, the bin is trunc((x-left)*bins/(right-left)) in float32, and the right edge
// falls into the last bin. Counting runs in parallel on integer per-worker histograms; torch's
// float32 per-thread counts are the same integers below 2^24 per bin and batch.
func (h *HistogramObserver) histc(dst, xs []float32, lo, hi float32) {
	bins := len(dst)
	left, right := histBounds(lo, hi)
	width := right - left
	nb := float32(bins)
	workers := min(runtime.GOMAXPROCS(0), max(len(xs)/minChunk, 1))
	for len(h.counts) < workers {
		// One slot past the last bin takes the values the vector kernel drops.
		h.counts = append(h.counts, make([]uint32, bins+1))
	}
	used := parallelRange(len(xs), func(w, a, b int) {
		c := h.counts[w][:bins+1]
		clear(c)
		countBins(c, xs[a:b], left, right, nb, width)
	})
	for i := range dst {
		var s uint64
		for w := 0; w < used; w++ {
			s += uint64(h.counts[w][i])
		}
		dst[i] = float32(s)
	}
}

// combine merges the old histogram over [h.min, h.max] into h.upd, computed over the wider
// [newMin, newMax], and stores the result as the histogram (torch's _combine_histograms). Unless
// the old range is a single value, the caller has already run upscale into h.tmp.
func (h *HistogramObserver) combine(newMin, newMax float32) {
	bins := len(h.hist)
	if h.min == h.max {
		// All earlier data was one value: its whole mass lands in that value's new bin.
		mass := cascadeSum(h.hist, sumLanes)
		left, right := histBounds(newMin, newMax)
		q := float32(float32(h.min-left)*float32(bins)) / (right - left)
		at := bins - 1
		if q < float32(bins) {
			at = int(q)
		}
		for i := range h.hist {
			var one float32
			if i == at {
				one = 1
			}
			h.hist[i] = float32(one*mass) + h.upd[i]
		}
		return
	}
	for i := range h.hist {
		h.hist[i] = h.upd[i] + h.tmp[i]
	}
}

// histcRing is the size of the vector histc kernel's ring buffer of bins, in values (1 KiB,
// which stays in the L1 cache; histc_amd64.s).
const histcRing = 256

// countBins adds xs's histc bins (see histc) into c[:len(c)-1]; c[len(c)-1] is scratch. It
// returns how many values it left out (outside [left, right]: out of range, ±Inf or NaN).
func countBins(c []uint32, xs []float32, left, right, nb, width float32) (out int) {
	bins := len(c) - 1
	if haveHistcAVX2 {
		n8 := len(xs) &^ 7
		if n8 > 0 {
			var ring [histcRing]uint32 // the kernel's bins in flight
			before := c[bins]
			histcAVX2(&c[0], &xs[0], n8, left, right, nb, width, float32(bins-1), uint32(bins), &ring[0])
			out = int(c[bins] - before) // a chunk holds far fewer than 2^32 values
		}
		xs = xs[n8:]
	}
	return out + countBinsScalar(c[:bins], xs, left, right, nb, width)
}

// countBinsScalar is countBins one value at a time.
func countBinsScalar(c []uint32, xs []float32, left, right, nb, width float32) (out int) {
	last := len(c) - 1
	for _, e := range xs {
		if !(e >= left && e <= right) {
			out++
			continue
		}
		q := float32(float32(e-left)*nb) / width
		// q is in [0, bins] for any range torch itself can histogram; the guard only keeps
		// an overflowing range (wider than ~1e35) from indexing out of bounds.
		if q < nb {
			c[int(q)]++
		} else {
			c[last]++
		}
	}
	return out
}

// upscale is torch's _upscale_histogram: every old bin is split into 16 equal parts whose
// mid-points are placed (torch.bucketize) into the new range's bins, in float32 throughout.
func (h *HistogramObserver) upscale(newMin, newMax float32) {
	bins := len(h.hist)
	if cap(h.tmp) < bins {
		h.tmp = make([]float32, bins)
		h.edges = make([]float32, bins+1)
	}
	out, edges := h.tmp[:bins], h.edges[:bins+1]
	clear(out)
	stepE := linspaceStep(newMin, newMax, bins+1)
	linspaceAdd(edges, newMin, newMax, stepE, negZero, bins+1, 0) // x + -0 is x, -0 included
	sorted := true
	for i := 1; i < len(edges); i++ {
		if edges[i] < edges[i-1] {
			sorted = false
		}
	}
	nu := bins * upsampleRate
	binSize := (h.max - h.min) / float32(nu)
	half := float32(0.5) * binSize
	stepM := linspaceStep(h.min, h.max, nu+1)
	ms := &h.mids
	ms.reset(h.min, h.max, stepM, half, nu+1)
	invStep := 1 / float64(stepM) // for estimates only: the exact split is stepped to below
	k := 0                        // edges[:k] are <= the current mid-point
	// out[cur] lives in acc while consecutive mid-points land in the same bin: the additions
	// into each bin stay one float32 rounding each, in torch's order, without a store and reload
	// per mid-point.
	cur, acc := 0, out[0]
	for i, c := range h.hist[:bins] {
		if c == 0 {
			continue // adding zero leaves every (non-negative) bin as it is
		}
		w := c / upsampleRate
		ms.cover(i * upsampleRate)
		if sorted {
			// An old bin's 16 mid-points rise (its indices lie in one half of the linspace,
			// where each value is one correctly rounded fma of a rising index), so when the
			// first and the last land in the same new bin, all of them do: the bin then gets
			// 16 additions of w, done at once when none of them rounds.
			j := i * upsampleRate
			first := ms.get(j)
			last := ms.get(j + upsampleRate - 1)
			k = seekUpper(edges, k, first)
			b0 := min(max(k-1, 0), bins-1)
			k = seekUpper(edges, k, last)
			b1 := min(max(k-1, 0), bins-1)
			if b0 == b1 {
				if b0 != cur {
					out[cur], cur, acc = acc, b0, out[b0]
				}
				acc = addTimes(acc, w, upsampleRate)
				continue
			}
			if b1 == b0+1 {
				// The first p mid-points (those below edges[b1]) go to b0, the rest to b1.
				// Mid 0 is in b0 and mid 15 in b1, and the mid-points rise by about stepM:
				// start from that estimate and step to the exact p (one or two evaluations,
				// where a bisection took four).
				edge := edges[b1]
				lo := 1
				if stepM > 0 {
					if est := float64(edge-first) * invStep; est > 1 && est < upsampleRate-1 {
						lo = int(math.Ceil(est))
					} else if est >= upsampleRate-1 {
						lo = upsampleRate - 1
					}
				}
				for lo > 1 && ms.get(j+lo-1) >= edge {
					lo--
				}
				for lo < upsampleRate-1 && ms.get(j+lo) < edge {
					lo++
				}
				if b0 != cur {
					out[cur], cur, acc = acc, b0, out[b0]
				}
				acc = addTimes(acc, w, lo)
				out[cur], cur, acc = acc, b1, out[b1]
				acc = addTimes(acc, w, upsampleRate-lo)
				continue
			}
		}
		for t := range upsampleRate {
			mid := ms.get(i*upsampleRate + t)
			if sorted {
				// Mid-points rise, so the count of edges <= mid moves a step or two at a time;
				// the two loops give exactly upper_bound's answer on a sorted array, whichever
				// way mid moves and wherever k starts.
				for k > 0 && edges[k-1] > mid {
					k--
				}
				for k <= bins && !(edges[k] > mid) {
					k++
				}
			} else {
				k = upperBound(edges, mid)
			}
			if idx := min(max(k-1, 0), bins-1); idx != cur {
				out[cur], cur, acc = acc, idx, out[idx]
			}
			acc += w
		}
	}
	out[cur] = acc
}

// midBlock is how many upscale mid-points the vector kernel computes at a time (16 KiB).
const midBlock = 4096

var negZero = float32(math.Copysign(0, -1))

// midSource hands out the upscale's mid-points, linspace(min, max, steps)[j] + half: from a block
// of them computed by the vector kernel where the machine has one (the loop then reads them as
// an array), else one at a time with fmaF32 (the portable path evaluates only the 2-3 of an old
// bin's 16 that it needs).
type midSource struct {
	lo, hi, step, half float32
	steps              int
	vec                bool
	base               int
	buf                []float32 // mid-points base..base+len(buf)-1 (always empty without vec)
}

func (m *midSource) reset(lo, hi, step, half float32, steps int) {
	m.lo, m.hi, m.step, m.half, m.steps = lo, hi, step, half, steps
	m.vec = haveMidsFMA
	if m.vec && cap(m.buf) < midBlock {
		m.buf = make([]float32, midBlock)
	}
	m.buf, m.base = m.buf[:0], 0
}

// cover makes get(j..j+15) cheap: with the vector kernel, it computes the block holding them
// (j is a multiple of 16, so they lie in one block).
func (m *midSource) cover(j int) {
	if m.vec && uint(j-m.base) >= uint(len(m.buf)) {
		m.fill(j)
	}
}

func (m *midSource) fill(j int) {
	m.base = j &^ (midBlock - 1)
	m.buf = m.buf[:min(midBlock, m.steps-1-m.base)]
	linspaceAdd(m.buf, m.lo, m.hi, m.step, m.half, m.steps, m.base)
}

// get is mid-point j; with the vector kernel, cover must have been called for j's old bin.
func (m *midSource) get(j int) float32 {
	if !m.vec {
		return m.one(j)
	}
	return m.buf[j-m.base]
}

// one is kept out of line so that get, which the upscale loop calls several times per old bin,
// stays small enough to inline.
//
//go:noinline
func (m *midSource) one(j int) float32 { return linspaceAt(m.lo, m.hi, m.step, m.steps, j) + m.half }

// linspaceAdd sets dst[t] to linspaceAt(start, end, step, steps, from+t) + add: with the vector
// kernel for whole runs of eight within each half of the linspace, else with fmaF32.
func linspaceAdd(dst []float32, start, end, step, add float32, steps, from int) {
	a := min(max(steps/2-from, 0), len(dst)) // how many lie in the first half
	linspaceRun(dst[:a], start, step, add, from, 1)
	linspaceRun(dst[a:], end, -step, add, steps-1-(from+a), -1)
}

// linspaceRun sets dst[t] to fma(s, float32(i0+t*di), c) + add.
func linspaceRun(dst []float32, c, s, add float32, i0, di int) {
	n8 := 0
	if haveMidsFMA {
		if n8 = len(dst) &^ 7; n8 > 0 {
			midsFMA(&dst[0], n8, c, s, add, int32(i0), int32(di))
		}
	}
	for t := n8; t < len(dst); t++ {
		dst[t] = fmaF32(s, float32(i0+t*di), c) + add
	}
}

// seekUpper moves k, a count of the edges <= some earlier value, to the count of the sorted
// edges <= v: upper_bound's answer, found in a step or two when v is near the earlier value.
func seekUpper(edges []float32, k int, v float32) int {
	for k > 0 && edges[k-1] > v {
		k--
	}
	for k < len(edges) && !(edges[k] > v) {
		k++
	}
	return k
}

// addTimes is acc+w+w+…+w (n float32 additions in turn, as torch's index_add does them, n ≤ 16).
// When acc, w ≥ 0 and every partial sum is exact in float32 — both are multiples of a power of
// two g and acc+n·w < 2^24·g — the roundings do nothing and one addition gives the result.
func addTimes(acc, w float32, n int) float32 {
	// 2^(24+g) is built from its float64 bits (math.Ldexp was a third of this function's time);
	// g ≥ -149 for any finite non-negative float32, so the exponent field stays positive.
	if g := min(grainExp(acc), grainExp(w)); g != math.MaxInt && g >= -149 &&
		float64(acc)+float64(n)*float64(w) < math.Float64frombits(uint64(1023+24+g)<<52) {
		return acc + float32(float32(n)*w) // n·w is a multiple of 2^g below 2^24·g: exact
	}
	for range n {
		acc += w
	}
	return acc
}

// grainExp is the exponent of the largest power of two dividing x: math.MaxInt for 0, and a
// huge negative number for a negative or non-finite x, so that addTimes never takes it as exact.
func grainExp(x float32) int {
	b := math.Float32bits(x)
	if b == 0 {
		return math.MaxInt
	}
	exp, mant := int(b>>23&0xff), b&0x7fffff
	if b>>31 != 0 || exp == 0xff {
		return math.MinInt / 2 // negative, Inf or NaN: never the exact case
	}
	e := exp - 150
	if exp == 0 {
		e = -149 // subnormal
	} else {
		mant |= 1 << 23
	}
	return e + bits.TrailingZeros32(mant)
}

// upperBound is ATen's cus_upper_bound (bucketize with right=True): a plain binary search, which
// defines the answer even on an array that rounding left unsorted.
func upperBound(bd []float32, v float32) int {
	lo, hi := 0, len(bd)
	for lo < hi {
		mid := lo + (hi-lo)>>1
		if !(bd[mid] > v) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// QParams runs torch's _non_linear_param_search over the histogram and turns the range it picks
// into a scale and zero point. Before any data it returns torch's defaults, scale 1 and zero
// point 0.
func (h *HistogramObserver) QParams() ([]float32, []int32, error) {
	if math.IsInf(float64(h.min), 1) && math.IsInf(float64(h.max), -1) {
		return defaultQParams()
	}
	lo, hi := h.search()
	scale, zp := make([]float32, 1), make([]int32, 1)
	err := quant.CalculateQParams([]float32{lo}, []float32{hi}, h.opts.DType, h.opts.Scheme, h.rng, h.opts.Eps, scale, zp)
	return scale, zp, err
}

// Histogram returns a copy of the running histogram (Bins counts over [min, max]).
func (h *HistogramObserver) Histogram() []float32 { return append([]float32(nil), h.hist...) }

// Range returns the running min and max (+Inf and -Inf before any data).
func (h *HistogramObserver) Range() (min, max []float32) {
	return []float32{h.min}, []float32{h.max}
}

// Reset forgets everything observed.
func (h *HistogramObserver) Reset() {
	h.min, h.max = float32(math.Inf(1)), float32(math.Inf(-1))
	clear(h.hist)
}

// Options returns the normalized options.
func (h *HistogramObserver) Options() Options { return h.opts }
