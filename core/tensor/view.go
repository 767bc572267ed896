package tensor

import (
	"fmt"
	"math"
)

// Materialising a strided view copies it into a new row-major buffer of its logical size.
// When the view's elements overlap (a stride of 0, as in a broadcast or expand()ed tensor)
// that size is not bounded by the memory the view reads: a 4-byte storage viewed with shape
// [1<<20, 1<<20] and strides [0, 0] is 4 TiB. Every reader and the C ABI therefore refuse to
// materialise a view whose logical size exceeds ViewExpansion times the bytes it spans, plus
// ViewSlack: a real broadcast buffer (a row of biases expanded over a batch) stays well inside
// this, and the memory a view can demand stays linear in the memory behind it.
const (
	ViewExpansion = 16
	ViewSlack     = 1 << 20
)

// ViewSpan returns how many elements, from the view's first element, a strided view reaches:
// one past the last element it addresses (0 for an empty view). Sizes and strides must be
// non-negative; a span that does not fit in int64 is an error.
func ViewSpan(shape []int, stride []int64) (int64, error) {
	if len(shape) != len(stride) {
		return 0, fmt.Errorf("shape %v and strides %v have different lengths", shape, stride)
	}
	var last int64
	for i, d := range shape {
		if d < 0 || stride[i] < 0 {
			return 0, fmt.Errorf("shape %v with strides %v has a negative entry", shape, stride)
		}
		if d == 0 {
			return 0, nil
		}
	}
	for i, d := range shape {
		step, s := int64(d-1), stride[i]
		if s != 0 && step > (math.MaxInt64-1-last)/s {
			return 0, fmt.Errorf("shape %v with strides %v addresses more elements than fit in 64 bits", shape, stride)
		}
		last += step * s
	}
	return last + 1, nil
}

// CheckMaterialize refuses to copy a view of n elements of elemSize bytes that spans span
// elements when its logical size exceeds the bound above. what names the tensor for the
// message.
func CheckMaterialize(what string, n int, elemSize int, span int64) error {
	if n < 0 || elemSize <= 0 {
		return fmt.Errorf("%s: invalid size", what)
	}
	if int64(n) <= span {
		return nil
	}
	logical := int64(n) * int64(elemSize) // n*elemSize fits: NumElements and its callers checked it
	if int64(n) > math.MaxInt64/int64(elemSize) {
		logical = math.MaxInt64
	}
	limit := int64(ViewExpansion)*span*int64(elemSize) + ViewSlack
	if logical > limit {
		return fmt.Errorf("%s is a broadcast view of %d bytes over %d bytes of data, more than the %d× (+1 MiB) a view may expand to; pass or save a contiguous copy",
			what, logical, span*int64(elemSize), ViewExpansion)
	}
	return nil
}
