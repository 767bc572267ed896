package observer

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/monoquant/monoquant/core/quant"
)

// A large float32 batch goes through the HistogramObserver in one pass split two ways: the
// calling goroutine and one helper share the batch in chunks, first for the min/max, then (once
// the range is known) for histc, while the caller also re-bins the old histogram. Each chunk is
// claimed at run time, the caller from the front and the helper from the back, so that each side
// mostly histcs the chunks it read for the min/max (still in its core's cache). The helper joins
// whichever phase is running when it gets to the batch, and the caller waits only for chunks the
// helper has claimed, never for a helper that has not started (a busy machine): a late helper
// just takes fewer chunks. The helper is one package-level goroutine that lives for the process,
// so a batch allocates nothing and starts no goroutine.
//
// Once the range is set (and is not a single value), the first phase is speculative: torch adds
// histc over the unchanged range when a batch lies inside it, so each chunk is counted over the
// current range as it is read, and the histc kernel reports the values it left out. A batch with
// none is done after one pass and no min/max; the first chunk with one stops the speculation
// (the remaining chunks get only their min/max) and the batch takes the two phases above, its
// speculative counts thrown away.

// parChunk is how many values one claim covers: 64 KiB of float32, 16 chunks per 64×4096 batch.
const parChunk = 1 << 14

// splitMin is the smallest batch split with the helper (below it, the general path runs, on one
// goroutine); a variable so that tests can send every batch down either path.
var splitMin = 4 * parChunk

// Batch phases (the low 2 bits of histJob.state; the high bits carry the batch's generation).
const (
	phaseMinMax = 1
	phaseHistc  = 2
	phaseDone   = 3
)

// histJob is one batch's shared state between the caller and the helper. The caller owns it (one
// per observer). Claims carry the generation in their high 32 bits, so a helper holding an old
// batch's offer can never claim a chunk of a newer one; the caller moves to the next phase only
// when every chunk of the current one is done, so a claimed chunk always belongs to the batch
// whose fields the helper reads.
type histJob struct {
	gen    uint64
	state  atomic.Uint64 // gen<<2 | phase
	claims [2]atomic.Uint64
	done   [2]atomic.Int64 // chunks finished in each phase, by either side

	nChunks    atomic.Int64 // chunks in the batch (read by claims that may be stale)
	xs         []float32
	n          int       // nChunks, for the caller
	mins, maxs []float32 // per-chunk min/max (phase 1)
	// The range for histc (written before the state says phaseHistc, or, for a speculative
	// batch, before it says phaseMinMax).
	left, right, nb, width float32
	counts                 []uint32      // the helper's histc counts, bins+1
	counted                atomic.Uint64 // gen<<1 | (0 speculative, 1 histc): what counts hold

	// spec: phase 1 also counts each chunk over the current range (speculative batch), until
	// some chunk holds a value outside it (abort).
	spec  bool
	abort atomic.Bool
}

type helperOffer struct {
	job *histJob
	gen uint64
}

var (
	helperOnce sync.Once
	helperCh   chan helperOffer // one pending offer at most
)

// offerHelper hands job to the package's helper goroutine without blocking: an offer left
// pending by an earlier batch (the helper was busy) is replaced.
func offerHelper(job *histJob) {
	if runtime.GOMAXPROCS(0) < 2 {
		return
	}
	helperOnce.Do(func() {
		helperCh = make(chan helperOffer, 1)
		go helperLoop()
	})
	o := helperOffer{job, job.gen}
	select {
	case helperCh <- o:
	default:
		select {
		case <-helperCh: // stale (or another observer's, which then runs alone)
		default:
		}
		select {
		case helperCh <- o:
		default:
		}
	}
}

// helperSpin is how long the helper polls for the next batch before it parks. A caller feeding
// batches back to back (calibration from Python: tens of µs between calls) hands the next one
// over within it, and the helper starts on it at once: waking a parked thread takes longer than
// a 64×4096 batch's min/max pass (~50 µs on the benchmark machine), which then ran on one core.
// The poll lasts helperSpin, or up to helperSpinMax when the last gap between batches was short
// (twice that gap); a caller whose batches come further apart (a model's forward in between)
// costs at most helperSpin of one core per batch.
const (
	helperSpin    = 30 * time.Microsecond
	helperSpinMax = 100 * time.Microsecond
)

func helperLoop() {
	var lastGap time.Duration
	for {
		spin := helperSpin
		if lastGap < helperSpinMax {
			spin = min(max(2*lastGap, helperSpin), helperSpinMax)
		}
		end := time.Now()
		o, ok := pollOffer(end, spin)
		if !ok {
			o = <-helperCh
		}
		lastGap = time.Since(end)
		o.job.help(o.gen)
	}
}

