package observer

import (
	"errors"
	"fmt"
	"math"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// Kind names an observer class of torch.ao.quantization.
type Kind int

const (
	MinMax                        Kind = iota + 1 // MinMaxObserver
	MovingAverageMinMax                           // MovingAverageMinMaxObserver
	Histogram                                     // HistogramObserver
	PerChannelMinMax                              // PerChannelMinMaxObserver
	MovingAveragePerChannelMinMax                 // MovingAveragePerChannelMinMaxObserver
)

var kindNames = map[Kind]string{
	MinMax: "minmax", MovingAverageMinMax: "moving_average", Histogram: "histogram",
	PerChannelMinMax: "per_channel_minmax", MovingAveragePerChannelMinMax: "per_channel_moving_average",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind maps "minmax", "moving_average", "histogram", "per_channel_minmax" and
// "per_channel_moving_average" to a Kind.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown observer %q (want minmax, moving_average, histogram, per_channel_minmax or per_channel_moving_average)", s)
}

// PerChannel reports whether the kind keeps one range per channel.
func (k Kind) PerChannel() bool { return k == PerChannelMinMax || k == MovingAveragePerChannelMinMax }

// Options are torch's constructor arguments. Zero values mean torch's defaults: dtype quint8,
// affine (asymmetric) scheme, no reduce_range, the dtype's full range, eps = finfo(float32).eps,
// averaging_constant 0.01, ch_axis 0, bins 2048.
type Options struct {
	Kind              Kind
	DType             quant.QDType // QUInt8 (default), QInt8, QInt32, QInt4, QUInt4
	Scheme            quant.Scheme // Asymmetric (default; torch's *_affine) or Symmetric
	ReduceRange       bool
	QuantRange        *[2]int // quant_min, quant_max; nil for the dtype's range
	Eps               float32
	AveragingConstant float32 // moving-average kinds; must be in (0, 1]
	ChAxis            int     // per-channel kinds; negative counts from the end
	Bins              int     // Histogram
}

// Observer accumulates statistics over batches. Implementations are not safe for concurrent
// use; callers (the C ABI, the Python package) serialise access per observer.
type Observer interface {
	// Observe folds one batch into the state (torch's forward). Any float dtype is accepted and
	// converted to float32 as torch does; an empty tensor is ignored. NaN is an error naming the
	// problem (torch would silently poison the state).
	Observe(x *tensor.Tensor) error
	// QParams is torch's calculate_qparams: scales and zero points, one per tensor or per channel.
	QParams() (scale []float32, zeroPoint []int32, err error)
	// Range returns the running min and max (one per channel for per-channel kinds; empty before
	// the first batch for those, ±Inf for the per-tensor kinds).
	Range() (min, max []float32)
	// Reset forgets everything observed (torch's reset_min_max_vals).
	Reset()
	// Options returns the normalized options.
	Options() Options
}

// Errors wrapped by everything this package returns, for errors.Is.
var (
	// ErrOptions: the options would make torch's constructor raise, or make no sense.
	ErrOptions = errors.New("invalid observer options")
	// ErrInput: a nil tensor, a non-float dtype, a bad shape, NaN, or (for the min/max kinds) ±Inf.
	ErrInput = errors.New("invalid observer input")
)

// Defaults of torch's constructors.
const (
	DefaultAveragingConstant float32 = 0.01
	DefaultBins                      = 2048
	// maxBins keeps a typo from allocating gigabytes: the histogram combine works on bins*16
	// points.
	maxBins = 1 << 22
)

// New returns an observer of opts.Kind after filling torch's defaults into the zero fields and
// validating the rest the way torch's constructors do. The error wraps ErrOptions.
func New(opts Options) (Observer, error) {
	o, r, err := normalize(opts)
	if err != nil {
		return nil, err
	}
	switch o.Kind {
	case MinMax, MovingAverageMinMax:
		return newMinMax(o, r), nil
	case PerChannelMinMax, MovingAveragePerChannelMinMax:
		return newPerChannel(o, r), nil
	default:
		return newHistogram(o, r), nil
	}
}

func normalize(o Options) (Options, quant.Range, error) {
	bad := func(format string, a ...any) (Options, quant.Range, error) {
		return o, quant.Range{}, fmt.Errorf("%w: %s", ErrOptions, fmt.Sprintf(format, a...))
	}
	if _, ok := kindNames[o.Kind]; !ok {
		return bad("unknown observer kind %v", o.Kind)
	}
	if o.DType == 0 {
		o.DType = quant.QUInt8
	}
	switch o.DType {
	case quant.QUInt8, quant.QInt8, quant.QInt32:
	default:
		// torch's observers have no 4-bit dtype; 4 bits is quint8/qint8 with quant_min/quant_max.
		return bad("dtype %v is not an observer dtype (want quint8, qint8 or qint32; for 4 bits use quint8 with QuantRange {0, 15} or qint8 with {-8, 7})", o.DType)
	}
	if o.Scheme == 0 {
		o.Scheme = quant.Asymmetric
	}
	if o.Scheme != quant.Asymmetric && o.Scheme != quant.Symmetric {
		return bad("unknown scheme %v", o.Scheme)
	}
	if o.Scheme == quant.Symmetric && o.ReduceRange && o.DType == quant.QUInt8 {
		return bad("symmetric quint8 with reduce_range is not supported (torch raises NotImplementedError)")
	}
	if o.Eps == 0 {
		o.Eps = quant.DefaultEps
	}
	if !(o.Eps > 0) || math.IsInf(float64(o.Eps), 0) {
		return bad("eps %v must be a positive finite number", o.Eps)
	}
	moving := o.Kind == MovingAverageMinMax || o.Kind == MovingAveragePerChannelMinMax
	switch {
	case moving && o.AveragingConstant == 0:
		o.AveragingConstant = DefaultAveragingConstant
	case !moving && o.AveragingConstant != 0:
		return bad("averaging constant %v is only for the moving-average observers, not %v", o.AveragingConstant, o.Kind)
	}
	if moving && !(o.AveragingConstant > 0 && o.AveragingConstant <= 1) {
		return bad("averaging constant %v must be in (0, 1]", o.AveragingConstant)
	}
	if !o.Kind.PerChannel() && o.ChAxis != 0 {
		return bad("channel axis %d is only for the per-channel observers, not %v", o.ChAxis, o.Kind)
	}
	switch {
	case o.Kind == Histogram && o.Bins == 0:
		o.Bins = DefaultBins
	case o.Kind != Histogram && o.Bins != 0:
		return bad("bins %d is only for the histogram observer, not %v", o.Bins, o.Kind)
	}
	if o.Kind == Histogram && (o.Bins < 1 || o.Bins > maxBins) {
		return bad("bins %d must be in [1, %d]", o.Bins, maxBins)
	}
	if o.QuantRange != nil {
		qr := *o.QuantRange
		o.QuantRange = &qr // the observer keeps its own copy
	}
	r, err := quant.ResolveRange(o.DType, o.ReduceRange, o.QuantRange)
	if err != nil {
		return bad("%v", err)
	}
	return o, r, nil
}

// defaultQParams is what torch's calculate_qparams returns (with a warning) before any data.
func defaultQParams() ([]float32, []int32, error) { return []float32{1}, []int32{0}, nil }

// checkTensor refuses what no observer can read.
func checkTensor(x *tensor.Tensor) error {
	if x == nil {
		return fmt.Errorf("%w: nil tensor", ErrInput)
	}
	if !x.DType.IsFloat() {
		return fmt.Errorf("%w: dtype %v is not a float type (want F32, F16, BF16 or F64)", ErrInput, x.DType)
	}
	if err := x.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInput, err)
	}
	return nil
}

// nonFinite describes the NaN or infinite values of x for an error. It runs only after a fast
// pass has counted some, so its allocation is off the hot path.
func nonFinite(x *tensor.Tensor, allowInf bool) error {
	v, err := x.Float32s()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInput, err)
	}
	nan, inf, firstNaN, firstInf := 0, 0, -1, -1
	for i, f := range v {
		switch {
		case f != f:
			if nan == 0 {
				firstNaN = i
			}
			nan++
		case math.IsInf(float64(f), 0):
			if inf == 0 {
				firstInf = i
			}
			inf++
		}
	}
	if nan > 0 {
		return fmt.Errorf("%w: %w: tensor %v %v holds %d NaN value(s), the first at flat index %d; the batch was not observed", ErrInput, quant.ErrNonFinite, x.DType, x.Shape, nan, firstNaN)
	}
	if inf > 0 && !allowInf {
		return fmt.Errorf("%w: %w: tensor %v %v holds %d infinite value(s), the first (%v) at flat index %d; a min/max observer would get an infinite range (torch would give scale inf/NaN), so the batch was not observed", ErrInput, quant.ErrNonFinite, x.DType, x.Shape, inf, v[firstInf], firstInf)
	}
	return nil
}
