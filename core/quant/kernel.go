package quant

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/monoquant/monoquant/core/tensor"
)

// ErrNonFinite is wrapped by the error for an input that holds NaN or ±Inf.
var ErrNonFinite = errors.New("tensor holds NaN or Inf")

// Stats reports what a kernel saw.
type Stats struct {
	NonFinite      int // NaN and ±Inf inputs
	FirstNonFinite int // flat index of the first one, -1 if none
	Overflow       int // finite inputs that became ±Inf in a Float16 cast
}

func (s *Stats) merge(o Stats) {
	if o.NonFinite > 0 && (s.FirstNonFinite < 0 || o.FirstNonFinite < s.FirstNonFinite) {
		s.FirstNonFinite = o.FirstNonFinite
	}
	s.NonFinite += o.NonFinite
	s.Overflow += o.Overflow
}

// NonFiniteHint ends the error of a tensor holding NaN/Inf, in core's option names: each front end
// replaces it with its own spelling of the option (the CLI's --nonfinite clamp, the C config's
// MQ_NONFINITE_CLAMP, Python's nonfinite="clamp"), so the error names an option the caller has.
const NonFiniteHint = `set the option nonfinite to "clamp" to quantize anyway`

func nonFiniteErr(st Stats) error {
	return fmt.Errorf("%w: %d non-finite values, the first at flat index %d (%s)",
		ErrNonFinite, st.NonFinite, st.FirstNonFinite, NonFiniteHint)
}

// layout maps a flat element index to its granule (the index of its scale). Elements come in
// runs of runLen consecutive values that share a granule: run r belongs to granule r % nchan for
// per-channel, r for per-group, 0 for per-tensor.
type layout struct {
	n      int
	runLen int
	nchan  int // granules; the modulus for per-channel
	perCh  bool
}

func newLayout(shape []int, s *Spec) layout {
	n := tensor.NumElements(shape)
	if !s.Format.IsInteger() {
		// Float formats have no granules; Normalize leaves their Granularity and Axis unchecked.
		return layout{n: n, runLen: max(n, 1), nchan: 1}
	}
	switch s.Granularity {
	case PerChannel:
		inner := tensor.NumElements(shape[s.Axis+1:])
		return layout{n: n, runLen: max(inner, 1), nchan: shape[s.Axis], perCh: true}
	case PerGroup:
		return layout{n: n, runLen: s.GroupSize, nchan: n / s.GroupSize}
	}
	return layout{n: n, runLen: max(n, 1), nchan: 1}
}

// shortRun is the run length below which per-channel kernels step the channel index per
// element instead of calling a function per run.
const shortRun = 16

func (l layout) short() bool { return l.perCh && l.runLen < shortRun }

func (l layout) granule(run int) int {
	if l.perCh {
		return run % l.nchan
	}
	if l.nchan == 1 {
		return 0
	}
	return run
}

// eachRun calls fn for every maximal span of xs (holding elements base..base+len(xs)) that
// lies in one run.
func (l layout) eachRun(base int, xs []float32, fn func(g, off int, xs []float32)) {
	for i := 0; i < len(xs); {
		run := (base + i) / l.runLen
		end := min((run+1)*l.runLen-base, len(xs))
		fn(l.granule(run), base+i, xs[i:end])
		i = end
	}
}

// minChunk is the smallest share of a tensor worth a goroutine.
const minChunk = 1 << 15

// parallel splits [0, n) into contiguous even-aligned ranges, one per worker, and runs fn on
// each. Even alignment lets 4-bit kernels own whole bytes.
func parallel(n int, fn func(worker, lo, hi int)) int {
	w := min(runtime.GOMAXPROCS(0), max(n/minChunk, 1))
	if w <= 1 {
		fn(0, 0, n)
		return 1
	}
	per := (n/w + 1) &^ 1
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		lo, hi := min(i*per, n), min((i+1)*per, n)
		if i == w-1 {
			hi = n
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, lo, hi)
		}()
	}
	wg.Wait()
	return w
}

// convChunk is how many non-float32 values are converted at a time into a worker's scratch.
const convChunk = 4096

// floats calls fn with float32 views of src's elements lo..hi: the caller's memory itself for F32,
// converted chunks in one scratch buffer for F16, BF16 and F64.
func floats(src *tensor.Tensor, lo, hi int, fn func(base int, xs []float32)) {
	if src.DType == tensor.F32 && tensor.Aligned[float32](src.Data) {
		all := tensor.View[float32](src.Data)
		fn(lo, all[lo:hi])
		return
	}
	// Other dtypes, and F32 at an unaligned address (which View would copy whole), go through
	// the worker's small scratch buffer.
	es := src.DType.Size()
	buf := make([]float32, min(convChunk, hi-lo))
	for b := lo; b < hi; b += convChunk {
		e := min(b+convChunk, hi)
		xs := buf[:e-b]
		tensor.ConvertToFloat32(xs, src.DType, src.Data[b*es:e*es])
		fn(b, xs)
	}
}

