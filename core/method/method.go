package method

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// Method names how a weight tensor becomes integers.
type Method string

const (
	// RTN rounds to nearest with min/max qparams: core/quant's kernels, unchanged.
	RTN Method = "rtn"
	// MSE searches, per granule, the clipping range that minimises the squared error.
	MSE Method = "mse"
	// HQQ optimises each granule's zero point by half-quadratic splitting (no data).
	HQQ Method = "hqq"
	// GPTQ quantizes column by column and feeds each column's error forward through the
	// layer's input Hessian (needs Options.Hessian).
	GPTQ Method = "gptq"
)

// Default is the method an empty name resolves to.
const Default = RTN

var known = []Method{RTN, MSE, HQQ, GPTQ}

// Names lists the method names, sorted.
func Names() []string {
	out := make([]string, len(known))
	for i, m := range known {
		out[i] = string(m)
	}
	sort.Strings(out)
	return out
}

// ErrMethod is wrapped by every error about a method, its options or its inputs.
var ErrMethod = errors.New("invalid method")

// Parse resolves a method name ("" is Default); the error lists the known names.
func Parse(name string) (Method, error) {
	if name == "" {
		return Default, nil
	}
	for _, m := range known {
		if strings.EqualFold(name, string(m)) {
			return m, nil
		}
	}
	return "", fmt.Errorf("%w: unknown method %q (want one of %s)", ErrMethod, name, strings.Join(Names(), ", "))
}

// NeedsHessian reports whether the method needs the layer's input Hessian.
func (m Method) NeedsHessian() bool { return m == GPTQ }

// Check reports whether the method can quantize to a spec (already normalized or not): every
// method but RTN needs an integer format; HQQ moves the zero point, so it needs the asymmetric
// scheme; GPTQ needs the tensor's rows to be its output channels (per-group, or per-channel on
// axis 0).
func (m Method) Check(spec quant.Spec) error {
	if _, err := Parse(string(m)); err != nil {
		return err
	}
	if m == RTN {
		return nil
	}
	if !spec.Format.IsInteger() {
		return fmt.Errorf("%w: method %s quantizes to integers; format %v is a float cast (use method rtn)", ErrMethod, m, spec.Format)
	}
	if m == HQQ && spec.Scheme == quant.Symmetric {
		return fmt.Errorf("%w: method hqq optimises the zero point, so it needs the asymmetric scheme (the symmetric one fixes it)", ErrMethod)
	}
	if m == GPTQ && spec.Granularity == quant.PerTensor {
		return fmt.Errorf("%w: method gptq needs per-group or per-channel (axis 0) qparams, not per_tensor", ErrMethod)
	}
	return nil
}

// Options tune the methods; the zero value takes the documented defaults.
type Options struct {
	// MSEGrid is the number of clipping ratios the mse search tries: 1, 1-Step, 1-2·Step, …
	// Default 20 with MSEStep 0.025 (ratios 1.0 down to 0.525).
	MSEGrid int
	MSEStep float64
	// HQQIters bounds the half-quadratic iterations per granule (default 20, as the hqq package).
	HQQIters int
	// Hessian is the layer's input Hessian H = XᵀX (any accumulated scale), [K, K] where K is
	// the number of inputs (columns of the tensor viewed as [rows, K]); gptq only.
	Hessian *tensor.Tensor
	// PercDamp is GPTQ's dampening: λ = PercDamp · mean(diag H) is added to the diagonal.
	// Default 0.01, as in the paper's code.
	PercDamp float64
	// BlockSize is GPTQ's lazy-batch width (default 128).
	BlockSize int
	// ActOrder quantizes columns in order of decreasing H[i,i] (the paper's "act-order");
	// group qparams are then taken from the unquantized weights ("static groups") so that
	// groups stay consecutive columns, as the file format stores them.
	ActOrder bool
}

