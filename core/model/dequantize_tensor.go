package model

import (
	"fmt"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

// DequantizeTensor returns one quantized tensor of a quantized checkpoint as float32 values in
// its original shape, with the same checks as Dequantize (scales positive and finite, zero
// points in range). It lets a caller look at one tensor at a time — verifying a freshly written
// file, comparing two checkpoints — without dequantizing the whole model into memory. cfg must
// come from ReadConfig on r.
func DequantizeTensor(r checkpoint.Reader, cfg *Config, name string) (*tensor.Tensor, error) {
	if r == nil || cfg == nil {
		return nil, fmt.Errorf("model.DequantizeTensor: nil reader or config")
	}
	tc, ok := cfg.Tensors[name]
	if !ok || tc == nil {
		return nil, fmt.Errorf("%w: tensor %q is not a quantized tensor of this checkpoint", ErrFormat, name)
	}
	var buf []float32
	c := &captureWriter{}
	if _, _, err := dequantizeOne(r, c, name, tc, &buf); err != nil {
		return nil, err
	}
	return tensor.FromFloat32(buf[:tensor.NumElements(tc.Shape)], tc.Shape...), nil
}

// captureWriter is the one-tensor checkpoint.Writer dequantizeOne writes into; the values stay
// in dequantizeOne's buffer, so nothing is copied.
type captureWriter struct{ wrote bool }

func (c *captureWriter) Write(string, []byte) error { c.wrote = true; return nil }
func (c *captureWriter) Commit() error              { return nil }
func (c *captureWriter) Abort() error               { return nil }