func checkInput(src *tensor.Tensor) error {
	if src == nil {
		return fmt.Errorf("%w: nil tensor", ErrSpec)
	}
	if err := src.Validate(); err != nil {
		return err
	}
	if !src.DType.IsFloat() {
		return fmt.Errorf("%w: input dtype %v is not F32, F16, BF16 or F64", ErrSpec, src.DType)
	}
	return nil
}

// MinMax computes the minimum and maximum of every granule of src (torch's aminmax per tensor,
// channel or group) into mins and maxs, which must hold spec.NumParams values. spec must be
// normalized. Non-finite values are counted; with ClampNonFinite they are left out of the
// ranges, otherwise the result is an error wrapping ErrNonFinite. A granule with no elements
// keeps min = +Inf and max = -Inf (CalculateQParams turns that into scale 1, zero point 0).
func MinMax(src *tensor.Tensor, spec *Spec, mins, maxs []float32) (Stats, error) {
	if err := checkInput(src); err != nil {
		return Stats{}, err
	}
	l := newLayout(src.Shape, spec)
	if len(mins) < l.nchan || len(maxs) < l.nchan {
		return Stats{}, fmt.Errorf("%w: MinMax needs room for %d mins and maxes, have %d and %d", ErrSpec, l.nchan, len(mins), len(maxs))
	}
	mins, maxs = mins[:l.nchan], maxs[:l.nchan]
	var mu sync.Mutex
	st := Stats{FirstNonFinite: -1}
	parts := make([][2][]float32, runtime.GOMAXPROCS(0))
	used := parallel(l.n, func(w, lo, hi int) {
		mn, mx := mins, maxs
		if w > 0 {
			// Each worker reduces into its own buffers; they are merged below, so no two
			// goroutines ever write the same granule.
			mn, mx = make([]float32, len(mins)), make([]float32, len(maxs))
			parts[w] = [2][]float32{mn, mx}
		}
		for i := range mn {
			mn[i], mx[i] = float32(math.Inf(1)), float32(math.Inf(-1))
		}
		local := Stats{FirstNonFinite: -1}
		floats(src, lo, hi, func(base int, xs []float32) {
			if l.short() {
				local.merge(minMaxChannels(l, base, xs, mn, mx))
				return
			}
			l.eachRun(base, xs, func(g, off int, run []float32) {
				a, b := minMaxRun(run)
				if !isFinite(a) || !isFinite(b) {
					local.merge(countNonFinite(off, run))
					a, b = minMaxFinite(run)
				}
				mn[g] = min(mn[g], a)
				mx[g] = max(mx[g], b)
			})
		})
		mu.Lock()
		st.merge(local)
		mu.Unlock()
	})
	for w := 1; w < used; w++ {
		for i, v := range parts[w][0] {
			mins[i] = min(mins[i], v)
		}
		for i, v := range parts[w][1] {
			maxs[i] = max(maxs[i], v)
		}
	}
	if st.NonFinite > 0 && spec.NonFinite != ClampNonFinite {
		return st, nonFiniteErr(st)
	}
	return st, nil
}

func isFinite(f float32) bool { return f-f == 0 }

// minMaxRun reduces on sortable integer keys of the float bits instead of Go's float min/max,
// which must order NaN and ±0 and compile to several instructions each: key(b) flips the
// magnitude bits of negative floats, so keys order like the values (-0 just below +0). NaNs get
// keys beyond ±Inf, so a NaN anywhere comes back as the min or max and the caller's isFinite
// check sends the run to the slow path, as for ±Inf.
func minMaxRun(xs []float32) (float32, float32) {
	if len(xs) == 0 {
		return float32(math.Inf(1)), float32(math.Inf(-1))
	}
	k := floatKey(xs[0])
	mn0, mx0, mn1, mx1 := k, k, k, k
	i := 0
	if haveMinMaxAVX2 && len(xs) >= 8 {
		// The same keys reduced eight at a time; the scalar loops below take the remainder.
		i = len(xs) &^ 7
		mn0, mx0 = minMaxKeysAVX2(&xs[0], i)
		mn1, mx1 = mn0, mx0
	}
	for ; i+4 <= len(xs); i += 4 {
		x := xs[i : i+4 : i+4]
		a, b, c, d := floatKey(x[0]), floatKey(x[1]), floatKey(x[2]), floatKey(x[3])
		mn0, mx0 = min(mn0, a, c), max(mx0, a, c)
		mn1, mx1 = min(mn1, b, d), max(mx1, b, d)
	}
	for ; i < len(xs); i++ {
		a := floatKey(xs[i])
		mn0, mx0 = min(mn0, a), max(mx0, a)
	}
	return keyFloat(min(mn0, mn1)), keyFloat(max(mx0, mx1))
}

