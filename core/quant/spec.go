package quant

import (
	"errors"
	"fmt"
	"math"
)

// Format is what a tensor becomes.
type Format int

const (
	// Int8 stores one signed (or unsigned, see QDType) byte per value.
	Int8 Format = iota + 1
	// Int4 stores two values per byte; the even element index sits in the low nibble.
	Int4
	// Float16 is an IEEE half cast, round to nearest even.
	Float16
	// BFloat16 is a bfloat16 cast, round to nearest even.
	BFloat16
)

var formatNames = map[Format]string{Int8: "int8", Int4: "int4", Float16: "fp16", BFloat16: "bf16"}

func (f Format) String() string {
	if s, ok := formatNames[f]; ok {
		return s
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// IsInteger reports whether f is an integer format (has scales and zero points).
func (f Format) IsInteger() bool { return f == Int8 || f == Int4 }

// Bits is the storage width of one value.
func (f Format) Bits() int {
	switch f {
	case Int8:
		return 8
	case Int4:
		return 4
	case Float16, BFloat16:
		return 16
	}
	return 0
}

// Scheme says whether the integer grid is centred on zero.
type Scheme int

const (
	// Symmetric: torch's per_tensor_symmetric / per_channel_symmetric.
	Symmetric Scheme = iota + 1
	// Asymmetric: torch's per_tensor_affine / per_channel_affine.
	Asymmetric
)

func (s Scheme) String() string {
	switch s {
	case Symmetric:
		return "symmetric"
	case Asymmetric:
		return "asymmetric"
	}
	return fmt.Sprintf("Scheme(%d)", int(s))
}

// Granularity says how many values share one scale and zero point.
type Granularity int

const (
	// PerTensor: one scale for the whole tensor.
	PerTensor Granularity = iota + 1
	// PerChannel: one scale per index along Spec.Axis.
	PerChannel
	// PerGroup: one scale per Spec.GroupSize consecutive values of the last dimension.
	PerGroup
)

func (g Granularity) String() string {
	switch g {
	case PerTensor:
		return "per_tensor"
	case PerChannel:
		return "per_channel"
	case PerGroup:
		return "per_group"
	}
	return fmt.Sprintf("Granularity(%d)", int(g))
}

// QDType is the integer type of quantized values, named as in torch (qint8, quint8) plus the two
// 4-bit types.
type QDType int

const (
	QInt8  QDType = iota + 1 // -128..127
	QUInt8                   // 0..255
	QInt4                    // -8..7, stored as a two's-complement nibble
	QUInt4                   // 0..15
	QInt32                   // observers only: torch's qint32 range
)

func (q QDType) String() string {
	switch q {
	case QInt8:
		return "qint8"
	case QUInt8:
		return "quint8"
	case QInt4:
		return "qint4"
	case QUInt4:
		return "quint4"
	case QInt32:
		return "qint32"
	}
	return fmt.Sprintf("QDType(%d)", int(q))
}

// Limits returns the full range of the storage type; torch.quantize_per_* clamps to it.
func (q QDType) Limits() (lo, hi int32) {
	switch q {
	case QInt8:
		return -128, 127
	case QUInt8:
		return 0, 255
	case QInt4:
		return -8, 7
	case QUInt4:
		return 0, 15
	case QInt32:
		return math.MinInt32, math.MaxInt32
	}
	return 0, 0
}

// Unsigned reports whether the type has no negative values (torch's quint8 rules apply).
func (q QDType) Unsigned() bool { return q == QUInt8 || q == QUInt4 }

// DefaultEps is torch.finfo(torch.float32).eps, the default floor of every scale.
const DefaultEps float32 = 1.1920928955078125e-07

// Range is a resolved quantization range: torch's (quant_min, quant_max) after
// calculate_qmin_qmax. Custom records whether the caller chose it (it changes the symmetric
// zero point of unsigned types).
type Range struct {
	Min, Max int32
	Custom   bool
}

// ResolveRange mirrors torch.ao.quantization.utils.calculate_qmin_qmax. custom is nil for the
// dtype's default range, or the caller's {quant_min, quant_max}.
func ResolveRange(dt QDType, reduceRange bool, custom *[2]int) (Range, error) {
	lo, hi := dt.Limits()
	if lo == 0 && hi == 0 {
		return Range{}, fmt.Errorf("unknown quantized dtype %v", dt)
	}
	if custom != nil {
		qmin, qmax := custom[0], custom[1]
		if !(qmin <= 0 && 0 <= qmax) {
			return Range{}, fmt.Errorf("quant_min %d and quant_max %d must include 0", qmin, qmax)
		}
		if qmin >= qmax {
			return Range{}, fmt.Errorf("quant_min %d must be less than quant_max %d", qmin, qmax)
		}
		if int64(qmin) < int64(lo) || int64(qmax) > int64(hi) {
			return Range{}, fmt.Errorf("quant range [%d, %d] does not fit %v [%d, %d]", qmin, qmax, dt, lo, hi)
		}
		if reduceRange {
			qmin, qmax = floorDiv(qmin, 2), floorDiv(qmax, 2)
		}
		return Range{Min: int32(qmin), Max: int32(qmax), Custom: true}, nil
	}
	// torch has no 4-bit dtype: its observers reach 4 bits only through quant_min/quant_max
	// (qint8 with [-8, 7], quint8 with [0, 15]), so a 4-bit range is always a custom one. That
	// makes the symmetric zero point of quint4 (0+15)//2 = 7, not 8.
	custom4 := dt == QInt4 || dt == QUInt4
	if reduceRange && dt != QInt32 {
		// torch: qint8 -> (-64, 63), quint8 -> (0, 127); the same floor halving for 4-bit.
		return Range{Min: int32(floorDiv(int(lo), 2)), Max: int32(floorDiv(int(hi), 2)), Custom: custom4}, nil
	}
	return Range{Min: lo, Max: hi, Custom: custom4}, nil
}

// floorDiv is Python's //.
func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// NonFinitePolicy says what to do with NaN and ±Inf in an input tensor.
type NonFinitePolicy int

const (
	// RejectNonFinite (the default) fails with an error naming the count and first index.
	RejectNonFinite NonFinitePolicy = iota
	// ClampNonFinite leaves NaN and ±Inf out of the ranges and quantizes them to the zero point
	// (NaN) or the ends of the grid (±Inf); for float formats it casts them as they are.
	ClampNonFinite
)

// Spec describes how one tensor is quantized. The zero value is not valid: fill Format at least
// and call Normalize (Quantize does it for you).
type Spec struct {
	Format      Format
	Scheme      Scheme      // default Symmetric
	Granularity Granularity // default PerChannel for Int8, PerGroup for Int4
	Axis        int         // PerChannel: the channel dimension; negative counts from the end
	GroupSize   int         // PerGroup: values per group along the last dimension; default 128
	QDType      QDType      // default QInt8 / QInt4 (signed); QUInt8 / QUInt4 for unsigned storage
	ReduceRange bool        // torch's reduce_range: halve the range
	QuantRange  *[2]int     // torch's quant_min/quant_max; nil for the dtype's range
	Eps         float32     // floor of every scale; 0 means DefaultEps
	NonFinite   NonFinitePolicy
	// SaturateFloat16: Float16 and BFloat16 casts clamp finite values to the largest finite
	// value (±65504, ±3.3895e38) instead of overflowing to ±Inf, as torch's dynamic fp16 linear
	// does to its weights; Stats.Overflow counts them either way. Whole models (core/model)
	// always saturate; the tensor-level default is torch's .to(), which overflows.
	SaturateFloat16 bool
}

// ErrSpec is wrapped by every invalid-spec error.
var ErrSpec = errors.New("invalid quantization spec")

// Normalize fills defaults and checks the spec against a tensor shape. It returns the resolved
// range (zero for float formats).
func (s *Spec) Normalize(shape []int) (Range, error) {
	bad := func(format string, a ...any) (Range, error) {
		return Range{}, fmt.Errorf("%w: %s", ErrSpec, fmt.Sprintf(format, a...))
	}
	switch s.Format {
	case Int8, Int4, Float16, BFloat16:
	default:
		return bad("unknown format %v", s.Format)
	}
	if s.Eps == 0 {
		s.Eps = DefaultEps
	}
	if !(s.Eps > 0) || math.IsInf(float64(s.Eps), 0) {
		return bad("eps %v must be a positive finite number", s.Eps)
	}
	if !s.Format.IsInteger() {
		return Range{}, nil
	}
	if s.Scheme == 0 {
		s.Scheme = Symmetric
	}
	if s.Scheme != Symmetric && s.Scheme != Asymmetric {
		return bad("unknown scheme %v", s.Scheme)
	}
	if s.Granularity == 0 {
		s.Granularity = PerChannel
		if s.Format == Int4 {
			s.Granularity = PerGroup
		}
	}
	if s.QDType == 0 {
		s.QDType = QInt8
		if s.Format == Int4 {
			s.QDType = QInt4
		}
	}
	switch {
	case s.Format == Int8 && (s.QDType == QInt8 || s.QDType == QUInt8):
	case s.Format == Int4 && (s.QDType == QInt4 || s.QDType == QUInt4):
	default:
		return bad("storage type %v does not match format %v", s.QDType, s.Format)
	}
	if s.QDType.Unsigned() && s.Scheme == Symmetric && s.ReduceRange {
		// torch raises NotImplementedError for this combination.
		return bad("symmetric %v with reduce_range is not supported (torch refuses it too)", s.QDType)
	}
	switch s.Granularity {
	case PerTensor:
	case PerChannel:
		if len(shape) == 0 {
			return bad("per-channel quantization needs a tensor with at least one dimension")
		}
		ax := s.Axis
		if ax < 0 {
			ax += len(shape)
		}
		if ax < 0 || ax >= len(shape) {
			return bad("axis %d out of range for shape %v", s.Axis, shape)
		}
		s.Axis = ax
	case PerGroup:
		if s.GroupSize == 0 {
			s.GroupSize = 128
		}
		if s.GroupSize < 1 {
			return bad("group size %d must be positive", s.GroupSize)
		}
		if len(shape) == 0 {
			return bad("group-wise quantization needs a tensor with at least one dimension")
		}
		if k := shape[len(shape)-1]; k%s.GroupSize != 0 {
			return bad("group size %d does not divide the last dimension %d of shape %v", s.GroupSize, k, shape)
		}
	default:
		return bad("unknown granularity %v", s.Granularity)
	}
	return ResolveRange(s.QDType, s.ReduceRange, s.QuantRange)
}

// NumParams returns how many scale/zero-point pairs a tensor of this shape gets under a
// normalized spec.
func (s *Spec) NumParams(shape []int) int {
	switch s.Granularity {
	case PerChannel:
		return shape[s.Axis]
	case PerGroup:
		n := 1
		for _, d := range shape {
			n *= d
		}
		return n / s.GroupSize
	}
	return 1
}

// ParamShape is the shape of the scale and zero-point tensors: [1] per tensor, [C] per channel,
// [rows, K/GroupSize] per group (rows = product of all but the last dimension).
func (s *Spec) ParamShape(shape []int) []int {
	switch s.Granularity {
	case PerChannel:
		return []int{shape[s.Axis]}
	case PerGroup:
		rows := 1
		for _, d := range shape[:len(shape)-1] {
			rows *= d
		}
		return []int{rows, shape[len(shape)-1] / s.GroupSize}
	}
	return []int{1}
}

// PackedRange returns the bytes of packed data q (format f) that hold elements [e0, e1); for
// Int4, e0 must be even so the range starts on a byte.
func PackedRange(f Format, q []byte, e0, e1 int) []byte {
	switch f {
	case Int4:
		return q[e0/2 : (e1+1)/2]
	case Float16, BFloat16:
		return q[2*e0 : 2*e1]
	}
	return q[e0:e1]
}

// PackedLen is the number of bytes that n quantized values of format f occupy.
func PackedLen(f Format, n int) int {
	switch f {
	case Int8:
		return n
	case Int4:
		return (n + 1) / 2
	case Float16, BFloat16:
		return 2 * n
	}
	return 0
}
