package observer

import (
	"fmt"
	"math"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// MinMaxObserver is torch's MinMaxObserver, or MovingAverageMinMaxObserver when its Kind is
// MovingAverageMinMax: one running (min, max) pair for the whole tensor.
type MinMaxObserver struct {
	opts     Options
	rng      quant.Range
	min, max float32
	spec     quant.Spec
}

func newMinMax(o Options, r quant.Range) *MinMaxObserver {
	m := &MinMaxObserver{opts: o, rng: r, spec: quant.Spec{Format: quant.Int8, Granularity: quant.PerTensor, NonFinite: quant.ClampNonFinite}}
	m.Reset()
	return m
}

// batchMinMax is torch.aminmax(x.to(float32)) over the whole tensor. NaN is always an error; ±Inf
// is an error unless allowInf, in which case the extremes are those of the finite values (+Inf,
// -Inf when there are none) and inf reports that some were left out.
func batchMinMax(x *tensor.Tensor, spec *quant.Spec, allowInf bool) (mn, mx float32, inf bool, err error) {
	var mins, maxs [1]float32
	st, err := quant.MinMax(x, spec, mins[:], maxs[:])
	if err != nil {
		return 0, 0, false, fmt.Errorf("%w: %v", ErrInput, err)
	}
	if st.NonFinite > 0 {
		if err := nonFinite(x, allowInf); err != nil {
			return 0, 0, false, err
		}
		inf = true
	}
	return mins[0], maxs[0], inf, nil
}

// Observe folds x into the running range (torch's forward).
func (m *MinMaxObserver) Observe(x *tensor.Tensor) error {
	if err := checkTensor(x); err != nil {
		return err
	}
	if x.Len() == 0 {
		return nil
	}
	mn, mx, _, err := batchMinMax(x, &m.spec, false)
	if err != nil {
		return err
	}
	if m.opts.Kind == MovingAverageMinMax && !(math.IsInf(float64(m.min), 1) && math.IsInf(float64(m.max), -1)) {
		m.min = movingAverage(m.min, mn, m.opts.AveragingConstant)
		m.max = movingAverage(m.max, mx, m.opts.AveragingConstant)
		return nil
	}
	m.min, m.max = min(m.min, mn), max(m.max, mx)
	return nil
}

// movingAverage is torch's `old + c * (cur - old)` on float32 tensors: three roundings, in this
// order (the conversions stop Go from fusing the multiply and the add).
func movingAverage(old, cur, c float32) float32 {
	d := float32(cur - old)
	return float32(old + float32(c*d))
}

// QParams is torch's calculate_qparams: one scale and zero point.
func (m *MinMaxObserver) QParams() ([]float32, []int32, error) {
	scale, zp := make([]float32, 1), make([]int32, 1)
	err := quant.CalculateQParams([]float32{m.min}, []float32{m.max}, m.opts.DType, m.opts.Scheme, m.rng, m.opts.Eps, scale, zp)
	return scale, zp, err
}

// Range returns the running min and max (+Inf and -Inf before any data).
func (m *MinMaxObserver) Range() (min, max []float32) { return []float32{m.min}, []float32{m.max} }

// Reset forgets everything observed.
func (m *MinMaxObserver) Reset() { m.min, m.max = float32(math.Inf(1)), float32(math.Inf(-1)) }

// Options returns the normalized options.
func (m *MinMaxObserver) Options() Options { return m.opts }