func floatKey(f float32) int32 {
	k := int32(math.Float32bits(f))
	return k ^ (k>>31)&0x7FFFFFFF
}

// keyFloat inverts floatKey (the map is its own inverse).
func keyFloat(k int32) float32 { return math.Float32frombits(uint32(k ^ (k>>31)&0x7FFFFFFF)) }

// minMaxChannels is the per-channel reduction for short runs (a channel axis near the end, such
// as axis 1 of a [N, C] matrix, where every run is one element): calling a function per run
// would cost more than the work, so the channel index is stepped element by element instead.
func minMaxChannels(l layout, base int, xs []float32, mn, mx []float32) Stats {
	st := Stats{FirstNonFinite: -1}
	if len(xs) == 0 {
		return st // an empty tensor may have no channels to step through
	}
	if l.runLen == 1 {
		return minMaxLastAxis(l.nchan, base, xs, mn, mx)
	}
	c, k := (base/l.runLen)%l.nchan, base%l.runLen
	for i, x := range xs {
		if isFinite(x) {
			if x < mn[c] {
				mn[c] = x
			}
			if x > mx[c] {
				mx[c] = x
			}
		} else {
			if st.NonFinite == 0 {
				st.FirstNonFinite = base + i
			}
			st.NonFinite++
		}
		if k++; k == l.runLen {
			k = 0
			if c++; c == l.nchan {
				c = 0
			}
		}
	}
	return st
}

// minMaxLastAxis is minMaxChannels when the channel axis is the last one (runs of one element):
// the data is rows of nchan values, element c of a row belonging to channel c, so each row
// segment lines up with a slice of the min/max buffers and needs no channel counter.
func minMaxLastAxis(nchan, base int, xs []float32, mn, mx []float32) Stats {
	st := Stats{FirstNonFinite: -1}
	for i := 0; i < len(xs); {
		c := (base + i) % nchan
		seg := xs[i : i+min(nchan-c, len(xs)-i)]
		mns, mxs := mn[c:c+len(seg)], mx[c:c+len(seg)]
		for j, x := range seg {
			if x-x != 0 { // NaN or ±Inf
				if st.NonFinite == 0 {
					st.FirstNonFinite = base + i + j
				}
				st.NonFinite++
				continue
			}
			mns[j] = min(mns[j], x)
			mxs[j] = max(mxs[j], x)
		}
		i += len(seg)
	}
	return st
}

// minMaxFinite is the slow path for a run that holds NaN or Inf.
func minMaxFinite(xs []float32) (float32, float32) {
	mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, x := range xs {
		if isFinite(x) {
			mn, mx = min(mn, x), max(mx, x)
		}
	}
	return mn, mx
}

func countNonFinite(off int, xs []float32) Stats {
	st := Stats{FirstNonFinite: -1}
	for i, x := range xs {
		if !isFinite(x) {
			if st.NonFinite == 0 {
				st.FirstNonFinite = off + i
			}
			st.NonFinite++
		}
	}
	return st
}

// magic rounds a float32 of magnitude below 2^22 to an integer, half to even, by addition: in
// [2^23, 2^24) the float32 spacing is exactly 1, so v + magic is v rounded as torch rounds.
const magic = 12582912 // 1.5 * 2^23

// magicBits is math.Float32bits(magic): the bits of v + magic are magicBits + round(v).
const magicBits = 0x4B400000

// grid holds one granule's quantization constants in the form the inner loops want. The
// rounding and the clamp both happen on the bits of x*inv + magic: for positive floats the bits
// grow with the value, negative floats (and -Inf) have negative int32 bits, +Inf and larger
// values have bits above hiB. So clamping the bits to [loB, hiB] equals clamping the value to
// [qmin-zp, qmax-zp], whatever x is (±Inf included), and the result is then just bits + zb.
type grid struct {
	inv      float32 // 1/scale in float32, as ATen (multiply, never divide)
	loB, hiB int32   // bits of (qmin-zp)+magic and (qmax-zp)+magic
	zb       int32   // zp - magicBits
	z        int32
	scale    float32
}

