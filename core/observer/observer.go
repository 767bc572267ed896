// Package observer collects statistics of activations (or weights) over many batches and turns
// them into quantization parameters, at numeric parity with torch.ao.quantization's observers
// (torch ≥ 2.5): MinMaxObserver, MovingAverageMinMaxObserver, HistogramObserver,
// PerChannelMinMaxObserver and MovingAveragePerChannelMinMaxObserver.
package observer

import (
	"fmt"

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
