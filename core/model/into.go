package model

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
)

// OutputBuffers gives the memory a quantized model is written into: given the tensors Quantize
// will write, in order (OutputLayout's answer), it returns one buffer per tensor of exactly that
// tensor's size (LayoutBytes), or nil for a tensor the engine should allocate itself.
type OutputBuffers func(entries []checkpoint.Entry) ([][]byte, error)

// OutputLayout lists the tensors Quantize writes for these options, in order: every input tensor in
// the model's order, a quantized one as <name> (int8, or packed uint8 for INT4), <name>.scale
// and, when the scheme stores one, <name>.zero_point, with their dtypes and shapes. A caller
// that wants the result in its own memory allocates LayoutBytes of each and calls QuantizeInto.
//
// After calibration the layout includes the LLM.int8() outlier tensors calibration found, as
// Quantize will write them.
func (m *Model) OutputLayout(opts plan.Options) ([]checkpoint.Entry, error) {
	if m.cal != nil {
		opts.Calibrated = true // as quantize does
	}
	p, err := m.Plan(opts)
	if err != nil {
		return nil, err
	}
	if len(p.StaticLayers()) > 0 && m.cal != nil {
		if acts, _, err := m.cal.Params(); err == nil { // an error here is Quantize's to report
			setOutliers(p, m.cal, acts)
		}
	}
	return OutputEntries(p), nil
}

// LayoutBytes is the size in bytes of one tensor of a Layout.
func LayoutBytes(e checkpoint.Entry) int64 { return entryBytes(e.DType, e.Shape) }

// QuantizeInto is Quantize writing every tensor of the result straight into the caller's
// buffers: outputs is asked for them once the plan is made (with the OutputLayout of opts), and the
// Result's tensors are those buffers, not copies (keep them alive and unchanged while the
// Result is used). Large tensors are quantized in blocks of rows into their buffer (see
// docs/STREAMING.md), so the memory the call adds to the outputs is a few blocks, not a copy
// of the largest tensor. A buffer of the wrong size is an error naming the tensor.
func (m *Model) QuantizeInto(ctx context.Context, opts plan.Options, progress ProgressFunc, outputs OutputBuffers) (*Result, error) {
	if outputs == nil {
		return nil, fmt.Errorf("%w: QuantizeInto needs output buffers", plan.ErrOption)
	}
	return m.quantize(ctx, opts, progress, outputs)
}

// checkOutputBuffers checks one buffer per entry, each nil or of the entry's size.
func checkOutputBuffers(entries []checkpoint.Entry, bufs [][]byte) error {
	if len(bufs) != len(entries) {
		return fmt.Errorf("%w: %d output buffers for the %d tensors of the layout", plan.ErrOption, len(bufs), len(entries))
	}
	for i, e := range entries {
		if bufs[i] != nil && int64(len(bufs[i])) != LayoutBytes(e) {
			return fmt.Errorf("%w: output buffer %d (tensor %q, %v %v) holds %d bytes, the tensor needs %d",
				plan.ErrOption, i, e.Name, e.DType, e.Shape, len(bufs[i]), LayoutBytes(e))
		}
	}
	return nil
}

// outputMemory is a writer that holds the final memory of each declared tensor (the in-memory
// writer): the engine quantizes straight into it, and the Write or WritePart that follows finds
// the bytes already in place, so no tensor is produced in a scratch buffer and then copied.
type outputMemory interface {
	// memory returns the bytes of declared tensor name, allocating them if need be, or nil.
	memory(name string) []byte
}

// memory implements outputMemory: the caller's buffer of a declared tensor, or one allocated
// now (and used by the Write of that tensor).
func (w *memWriter) memory(name string) []byte {
	// Called from the quantizing goroutine for a tensor the writer goroutine has not reached:
	// the two touch different elements of bufs.
	i, ok := w.index[name]
	if !ok {
		return nil
	}
	if w.bufs[i] == nil {
		w.bufs[i] = make([]byte, LayoutBytes(w.declared[i]))
	}
	return w.bufs[i]
}

// setOutput points b's output slices at the writer's memory for tensor tp, when it has some:
// the whole tensor's data, or (streamed) its elements [e0, e1), and its scales and zero points.
// e1 == 0 means the whole tensor.
func (pl *pipeline) setOutput(b *quantBuffers, tp *plan.TensorPlan, e0, e1 int) {
	b.outData, b.outSc, b.outZ = nil, nil, nil
	if pl.mem == nil {
		return
	}
	s := &tp.Spec
	if d := pl.mem.memory(tp.Name); d != nil {
		if e1 == 0 {
			b.outData = d
		} else if lo, hi := quant.PackedLen(s.Format, e0), quant.PackedLen(s.Format, e1); hi <= len(d) {
			b.outData = d[lo:hi]
		}
	}
	if s.Format.IsInteger() {
		b.outSc = floats32(pl.mem.memory(tp.Name + names.ScaleSuffix))
		if s.StoresZeroPoint() {
			b.outZ = ints32(pl.mem.memory(tp.Name + names.ZeroPointSuffix))
		}
	}
}

// floats32 views b as float32s when it is aligned for them, else nil.
func floats32(b []byte) []float32 {
	if len(b) < 4 || uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// ints32 views b as int32s when it is aligned for them, else nil.
func ints32(b []byte) []int32 {
	if len(b) < 4 || uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// DequantizeLayout lists the tensors Dequantize writes for the quantized checkpoint r, in order:
// each quantized tensor in its original dtype and shape (its scales and zero points dropped),
// every other tensor as it is. The config is validated against the tensors first.
func DequantizeLayout(r checkpoint.Reader) ([]checkpoint.Entry, error) {
	cfg, err := ReadConfig(r.Entries(), r.Metadata())
	if err != nil {
		return nil, err
	}
	out, _, _ := dequantizedEntries(r.Entries(), cfg)
	return out, nil
}

// DequantizeInto is DequantizeToModel writing every tensor into the caller's buffers (outputs,
// asked for with DequantizeLayout's entries): float32 tensors are dequantized in place, the
// others copied once into their buffer, and the Model's tensors are those buffers.
func DequantizeInto(ctx context.Context, r checkpoint.Reader, outputs OutputBuffers) (*Model, error) {
	if outputs == nil {
		return nil, fmt.Errorf("%w: DequantizeInto needs output buffers", plan.ErrOption)
	}
	var mw *memWriter
	create := func(entries []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
		mw = newMemWriter(entries, md)
		bufs, err := outputs(entries)
		if err != nil {
			return nil, err
		}
		if err := checkOutputBuffers(entries, bufs); err != nil {
			return nil, err
		}
		copy(mw.bufs, bufs)
		return mw, nil
	}
	if err := Dequantize(ctx, r, create, nil); err != nil {
		return nil, err
	}
	return &Model{ck: mw.out}, nil
}
