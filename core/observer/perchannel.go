package observer

import (
	"fmt"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// PerChannelMinMaxObserver is torch's PerChannelMinMaxObserver, or
// MovingAveragePerChannelMinMaxObserver when its Kind is MovingAveragePerChannelMinMax: one
// running (min, max) pair per index along ChAxis.
type PerChannelMinMaxObserver struct {
	opts     Options
	rng      quant.Range
	min, max []float32 // empty before the first batch, as torch's buffers
	curMin   []float32 // this batch's extremes, reused across batches
	curMax   []float32
	spec     quant.Spec
}

func newPerChannel(o Options, r quant.Range) *PerChannelMinMaxObserver {
	return &PerChannelMinMaxObserver{opts: o, rng: r,
		spec: quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel, NonFinite: quant.ClampNonFinite}}
}

// Observe folds x into the per-channel ranges. torch swaps axis 0 and ChAxis and flattens the
// rest, so each channel's range covers every element with that index along ChAxis.
func (p *PerChannelMinMaxObserver) Observe(x *tensor.Tensor) error {
	if err := checkTensor(x); err != nil {
		return err
	}
	if x.Len() == 0 {
		return nil
	}
	nd := len(x.Shape)
	if nd < 2 {
		// torch's flatten(start_dim=1) fails on 0-D and 1-D input.
		return fmt.Errorf("%w: a per-channel observer needs a tensor of 2 or more dimensions, got shape %v", ErrInput, x.Shape)
	}
	ax := p.opts.ChAxis
	if ax < 0 {
		ax += nd
	}
	if ax < 0 || ax >= nd {
		return fmt.Errorf("%w: channel axis %d is out of range for shape %v", ErrInput, p.opts.ChAxis, x.Shape)
	}
	c := x.Shape[ax]
	if len(p.min) > 0 && len(p.min) != c {
		return fmt.Errorf("%w: shape %v has %d channels along axis %d, earlier batches had %d", ErrInput, x.Shape, c, p.opts.ChAxis, len(p.min))
	}
	if cap(p.curMin) < c {
		p.curMin, p.curMax = make([]float32, c), make([]float32, c)
	}
	cmin, cmax := p.curMin[:c], p.curMax[:c]
	spec := p.spec
	spec.Axis = ax
	st, err := quant.MinMax(x, &spec, cmin, cmax)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInput, err)
	}
	if st.NonFinite > 0 {
		return nonFinite(x, false)
	}
	if len(p.min) == 0 {
		p.min = append([]float32(nil), cmin...)
		p.max = append([]float32(nil), cmax...)
		return nil
	}
	if p.opts.Kind == MovingAveragePerChannelMinMax {
		a := p.opts.AveragingConstant
		for i := range p.min {
			p.min[i] = movingAverage(p.min[i], cmin[i], a)
			p.max[i] = movingAverage(p.max[i], cmax[i], a)
		}
		return nil
	}
	for i := range p.min {
		p.min[i] = min(p.min[i], cmin[i])
		p.max[i] = max(p.max[i], cmax[i])
	}
	return nil
}

// QParams returns one scale and zero point per channel; before any data, torch's [1] and [0].
func (p *PerChannelMinMaxObserver) QParams() ([]float32, []int32, error) {
	if len(p.min) == 0 {
		return defaultQParams()
	}
	scale, zp := make([]float32, len(p.min)), make([]int32, len(p.min))
	err := quant.CalculateQParams(p.min, p.max, p.opts.DType, p.opts.Scheme, p.rng, p.opts.Eps, scale, zp)
	return scale, zp, err
}

// Range returns copies of the per-channel minima and maxima (empty before any data).
func (p *PerChannelMinMaxObserver) Range() (min, max []float32) {
	return append([]float32{}, p.min...), append([]float32{}, p.max...)
}

// Reset forgets everything observed, including the channel count.
func (p *PerChannelMinMaxObserver) Reset() { p.min, p.max = nil, nil }

// Options returns the normalized options.
func (p *PerChannelMinMaxObserver) Options() Options { return p.opts }
