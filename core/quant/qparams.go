package quant

import (
	"fmt"
	"math"
)

// CalculateQParams is torch's ObserverBase._calculate_qparams for the per-tensor and per-channel
// affine and symmetric schemes, element by element over minV/maxV (one pair per tensor, channel or
// group). Every operation is a separately rounded float32 op, as in torch; the results are written
// to scale and zp, which must have len(minV) elements.
//
// An untouched pair (min = +Inf, max = -Inf) gets scale 1 and zero point 0, as torch does for an
// observer that saw no data. min > max is an error. min == max gets no special case: a constant
// tensor still gets a valid scale (eps at worst), never 0, NaN or Inf.
func CalculateQParams(minV, maxV []float32, dt QDType, scheme Scheme, r Range, eps float32, scale []float32, zp []int32) error {
	if len(maxV) != len(minV) || len(scale) < len(minV) || len(zp) < len(minV) {
		return fmt.Errorf("CalculateQParams: %d mins, %d maxes, %d scales, %d zero points", len(minV), len(maxV), len(scale), len(zp))
	}
	c := newQParamCalc(dt, scheme, r, eps)
	for i := range minV {
		s, z, err := c.calc(minV[i], maxV[i])
		if err != nil {
			return fmt.Errorf("%w (index %d)", err, i)
		}
		scale[i], zp[i] = s, z
	}
	return nil
}

// qparamCalc holds what CalculateQParams derives once from the dtype, scheme and range, so that
// the fused kernels can compute one granule's qparams at a time.
type qparamCalc struct {
	qmin, qmax int32
	halfRange  float32 // f32((qmax-qmin)/2): 127.5 for 8 bits, as torch
	fullRange  float32
	eps        float32
	symZP      int32
	symmetric  bool
}

func newQParamCalc(dt QDType, scheme Scheme, r Range, eps float32) qparamCalc {
	c := qparamCalc{
		qmin: r.Min, qmax: r.Max, eps: eps, symmetric: scheme == Symmetric,
		halfRange: float32(float64(int64(r.Max)-int64(r.Min)) / 2),
		fullRange: float32(int64(r.Max) - int64(r.Min)),
	}
	if dt.Unsigned() {
		if r.Custom {
			c.symZP = int32(floorDiv(int(r.Min)+int(r.Max), 2))
		} else {
			_, hi := dt.Limits()
			c.symZP = (hi + 1) / 2 // 128 for quint8, as torch
		}
	}
	return c
}

func (c *qparamCalc) calc(mn, mx float32) (float32, int32, error) {
	if math.IsInf(float64(mn), 1) && math.IsInf(float64(mx), -1) {
		return 1, 0, nil
	}
	if mn != mn || mx != mx {
		return 0, 0, fmt.Errorf("min/max is NaN (min %v, max %v)", mn, mx)
	}
	if mn > mx {
		return 0, 0, fmt.Errorf("min %v > max %v", mn, mx)
	}
	minNeg := min(mn, 0)
	maxPos := max(mx, 0)
	if c.symmetric {
		maxPos = max(-minNeg, maxPos)
		return max(float32(maxPos/c.halfRange), c.eps), c.symZP, nil
	}
	s := max(float32(float32(maxPos-minNeg)/c.fullRange), c.eps)
	if math.IsInf(float64(s), 0) {
		// torch would carry an infinite scale on and quantize everything to the zero point.
		return 0, 0, fmt.Errorf("%w: range [%v, %v] is too wide: max - min overflows float32", ErrSpec, mn, mx)
	}
	q := math.RoundToEven(float64(float32(minNeg / s)))
	z := int64(c.qmin) - int64(q)
	return s, int32(min(max(z, int64(c.qmin)), int64(c.qmax))), nil
}
