package observer

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/monoquant/monoquant/core/quant"
)

// A large float32 batch goes through the HistogramObserver in one pass split two ways: the
// calling goroutine and one helper share the batch in chunks, first for the min/max, then (after
// the range is known) for histc, while the caller also re-bins the old histogram. Each chunk is
// claimed at run time, the caller from the front and the helper from the back, so a helper that
// starts late (a busy machine) takes less and the caller never waits for one that has not
// started; each side histcs the chunks it read for the min/max while they are still in its
// core's cache. The helper is one package-level goroutine that lives for the process, so a batch
// allocates nothing and starts no goroutine.

// parChunk is how many values one claim covers: 64 KiB of float32, 16 chunks per 64×4096 batch.
const parChunk = 1 << 14

// splitMin is the smallest batch split with the helper (below it, the general path runs, on one
// goroutine); a variable so that tests can send every batch down either path.
var splitMin = 4 * parChunk

// histJob is one batch's shared state between the caller and the helper. The caller owns it
// (one per observer) and fills it before offering it; fields the helper writes are read by the
// caller only after the helper's signal on phase.
type histJob struct {
	gen   uint64 // which batch this is: a helper holding an older offer must not join a newer one
	state atomic.Uint64
	xs    []float32
	n     int // chunks in the batch

	// Claims: the low 32 bits count chunks taken from the front, the high 32 from the back;
	// reset per phase by the caller before the helper can claim.
	claims atomic.Uint64

	// Results of the helper's min/max phase (valid after the first signal).
	mn, mx float32
	// The range for histc (set by the caller before the go signal).
	left, right, nb, width float32
	counts                 []uint32 // the helper's histc counts, bins+1 (cleared by the helper)

	start chan bool     // caller → helper: true = count the chunks, false = stop (batch done)
	phase chan struct{} // helper → caller: one signal per finished phase
}

// Job states (low 2 bits of state; the high bits carry gen).
const (
	jobOpen   = 0 // offered, nobody joined yet
	jobJoined = 1 // the helper joined: it will signal twice (or once if stopped)
	jobClosed = 2 // the caller finished the min/max alone: the helper must not join
)

type helperOffer struct {
	job *histJob
	gen uint64
}

var (
	helperOnce sync.Once
	helperCh   chan helperOffer
)

// offerHelper hands job to the package's helper goroutine if it is idle (never blocks).
func offerHelper(job *histJob) {
	if runtime.GOMAXPROCS(0) < 2 {
		return
	}
	helperOnce.Do(func() {
		helperCh = make(chan helperOffer)
		go helperLoop()
	})
	select {
	case helperCh <- helperOffer{job, job.gen}:
	default: // busy with another observer's batch: the caller does this one alone
	}
}

func helperLoop() {
	for o := range helperCh {
		o.job.help(o.gen)
	}
}

// help is the helper's side of one batch.
func (j *histJob) help(gen uint64) {
	if !j.state.CompareAndSwap(gen<<2|jobOpen, gen<<2|jobJoined) {
		return // the caller already did the min/max alone (or this offer is stale)
	}
	mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
	for {
		c, ok := j.claim(true)
		if !ok {
			break
		}
		a, b := quant.MinMaxF32(j.chunk(c))
		mn, mx = minKey(mn, a), maxKey(mx, b)
	}
	j.mn, j.mx = mn, mx
	j.phase <- struct{}{}
	if !<-j.start {
		return
	}
	counts := j.counts
	clear(counts)
	for {
		c, ok := j.claim(true)
		if !ok {
			break
		}
		countBins(counts, j.chunk(c), j.left, j.right, j.nb, j.width)
	}
	j.phase <- struct{}{}
}

// claim takes the next free chunk, from the back for the helper, from the front for the caller.
func (j *histJob) claim(back bool) (int, bool) {
	for {
		v := j.claims.Load()
		f, b := int(v&0xffffffff), int(v>>32)
		if f+b >= j.n {
			return 0, false
		}
		nv := v + 1
		c := f
		if back {
			nv = v + 1<<32
			c = j.n - 1 - b
		}
		if j.claims.CompareAndSwap(v, nv) {
			return c, true
		}
	}
}