func (o *Options) defaults() error {
	if o.MSEGrid == 0 {
		o.MSEGrid = 20
	}
	if o.MSEStep == 0 {
		o.MSEStep = 0.025
	}
	if o.HQQIters == 0 {
		o.HQQIters = 20
	}
	if o.PercDamp == 0 {
		o.PercDamp = 0.01
	}
	if o.BlockSize == 0 {
		o.BlockSize = 128
	}
	switch {
	case o.MSEGrid < 1:
		return fmt.Errorf("%w: mse grid %d must be positive", ErrMethod, o.MSEGrid)
	case !(o.MSEStep > 0) || 1-float64(o.MSEGrid-1)*o.MSEStep <= 0:
		return fmt.Errorf("%w: mse step %v must be positive and keep every ratio above 0 over %d steps", ErrMethod, o.MSEStep, o.MSEGrid)
	case o.HQQIters < 1:
		return fmt.Errorf("%w: hqq iterations %d must be positive", ErrMethod, o.HQQIters)
	case !(o.PercDamp > 0) || math.IsInf(o.PercDamp, 0):
		return fmt.Errorf("%w: gptq dampening %v must be positive (the paper uses 0.01)", ErrMethod, o.PercDamp)
	case o.BlockSize < 1:
		return fmt.Errorf("%w: gptq block size %d must be positive", ErrMethod, o.BlockSize)
	}
	return nil
}

// Result says what a method did besides the stored bytes.
type Result struct {
	Stats quant.Stats
	// GPTQ: the dampening added to the Hessian's diagonal, and whether the Hessian was
	// singular (not positive definite before dampening, or with zero diagonal entries:
	// inputs that never fired, whose weights are then zeroed as in the paper's code).
	Damp         float64
	Singular     bool
	DeadInputs   int
	HessianNotes string
}

// Quantize quantizes src with method m into caller buffers, in exactly the form
// quant.Quantize writes (packed values, one scale and zero point per granule of spec), so
// that every reader of the stored form keeps working. RTN is quant.Quantize itself.
func Quantize(m Method, dst []byte, src *tensor.Tensor, spec quant.Spec, scale []float32, zp []int32, opts Options) (Result, error) {
	m, err := Parse(string(m))
	if err != nil {
		return Result{}, err
	}
	if m == RTN {
		st, err := quant.Quantize(dst, src, spec, scale, zp)
		return Result{Stats: st}, err
	}
	if err := opts.defaults(); err != nil {
		return Result{}, err
	}
	if err := src.Validate(); err != nil {
		return Result{}, err
	}
	if !src.DType.IsFloat() {
		return Result{}, fmt.Errorf("%w: input dtype %v is not a float type", quant.ErrSpec, src.DType)
	}
	r, err := spec.Normalize(src.Shape)
	if err != nil {
		return Result{}, err
	}
	if err := m.Check(spec); err != nil {
		return Result{}, err
	}
	if m == GPTQ && spec.Granularity == quant.PerChannel && spec.Axis != 0 {
		return Result{}, fmt.Errorf("%w: method gptq needs output channels on axis 0, the spec has axis %d", ErrMethod, spec.Axis)
	}
	np := spec.NumParams(src.Shape)
	if len(scale) < np || len(zp) < np {
		return Result{}, fmt.Errorf("%w: need %d scales and zero points, have %d and %d", quant.ErrSpec, np, len(scale), len(zp))
	}
	if need := quant.PackedLen(spec.Format, src.Len()); len(dst) < need {
		return Result{}, fmt.Errorf("%w: output buffer has %d bytes, need %d", quant.ErrSpec, len(dst), need)
	}
	xs, err := src.Float32s()
	if err != nil {
		return Result{}, err
	}
	if i, n := firstNonFinite(xs); n > 0 {
		return Result{}, fmt.Errorf("%w: %d NaN/Inf values (first at flat index %d); method %s needs finite weights", quant.ErrNonFinite, n, i, m)
	}
	g := newGranules(src.Shape, &spec)
	var res Result
	switch m {
	case MSE:
		err = mseParams(g.gather(xs), g, &spec, r, opts, scale[:np], zp[:np])
	case HQQ:
		// hqq chooses the integers too (unshrink keeps them under a rescaled step): the
		// kernel quantizes its dequantized values, which map back to them
		buf := g.gather(xs)
		if !g.strided {
			buf = append([]float32(nil), xs...)
		}
		if err = hqqParams(buf, g, &spec, r, opts, scale[:np], zp[:np]); err != nil {
			return res, err
		}
		res.Stats = quant.Stats{FirstNonFinite: -1}
		return res, quant.QuantizeWithParams(dst, &tensor.Tensor{DType: tensor.F32, Shape: src.Shape, Data: tensor.Float32Bytes(g.scatter(buf))}, spec, scale, zp)
	case GPTQ:
		var q []float32
		q, res, err = gptq(xs, src.Shape, &spec, r, opts, scale[:np], zp[:np])
		if err == nil {
			err = quant.QuantizeWithParams(dst, &tensor.Tensor{DType: tensor.F32, Shape: src.Shape, Data: tensor.Float32Bytes(q)}, spec, scale, zp)
		}
		return res, err
	}
	if err != nil {
		return res, err
	}
	res.Stats = quant.Stats{FirstNonFinite: -1}
	return res, quant.QuantizeWithParams(dst, src, spec, scale, zp)
}

