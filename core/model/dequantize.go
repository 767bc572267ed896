package model

import (
	"context"
	"fmt"
	"maps"
	"math"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// Dequantize streams a quantized checkpoint back to float32, tensor by tensor: each quantized
// tensor becomes one F32 tensor of its original shape under its own name (its .scale and
// .zero_point tensors are dropped); every other tensor is copied as it is; the "monoquant"
// metadata key is removed and the rest of the metadata kept. The config is validated against
// the tensors first (ReadConfig).
func Dequantize(ctx context.Context, r checkpoint.Reader, create CreateFunc, progress ProgressFunc) (err error) {
	if r == nil || create == nil {
		return fmt.Errorf("model.Dequantize: nil reader or output")
	}
	entries := r.Entries()
	cfg, err := ReadConfig(entries, r.Metadata())
	if err != nil {
		return err
	}
	params := map[string]string{} // .scale / .zero_point entry → its tensor
	for name, tc := range cfg.Tensors {
		params[name+".scale"] = name
		if tc.ZeroPoint {
			params[name+".zero_point"] = name
		}
	}
	var out []checkpoint.Entry
	var total int64
	for _, e := range entries {
		total += entryBytes(e.DType, e.Shape)
		if _, ok := params[e.Name]; ok {
			continue
		}
		if tc, ok := cfg.Tensors[e.Name]; ok {
			out = append(out, checkpoint.Entry{Name: e.Name, DType: tensor.F32, Shape: append([]int{}, tc.Shape...)})
			continue
		}
		out = append(out, e)
	}
	md := maps.Clone(r.Metadata())
	delete(md, MetadataKey)
	w, err := create(out, md)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	prog := Progress{TensorsTotal: len(entries), BytesTotal: total}
	var buf []float32
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, ok := params[e.Name]; ok {
			continue // read with its tensor
		}
		tc, quantized := cfg.Tensors[e.Name]
		done := 1
		bytes := entryBytes(e.DType, e.Shape)
		if !quantized {
			if err := copyTensor(r, w, e.Name); err != nil {
				return err
			}
		} else {
			n, b, err := dequantizeOne(r, w, e.Name, tc, &buf)
			if err != nil {
				return err
			}
			done, bytes = n, b
		}
		prog.Tensor, prog.TensorsDone, prog.BytesDone = e.Name, prog.TensorsDone+done, prog.BytesDone+bytes
		if progress != nil {
			progress(prog)
		}
	}
	return w.Commit()
}

// dequantizeOne reads a quantized tensor with its parameters, checks them and writes the
// float32 values. It returns how many stored tensors and bytes it consumed.
func dequantizeOne(r checkpoint.Reader, w checkpoint.Writer, name string, tc *TensorConfig, buf *[]float32) (int, int64, error) {
	s, err := tc.Spec()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
	}
	n := tensor.NumElements(tc.Shape)
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	out := (*buf)[:n]
	used, bytes := 1, int64(0)
	var scale []float32
	var zp []int32
	if s.Format.IsInteger() {
		np := s.NumParams(tc.QuantShape)
		st, err := r.Tensor(name + ".scale")
		if err != nil {
			return 0, 0, fmt.Errorf("tensor %q: %w", name+".scale", err)
		}
		scale = append([]float32(nil), tensor.View[float32](st.Data)...)
		r.Release(name + ".scale")
		used, bytes = used+1, bytes+int64(len(st.Data))
		if len(scale) != np {
			return 0, 0, fmt.Errorf("%w: tensor %q has %d scales, its config needs %d", ErrFormat, name+".scale", len(scale), np)
		}
		for i, v := range scale {
			if !(v > 0) || math.IsInf(float64(v), 0) {
				return 0, 0, fmt.Errorf("%w: tensor %q: scale %d is %v; scales must be positive and finite", ErrFormat, name+".scale", i, v)
			}
		}
		zp = make([]int32, np)
		if s.StoresZeroPoint() {
			zt, err := r.Tensor(name + ".zero_point")
			if err != nil {
				return 0, 0, fmt.Errorf("tensor %q: %w", name+".zero_point", err)
			}
			copy(zp, tensor.View[int32](zt.Data))
			r.Release(name + ".zero_point")
			used, bytes = used+1, bytes+int64(len(zt.Data))
			lo, hi := s.QDType.Limits()
			for i, v := range zp {
				if v < lo || v > hi {
					return 0, 0, fmt.Errorf("%w: tensor %q: zero point %d is %d, outside %v [%d, %d]", ErrFormat, name+".zero_point", i, v, s.QDType, lo, hi)
				}
			}
		}
	}
	qt, err := r.Tensor(name)
	if err != nil {
		return 0, 0, fmt.Errorf("tensor %q: %w", name, err)
	}
	bytes += int64(len(qt.Data))
	err = quant.Dequantize(out, qt.Data, tc.QuantShape, s, scale, zp)
	r.Release(name)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
	}
	if err := w.Write(name, tensor.Float32Bytes(out)); err != nil {
		return 0, 0, fmt.Errorf("writing tensor %q: %w", name, err)
	}
	return used, bytes, nil
}
