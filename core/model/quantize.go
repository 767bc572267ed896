package model

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/monoquant/monoquant/core/warning"
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
	// Hessians are the layers' input Hessians H = XᵀX ([K, K], K the inputs of the layer's
	// weight viewed as [rows, K]), keyed by layer name; method gptq needs one per layer.
	Hessians map[string]*tensor.Tensor
}

// checkHessians refuses, before anything is written, a gptq plan whose layers lack a Hessian
// or carry one of the wrong size.
func checkHessians(p *plan.Plan, run *Run) error {
	for _, t := range p.Quantized() {
		if !t.Method.NeedsHessian() {
			continue
		}
		if t.Spec.Granularity == quant.PerChannel && t.Spec.Axis != 0 {
			return fmt.Errorf("tensor %q: method gptq needs the output channels on axis 0; this %s weight keeps them on axis %d (choose method rtn, mse or hqq for it)", t.Name, t.LayerType, t.Spec.Axis)
		}
		k := tensor.NumElements(t.QuantShape[1:])
		h := run.Hessians[t.Layer]
		if h == nil {
			return fmt.Errorf("%w: tensor %q: method gptq needs the input Hessian H = XᵀX of layer %q, a [%d, %d] float tensor accumulated over calibration inputs (or choose method rtn, mse or hqq, which need no data)", ErrCalibration, t.Name, t.Layer, k, k)
		}
		if len(h.Shape) != 2 || h.Shape[0] != k || h.Shape[1] != k {
			return fmt.Errorf("%w: tensor %q: the Hessian of layer %q is %v; its %d inputs need [%d, %d]", ErrCalibration, t.Name, t.Layer, h.Shape, k, k, k)
		}
		if !h.DType.IsFloat() {
			return fmt.Errorf("%w: tensor %q: the Hessian of layer %q is %v; it must be a float tensor", ErrCalibration, t.Name, t.Layer, h.DType)
		}
	}
	return nil
}

// OutputEntries lists the tensors a plan writes, in order: each input tensor in file order,
// a quantized one as <name>, <name>.scale and (when the scheme needs it) <name>.zero_point; a
// tied tensor that aliases another (ActionAlias) is not stored.
func OutputEntries(p *plan.Plan) []checkpoint.Entry {
	var out []checkpoint.Entry
	for i := range p.Tensors {
		t := &p.Tensors[i]
		switch t.Action {
		case plan.ActionAlias: // stored once, under the name it aliases
		case plan.ActionQuantize:
			out = append(out, storedEntries(t.Name, &t.Spec, t.Shape, t.QuantShape)...)
		default:
			out = append(out, checkpoint.Entry{Name: t.Name, DType: t.DType, Shape: append([]int(nil), t.Shape...)})
		}
	}
	return out
}

// PlanConfig returns the quantization config a plan stores (without activation qparams).
func PlanConfig(p *plan.Plan) *Config {
	c := &Config{FormatVersion: FormatVersion, Tool: "monoquant", ToolVersion: ToolVersion,
		Tensors: map[string]*TensorConfig{}, Recipe: p.Recipe}
	for _, t := range p.Tensors {
		if t.Action == plan.ActionAlias {
			if c.Aliases == nil {
				c.Aliases = map[string]string{}
			}
			c.Aliases[t.Name] = t.AliasOf
		}
	}
	for _, t := range p.Quantized() {
		c.Tensors[t.Name] = tensorConfig(t)
		switch {
		case c.Mode == "":
			c.Mode = t.Settings.Activations
		case c.Mode != t.Settings.Activations:
			c.Mode = "mixed"
		}
	}
	return c
}

