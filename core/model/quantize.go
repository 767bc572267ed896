package model

import (
	"context"
	"fmt"
	"maps"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// Progress is reported after every tensor.
type Progress struct {
	Tensor       string // the tensor just finished
	TensorsDone  int
	TensorsTotal int
	BytesDone    int64 // input bytes processed
	BytesTotal   int64
}

// ProgressFunc receives progress; it runs on the quantizing goroutine, so keep it short.
type ProgressFunc func(Progress)

// CreateFunc opens the output: checkpoint.Create for files, an in-memory writer otherwise.
type CreateFunc func(entries []checkpoint.Entry, metadata map[string]string) (checkpoint.Writer, error)

// Run carries what a quantization needs besides the plan.
type Run struct {
	Progress ProgressFunc
	// Calibration is required in static mode: its observers give the activation qparams.
	Calibration *Calibration
}

// OutputEntries lists the tensors a plan writes, in order: each input tensor in file order,
// a quantized one as <name>, <name>.scale and (when the scheme needs it) <name>.zero_point.
func (p *Plan) OutputEntries() []checkpoint.Entry {
	var out []checkpoint.Entry
	for i := range p.Tensors {
		t := &p.Tensors[i]
		if t.Action == ActionQuantize {
			out = append(out, storedEntries(t.Name, &t.Spec, t.Shape, t.QuantShape)...)
		} else {
			out = append(out, checkpoint.Entry{Name: t.Name, DType: t.DType, Shape: append([]int(nil), t.Shape...)})
		}
	}
	return out
}

// Config returns the quantization config the plan stores (without activation qparams).
func (p *Plan) Config() *Config {
	c := &Config{FormatVersion: FormatVersion, Tool: "monoquant", ToolVersion: ToolVersion, Mode: p.opts.mode.String(),
		Tensors: map[string]*TensorConfig{}}
	for _, t := range p.Quantized() {
		c.Tensors[t.Name] = tensorConfig(t)
	}
	return c
}

// Quantize streams a checkpoint through the plan, tensor by tensor: read → quantize → write →
// Release, so the peak memory is about one tensor plus its quantized form. The plan must have
// been made from r's entries. On error or cancellation the output is aborted (nothing appears
// at a file target). The report's tensors are sorted worst SQNR first.
func Quantize(ctx context.Context, r checkpoint.Reader, create CreateFunc, p *Plan, run Run) (rep *Report, err error) {
	if r == nil || create == nil || p == nil || p.opts == nil {
		return nil, fmt.Errorf("model.Quantize: nil reader, output or plan")
	}
	if err := checkPlanMatches(p, r.Entries()); err != nil {
		return nil, err
	}
	if IsQuantized(r.Metadata()) {
		return nil, fmt.Errorf("the checkpoint is already quantized by monoquant (it has %q metadata); dequantize it first", MetadataKey)
	}
	rep = &Report{Warnings: append([]Warning(nil), p.Warnings...)}
	cfg := p.Config()
	if p.opts.mode == Static {
		if run.Calibration == nil {
			return nil, fmt.Errorf("%w: static mode needs calibration data (a Calibration fed with activations)", ErrCalibration)
		}
		acts, warns, err := run.Calibration.Params()
		if err != nil {
			return nil, err
		}
		cfg.Activations, rep.Activations = acts, acts
		rep.Warnings = append(rep.Warnings, warns...)
	}
	js, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	md := maps.Clone(r.Metadata())
	if md == nil {
		md = map[string]string{}
	}
	md[MetadataKey] = js
	w, err := create(p.OutputEntries(), md)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.Abort()
			rep = nil
		}
	}()
	var total int64
	for _, t := range p.Tensors {
		total += entryBytes(t.DType, t.Shape)
	}
	prog := Progress{TensorsTotal: len(p.Tensors), BytesTotal: total}
	var buf []byte
	var scale []float32
	var zp []int32
	for i := range p.Tensors {
		tp := &p.Tensors[i]
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, err := r.Tensor(tp.Name)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
		}
		if t.DType != tp.DType || !equalShape(t.Shape, tp.Shape) {
			r.Release(tp.Name)
			return nil, fmt.Errorf("tensor %q is %v %v, the checkpoint listed it as %v %v", tp.Name, t.DType, t.Shape, tp.DType, tp.Shape)
		}
		in := entryBytes(t.DType, t.Shape)
		if tp.Action == ActionKeep {
			err = w.Write(tp.Name, t.Data)
			r.Release(tp.Name)
			if err != nil {
				return nil, fmt.Errorf("writing tensor %q: %w", tp.Name, err)
			}
			rep.TotalBytesBefore += in
			rep.TotalBytesAfter += in
			rep.TensorsKept++
		} else {
			tr, err := quantizeOne(w, tp, t, &buf, &scale, &zp)
			r.Release(tp.Name)
			if err != nil {
				return nil, err
			}
			rep.TotalBytesBefore += tr.BytesBefore
			rep.TotalBytesAfter += tr.BytesAfter
			rep.Tensors = append(rep.Tensors, tr)
			rep.Warnings = append(rep.Warnings, tensorWarnings(tp, &tr)...)
		}
		prog.Tensor, prog.TensorsDone, prog.BytesDone = tp.Name, i+1, prog.BytesDone+in
		if run.Progress != nil {
			run.Progress(prog)
		}
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	rep.finish()
	return rep, nil
}

