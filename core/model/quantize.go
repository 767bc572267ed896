package model

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/prune"
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
	// Hessians are the layers' input Hessians H = XᵀX ([K, K], K the inputs of the layer's
	// weight viewed as [rows, K]), keyed by layer name; method gptq needs one per layer.
	Hessians map[string]*tensor.Tensor
	// Only, when not nil, limits the run to these input tensors (by name): the others are
	// neither read nor written, and create receives every output entry (to pick its own). The
	// file's metadata is the whole plan's, so a shard of a sharded output written alone is the
	// same bytes as when the whole set is written (core/convert's parallel shards).
	Only map[string]bool
}

// checkHessians refuses, before anything is written, a gptq plan whose layers lack a Hessian
// or carry one of the wrong size.
func checkHessians(p *Plan, run *Run) error {
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
	c := &Config{FormatVersion: FormatVersion, Tool: "monoquant", ToolVersion: ToolVersion,
		Tensors: map[string]*TensorConfig{}, Recipe: p.Recipe}
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
	if err := checkHessians(p, &run); err != nil {
		return nil, err
	}
	rep = &Report{Warnings: append([]Warning(nil), p.Warnings...)}
	md, acts, warns, err := outputMetadata(r, p, run)
	if err != nil {
		return nil, err
	}
	rep.Activations = acts
	rep.Warnings = append(rep.Warnings, warns...)
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
	var total, count int64
	for _, t := range p.Tensors {
		if run.Only == nil || run.Only[t.Name] {
			total += entryBytes(t.DType, t.Shape)
			count++
		}
	}
	pl := newPipeline(w)
	defer pl.stop()
	var params quantBuffers // a streamed tensor's scales and zero points
	prog := Progress{TensorsTotal: int(count), BytesTotal: total}
	// finish runs on this goroutine once the writer is done with a tensor: its pages are
	// released (a kept tensor is written straight from the reader's memory) and progress
	// is reported in order.
	finish := func(j *writeJob) error {
		if j.tp.Action == ActionKeep {
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
		if run.Only != nil && !run.Only[tp.Name] {
			continue
		}
		for tp.Action == ActionQuantize && len(pl.free) == 0 {
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
		if tp.Action == ActionKeep {
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
			mo := p.opts.mopts
			mo.Hessian = run.Hessians[tp.Layer]
			t, err := readTensor(r, tp)
			if err != nil {
				return nil, err
			}
			orig := t
			if tp.Settings.Prune != "" {
				if t, err = pruned(tp, t); err != nil {
					r.Release(tp.Name)
					return nil, err
				}
			}
			tr, warns, err := quantizeOne(tp, t, j.out, mo)
			if err == nil && t != orig {
				// The error is measured against the weights as they were: pruning is part of it
				// (and the output check recomputes it so, from the file and the input).
				err = measureAgainst(&tr, tp, orig, j.out)
			}
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

// outputMetadata is the metadata a quantized output of plan p over r carries: the input's, plus
// the quantization config (with the calibrated activation parameters in static mode, returned
// too with the calibration's warnings).
func outputMetadata(r checkpoint.Reader, p *Plan, run Run) (map[string]string, map[string]ActivationParams, []Warning, error) {
	cfg := p.Config()
	var acts map[string]ActivationParams
	var warns []Warning
	if len(p.StaticLayers()) > 0 {
		if run.Calibration == nil {
			return nil, nil, nil, fmt.Errorf("%w: static mode needs calibration data (a Calibration fed with activations)", ErrCalibration)
		}
		var err error
		if acts, warns, err = run.Calibration.Params(); err != nil {
			return nil, nil, nil, err
		}
		cfg.Activations = acts
	}
	js, err := cfg.Marshal()
	if err != nil {
		return nil, nil, nil, err
	}
	md := maps.Clone(r.Metadata())
	if md == nil {
		md = map[string]string{}
	}
	md[MetadataKey] = js
	return md, acts, warns, nil
}

// OutputMetadata is the metadata Quantize gives the output of plan p over r (run.Calibration
// in static mode), for a caller that writes the index of a sharded output itself.
func OutputMetadata(r checkpoint.Reader, p *Plan, run Run) (map[string]string, error) {
	md, _, _, err := outputMetadata(r, p, run)
	return md, err
}

// MergeReports joins the reports of runs over disjoint parts of one plan (Run.Only) into the
// report of the whole: sums, every tensor, and each warning once.
func MergeReports(reps []*Report) *Report {
	out := &Report{}
	seen := map[Warning]bool{}
	for _, r := range reps {
		if r == nil {
			continue
		}
		out.TotalBytesBefore += r.TotalBytesBefore
		out.TotalBytesAfter += r.TotalBytesAfter
		out.TensorsKept += r.TensorsKept
		out.Tensors = append(out.Tensors, r.Tensors...)
		for _, w := range r.Warnings {
			if !seen[w] {
				seen[w] = true
				out.Warnings = append(out.Warnings, w)
			}
		}
		if r.Activations != nil && out.Activations == nil {
			out.Activations = r.Activations // the whole plan's, the same in every part
		}
	}
	out.finish()
	return out
}

// readTensor reads tensor tp whole and checks it is what the checkpoint listed.
func readTensor(r checkpoint.Reader, tp *TensorPlan) (*tensor.Tensor, error) {
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
	tp   *TensorPlan
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
func writeParams(w checkpoint.Writer, tp *TensorPlan, b *quantBuffers) error {
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
func quantizeOne(tp *TensorPlan, t *tensor.Tensor, b *quantBuffers, mo method.Options) (TensorReport, []Warning, error) {
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
	var warns []Warning
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
			warns = append(warns, Warning{Code: WarnHessianDamped, Tensor: tp.Name, Layer: tp.Layer,
				Message: fmt.Sprintf("the Hessian of layer %q is singular (%d inputs never fired); quantized with dampening %.3g added to its diagonal", tp.Layer, res.DeadInputs, res.Damp)})
		}
	}
	if err != nil {
		return TensorReport{}, nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	b.d, b.sc, b.z = data, sc, z
	return tensorReport(tp, tp.DType, st, sig, noise), warns, nil
}

// measureAgainst sets tr's signal, noise and SQNR to those of the stored form b against the
// tensor orig (the input before pruning).
func measureAgainst(tr *TensorReport, tp *TensorPlan, orig *tensor.Tensor, b *quantBuffers) error {
	view := &tensor.Tensor{DType: orig.DType, Shape: tp.QuantShape, Data: orig.Data}
	sig, noise, err := methodEnergy(view, b.d, tp.Spec, b.sc, b.z)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	tr.SignalEnergy, tr.NoiseEnergy, tr.SQNR = sig, noise, Decibels(OverallSQNR(sig, noise))
	return nil
}

// pruned returns a float32 copy of t with the weights the rule's prune zeroes set to 0
// (core/prune; the caller's memory is never written). Quantized, the zeros stay exact.
func pruned(tp *TensorPlan, t *tensor.Tensor) (*tensor.Tensor, error) {
	xs, err := t.Float32s()
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	if t.DType == tensor.F32 {
		xs = slices.Clone(xs) // Float32s may view the reader's memory
	}
	rowLen := len(xs)
	if len(tp.QuantShape) > 1 && tp.QuantShape[0] > 0 {
		rowLen = len(xs) / tp.QuantShape[0]
	}
	if _, err := prune.Apply(tp.Settings.Prune, xs, rowLen, tp.Settings.Sparsity); err != nil {
		return nil, fmt.Errorf("tensor %q (layer %q): %w", tp.Name, tp.Layer, err)
	}
	return tensor.FromFloat32(xs, t.Shape...), nil
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
func tensorReport(tp *TensorPlan, dt tensor.DType, st quant.Stats, sig, noise float64) TensorReport {
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
func tensorWarnings(tp *TensorPlan, tr *TensorReport) []Warning {
	var out []Warning
	if tr.Overflow > 0 {
		rng, top := "the FP16 range", "±65504"
		if tp.Spec.Format == quant.BFloat16 {
			rng, top = "the BF16 range", "±3.3895e38"
		}
		became := "became ±Inf"
		if tp.Spec.SaturateFloat16 {
			became = "were saturated to " + top
		}
		out = append(out, Warning{Code: WarnFP16Overflow, Tensor: tp.Name, Layer: tp.Layer,
			Message: fmt.Sprintf("layer %q: %d values of %q exceed %s and %s", tp.Layer, tr.Overflow, tp.Name, rng, became)})
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
