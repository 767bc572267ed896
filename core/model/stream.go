package model

import (
	"context"
	"fmt"

	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/plan"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// Streaming bounds the peak memory of a whole-checkpoint conversion by a block of rows instead
// of the largest tensor. A tensor to quantize is streamed when its input holds at least
// streamThreshold bytes, its qparams depend on whole rows only (per-channel on axis 0,
// group-wise, float casts: see blockable), the reader can read and release part of a tensor
// (checkpoint.RangedReader) and the writer can take a tensor in parts (checkpoint.PartWriter). Each block of about streamBlockBytes of input is then
// read into a reused buffer, quantized, handed to the writer and its input pages released, so
// neither the input nor the quantized tensor is ever resident whole, nor copied whole.
// The bytes written and the qparams are the same as without streaming. Per-tensor granularity,
// and per-channel on another axis, need the whole tensor's range first and are not streamed.
//
// A tensor quantized from memory into its output's own memory (an in-memory model into the
// caller's buffers: quantize(inplace=True) and the other in-memory calls) has no buffer to
// bound: its input is read where it is and its blocks are written where they stay. It goes in
// blocks of inPlaceBlockBytes, as large as keeps a cancel prompt (tens of milliseconds). Every
// block is a fork and a join of the worker goroutines (quantizeMeasured), and on a busy machine
// a worker's wake-up can cost as much as its share: in 8 MiB blocks the engine's FP16 cast of
// a Llama MLP's three 4096×11008 weights took 1.5× as long as in one block each (BENCHMARKS.md).
var (
	streamThreshold   int64 = 32 << 20
	streamBlockBytes  int64 = 8 << 20
	inPlaceBlockBytes int64 = 256 << 20
)

// streamable reports whether tensor tp is quantized in streamed blocks, and the reader's
// ranges if so.
func streamable(tp *plan.TensorPlan, r checkpoint.Reader, w checkpoint.Writer) (checkpoint.RangedReader, bool) {
	if tp.Action != plan.ActionQuantize || entryBytes(tp.DType, tp.Shape) < streamThreshold || !blockable(&tp.Spec, tp.QuantShape) ||
		len(tp.Outliers) > 0 || // the outlier columns are taken out of a copy of the whole tensor
		(tp.Method != "" && tp.Method != method.RTN) || // the other methods see the whole tensor
		tp.Settings.Prune != "" { // magnitude pruning ranks the whole tensor
		return nil, false
	}
	if _, ok := w.(checkpoint.PartWriter); !ok {
		return nil, false
	}
	rr, ok := r.(checkpoint.RangedReader)
	return rr, ok
}

// keptStreamable returns the reader's ranges when a kept tensor of size bytes is copied in
// blocks, each read, written and released in turn (so it is never resident whole), else nil.
//
// From a file, every kept tensor is copied so (a small one in one block): the writer's block
// buffer is reused, where a whole-tensor copy would be garbage until the next collection. The
// in-memory model's tensors are written from their memory as they are (no copy to avoid).
func keptStreamable(size int64, r checkpoint.Reader, w checkpoint.Writer) checkpoint.RangedReader {
	if _, inMemory := r.(*memCheckpoint); inMemory && size < streamThreshold {
		return nil
	}
	if _, ok := w.(checkpoint.PartWriter); !ok {
		return nil
	}
	rr, _ := r.(checkpoint.RangedReader)
	return rr
}

// writeKeptParts copies a kept tensor of size bytes in blocks of streamBlockBytes through buf
// (grown as needed and returned for reuse): each block is read, written and released, and ctx
// is checked between blocks.
func writeKeptParts(ctx context.Context, w checkpoint.PartWriter, rr checkpoint.RangedReader, name string, size int64, buf []byte) ([]byte, error) {
	step := max(streamBlockBytes, 1)
	for off := int64(0); off < size || off == 0; off += step {
		if err := ctx.Err(); err != nil {
			return buf, err
		}
		n := min(step, size-off)
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		part := buf[:n]
		if err := rr.ReadRange(name, off, part); err != nil {
			return buf, fmt.Errorf("tensor %q: %w", name, err)
		}
		if err := w.WritePart(name, part); err != nil {
			return buf, fmt.Errorf("writing tensor %q: %w", name, err)
		}
		rr.ReleaseRange(name, off, n)
		if size == 0 {
			break
		}
	}
	return buf, nil
}

// quantizeStreamed reads tensor tp from rr block of rows by block into params.in, sending each
// block's quantized bytes to the writer as a part and releasing its input, then sends the scales
// and zero points (kept in params, which must not be in flight), checking ctx between blocks.
// finish takes back a job the writer is done with; r gives the whole tensor for an error message.
func quantizeStreamed(ctx context.Context, tp *plan.TensorPlan, r checkpoint.Reader, rr checkpoint.RangedReader, pl *pipeline,
	finish func(*writeJob) error, params *quantBuffers) (TensorReport, error) {
	s := tp.Spec
	rows := tp.QuantShape[0]
	n := tensor.NumElements(tp.Shape)
	rowLen := n / rows
	es := tp.DType.Size()
	block := streamBlockBytes
	if _, view := rr.(rangeViewer); view && pl.mem != nil && pl.mem.memory(tp.Name) != nil {
		block = inPlaceBlockBytes // in memory and in place: no buffer to bound
	}
	step := max(1, int(block/int64(max(rowLen*es, 1))))
	if s.Format == quant.Int4 && rowLen%2 == 1 && step%2 == 1 {
		step++ // blocks start on a byte of the packed output
	}
	gpr := 1 // qparams per row
	var sc []float32
	var z []int32
	if s.Format.IsInteger() {
		if s.Granularity == quant.PerGroup {
			gpr = rowLen / s.GroupSize
		}
		np := s.NumParams(tp.QuantShape)
		if np != rows*gpr {
			return TensorReport{}, fmt.Errorf("tensor %q: internal error: %d qparams for %d rows of %d", tp.Name, np, rows, gpr)
		}
		pl.setOutput(params, tp, 0, 0) // the writer's memory for the scales and zero points, if any
		if cap(params.scale) < np && (len(params.outSc) != np || (len(params.outZ) != np && s.StoresZeroPoint())) {
			params.scale, params.zp = make([]float32, np), make([]int32, np)
		}
		if len(params.outSc) == np {
			sc = params.outSc
		} else {
			sc = params.scale[:np]
		}
		if len(params.outZ) == np {
			z = params.outZ
		} else {
			if cap(params.zp) < np {
				params.zp = make([]int32, np)
			}
			z = params.zp[:np]
		}
	}
	st := quant.Stats{FirstNonFinite: -1}
	var sig, noise float64
	for r0 := 0; r0 < rows; r0 += step {
		if err := ctx.Err(); err != nil {
			return TensorReport{}, err // a large tensor is cancelled between blocks
		}
		r1 := min(r0+step, rows)
		e0, e1 := r0*rowLen, r1*rowLen
		for len(pl.free) == 0 {
			if err := finish(pl.wait()); err != nil {
				return TensorReport{}, err
			}
		}
		b := pl.buffers()
		pl.setOutput(b, tp, e0, e1)
		need := quant.PackedLen(s.Format, e1-e0)
		if len(b.outData) == need {
			b.d = b.outData // quantized in place: the WritePart that follows copies nothing
		} else {
			if cap(b.data) < need {
				b.data = make([]byte, need)
			}
			b.d = b.data[:need]
		}
		in, err := readBlock(rr, tp.Name, int64(es*e0), es*(e1-e0), &params.in)
		if err != nil {
			pl.free = append(pl.free, b)
			return TensorReport{}, fmt.Errorf("tensor %q: %w", tp.Name, err)
		}
		sub := &tensor.Tensor{DType: tp.DType, Shape: append([]int{r1 - r0}, tp.QuantShape[1:]...), Data: in}
		var bsc []float32
		var bz []int32
		if s.Format.IsInteger() {
			bsc, bz = sc[r0*gpr:r1*gpr], z[r0*gpr:r1*gpr]
		}
		bst, bsig, bnoise, err := quantizeMeasured(b.d, sub, s, bsc, bz)
		if err != nil {
			pl.free = append(pl.free, b)
			return TensorReport{}, streamError(tp, r, err)
		}
		rr.ReleaseRange(tp.Name, int64(es*e0), int64(es*(e1-e0)))
		if bst.NonFinite > 0 && st.FirstNonFinite < 0 {
			st.FirstNonFinite = e0 + bst.FirstNonFinite
		}
		st.NonFinite += bst.NonFinite
		st.Overflow += bst.Overflow
		sig += bsig
		noise += bnoise
		for pl.inflight >= maxInflight {
			if err := finish(pl.wait()); err != nil {
				return TensorReport{}, err
			}
		}
		pl.send(&writeJob{tp: tp, out: b, part: true})
	}
	params.sc, params.z = sc, z
	for pl.inflight >= maxInflight {
		if err := finish(pl.wait()); err != nil {
			return TensorReport{}, err
		}
	}
	pl.send(&writeJob{tp: tp, params: params})
	return tensorReport(tp, tp.DType, st, sig, noise), nil
}

// streamError is the error the whole tensor gives (its indices count from the tensor's start,
// not the block's); it runs only for bad input, so reading and quantizing the tensor again is fine.
func streamError(tp *plan.TensorPlan, r checkpoint.Reader, blockErr error) error {
	t, err := r.Tensor(tp.Name)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	defer r.Release(tp.Name)
	view := &tensor.Tensor{DType: t.DType, Shape: tp.QuantShape, Data: t.Data}
	s := tp.Spec
	data := make([]byte, quant.PackedLen(s.Format, t.Len()))
	var sc []float32
	var z []int32
	if s.Format.IsInteger() {
		np := s.NumParams(tp.QuantShape)
		sc, z = make([]float32, np), make([]int32, np)
	}
	if _, err := quant.Quantize(data, view, s, sc, z); err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	return fmt.Errorf("tensor %q: %w", tp.Name, blockErr)
}

// rangeViewer is a checkpoint.RangedReader whose tensors are in memory already (an in-memory
// model): a block is read where it is, not copied.
type rangeViewer interface {
	ViewRange(name string, off, n int64) ([]byte, error)
}

// readBlock returns n bytes of tensor name from off: a view when rr holds them in memory, else
// a copy into *buf (grown as needed and reused).
func readBlock(rr checkpoint.RangedReader, name string, off int64, n int, buf *[]byte) ([]byte, error) {
	if v, ok := rr.(rangeViewer); ok {
		return v.ViewRange(name, off, int64(n))
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	in := (*buf)[:n]
	return in, rr.ReadRange(name, off, in)
}