func newGrid(scale float32, z, qlo, qhi int32) grid {
	return grid{
		inv:   1 / scale,
		loB:   int32(math.Float32bits(float32(qlo-z) + magic)),
		hiB:   int32(math.Float32bits(float32(qhi-z) + magic)),
		zb:    z - magicBits,
		z:     z,
		scale: scale,
	}
}

// q is torch's clamp(zp + round_half_even(x * inv), qmin, qmax). The explicit float32() keeps
// the compiler from fusing the multiply and the add into an FMA, which would round only once.
func (g *grid) q(x float32) int32 { return quantOne(x, g.inv, g.loB, g.hiB, g.zb) }

// quantOne is grid.q on loose values: hot loops copy the grid's fields into locals first, since
// the compiler otherwise reloads (or copies) the struct on every element.
func quantOne(x, inv float32, loB, hiB, zb int32) int32 {
	b := int32(math.Float32bits(float32(x*inv) + magic))
	return min(max(b, loB), hiB) + zb
}

// qNaN is q with NaN mapped to the zero point (the ClampNonFinite policy).
func (g *grid) qNaN(x float32) int32 {
	if x != x {
		return g.z
	}
	return g.q(x)
}

// Quantize quantizes src into dst with qparams computed from the data, exactly as torch's
// MinMax observers followed by torch.quantize_per_tensor / quantize_per_channel would: per
// granule min/max → CalculateQParams → q = clamp(zp + round_half_even(x * (1/scale))).
//
// src is any contiguous float tensor (F32 is read in place, never copied). dst must hold
// PackedLen(spec.Format, n) bytes; scale and zp receive spec.NumParams values (unused for the
// float formats, which may pass nil). Int4 packs two values per byte, the even flat index in the
// low nibble; signed values are stored as two's-complement nibbles. On error the contents of
// dst, scale and zp are unspecified.
func Quantize(dst []byte, src *tensor.Tensor, spec Spec, scale []float32, zp []int32) (Stats, error) {
	return quantize(dst, src, spec, scale, zp, nil)
}

// quantize is Quantize and, when en is not nil, QuantizeMeasured.
func quantize(dst []byte, src *tensor.Tensor, spec Spec, scale []float32, zp []int32, en *Energy) (Stats, error) {
	if err := checkInput(src); err != nil {
		return Stats{}, err
	}
	r, err := spec.Normalize(src.Shape)
	if err != nil {
		return Stats{}, err
	}
	var st Stats
	if !spec.Format.IsInteger() {
		if en != nil {
			// One pass: the error is measured as each value is cast.
			st, *en, err = castFloatMeasured(dst, src, &spec, true)
			return st, err
		}
		st, err = castFloat(dst, src, &spec)
	} else {
		np := spec.NumParams(src.Shape)
		if len(scale) < np || len(zp) < np {
			return Stats{}, fmt.Errorf("%w: need %d scales and zero points, have %d and %d", ErrSpec, np, len(scale), len(zp))
		}
		if need := PackedLen(spec.Format, src.Len()); len(dst) < need {
			return Stats{}, errShortOutput(len(dst), need)
		}
		if l := newLayout(src.Shape, &spec); l.contiguousGranules() {
			// One pass: the error, when asked for, is measured in it.
			return quantizeFused(dst, src, &spec, r, scale, zp, l, en)
		}
		mins, maxs := make([]float32, np), make([]float32, np)
		if st, err = MinMax(src, &spec, mins, maxs); err != nil {
			return st, err
		}
		if err := CalculateQParams(mins, maxs, spec.QDType, spec.Scheme, r, spec.Eps, scale, zp); err != nil {
			return st, err
		}
		err = quantizeInto(dst, src, &spec, scale, zp, st.NonFinite > 0)
	}
	if err != nil || en == nil {
		return st, err
	}
	*en, _, err = measure(src, dst, &spec, scale, zp)
	return st, err
}

