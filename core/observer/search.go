package observer

import "math"

// searchStep is torch's stepsize in _non_linear_param_search.
const searchStep = 1e-5

// search is torch's HistogramObserver._non_linear_param_search: it walks two quantiles inwards in
// steps of 1e-5 and keeps shrinking [start, end] (in bins) while the modelled L2 quantization
// error does not grow. It returns the chosen float32 min and max.
//
// Precision follows torch exactly: the cumulative sum accumulates in float64 and is stored in
// float32, quantile thresholds are compared in float32, the error term mixes float64 scalars with
// float32 vectors and is summed in torch.sum's cascade order.
func (h *HistogramObserver) search() (float32, float32) {
	bins := len(h.hist)
	bw32 := (h.max - h.min) / float32(bins)
	total := float64(cascadeSum(h.hist, sumLanes))
	e := newErrorModel(h.hist, h.min, h.max, h.dstBins)
	csum := make([]float32, bins)
	var acc float64
	for i, v := range h.hist {
		acc += float64(v)
		csum[i] = float32(acc)
	}
	alpha, beta := 0.0, 1.0
	start, end := 0, bins-1
	normMin := math.Inf(1)
	for alpha < beta {
		nextAlpha, nextBeta := alpha+searchStep, beta-searchStep
		ta, tb := float32(nextAlpha*total), float32(nextBeta*total)
		l, r := start, end
		for l < end && csum[l] < ta {
			l++
		}
		for r > start && csum[r] > tb {
			r--
		}
		ns, ne := start, end
		if l-start > end-r {
			ns, alpha = l, nextAlpha
		} else {
			ne, beta = r, nextBeta
		}
		if ns == start && ne == end {
			continue
		}
		norm := e.quantError(ns, ne)
		if norm > normMin {
			break
		}
		normMin, start, end = norm, ns, ne
	}
	lo := h.min + float32(bw32*float32(start))
	hi := h.min + float32(bw32*float32(end+1))
	return lo, hi
}

// errorModel holds what _compute_quantization_error recomputes on every call in torch but what
// does not depend on the candidate range: the bin width, the densities, the products k*width and
// which bins are empty.
type errorModel struct {
	bins     int
	bw       float64   // (max - min) / bins in float64, from .item()
	b        float32   // bw as float32
	dst      float64   // destination bins: 2^bits of the dtype
	dstLast  float32   // dst - 1, the clamp bound
	density  []float32 // hist / b
	kb       []float32 // kb[k+bins-1] = float32(k) * b for k in (-bins, bins)
	nonEmpty []int32   // bins whose count is not zero
	norm     []float32 // the per-bin error vector torch sums
	finite   bool      // no intermediate can overflow: empty bins then add exactly +0
	dirty    bool      // a full pass wrote the empty bins' entries: clear before skipping them
}

func newErrorModel(hist []float32, minV, maxV float32, dst float64) *errorModel {
	bins := len(hist)
	bw := (float64(maxV) - float64(minV)) / float64(bins)
	b := float32(bw)
	e := &errorModel{bins: bins, bw: bw, b: b, dst: dst, dstLast: float32(dst - 1),
		density: make([]float32, bins), kb: make([]float32, 2*bins-1), norm: make([]float32, bins)}
	for i, v := range hist {
		e.density[i] = v / b
		if v != 0 {
			e.nonEmpty = append(e.nonEmpty, int32(i))
		}
	}
	for k := -(bins - 1); k < bins; k++ {
		e.kb[k+bins-1] = float32(float32(k) * b)
	}
	// Every delta in the error term is bounded by bins*b + dst*dbw <= 2*(max-min) (dbw <=
	// (max-min)*dst/dst). If the cube of twice that stays far below float32's max, an empty bin's
	// terms are 0 * finite and the bin adds exactly +0 to the sum, so it can be skipped.
	span := 4 * (math.Abs(float64(bins)*float64(b)) + math.Abs(float64(maxV)-float64(minV)))
	e.finite = b > 0 && isFinite(b) && span*span*span < 1e37
	return e
}

// quantError is torch's _compute_quantization_error(ns, ne), bit for bit.
func (e *errorModel) quantError(ns, ne int) float64 {
	dbw := e.bw * float64(ne-ns+1) / e.dst
	if dbw == 0 {
		return 0
	}
	db32 := float32(dbw)
	half := float32(dbw / 2)
	negHalf := float32(-dbw / 2)
	half3 := float32(float32(half*half) * half)
	negHalf3 := float32(float32(negHalf*negHalf) * negHalf)
	inner := float32(float32(half3-negHalf3) / 3) // _get_norm(-dbw/2, dbw/2, ·) / density
	fast := e.finite && db32 > 0 && isFinite(inner)
	if fast {
		if e.dirty {
			clear(e.norm)
			e.dirty = false
		}
		for _, i := range e.nonEmpty {
			e.norm[i] = e.binError(int(i), ns, db32, half, negHalf3, half3, inner)
		}
	} else {
		e.dirty = true
		for i := range e.norm {
			e.norm[i] = e.binError(i, ns, db32, half, negHalf3, half3, inner)
		}
	}
	return float64(cascadeSum(e.norm, sumLanes))
}

// binError is one element of torch's norm vector. Every product is wrapped in a float32
// conversion so that no platform fuses it with the following add.
func (e *errorModel) binError(i, ns int, db32, half, negHalf3, half3, inner float32) float32 {
	sb := e.kb[i-ns+e.bins-1] // src_bin_begin
	se := sb + e.b            // src_bin_end
	dBegin := clampF32(floorDivF32(sb, db32), 0, e.dstLast)
	dEnd := clampF32(floorDivF32(se, db32), 0, e.dstLast)
	dBeginCenter := float32(float32(dBegin+0.5) * db32)
	d := e.density[i]

	delta := sb - dBeginCenter
	n := float32(0) + float32(d*float32(float32(half3-float32(float32(delta*delta)*delta))/3))
	n = n + float32(float32(float32(dEnd-dBegin)-1)*float32(d*inner))
	dEndCenter := float32(dEnd*db32) + half
	delta = se - dEndCenter
	n = n + float32(d*float32(float32(float32(float32(delta*delta)*delta)-negHalf3)/3))
	return n
}