// quantizeOne quantizes one tensor into the reused buffers, writes its stored tensors and
// measures its error.
func quantizeOne(w checkpoint.Writer, tp *TensorPlan, t *tensor.Tensor, buf *[]byte, scale *[]float32, zp *[]int32) (TensorReport, error) {
	view := &tensor.Tensor{DType: t.DType, Shape: tp.QuantShape, Data: t.Data}
	s := tp.Spec
	n := t.Len()
	need := quant.PackedLen(s.Format, n)
	if cap(*buf) < need {
		*buf = make([]byte, need)
	}
	data := (*buf)[:need]
	var sc []float32
	var z []int32
	if s.Format.IsInteger() {
		np := s.NumParams(tp.QuantShape)
		if cap(*scale) < np {
			*scale, *zp = make([]float32, np), make([]int32, np)
		}
		sc, z = (*scale)[:np], (*zp)[:np]
	}
	st, err := quant.Quantize(data, view, s, sc, z)
	if err != nil {
		return TensorReport{}, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	sig, noise, err := energies(view, data, &s, sc, z)
	if err != nil {
		return TensorReport{}, fmt.Errorf("tensor %q: measuring the error: %w", tp.Name, err)
	}
	if err := w.Write(tp.Name, data); err != nil {
		return TensorReport{}, fmt.Errorf("writing tensor %q: %w", tp.Name, err)
	}
	if s.Format.IsInteger() {
		if err := w.Write(tp.Name+".scale", tensor.Float32Bytes(sc)); err != nil {
			return TensorReport{}, fmt.Errorf("writing tensor %q: %w", tp.Name+".scale", err)
		}
		if s.StoresZeroPoint() {
			if err := w.Write(tp.Name+".zero_point", int32Bytes(z)); err != nil {
				return TensorReport{}, fmt.Errorf("writing tensor %q: %w", tp.Name+".zero_point", err)
			}
		}
	}
	size := quant.SizeOf(tp.QuantShape, t.DType.Size(), &s)
	tr := TensorReport{
		Name: tp.Name, Layer: tp.Layer, LayerType: string(tp.LayerType), DType: t.DType.String(),
		Shape: append([]int{}, tp.Shape...), Format: s.Format.String(),
		BytesBefore: size.OriginalBytes, BytesAfter: size.QuantizedBytes(), BitsPerWeight: size.BitsPerWeight(),
		SignalEnergy: sig, NoiseEnergy: noise, SQNR: Decibels(OverallSQNR(sig, noise)), Overflow: st.Overflow,
	}
	if s.Format.IsInteger() {
		tr.Scheme, tr.Granularity = s.Scheme.String(), s.Granularity.String()
		if s.Granularity == quant.PerGroup {
			tr.GroupSize = s.GroupSize
		}
	}
	if st.NonFinite > 0 {
		tr.NonFinite = st.NonFinite
	}
	return tr, nil
}

// tensorWarnings turns what a tensor's quantization measured into warnings.
func tensorWarnings(tp *TensorPlan, tr *TensorReport) []Warning {
	var out []Warning
	if tr.Overflow > 0 {
		out = append(out, Warning{Code: WarnFP16Overflow, Tensor: tp.Name, Layer: tp.Layer,
			Message: fmt.Sprintf("%d values exceed the FP16 range (±65504) and became ±Inf", tr.Overflow)})
	}
	if tr.NonFinite > 0 {
		out = append(out, Warning{Code: WarnNonFiniteClamp, Tensor: tp.Name, Layer: tp.Layer,
			Message: fmt.Sprintf("%d NaN/Inf values were clamped as the options asked", tr.NonFinite)})
	}
	if lim, ok := LowSQNR[tp.Spec.Format]; ok && float64(tr.SQNR) < lim {
		out = append(out, Warning{Code: WarnLowSQNR, Tensor: tp.Name, Layer: tp.Layer,
			Message: fmt.Sprintf("SQNR %.1f dB is below %.0f dB, the floor for %v", float64(tr.SQNR), lim, tp.Spec.Format)})
	}
	return out
}

func checkPlanMatches(p *Plan, entries []checkpoint.Entry) error {
	if len(entries) != len(p.Tensors) {
		return fmt.Errorf("the plan has %d tensors, the checkpoint %d: make the plan from this checkpoint", len(p.Tensors), len(entries))
	}
	for i, e := range entries {
		t := &p.Tensors[i]
		if e.Name != t.Name || e.DType != t.DType || !equalShape(e.Shape, t.Shape) {
			return fmt.Errorf("tensor %d of the checkpoint is %q %v %v, the plan has %q %v %v: make the plan from this checkpoint", i, e.Name, e.DType, e.Shape, t.Name, t.DType, t.Shape)
		}
	}
	return nil
}

func entryBytes(dt tensor.DType, shape []int) int64 {
	return elements(shape) * int64(dt.Size())
}

func int32Bytes(v []int32) []byte {
	if len(v) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}
