package model

import (
	"github.com/monoquant/monoquant/core/blocks"
)

// FloatRows reads one tensor of a checkpoint as float32 rows, a block at a time: a quantized
// tensor through its RowDequantizer, a stored tensor through a blocks.Stream (converted to
// float32 when it is a float dtype). It holds one block, never a float32 copy of the tensor.
// Exactly one of Dequantizer and Stream is set.
type FloatRows struct {
	Dequantizer *RowDequantizer
	Stream      *blocks.Stream
	buf         []float32 // one block as float32, when it cannot be a view of the stored bytes
}

// IsFloat reports whether the tensor is read as float32 values (quantized, or a float dtype).
func (t *FloatRows) IsFloat() bool { return t.Dequantizer != nil || t.Stream.DType.IsFloat() }

// Len is the number of values.
func (t *FloatRows) Len() int {
	if t.Dequantizer != nil {
		return t.Dequantizer.NumRows() * t.Dequantizer.RowLen()
	}
	return t.Stream.Len()
}

// Rows returns rows [r0, r1) of rowLen values each as float32, valid until the next call; r0
// must not decrease from call to call.
func (t *FloatRows) Rows(r0, r1, rowLen int) ([]float32, error) {
	n := (r1 - r0) * rowLen
	if t.Dequantizer != nil {
		if cap(t.buf) < n {
			t.buf = make([]float32, n)
		}
		if err := t.Dequantizer.Dequantize(r0, r1, t.buf[:n]); err != nil {
			return nil, err
		}
		return t.buf[:n], nil
	}
	dt := t.Stream.DType
	raw, err := t.Stream.Bytes(r0*rowLen*dt.Size(), r1*rowLen*dt.Size())
	if err != nil {
		return nil, err
	}
	return blocks.Floats(raw, dt, &t.buf), nil
}

// Close releases what the reader holds.
func (t *FloatRows) Close() {
	if t.Dequantizer != nil {
		t.Dequantizer.Close()
	} else {
		t.Stream.Close()
	}
}
