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
	qmin, qmax := r.Min, r.Max
	halfRange := float32(float64(int64(qmax)-int64(qmin)) / 2)
	fullRange := float32(int64(qmax) - int64(qmin))
	var symZP int32
	if dt.Unsigned() {
		if r.Custom {
			symZP = int32(floorDiv(int(qmin)+int(qmax), 2))
		} else {
			_, hi := dt.Limits()
			symZP = (hi + 1) / 2 // 128 for quint8, as torch
		}
	}
	for i := range minV {
		mn, mx := minV[i], maxV[i]
		if math.IsInf(float64(mn), 1) && math.IsInf(float64(mx), -1) {
			scale[i], zp[i] = 1, 0
			continue
		}
		if mn != mn || mx != mx {
			return fmt.Errorf("min/max %d is NaN (min %v, max %v)", i, mn, mx)
		}
		if mn > mx {
			return fmt.Errorf("min %v > max %v at index %d", mn, mx, i)
		}
		minNeg := min(mn, 0)
		maxPos := max(mx, 0)
		if scheme == Symmetric {
			maxPos = max(-minNeg, maxPos)
			s := maxPos / halfRange
			scale[i] = max(s, eps)
			zp[i] = symZP
			continue
		}
		s := (maxPos - minNeg) / fullRange
		s = max(s, eps)
		scale[i] = s
		q := math.RoundToEven(float64(minNeg / s))
		z := int64(qmin) - int64(q)
		zp[i] = int32(min(max(z, int64(qmin)), int64(qmax)))
	}
	return nil
}
