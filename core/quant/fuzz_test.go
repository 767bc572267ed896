package quant

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

// FuzzQuantize throws arbitrary shapes (zero-sized ones included), specs and bit patterns at the
// public entry points: they may return errors, never panic, and a successful Quantize must
// dequantize and score without error.
func FuzzQuantize(f *testing.F) {
	f.Add([]byte{3, 7, 0}, uint8(1), uint8(2), uint8(1), int8(0), uint8(7), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0}, uint8(2), uint8(1), uint8(2), int8(-1), uint8(1), []byte{})
	f.Add([]byte{4, 0, 2}, uint8(1), uint8(2), uint8(2), int8(1), uint8(2), []byte{0xff, 0xff, 0x7f, 0x7f})
	f.Fuzz(func(t *testing.T, dims []byte, format, scheme, gran uint8, axis int8, group uint8, data []byte) {
		if len(dims) > 4 {
			dims = dims[:4]
		}
		shape := make([]int, len(dims))
		for i, d := range dims {
			shape[i] = int(d % 9)
		}
		n := tensor.NumElements(shape)
		dt := []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.F64}[int(format>>4)%4]
		x := tensor.New(dt, shape...)
		for i := 0; i < len(x.Data) && len(data) > 0; i++ {
			x.Data[i] = data[i%len(data)]
		}
		spec := Spec{
			Format:      Format(format%5) + 0,
			Scheme:      Scheme(scheme % 3),
			Granularity: Granularity(gran % 4),
			Axis:        int(axis),
			GroupSize:   int(group % 12),
			QDType:      QDType((format >> 2) % 5),
			ReduceRange: scheme&0x10 != 0,
			NonFinite:   NonFinitePolicy(gran >> 7),
		}
		q, err := QuantizeTensor(x, spec)
		if err != nil {
			return
		}
		if _, err := q.Dequantize(); err != nil {
			t.Fatalf("Dequantize after a successful Quantize(%v %v, %+v): %v", dt, shape, spec, err)
		}
		if _, err := SQNRQuantized(x, q.Data, q.Spec, q.Scale, q.ZeroPoint); err != nil && q.Stats.NonFinite == 0 {
			t.Fatalf("SQNRQuantized after a successful Quantize(%v %v, %+v): %v", dt, shape, spec, err)
		}
		for i, s := range q.Scale {
			if !(s > 0) || math.IsInf(float64(s), 0) {
				t.Fatalf("Quantize(%v %v, %+v): scale[%d] = %v", dt, shape, spec, i, s)
			}
		}
		_ = n
		_ = binary.LittleEndian
	})
}