// QuantizeWithParams quantizes src with qparams the caller already has (from an observer, or
// from a previous call): one scale and zero point per granule of spec.
func QuantizeWithParams(dst []byte, src *tensor.Tensor, spec Spec, scale []float32, zp []int32) error {
	if err := checkInput(src); err != nil {
		return err
	}
	if _, err := spec.Normalize(src.Shape); err != nil {
		return err
	}
	if !spec.Format.IsInteger() {
		return fmt.Errorf("%w: %v has no qparams", ErrSpec, spec.Format)
	}
	np := spec.NumParams(src.Shape)
	if len(scale) < np || len(zp) < np {
		return fmt.Errorf("%w: need %d scales and zero points, have %d and %d", ErrSpec, np, len(scale), len(zp))
	}
	if need := PackedLen(spec.Format, src.Len()); len(dst) < need {
		return errShortOutput(len(dst), need)
	}
	lo, hi := spec.QDType.Limits()
	for i := 0; i < np; i++ {
		if !(scale[i] > 0) || math.IsInf(float64(scale[i]), 0) {
			return fmt.Errorf("%w: scale %d is %v; scales must be positive and finite", ErrSpec, i, scale[i])
		}
		if zp[i] < lo || zp[i] > hi {
			return fmt.Errorf("%w: zero point %d is %d, outside %v [%d, %d]", ErrSpec, i, zp[i], spec.QDType, lo, hi)
		}
	}
	st := Stats{FirstNonFinite: -1}
	var mu sync.Mutex
	parallel(tensor.NumElements(src.Shape), func(_, a, b int) {
		floats(src, a, b, func(base int, xs []float32) {
			if s := countNonFinite(base, xs); s.NonFinite > 0 {
				mu.Lock()
				st.merge(s)
				mu.Unlock()
			}
		})
	})
	if st.NonFinite > 0 && spec.NonFinite != ClampNonFinite {
		return nonFiniteErr(st)
	}
	return quantizeInto(dst, src, &spec, scale, zp, st.NonFinite > 0)
}

func quantizeInto(dst []byte, src *tensor.Tensor, spec *Spec, scale []float32, zp []int32, hasNaN bool) error {
	l := newLayout(src.Shape, spec)
	if need := PackedLen(spec.Format, l.n); len(dst) < need {
		return errShortOutput(len(dst), need)
	}
	qlo, qhi := spec.QDType.Limits()
	four := spec.Format == Int4
	var grids []grid
	if l.short() {
		// Short runs step through channels element by element: precompute every channel's
		// constants once (one per channel, never per element).
		grids = make([]grid, l.nchan)
		for c := range grids {
			grids[c] = newGrid(scale[c], zp[c], qlo, qhi)
		}
	}
	parallel(l.n, func(_, a, b int) {
		floats(src, a, b, func(base int, xs []float32) {
			if grids != nil {
				quantChannels(dst, l, base, xs, grids, four, hasNaN)
				return
			}
			l.eachRun(base, xs, func(g, off int, run []float32) {
				gr := newGrid(scale[g], zp[g], qlo, qhi)
				switch {
				case hasNaN:
					quantRunNaN(dst, off, run, &gr, four)
				default:
					quantRunMeasured(dst, off, run, gr, four, false)
				}
			})
		})
	})
	return nil
}

// quantRun8 stores four values at a time: one 32-bit store instead of four byte stores.
func quantRun8(dst []byte, xs []float32, g grid) {
	inv, loB, hiB, zb := g.inv, g.loB, g.hiB, g.zb
	dst = dst[:len(xs)]
	i := 0
	for ; i+4 <= len(xs); i += 4 {
		x := xs[i : i+4 : i+4]
		a := uint32(byte(quantOne(x[0], inv, loB, hiB, zb)))
		b := uint32(byte(quantOne(x[1], inv, loB, hiB, zb)))
		c := uint32(byte(quantOne(x[2], inv, loB, hiB, zb)))
		d := uint32(byte(quantOne(x[3], inv, loB, hiB, zb)))
		binary.LittleEndian.PutUint32(dst[i:], a|b<<8|c<<16|d<<24)
	}
	for ; i < len(xs); i++ {
		dst[i] = byte(quantOne(xs[i], inv, loB, hiB, zb))
	}
}

// contiguousGranules reports whether every granule is one contiguous run (groups, or channels
// of a leading axis), so that a single pass can reduce, compute qparams and quantize each
// granule while it is still in cache. Per-tensor has one granule and gains nothing.
func (l layout) contiguousGranules() bool {
	return l.nchan > 1 && l.runLen >= shortRun && l.nchan*l.runLen == l.n
}