func firstNonFinite(xs []float32) (first, n int) {
	first = -1
	for i, x := range xs {
		if x-x != 0 {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	return first, n
}

// granules describe which values share a scale: granule g holds values
// buf[g*size : (g+1)*size] of the gathered buffer.
type granules struct {
	count, size int
	// per-channel on an inner axis: the tensor is [outer, count, inner]
	outer, inner int
	strided      bool
}

func newGranules(shape []int, s *quant.Spec) granules {
	n := tensor.NumElements(shape)
	switch s.Granularity {
	case quant.PerGroup:
		return granules{count: n / s.GroupSize, size: s.GroupSize}
	case quant.PerChannel:
		c := shape[s.Axis]
		outer := tensor.NumElements(shape[:s.Axis])
		return granules{count: c, size: n / max(c, 1), outer: outer, inner: tensor.NumElements(shape[s.Axis+1:]), strided: outer > 1}
	}
	return granules{count: 1, size: n}
}

// gather returns the values granule-major: a view when granules are already contiguous.
func (g granules) gather(xs []float32) []float32 {
	if !g.strided {
		return xs
	}
	out := make([]float32, len(xs))
	j := 0
	for c := 0; c < g.count; c++ {
		for o := 0; o < g.outer; o++ {
			base := (o*g.count + c) * g.inner
			j += copy(out[j:], xs[base:base+g.inner])
		}
	}
	return out
}

// scatter is gather's inverse: granule-major values back in the tensor's order (the same
// slice when granules are contiguous).
func (g granules) scatter(buf []float32) []float32 {
	if !g.strided {
		return buf
	}
	out := make([]float32, len(buf))
	j := 0
	for c := 0; c < g.count; c++ {
		for o := 0; o < g.outer; o++ {
			base := (o*g.count + c) * g.inner
			j += copy(out[base:base+g.inner], buf[j:j+g.inner])
		}
	}
	return out
}

// parallelFor runs fn over [0, n) split into GOMAXPROCS contiguous parts.
func parallelFor(n int, fn func(lo, hi int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if w <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range w {
		lo, hi := i*n/w, (i+1)*n/w
		wg.Add(1)
		go func() { defer wg.Done(); fn(lo, hi) }()
	}
	wg.Wait()
}

// minMax of a finite run.
func minMax(xs []float32) (mn, mx float32) {
	mn, mx = xs[0], xs[0]
	for _, x := range xs[1:] {
		if x < mn {
			mn = x
		}
		if x > mx {
			mx = x
		}
	}
	return
}

// roundMagic rounds half to even for |v| < 2^22, exactly as the quant kernels do.
const roundMagic = 12582912 // 1.5·2^23

// clampf is min(max(v, lo), hi) with plain comparisons: the float min/max builtins also
// order NaN and signed zeros, which costs branches in the hot loops (inputs here are finite).
func clampf(v, lo, hi float32) float32 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// sqErr is Σ(x − x̂)² for one granule under (scale, zero point), with the kernel's rounding
// (half to even through the 1.5·2^23 trick; a value beyond 2^22 steps is clamped anyway).
func sqErr(xs []float32, s float32, z int32, lo, hi int32) float32 {
	inv := 1 / s
	lof, hif := float32(lo-z), float32(hi-z)
	var e0, e1 float32
	i := 0
	for ; i+1 < len(xs); i += 2 {
		x0, x1 := xs[i], xs[i+1]
		r0 := clampf((x0*inv+roundMagic)-roundMagic, lof, hif)
		r1 := clampf((x1*inv+roundMagic)-roundMagic, lof, hif)
		d0, d1 := x0-r0*s, x1-r1*s
		e0 += d0 * d0
		e1 += d1 * d1
	}
	if i < len(xs) {
		x := xs[i]
		d := x - clampf((x*inv+roundMagic)-roundMagic, lof, hif)*s
		e0 += d * d
	}
	return e0 + e1
}
