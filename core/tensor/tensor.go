package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/x448/float16"
)

// DType is an element type. The names follow safetensors ("F32", "BF16", …).
type DType int

// Element types. U4 and I4 are packed two per byte (see core/quant for the nibble order) and only
// appear inside quantized checkpoints; everything else is one element per ElemSize bytes.
const (
	Invalid DType = iota
	F32
	F16
	BF16
	F64
	I8
	U8
	I16
	I32
	I64
	Bool
)

var dtypeNames = [...]string{
	Invalid: "invalid", F32: "F32", F16: "F16", BF16: "BF16", F64: "F64",
	I8: "I8", U8: "U8", I16: "I16", I32: "I32", I64: "I64", Bool: "BOOL",
}

var dtypeSizes = [...]int{F32: 4, F16: 2, BF16: 2, F64: 8, I8: 1, U8: 1, I16: 2, I32: 4, I64: 8, Bool: 1}

// String returns the safetensors name of the dtype ("F32", "BF16", …).
func (d DType) String() string {
	if d > Invalid && int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// Valid reports whether d is a known element type.
func (d DType) Valid() bool { return d > Invalid && int(d) < len(dtypeNames) }

// Size is the number of bytes of one element.
func (d DType) Size() int {
	if !d.Valid() {
		return 0
	}
	return dtypeSizes[d]
}

// IsFloat reports whether d is one of the floating-point types the quantizers accept.
func (d DType) IsFloat() bool { return d == F32 || d == F16 || d == BF16 || d == F64 }

// ParseDType maps a safetensors dtype name to a DType.
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if i != int(Invalid) && n == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// Info describes a named tensor without its data, as a checkpoint lists it.
type Info struct {
	Name  string // dotted path, as in a state_dict: "encoder.layers.0.linear1.weight"
	DType DType
	Shape []int
}

// Tensor is a dense, row-major tensor.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// NumElements returns the product of the shape (1 for a scalar). It returns -1 if the product
// overflows or a dimension is negative.
func NumElements(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d != 0 && n > math.MaxInt/d {
			return -1
		}
		n *= d
	}
	return n
}

// Len returns the number of elements.
func (t *Tensor) Len() int { return NumElements(t.Shape) }

// Validate checks that the dtype is known and the byte length matches the shape.
func (t *Tensor) Validate() error {
	if !t.DType.Valid() {
		return fmt.Errorf("invalid dtype %v", t.DType)
	}
	n := t.Len()
	if n < 0 {
		return fmt.Errorf("invalid shape %v", t.Shape)
	}
	if n > math.MaxInt/t.DType.Size() || n*t.DType.Size() != len(t.Data) {
		return fmt.Errorf("shape %v of %v needs %d bytes, have %d", t.Shape, t.DType, n*t.DType.Size(), len(t.Data))
	}
	return nil
}

// New allocates a zeroed tensor.
func New(dt DType, shape ...int) *Tensor {
	n := NumElements(shape)
	if n < 0 || !dt.Valid() {
		panic(fmt.Sprintf("tensor.New: bad dtype %v or shape %v", dt, shape))
	}
	return &Tensor{DType: dt, Shape: append([]int(nil), shape...), Data: make([]byte, n*dt.Size())}
}

// FromFloat32 wraps a float32 slice (no copy) as an F32 tensor.
func FromFloat32(v []float32, shape ...int) *Tensor {
	if NumElements(shape) != len(v) {
		panic(fmt.Sprintf("tensor.FromFloat32: %d values for shape %v", len(v), shape))
	}
	return &Tensor{DType: F32, Shape: append([]int(nil), shape...), Data: Float32Bytes(v)}
}

// Float32Bytes views a float32 slice as bytes (no copy; the machine is little-endian).
func Float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// View reinterprets b as a slice of T without copying when b is suitably aligned, and copies
// otherwise (memory-mapped files may place a tensor at any offset).
func View[T any](b []byte) []T {
	var zero T
	sz := int(unsafe.Sizeof(zero))
	if len(b) == 0 {
		return []T{}
	}
	n := len(b) / sz
	if uintptr(unsafe.Pointer(&b[0]))%uintptr(unsafe.Alignof(zero)) == 0 {
		return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]T, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), n*sz), b)
	return out
}