// quantizeFused is Quantize for contiguous granules: one read of the data instead of two.
// Workers take whole granules (split at even element indices so that Int4 workers own whole
// bytes); the results are identical to the two-pass path. F32 input is read in place; other
// float dtypes (and F32 at an address not aligned for float32) are converted a chunk of
// granules at a time into each worker's scratch, as the two-pass path converts them. When en
// is not nil it receives Σx² and Σ(x − x̂)², measured in the same pass (non-finite inputs,
// which only a ClampNonFinite call gets this far with, are left out of both sums).
func quantizeFused(dst []byte, src *tensor.Tensor, spec *Spec, r Range, scale []float32, zp []int32, l layout, en *Energy) (Stats, error) {
	convert := src.DType != tensor.F32 || !tensor.Aligned[float32](src.Data)
	var xs []float32
	if !convert {
		xs = tensor.View[float32](src.Data)
	}
	es := src.DType.Size()
	calc := newQParamCalc(spec.QDType, spec.Scheme, r, spec.Eps)
	qlo, qhi := spec.QDType.Limits()
	four := spec.Format == Int4
	clamp := spec.NonFinite == ClampNonFinite
	st := Stats{FirstNonFinite: -1}
	type share struct {
		first int
		e     Energy
	}
	var (
		mu       sync.Mutex
		firstErr error
		shares   []share
	)
	step := 1
	if four && l.runLen%2 == 1 {
		step = 2
	}
	parallelGranules(l.nchan, l.runLen, step, func(glo, ghi int) {
		local := Stats{FirstNonFinite: -1}
		var acc normAcc
		var scratch *[sqnrChunk]float32
		var err error
		// base holds the values of granules [g0, g0+chunk): the input itself, or its
		// conversion into conv.
		chunk := ghi - glo
		var conv []float32
		if convert {
			chunk = max(1, convChunkGranules/l.runLen)
			buf := convPool.Get().(*[]float32)
			defer convPool.Put(buf)
			if need := min(chunk, ghi-glo) * l.runLen; cap(*buf) < need {
				*buf = make([]float32, need)
			}
			conv = (*buf)[:cap(*buf)]
		}
		base, baseOff := xs, 0
		for g := glo; g < ghi; g++ {
			off := g * l.runLen
			if convert && (g-glo)%chunk == 0 {
				n := min(chunk, ghi-g) * l.runLen
				base, baseOff = conv[:n], off
				tensor.ConvertToFloat32(base, src.DType, src.Data[es*off:es*(off+n)])
			}
			run := base[off-baseOff : off-baseOff+l.runLen]
			a, b := minMaxRun(run)
			bad := !isFinite(a) || !isFinite(b)
			if bad {
				local.merge(countNonFinite(off, run))
				if !clamp {
					continue // the call fails; no point quantizing
				}
				a, b = minMaxFinite(run)
			}
			s, z, e := calc.calc(a, b)
			if e != nil && err == nil {
				err = fmt.Errorf("%w (granule %d)", e, g)
			}
			scale[g], zp[g] = s, z
			gr := newGrid(s, z, qlo, qhi)
			if bad {
				quantRunNaN(dst, off, run, &gr, four)
				if en != nil {
					if scratch == nil {
						scratch = new([sqnrChunk]float32)
					}
					acc.run(off, run, dst, spec, s, z, scratch)
				}
				continue
			}
			ps, pn := quantRunMeasured(dst, off, run, gr, four, en != nil)
			acc.ps += ps
			acc.pn += pn
		}
		mu.Lock()
		st.merge(local)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		shares = append(shares, share{glo, Energy{acc.ps, acc.pn}})
		mu.Unlock()
	})
	if st.NonFinite > 0 && !clamp {
		return st, nonFiniteErr(st)
	}
	if en != nil {
		// In granule order, so the sums do not depend on which worker finished first.
		slices.SortFunc(shares, func(a, b share) int { return a.first - b.first })
		*en = Energy{}
		for _, sh := range shares {
			en.Signal += sh.e.Signal
			en.Noise += sh.e.Noise
		}
	}
	return st, firstErr
}

// convChunkGranules is about how many elements of non-F32 input a fused worker converts at a
// time: small enough to stay in its L2 cache until quantized.
const convChunkGranules = 1 << 15

// convPool recycles the fused workers' conversion scratch: callers such as core/model quantize
// a large tensor as many blocks, and a fresh 128 KiB buffer per block would keep the GC busy.
var convPool = sync.Pool{New: func() any { b := make([]float32, convChunkGranules); return &b }}