func (j *histJob) chunk(c int) []float32 {
	lo := c * parChunk
	return j.xs[lo:min(lo+parChunk, len(j.xs))]
}

// minKey and maxKey combine two MinMaxF32 results the way one pass over both halves would:
// NaN wins (so that the caller sees it), then the ordinary float order, -0 below +0.
func minKey(a, b float32) float32 {
	if a != a || b != b {
		return float32(math.NaN())
	}
	if a == b {
		if math.Signbit(float64(b)) {
			return b
		}
		return a
	}
	return min(a, b)
}

func maxKey(a, b float32) float32 {
	if a != a || b != b {
		return float32(math.NaN())
	}
	if a == b {
		if math.Signbit(float64(b)) {
			return a
		}
		return b
	}
	return max(a, b)
}

// observeSplit is Observe for a large float32 batch (see the comment at the top of this file).
// It returns handled=false, having changed nothing, when the batch holds a NaN or ±Inf, so the
// caller's general path reports or filters them.
func (h *HistogramObserver) observeSplit(xs []float32) (handled bool) {
	j := &h.job
	if j.start == nil {
		j.start, j.phase = make(chan bool, 1), make(chan struct{}, 1)
	}
	bins := len(h.hist)
	if cap(j.counts) < bins+1 {
		j.counts = make([]uint32, bins+1)
	}
	j.counts = j.counts[:bins+1]
	j.gen++
	j.xs, j.n = xs, (len(xs)+parChunk-1)/parChunk
	j.claims.Store(0)
	j.state.Store(j.gen<<2 | jobOpen)
	offerHelper(j)

	mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
	for {
		c, ok := j.claim(false)
		if !ok {
			break
		}
		a, b := quant.MinMaxF32(j.chunk(c))
		mn, mx = minKey(mn, a), maxKey(mx, b)
	}
	joined := !j.state.CompareAndSwap(j.gen<<2|jobOpen, j.gen<<2|jobClosed)
	if joined {
		<-j.phase
		mn, mx = minKey(mn, j.mn), maxKey(mx, j.mx)
	}
	if !isFinite(mn) || !isFinite(mx) {
		if joined {
			j.start <- false
		}
		return false
	}

	first := math.IsInf(float64(h.min), 1) || math.IsInf(float64(h.max), -1)
	newMin, newMax := mn, mx
	if !first {
		newMin, newMax = min(h.min, mn), max(h.max, mx)
	}
	widened := newMin != h.min || newMax != h.max
	left, right := histBounds(newMin, newMax)
	j.left, j.right, j.nb, j.width = left, right, float32(bins), right-left
	j.claims.Store(0)
	if joined {
		j.start <- true // the helper starts counting from the back
	}
	if !first && widened && h.min != h.max {
		h.upscale(newMin, newMax)
	}
	own := h.ownCounts(bins)
	for {
		c, ok := j.claim(false)
		if !ok {
			break
		}
		countBins(own, j.chunk(c), left, right, j.nb, j.width)
	}
	if joined {
		<-j.phase
	}
	dst := h.upd
	if first {
		dst = h.hist
	}
	if joined {
		for i := range dst {
			dst[i] = float32(uint64(own[i]) + uint64(j.counts[i]))
		}
	} else {
		for i := range dst {
			dst[i] = float32(own[i])
		}
	}
	switch {
	case first:
		h.min, h.max = newMin, newMax
	case !widened:
		for i, v := range h.upd {
			h.hist[i] += v
		}
	default:
		h.combine(newMin, newMax)
		h.min, h.max = newMin, newMax
	}
	return true
}

// ownCounts is the caller's cleared integer histogram (bins+1 slots, the last one scratch).
func (h *HistogramObserver) ownCounts(bins int) []uint32 {
	if len(h.counts) == 0 {
		h.counts = append(h.counts, make([]uint32, bins+1))
	}
	c := h.counts[0][:bins+1]
	clear(c)
	return c
}
