package quant

import "math"

// SQNR is torch's compute_sqnr (torch.ao.ns.fx.utils): 20·log10(‖x‖ / ‖x − y‖) in decibels, with
// the norms accumulated in float64. Equal inputs give +Inf; x = y = 0 gives NaN, as in torch.
func SQNR(x, y []float32) float64 {
	var ps, pn float64
	for i := range x {
		a := float64(x[i])
		d := a - float64(y[i])
		ps += a * a
		pn += d * d
	}
	return 20 * math.Log10(math.Sqrt(ps)/math.Sqrt(pn))
}

// Size accounts for the bytes of one tensor before and after quantization.
type Size struct {
	Elements      int64
	OriginalBytes int64 // the tensor as it was (its dtype's width × elements)
	DataBytes     int64 // quantized values (packed for Int4)
	ParamBytes    int64 // scales (float32) and zero points (int32 where the scheme stores them)
}

// QuantizedBytes is DataBytes + ParamBytes.
func (s Size) QuantizedBytes() int64 { return s.DataBytes + s.ParamBytes }

// BitsPerWeight counts the scales and zero points too: 8-bit per-channel is a little over 8.
func (s Size) BitsPerWeight() float64 {
	if s.Elements == 0 {
		return 0
	}
	return float64(8*s.QuantizedBytes()) / float64(s.Elements)
}

// Add sums two accountings (for a whole model).
func (s Size) Add(o Size) Size {
	return Size{s.Elements + o.Elements, s.OriginalBytes + o.OriginalBytes, s.DataBytes + o.DataBytes, s.ParamBytes + o.ParamBytes}
}

// SizeOf accounts for a tensor of the given shape and original element width under a normalized
// spec. Symmetric signed schemes store no zero points (they are all 0).
func SizeOf(shape []int, origElemBytes int, spec *Spec) Size {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	s := Size{Elements: n, OriginalBytes: n * int64(origElemBytes), DataBytes: int64(PackedLen(spec.Format, int(n)))}
	if spec.Format.IsInteger() {
		np := int64(spec.NumParams(shape))
		s.ParamBytes = 4 * np
		if spec.StoresZeroPoint() {
			s.ParamBytes += 4 * np
		}
	}
	return s
}

// StoresZeroPoint reports whether a checkpoint needs the zero points: not for symmetric signed
// schemes, whose zero points are all 0.
func (s *Spec) StoresZeroPoint() bool {
	return s.Format.IsInteger() && (s.Scheme == Asymmetric || s.QDType.Unsigned())
}