// Quantize streams a checkpoint through the plan, tensor by tensor: read → quantize → write →
// Release, so the peak memory is about one tensor plus its quantized form. The plan must have
// been made from r's entries. On error or cancellation the output is aborted (nothing appears
// at a file target). The report's tensors are sorted worst SQNR first.
func Quantize(ctx context.Context, r checkpoint.Reader, create CreateFunc, p *plan.Plan, run Run) (rep *Report, err error) {
	if r == nil || create == nil || !p.Valid() {
		return nil, fmt.Errorf("model.Quantize: nil reader, output or plan")
	}
	if err := checkPlanMatches(p, r.Entries()); err != nil {
		return nil, err
	}
	if IsQuantized(r.Metadata()) {
		return nil, fmt.Errorf("the checkpoint is already quantized by monoquant (it has %q metadata); dequantize it first", MetadataKey)
	}
	if err := checkHessians(p, &run); err != nil {
		return nil, err
	}
	rep = &Report{Warnings: append([]warning.Warning(nil), p.Warnings...)}
	cfg := PlanConfig(p)
	rep.Aliases = maps.Clone(cfg.Aliases)
	if len(p.StaticLayers()) > 0 {
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
	w, err := create(OutputEntries(p), md)
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
	stored := 0
	for _, t := range p.Tensors {
		if t.Action != plan.ActionAlias {
			total += entryBytes(t.DType, t.Shape)
			stored++
		}
	}
	pl := newPipeline(w)
	defer pl.stop()
	var params quantBuffers // a streamed tensor's scales and zero points
	prog := Progress{TensorsTotal: stored, BytesTotal: total}
	// finish runs on this goroutine once the writer is done with a tensor: its pages are
	// released (a kept tensor is written straight from the reader's memory) and progress
	// is reported in order.
	finish := func(j *writeJob) error {
		if j.tp.Action == plan.ActionKeep {
			r.Release(j.tp.Name)
		}
		if j.out != nil {
			pl.free = append(pl.free, j.out)
		}
		if j.err != nil {
			return j.err
		}
		if j.part {
			return nil // progress is reported once the tensor's last part is written
		}
		prog.Tensor, prog.TensorsDone, prog.BytesDone = j.tp.Name, prog.TensorsDone+1, prog.BytesDone+entryBytes(j.tp.DType, j.tp.Shape)
		if run.Progress != nil {
			run.Progress(prog)
		}
		return nil
	}
	for i := range p.Tensors {
		tp := &p.Tensors[i]
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if tp.Action == plan.ActionAlias {
			// Nothing is written: the tensor it aliases holds the bytes, in the input as in the
			// output, so it counts neither before nor after.
			continue
		}
		for tp.Action == plan.ActionQuantize && len(pl.free) == 0 {
			if err := finish(pl.wait()); err != nil {
				return nil, err
			}
		}
		if rr, ok := streamable(tp, r, w); ok {
			// The last streamed tensor's scales must be written before these are reused.
			for pl.inflight > 0 {
				if err := finish(pl.wait()); err != nil {
					return nil, err
				}
			}
			tr, err := quantizeStreamed(ctx, tp, r, rr, pl, finish, &params)
			r.Release(tp.Name)
			if err != nil {
				return nil, err
			}
			tr.Activations, tr.Method, tr.Rule = tp.Settings.Activations, tp.Settings.Method, p.RuleName(tp.Rule)
			rep.TotalBytesBefore += tr.BytesBefore
			rep.TotalBytesAfter += tr.BytesAfter
			rep.Tensors = append(rep.Tensors, tr)
			rep.Warnings = append(rep.Warnings, tensorWarnings(tp, &tr)...)
			continue
		}
		j := &writeJob{tp: tp}
		if tp.Action == plan.ActionKeep {
			in := entryBytes(tp.DType, tp.Shape)
			if j.ranges = keptStreamable(in, r, w); j.ranges == nil {
				t, err := readTensor(r, tp)
				if err != nil {
					return nil, err
				}
				j.data = t.Data
			}
			rep.TotalBytesBefore += in
			rep.TotalBytesAfter += in
			rep.TensorsKept++
		} else {
			j.out = pl.buffers()
			mo := p.MethodOptions()
			mo.Hessian = run.Hessians[tp.Layer]
			t, err := readTensor(r, tp)
			if err != nil {
				return nil, err
			}
			tr, warns, err := quantizeOne(tp, t, j.out, mo)
			r.Release(tp.Name) // the writer needs only the quantized form
			if err != nil {
				return nil, err
			}
			rep.TotalBytesBefore += tr.BytesBefore
			rep.TotalBytesAfter += tr.BytesAfter
			tr.Activations, tr.Method, tr.Rule = tp.Settings.Activations, tp.Settings.Method, p.RuleName(tp.Rule)
			rep.Tensors = append(rep.Tensors, tr)
			rep.Warnings = append(rep.Warnings, warns...)
			rep.Warnings = append(rep.Warnings, tensorWarnings(tp, &tr)...)
		}
		// One tensor is written while the next one is computed: the pipeline hides the write
		// behind the arithmetic and holds at most two tensors.
		for pl.inflight >= maxInflight {
			if err := finish(pl.wait()); err != nil {
				return nil, err
			}
		}
		pl.send(j)
	}
	for pl.inflight > 0 {
		if err := finish(pl.wait()); err != nil {
			return nil, err
		}
	}
	pl.stop()
	// A cancel from the last tensor's progress callback still wins: nothing is committed.
	if err = ctx.Err(); err != nil {
		return nil, err
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	rep.finish()
	return rep, nil
}

// readTensor reads tensor tp whole and checks it is what the checkpoint listed.
func readTensor(r checkpoint.Reader, tp *plan.TensorPlan) (*tensor.Tensor, error) {
	t, err := r.Tensor(tp.Name)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	if t.DType != tp.DType || !slices.Equal(t.Shape, tp.Shape) {
		r.Release(tp.Name)
		return nil, fmt.Errorf("tensor %q is %v %v, the checkpoint listed it as %v %v", tp.Name, t.DType, t.Shape, tp.DType, tp.Shape)
	}
	return t, nil
}

// maxInflight is how many tensors may wait for the writer.
const maxInflight = 1

// quantBuffers hold one tensor's quantized form; the pipeline reuses two sets.
type quantBuffers struct {
	in []byte // a streamed tensor's block of input

	data  []byte
	scale []float32
	zp    []int32
	// the slices of the current tensor
	d  []byte
	sc []float32
	z  []int32
}

// writeJob is one tensor handed to the writer goroutine.
type writeJob struct {
	tp   *plan.TensorPlan
	data []byte        // a kept tensor's bytes
	out  *quantBuffers // a quantized tensor's stored form, or one block of it when part
	// part: out.d is the next block of rows of a streamed tensor's quantized data.
	part bool
	// ranges: a large kept tensor is copied in blocks, each released once written.
	ranges checkpoint.RangedReader
	// params: the scales and zero points that end a streamed tensor (its data was sent in parts).
	params *quantBuffers
	err    error
}

// pipeline writes tensors on its own goroutine while the caller computes the next one.
type pipeline struct {
	jobs     chan *writeJob
	done     chan *writeJob
	free     []*quantBuffers
	inflight int
	stopped  bool
}

func newPipeline(w checkpoint.Writer) *pipeline {
	pl := &pipeline{jobs: make(chan *writeJob, maxInflight), done: make(chan *writeJob, maxInflight+1),
		free: []*quantBuffers{{}, {}}}
	go func() {
		var failed error
		var keptBuf []byte
		for j := range pl.jobs {
			if failed == nil {
				failed = writeTensor(w, j, &keptBuf)
			}
			j.err = failed
			pl.done <- j
		}
		close(pl.done)
	}()
	return pl
}

func (pl *pipeline) buffers() *quantBuffers {
	b := pl.free[len(pl.free)-1]
	pl.free = pl.free[:len(pl.free)-1]
	return b
}

func (pl *pipeline) send(j *writeJob) {
	pl.inflight++
	pl.jobs <- j
}

func (pl *pipeline) wait() *writeJob {
	pl.inflight--
	return <-pl.done
}

// stop ends the writer goroutine after the jobs already sent; safe to call twice.
func (pl *pipeline) stop() {
	if pl.stopped {
		return
	}
	pl.stopped = true
	close(pl.jobs)
	for range pl.done {
	}
}

// writeTensor writes one job; keptBuf is the writer goroutine's buffer for copying kept tensors in blocks.
func writeTensor(w checkpoint.Writer, j *writeJob, keptBuf *[]byte) error {
	name := j.tp.Name
	if j.part {
		if err := w.(checkpoint.PartWriter).WritePart(name, j.out.d); err != nil {
			return fmt.Errorf("writing tensor %q: %w", name, err)
		}
		return nil
	}
	if j.params != nil {
		return writeParams(w, j.tp, j.params)
	}
	if j.out == nil && j.ranges != nil {
		var err error
		*keptBuf, err = writeKeptParts(w.(checkpoint.PartWriter), j.ranges, name, entryBytes(j.tp.DType, j.tp.Shape), *keptBuf)
		return err
	}
	if j.out == nil {
		if err := w.Write(name, j.data); err != nil {
			return fmt.Errorf("writing tensor %q: %w", name, err)
		}
		return nil
	}
	if err := w.Write(name, j.out.d); err != nil {
		return fmt.Errorf("writing tensor %q: %w", name, err)
	}
	return writeParams(w, j.tp, j.out)
}

// writeParams writes a quantized tensor's <name>.scale and <name>.zero_point (as its scheme needs).
func writeParams(w checkpoint.Writer, tp *plan.TensorPlan, b *quantBuffers) error {
	name, s := tp.Name, &tp.Spec
	if s.Format.IsInteger() {
		if err := w.Write(name+".scale", tensor.Float32Bytes(b.sc)); err != nil {
			return fmt.Errorf("writing tensor %q: %w", name+".scale", err)
		}
		if s.StoresZeroPoint() {
			if err := w.Write(name+".zero_point", int32Bytes(b.z)); err != nil {
				return fmt.Errorf("writing tensor %q: %w", name+".zero_point", err)
			}
		}
	}
	return nil
}

// quantizeOne quantizes one tensor into reused buffers and measures its error.
func quantizeOne(tp *plan.TensorPlan, t *tensor.Tensor, b *quantBuffers, mo method.Options) (TensorReport, []warning.Warning, error) {
	view := &tensor.Tensor{DType: t.DType, Shape: tp.QuantShape, Data: t.Data}
	s := tp.Spec
	n := t.Len()
	need := quant.PackedLen(s.Format, n)
	if cap(b.data) < need {
		b.data = make([]byte, need)
	}
	data := b.data[:need]
	var sc []float32
	var z []int32
	if s.Format.IsInteger() {
		np := s.NumParams(tp.QuantShape)
		if cap(b.scale) < np {
			b.scale, b.zp = make([]float32, np), make([]int32, np)
		}
		sc, z = b.scale[:np], b.zp[:np]
	}
	var st quant.Stats
	var sig, noise float64
	var err error
	var warns []warning.Warning
	if tp.Method == "" || tp.Method == method.RTN {
		st, sig, noise, err = quantizeMeasured(data, view, s, sc, z)
	} else {
		var res method.Result
		res, err = method.Quantize(tp.Method, data, view, s, sc, z, mo)
		if err == nil {
			st = res.Stats
			sig, noise, err = methodEnergy(view, data, s, sc, z)
		}
		if res.Singular {
			warns = append(warns, warning.Warning{Code: warning.HessianDamped, Tensor: tp.Name, Layer: tp.Layer,
				Message: fmt.Sprintf("the Hessian of layer %q is singular (%d inputs never fired); quantized with dampening %.3g added to its diagonal", tp.Layer, res.DeadInputs, res.Damp)})
		}
	}
	if err != nil {
		return TensorReport{}, nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	b.d, b.sc, b.z = data, sc, z
	return tensorReport(tp, t.DType, st, sig, noise), warns, nil
}

// methodEnergy measures Σx² and Σ(x − x̂)² of a tensor a method quantized (the rtn path
// measures inside the kernel instead).
func methodEnergy(src *tensor.Tensor, q []byte, s quant.Spec, sc []float32, z []int32) (float64, float64, error) {
	xs, err := src.Float32s()
	if err != nil {
		return 0, 0, err
	}
	back := make([]float32, len(xs))
	if err := quant.Dequantize(back, q, src.Shape, s, sc, z); err != nil {
		return 0, 0, err
	}
	en := quant.Energies(xs, back, false)
	return en.Signal, en.Noise, nil
}

// tensorReport is what one tensor's quantization measured.
func tensorReport(tp *plan.TensorPlan, dt tensor.DType, st quant.Stats, sig, noise float64) TensorReport {
	s := tp.Spec
	size := quant.SizeOf(tp.QuantShape, dt.Size(), &s)
	tr := TensorReport{
		Name: tp.Name, Layer: tp.Layer, LayerType: string(tp.LayerType), DType: dt.String(),
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
	return tr
}

// tensorWarnings turns what a tensor's quantization measured into warnings.
func tensorWarnings(tp *plan.TensorPlan, tr *TensorReport) []warning.Warning {
	var out []warning.Warning
	if tr.Overflow > 0 {
		rng, top := "the FP16 range", "±65504"
		if tp.Spec.Format == quant.BFloat16 {
			rng, top = "the BF16 range", "±3.3895e38"
		}
		became := "became ±Inf"
		if tp.Spec.SaturateFloat16 {
			became = "were saturated to " + top
		}
		out = append(out, warning.Warning{Code: warning.FP16Overflow, Tensor: tp.Name, Layer: tp.Layer,
			Message: fmt.Sprintf("layer %q: %d values of %q exceed %s and %s", tp.Layer, tr.Overflow, tp.Name, rng, became)})
	}
	if tr.NonFinite > 0 {
		out = append(out, warning.Warning{Code: warning.NonFiniteClamp, Tensor: tp.Name, Layer: tp.Layer,
			Message: fmt.Sprintf("%d NaN/Inf values were clamped as the options asked", tr.NonFinite)})
	}
	if lim, ok := LowSQNR[tp.Spec.Format]; ok && float64(tr.SQNR) < lim {
		out = append(out, warning.Warning{Code: warning.LowSQNR, Tensor: tp.Name, Layer: tp.Layer,
			Message: fmt.Sprintf("SQNR %.1f dB is below %.0f dB, the floor for %v", float64(tr.SQNR), lim, tp.Spec.Format)})
	}
	return out
}

func checkPlanMatches(p *plan.Plan, entries []checkpoint.Entry) error {
	if len(entries) != len(p.Tensors) {
		return fmt.Errorf("the plan has %d tensors, the checkpoint %d: make the plan from this checkpoint", len(p.Tensors), len(entries))
	}
	for i, e := range entries {
		t := &p.Tensors[i]
		if e.Name != t.Name || e.DType != t.DType || !slices.Equal(e.Shape, t.Shape) {
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