// parallelGranules splits [0, ng) granules of runLen elements into one contiguous share per
// worker, each starting at a multiple of step granules.
func parallelGranules(ng, runLen, step int, fn func(glo, ghi int)) {
	w := min(runtime.GOMAXPROCS(0), max(ng*runLen/minChunk, 1))
	if w <= 1 {
		fn(0, ng)
		return
	}
	per := ((ng+w-1)/w + step - 1) / step * step
	var wg sync.WaitGroup
	for lo := 0; lo < ng; lo += per {
		hi := min(lo+per, ng)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// quantRun4 packs pairs. A run may start on an odd flat index (odd group sizes): its first value
// is then the high nibble of a byte whose low nibble the previous run, in the same worker,
// already wrote (workers own whole bytes: parallel splits at even indices).
func quantRun4(dst []byte, off int, xs []float32, g grid) {
	i := 0
	if off&1 == 1 && len(xs) > 0 {
		dst[off>>1] |= byte(g.q(xs[0])) << 4
		i = 1
	}
	inv, loB, hiB, zb := g.inv, g.loB, g.hiB, g.zb
	j := (off + i) >> 1
	pairs := xs[i:]
	out := dst[j : j+len(pairs)/2]
	for k := range out {
		a := quantOne(pairs[2*k], inv, loB, hiB, zb)
		b := quantOne(pairs[2*k+1], inv, loB, hiB, zb)
		out[k] = byte(a)&0xF | byte(b)<<4
	}
	i += 2 * len(out)
	j += len(out)
	if i < len(xs) {
		dst[j] = byte(g.q(xs[i])) & 0xF
	}
}

// quantRunNaN is the path for inputs that hold NaN (→ the zero point) under ClampNonFinite.
func quantRunNaN(dst []byte, off int, xs []float32, g *grid, four bool) {
	for i, x := range xs {
		putQ(dst, off+i, byte(g.qNaN(x)), four)
	}
}

func putQ(dst []byte, j int, q byte, four bool) {
	switch {
	case !four:
		dst[j] = q
	case j&1 == 0:
		dst[j>>1] = q & 0xF
	default:
		dst[j>>1] |= q << 4
	}
}

// quantChannels is quantizeInto for short per-channel runs; see minMaxChannels.
func quantChannels(dst []byte, l layout, base int, xs []float32, grids []grid, four, hasNaN bool) {
	if len(xs) == 0 {
		return // an empty tensor may have no channels to step through
	}
	if !four && !hasNaN && l.runLen == 1 {
		// Channels on the last axis: row segments line up with the grids (see minMaxLastAxis).
		for i := 0; i < len(xs); {
			c := (base + i) % l.nchan
			seg := xs[i : i+min(l.nchan-c, len(xs)-i)]
			gs := grids[c : c+len(seg)]
			d := dst[base+i : base+i+len(seg)]
			for j, x := range seg {
				g := &gs[j]
				d[j] = byte(quantOne(x, g.inv, g.loB, g.hiB, g.zb))
			}
			i += len(seg)
		}
		return
	}
	c, k := (base/l.runLen)%l.nchan, base%l.runLen
	if !four && !hasNaN {
		d := dst[base : base+len(xs)]
		for i, x := range xs {
			g := &grids[c]
			d[i] = byte(quantOne(x, g.inv, g.loB, g.hiB, g.zb))
			if k++; k == l.runLen {
				k = 0
				if c++; c == l.nchan {
					c = 0
				}
			}
		}
		return
	}
	for i, x := range xs {
		putQ(dst, base+i, byte(grids[c].qNaN(x)), four)
		if k++; k == l.runLen {
			k = 0
			if c++; c == l.nchan {
				c = 0
			}
		}
	}
}

// Dequantize writes float32 values (q - zp) * scale for every element of a quantized tensor of the
// given shape: the inverse of Quantize, with torch's rounding (one float32 rounding per value).
// For the float formats it widens the stored halves; scale and zp are then unused.
func Dequantize(dst []float32, q []byte, shape []int, spec Spec, scale []float32, zp []int32) error {
	if _, err := spec.Normalize(shape); err != nil {
		return err
	}
	n := tensor.NumElements(shape)
	if n < 0 {
		return fmt.Errorf("%w: bad shape %v", ErrSpec, shape)
	}
	if len(dst) < n {
		return fmt.Errorf("%w: output buffer has room for %d values, need %d", ErrSpec, len(dst), n)
	}
	if need := PackedLen(spec.Format, n); len(q) < need {
		return fmt.Errorf("%w: quantized data has %d bytes, need %d", ErrSpec, len(q), need)
	}
	switch spec.Format {
	case Float16:
		parallel(n, func(_, a, b int) { tensor.ConvertToFloat32(dst[a:b], tensor.F16, q[2*a:2*b]) })
		return nil
	case BFloat16:
		parallel(n, func(_, a, b int) { tensor.ConvertToFloat32(dst[a:b], tensor.BF16, q[2*a:2*b]) })
		return nil
	}
	np := spec.NumParams(shape)
	if len(scale) < np || len(zp) < np {
		return fmt.Errorf("%w: need %d scales and zero points, have %d and %d", ErrSpec, np, len(scale), len(zp))
	}
	l := newLayout(shape, &spec)
	signed := !spec.QDType.Unsigned()
	parallel(n, func(_, a, b int) {
		if l.short() {
			dequantChannels(dst[a:b], q, a, l, spec.Format, signed, scale, zp)
			return
		}
		l.eachRun(a, dst[a:b], func(g, off int, out []float32) {
			dequantRun(out, q, off, spec.Format, signed, scale[g], zp[g])
		})
	})
	return nil
}

// lutMin is the run length from which a table of every possible value beats computing each
// one: (q - zp)·scale has only 256 (Int8) or 16 (Int4) outcomes per granule. The table holds
// the very same float32 products, so results are bit-identical either way.
const lutMin = 512

// dequantRun writes (q − zp)·scale for elements off..off+len(out) of one granule.
func dequantRun(out []float32, q []byte, off int, f Format, signed bool, s float32, z int32) {
	if f == Int8 {
		src := q[off : off+len(out)]
		if len(out) < lutMin {
			for i, b := range src {
				out[i] = float32(byteValue(b, signed)-z) * s
			}
			return
		}
		var lut [256]float32
		for b := range lut {
			lut[b] = float32(byteValue(byte(b), signed)-z) * s
		}
		for i, b := range src {
			out[i] = lut[b]
		}
		return
	}
	var lut [16]float32
	for b := range lut {
		v := int32(b)
		if signed {
			v = int32(int8(byte(b)<<4) >> 4)
		}
		lut[b] = float32(v-z) * s
	}
	i := 0
	if off&1 == 1 && len(out) > 0 {
		out[0] = lut[q[off>>1]>>4]
		i = 1
	}
	pairs := q[(off+i)>>1 : (off+i)>>1+(len(out)-i)/2]
	for k, b := range pairs {
		out[i+2*k] = lut[b&0xF]
		out[i+2*k+1] = lut[b>>4]
	}
	if i += 2 * len(pairs); i < len(out) {
		out[i] = lut[q[(off+i)>>1]&0xF]
	}
}

func byteValue(b byte, signed bool) int32 {
	if signed {
		return int32(int8(b))
	}
	return int32(b)
}

// dequantChannels is Dequantize for short per-channel runs; see minMaxChannels.
func dequantChannels(out []float32, q []byte, base int, l layout, f Format, signed bool, scale []float32, zp []int32) {
	if len(out) == 0 {
		return // an empty tensor may have no channels to step through
	}
	c, k := (base/l.runLen)%l.nchan, base%l.runLen
	for i := range out {
		out[i] = float32(qAt(q, base+i, f, signed)-zp[c]) * scale[c]
		if k++; k == l.runLen {
			k = 0
			if c++; c == l.nchan {
				c = 0
			}
		}
	}
}

// Nibble reads element i of packed 4-bit data: the low nibble of byte i/2 for even i, the high
// nibble for odd i; signed nibbles are two's complement (-8..7).
func Nibble(q []byte, i int, signed bool) int32 {
	b := q[i>>1]
	if i&1 == 1 {
		b >>= 4
	}
	b &= 0xF
	if signed {
		return int32(int8(b<<4) >> 4)
	}
	return int32(b)
}

// Quantized is a tensor after Quantize, with its own buffers.
type Quantized struct {
	Spec      Spec // normalized
	Shape     []int
	Data      []byte
	Scale     []float32 // spec.ParamShape(Shape), row-major; nil for float formats
	ZeroPoint []int32
	Stats     Stats
}

// QuantizeTensor is Quantize with buffers it allocates.
func QuantizeTensor(src *tensor.Tensor, spec Spec) (*Quantized, error) {
	if err := checkInput(src); err != nil {
		return nil, err
	}
	if _, err := spec.Normalize(src.Shape); err != nil {
		return nil, err
	}
	q := &Quantized{Spec: spec, Shape: append([]int(nil), src.Shape...), Data: make([]byte, PackedLen(spec.Format, src.Len()))}
	if spec.Format.IsInteger() {
		np := spec.NumParams(src.Shape)
		q.Scale, q.ZeroPoint = make([]float32, np), make([]int32, np)
	}
	st, err := Quantize(q.Data, src, spec, q.Scale, q.ZeroPoint)
	q.Stats = st
	if err != nil {
		return nil, err
	}
	return q, nil
}

// Dequantize returns the float32 values the quantized tensor stands for.
func (q *Quantized) Dequantize() ([]float32, error) {
	out := make([]float32, tensor.NumElements(q.Shape))
	return out, Dequantize(out, q.Data, q.Shape, q.Spec, q.Scale, q.ZeroPoint)
}