// Aligned reports whether b can be viewed as []T in place (View then copies nothing).
func Aligned[T any](b []byte) bool {
	var zero T
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%uintptr(unsafe.Alignof(zero)) == 0
}

// Float32s returns the tensor's values as float32: a view for F32 data (when aligned), a
// converted copy for the other float types. Integer and bool tensors are an error.
func (t *Tensor) Float32s() ([]float32, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	switch t.DType {
	case F32:
		return View[float32](t.Data), nil
	case F16, BF16, F64:
		out := make([]float32, t.Len())
		ConvertToFloat32(out, t.DType, t.Data)
		return out, nil
	}
	return nil, fmt.Errorf("dtype %v is not a floating-point type", t.DType)
}

// ConvertToFloat32 converts len(dst) elements of src (of dtype dt, a float type) to float32.
// F64 rounds to nearest even, like torch's .to(float32); F16 and BF16 widen exactly.
func ConvertToFloat32(dst []float32, dt DType, src []byte) {
	switch dt {
	case F32:
		if Aligned[float32](src) {
			copy(dst, View[float32](src[:4*len(dst)]))
			return
		}
		for i := range dst { // unaligned (a memory-mapped file): decode without allocating
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case F16:
		i := 0
		if haveF16C && len(dst) >= 16 && Aligned[uint16](src) {
			hs := View[uint16](src[:2*len(dst)])
			i = len(dst) &^ 15
			// VCVTPH2PS gives the scalar conversion's bits for all 65536 halves (a signaling
			// NaN comes out quiet in both): TestConvertHalvesExhaustive.
			f16ToF32F16C(&dst[0], &hs[0], i)
		}
		for ; i < len(dst); i++ {
			dst[i] = float16.Frombits(binary.LittleEndian.Uint16(src[2*i:])).Float32()
		}
	case BF16:
		if Aligned[uint16](src) {
			// The common case (checkpoints are mostly BF16): a plain loop over the halves.
			hs := View[uint16](src[:2*len(dst)])
			i := 0
			if haveAVX2 && len(dst) >= 16 {
				i = len(dst) &^ 15
				bf16ToF32AVX2(&dst[0], &hs[0], i)
			}
			for ; i < len(dst); i++ {
				dst[i] = math.Float32frombits(uint32(hs[i]) << 16)
			}
			return
		}
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	default:
		panic("tensor.ConvertToFloat32: not a float dtype: " + dt.String())
	}
}

// Float32ToBF16 rounds to the nearest bfloat16, ties to even, as torch's .to(torch.bfloat16).
// NaN stays NaN (quiet).
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40
	}
	b += 0x7FFF + (b>>16)&1
	return uint16(b >> 16)
}

// Float32ToF16 rounds to the nearest IEEE half, ties to even, as torch's .to(torch.float16):
// overflow gives ±Inf, values below half the smallest subnormal give ±0, NaN gives torch's
// quiet NaN (sign | 0x7E00). Written out rather than calling x448/float16, which is several
// times slower on the quantization hot path; tests check the two agree on every non-NaN input
// class.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	b &= 0x7FFFFFFF
	switch {
	case b > 0x7F800000: // NaN
		return sign | 0x7E00
	case b >= 0x477FF000: // ≥ 65520 (halfway above 65504) and Inf: ±Inf
		return sign | 0x7C00
	case b >= 0x38800000: // ≥ 2^-14: a normal half
		b -= 112 << 23 // rebias the exponent from 127 to 15
		b += 0xFFF + (b>>13)&1
		return sign | uint16(b>>13)
	case b >= 0x33000000: // ≥ 2^-25: a subnormal half (or the smallest normal, after rounding)
		e := b >> 23
		m := b&0x7FFFFF | 0x800000
		shift := 126 - e // 14..24 bits dropped
		h := m >> shift
		rem, half := m&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	return sign
}

// float16Reference is the library conversion Float32ToF16 replaces; tests compare the two.
func float16Reference(f float32) uint16 { return float16.Fromfloat32(f).Bits() }
