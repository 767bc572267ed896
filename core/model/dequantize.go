package model

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/tensor"
)

// Dequantize streams a quantized checkpoint back to float, tensor by tensor: each quantized
// tensor becomes one tensor of its original shape and dtype (F32, F16, BF16 or F64, as the
// config records it; (q − zero_point)·scale is computed in float32 and rounded to nearest even
// into a half type) under its own name (its .scale, .zero_point and outlier tensors are
// dropped; calibrated LLM.int8() outlier columns are put back from their float slice); every
// other tensor is copied as it is; a tied tensor the file stores once (Config.Aliases) is written
// under each of its names again, right after the stored one; the "monoquant" metadata key is
// removed and the rest of the metadata kept. The config is validated against the tensors first (ReadConfig).
func Dequantize(ctx context.Context, r checkpoint.Reader, create CreateFunc, progress ProgressFunc) (err error) {
	if r == nil || create == nil {
		return fmt.Errorf("model.Dequantize: nil reader or output")
	}
	entries := r.Entries()
	cfg, err := ReadConfig(entries, r.Metadata())
	if err != nil {
		return err
	}
	out, params, aliases := dequantizedEntries(entries, cfg)
	var total int64
	for _, e := range entries {
		total += entryBytes(e.DType, e.Shape)
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
			if err := copyTensor(r, w, e.Name, aliases[e.Name]...); err != nil {
				return err
			}
		} else {
			n, b, err := dequantizeOne(r, w, e.Name, tc, &buf, aliases[e.Name]...)
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
	// A cancel from the last tensor's progress callback still wins: nothing is committed.
	if err = ctx.Err(); err != nil {
		return err
	}
	return w.Commit()
}

// dequantizedEntries lists the tensors Dequantize writes for a quantized checkpoint's entries
// and config (each tied name right after its stored tensor), maps each .scale / .zero_point
// entry to its tensor, and each stored tensor to its tied names.
func dequantizedEntries(entries []checkpoint.Entry, cfg *Config) ([]checkpoint.Entry, map[string]string, map[string][]string) {
	params := map[string]string{} // .scale / .zero_point / outlier entry → its tensor
	for name, tc := range cfg.Tensors {
		params[name+names.ScaleSuffix] = name
		if tc.ZeroPoint {
			params[name+names.ZeroPointSuffix] = name
		}
		if tc.OutlierColumns > 0 {
			params[name+names.OutlierColumnsSuffix], params[name+names.OutlierWeightSuffix] = name, name
		}
	}
	aliases := map[string][]string{} // stored tensor → the tied names written after it
	for alias, target := range cfg.Aliases {
		aliases[target] = append(aliases[target], alias)
	}
	for _, a := range aliases {
		slices.Sort(a)
	}
	var out []checkpoint.Entry
	for _, e := range entries {
		if _, ok := params[e.Name]; ok {
			continue
		}
		fe := e
		if tc, ok := cfg.Tensors[e.Name]; ok {
			fe = checkpoint.Entry{Name: e.Name, DType: originalDType(tc), Shape: append([]int{}, tc.Shape...)}
		}
		out = append(out, fe)
		for _, a := range aliases[e.Name] {
			out = append(out, checkpoint.Entry{Name: a, DType: fe.DType, Shape: append([]int{}, fe.Shape...)})
		}
	}
	return out, params, aliases
}

// dequantizeOne reads a quantized tensor with its parameters, checks them and writes the
// float32 values. It returns how many stored tensors and bytes it consumed.
func dequantizeOne(r checkpoint.Reader, w checkpoint.Writer, name string, tc *TensorConfig, buf *[]float32, aliases ...string) (int, int64, error) {
	d, err := openRows(r, name, tc)
	if err != nil {
		return 0, 0, err
	}
	var out []float32
	if mem, ok := w.(outputMemory); ok && originalDType(tc) == tensor.F32 {
		// float32 goes straight into the writer's memory (the caller's, for DequantizeInto):
		// the Write below finds it in place
		if m := floats32(mem.memory(name)); len(m) == d.n {
			out = m
		}
	}
	if out == nil {
		if cap(*buf) < d.n {
			*buf = make([]float32, d.n)
		}
		out = (*buf)[:d.n]
	}
	err = d.Dequantize(0, d.rows, out)
	d.Close()
	if err != nil {
		return 0, 0, err
	}
	data := asDType(out, originalDType(tc))
	for _, n := range append([]string{name}, aliases...) {
		if err := w.Write(n, data); err != nil {
			return 0, 0, fmt.Errorf("writing tensor %q: %w", n, err)
		}
	}
	return d.used, d.bytes, nil
}

// originalDType is the float dtype a quantized tensor had (F32 when the config names another).
func originalDType(tc *TensorConfig) tensor.DType {
	if dt, err := tensor.ParseDType(tc.DType); err == nil && dt.IsFloat() {
		return dt
	}
	return tensor.F32
}

// asDType encodes float32 values as dt (F32 as they are; the half types rounded to nearest even).
func asDType(v []float32, dt tensor.DType) []byte {
	switch dt {
	case tensor.F16, tensor.BF16:
		b := make([]byte, 2*len(v))
		for i, x := range v {
			h := tensor.Float32ToF16(x)
			if dt == tensor.BF16 {
				h = tensor.Float32ToBF16(x)
			}
			binary.LittleEndian.PutUint16(b[2*i:], h)
		}
		return b
	case tensor.F64:
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(float64(x)))
		}
		return b
	}
	return tensor.Float32Bytes(v)
}