// pollOffer polls helperCh until spin has passed since start.
func pollOffer(start time.Time, spin time.Duration) (helperOffer, bool) {
	for i := 1; ; i++ {
		select {
		case o := <-helperCh:
			return o, true
		default:
		}
		if i&63 == 0 && time.Since(start) > spin {
			return helperOffer{}, false
		}
	}
}

// claim takes the next free chunk of phase p of batch gen: from the back for the helper, from the
// front for the caller.
func (j *histJob) claim(p int, gen uint64, back bool) (int, bool) {
	for {
		v := j.claims[p].Load()
		if v>>32 != gen&0xffffffff {
			return 0, false
		}
		n := int(j.nChunks.Load())
		f, b := int(v&0xffff), int(v>>16&0xffff)
		if f+b >= n {
			return 0, false
		}
		nv, c := v+1, f
		if back {
			nv, c = v+1<<16, n-1-b
		}
		if j.claims[p].CompareAndSwap(v, nv) {
			return c, true
		}
	}
}

func (j *histJob) chunk(c int) []float32 {
	lo := c * parChunk
	return j.xs[lo:min(lo+parChunk, len(j.xs))]
}

// waitDone waits until every chunk of phase p is done. Only chunks the helper has claimed can
// still be running, each a few µs of work on the other core, so the wait spins; it does not
// yield, because a caller from C (Python through ctypes) runs on a goroutine locked to its
// thread, and a yield then hands the thread's P over and back, which costs more than the wait.
// If the helper's thread was descheduled mid-chunk, the wait sleeps after 100 µs of spinning.
func (j *histJob) waitDone(p int) {
	var start time.Time
	for i := 0; j.done[p].Load() < int64(j.n); i++ {
		if i&255 != 0 {
			continue
		}
		if i == 0 {
			start = time.Now()
		} else if time.Since(start) > 100*time.Microsecond {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// help is the helper's side of batch gen: it takes min/max chunks while that phase lasts, waits
// (briefly) for the range, then takes histc chunks.
func (j *histJob) help(gen uint64) {
	for i := 0; ; i++ {
		st := j.state.Load()
		if st>>2 != gen {
			return
		}
		switch st & 3 {
		case phaseMinMax:
			if c, ok := j.claim(0, gen, true); ok {
				if j.spec && j.counted.Load() != gen<<1 {
					clear(j.counts)
					j.counted.Store(gen << 1)
				}
				j.readChunk(c, j.counts)
				j.done[0].Add(1)
				i = 0
				continue
			}
			// All claimed: the caller publishes the range a few µs after the last chunk.
			if i > 5000 {
				return
			}
			runtime.Gosched()
		case phaseHistc:
			c, ok := j.claim(1, gen, true)
			if !ok {
				return
			}
			if j.counted.Load() != gen<<1|1 {
				clear(j.counts)
				j.counted.Store(gen<<1 | 1)
			}
			countBins(j.counts, j.chunk(c), j.left, j.right, j.nb, j.width)
			j.done[1].Add(1)
		default:
			return
		}
	}
}

// readChunk is phase 1's work on chunk c: its min/max, or, in a speculative batch that no chunk
// has yet shown to leave the current range, its histc over that range into counts. A chunk whose
// every value the histc counted lies in the range, so its min/max matter only if another chunk
// aborts the speculation: it is marked pending (+Inf, -Inf), for minMaxPending. A chunk with a
// value left out aborts the speculation and gets its min/max (NaN and ±Inf included).
func (j *histJob) readChunk(c int, counts []uint32) {
	xs := j.chunk(c)
	if j.spec && !j.abort.Load() {
		if countBins(counts, xs, j.left, j.right, j.nb, j.width) == 0 {
			j.mins[c], j.maxs[c] = float32(math.Inf(1)), float32(math.Inf(-1))
			return
		}
		j.abort.Store(true)
	}
	j.mins[c], j.maxs[c] = quant.MinMaxF32(xs)
}

// minMaxPending computes the min/max of the chunks readChunk left pending (a speculative batch
// that was aborted). MinMaxF32 never returns min +Inf with max -Inf for a non-empty chunk.
func (j *histJob) minMaxPending() {
	for c := range j.mins {
		if math.IsInf(float64(j.mins[c]), 1) && math.IsInf(float64(j.maxs[c]), -1) {
			j.mins[c], j.maxs[c] = quant.MinMaxF32(j.chunk(c))
		}
	}
}

// observeSplit is Observe for a large float32 batch (see the comment at the top of this file).
// It returns handled=false, having changed nothing, when the batch holds a NaN or ±Inf, so the
// caller's general path reports or filters them.
func (h *HistogramObserver) observeSplit(xs []float32) (handled bool) {
	j := &h.job
	bins := len(h.hist)
	n := (len(xs) + parChunk - 1) / parChunk
	if n > 0xffff {
		return false // claims count chunks in 16 bits (a batch of 4 Gi values); never in practice
	}
	if cap(j.counts) < bins+1 {
		j.counts = make([]uint32, bins+1)
	}
	if cap(j.mins) < n {
		j.mins, j.maxs = make([]float32, n), make([]float32, n)
	}
	j.gen++
	gen := j.gen
	j.xs, j.n, j.counts, j.mins, j.maxs = xs, n, j.counts[:bins+1], j.mins[:n], j.maxs[:n]
	first := math.IsInf(float64(h.min), 1) || math.IsInf(float64(h.max), -1)
	// Speculation: torch adds histc over the unchanged range when the batch lies inside it (the
	// common case once calibration has seen a few batches), so phase 1 counts over [min, max]
	// as it reads. A range of one value is left out: histc widens it, so a batch inside the
	// widened range can still widen the running one.
	j.spec = !first && h.min < h.max
	j.abort.Store(false)
	var own []uint32
	if j.spec {
		j.left, j.right, j.nb, j.width = h.min, h.max, float32(bins), h.max-h.min // = histBounds
		own = h.ownCounts(bins)
	}
	j.nChunks.Store(int64(n))
	for p := range j.claims {
		j.claims[p].Store((gen & 0xffffffff) << 32)
		j.done[p].Store(0)
	}
	j.state.Store(gen<<2 | phaseMinMax)
	offerHelper(j)
	defer j.state.Store(gen<<2 | phaseDone)

	for {
		c, ok := j.claim(0, gen, false)
		if !ok {
			break
		}
		j.readChunk(c, own)
		j.done[0].Add(1)
	}
	j.waitDone(0)
	if j.spec && !j.abort.Load() {
		// Every value lay in [min, max] (so none is NaN or ±Inf, and the range stays): the
		// counts are the batch's histc over the unchanged range, torch's case of adding it.
		h.sumCounts(h.upd, own, gen<<1)
		for i, v := range h.upd {
			h.hist[i] += v
		}
		return true
	}
	if j.spec && (h.min == 0 || h.max == 0) {
		// A pending chunk's values lie in [h.min, h.max], so they cannot move the combined
		// range, except for the sign of a zero end: min(+0, -0) is -0.
		j.minMaxPending()
	}
	mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
	for c := range j.mins {
		mn, mx = minKey(mn, j.mins[c]), maxKey(mx, j.maxs[c])
	}
	if !isFinite(mn) || !isFinite(mx) {
		return false
	}

	newMin, newMax := mn, mx
	if !first {
		newMin, newMax = min(h.min, mn), max(h.max, mx)
	}
	widened := newMin != h.min || newMax != h.max
	left, right := histBounds(newMin, newMax)
	j.left, j.right, j.nb, j.width = left, right, float32(bins), right-left
	j.state.Store(gen<<2 | phaseHistc) // the helper may now count from the back
	if !first && widened && h.min != h.max {
		h.upscale(newMin, newMax)
	}
	own = h.ownCounts(bins)
	for {
		c, ok := j.claim(1, gen, false)
		if !ok {
			break
		}
		countBins(own, j.chunk(c), left, right, j.nb, j.width)
		j.done[1].Add(1)
	}
	j.waitDone(1)
	dst := h.upd
	if first {
		dst = h.hist
	}
	h.sumCounts(dst, own, gen<<1|1)
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

// sumCounts sets dst to the caller's counts own plus the helper's when they hold counted.
func (h *HistogramObserver) sumCounts(dst []float32, own []uint32, counted uint64) {
	j := &h.job
	if j.counted.Load() == counted {
		for i := range dst {
			dst[i] = float32(uint64(own[i]) + uint64(j.counts[i]))
		}
		return
	}
	for i := range dst {
		dst[i] = float32(own[i])
	}
}

// minKey and maxKey combine two MinMaxF32 results the way one pass over both would: NaN wins
// (so that the caller sees it), then the ordinary float order, -0 below +0.
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

// ownCounts is the caller's cleared integer histogram (bins+1 slots, the last one scratch).
func (h *HistogramObserver) ownCounts(bins int) []uint32 {
	if len(h.counts) == 0 {
		h.counts = append(h.counts, make([]uint32, bins+1))
	}
	c := h.counts[0][:bins+1]
	clear(c)
	return c
}
