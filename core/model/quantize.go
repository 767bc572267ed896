package model

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/prune"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/recipe"
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
	// Only, when not nil, limits the run to these input tensors (by name): the others are
	// neither read nor written, and create receives every output entry (to pick its own). The
	// file's metadata is the whole plan's, so a shard of a sharded output written alone is the
	// same bytes as when the whole set is written (core/convert's parallel shards).
	Only map[string]bool
	// Written, when not nil, is told each input tensor once every output it has is complete
	// in the writer (in the plan's order, after Progress, on the quantizing goroutine); an
	// error from it stops the run with that error.
	Written func(name string) error
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
			out = append(out, outlierEntries(t.Name, t.DType, t.Shape, len(t.Outliers))...)
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
	md, meta, err := outputMetadata(r, p, run)
	if err != nil {
		return nil, err
	}
	rep.Activations, rep.Aliases = meta.acts, meta.aliases
	rep.Warnings = append(rep.Warnings, meta.warns...)
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
		if t.Action != plan.ActionAlias && (run.Only == nil || run.Only[t.Name]) {
			total += entryBytes(t.DType, t.Shape)
			stored++
		}
	}
	pl := newPipeline(ctx, w)
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
		if run.Written != nil {
			return run.Written(j.tp.Name)
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
			if j.ranges = keptStreamable(in, r, w); j.ranges == nil || keptInPlace(r, w, tp.Name) {
				j.ranges = nil
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
			t, err := readTensorReusing(r, tp, &params.in)
			if err != nil {
				return nil, err
			}
			orig := t
			var ow *outlierSplit
			if len(tp.Outliers) > 0 {
				if t, ow, err = splitOutliers(tp, t); err != nil {
					r.Release(tp.Name)
					return nil, err
				}
			} else if tp.Settings.Prune != "" {
				if t, err = pruned(tp, t); err != nil {
					r.Release(tp.Name)
					return nil, err
				}
			}
			pl.setOutput(j.out, tp, 0, 0)
			tr, warns, err := quantizeOne(tp, t, j.out, mo)
			if err == nil && ow == nil && t != orig {
				// The error is measured against the weights as they were: pruning is part of it
				// (and the output check recomputes it so, from the file and the input).
				err = measureAgainst(&tr, tp, orig, j.out)
			}
			r.Release(tp.Name) // the writer needs only the quantized form
			if err != nil {
				return nil, err
			}
			if ow != nil {
				j.extra = ow.entries
				tr.SignalEnergy += ow.energy // the float columns are exact: signal, no noise
				tr.SQNR = Decibels(OverallSQNR(tr.SignalEnergy, tr.NoiseEnergy))
				for _, e := range ow.entries {
					tr.BytesAfter += int64(len(e.data))
				}
				tr.BitsPerWeight = float64(8*tr.BytesAfter) / float64(elements(tp.Shape))
			}
			if tp.Settings.OutlierThreshold > 0 {
				tr.OutlierThreshold = tp.Settings.OutlierThreshold
				if tp.Settings.Activations == recipe.ActivationsStatic {
					k := len(tp.Outliers)
					tr.OutlierColumns = &k
				}
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

// outputInfo is what outputMetadata found besides the metadata: the calibrated activation
// parameters, the aliases and the warnings of calibration.
type outputInfo struct {
	acts    map[string]ActivationParams
	aliases map[string]string
	warns   []warning.Warning
}

// outputMetadata is the metadata a quantized output of plan p over r carries: the input's, plus
// the quantization config (with the calibrated activation parameters and outlier columns in
// static mode). It sets the plan's outlier columns from the calibration.
func outputMetadata(r checkpoint.Reader, p *plan.Plan, run Run) (map[string]string, outputInfo, error) {
	var info outputInfo
	for i := range p.Tensors {
		p.Tensors[i].Outliers = nil
	}
	if len(p.StaticLayers()) > 0 {
		if run.Calibration == nil {
			return nil, info, fmt.Errorf("%w: static mode needs calibration data (a Calibration fed with activations)", ErrCalibration)
		}
		var err error
		if info.acts, info.warns, err = run.Calibration.Params(); err != nil {
			return nil, info, err
		}
		info.warns = append(info.warns, setOutliers(p, run.Calibration, info.acts)...)
	}
	cfg := PlanConfig(p) // after the outliers: the config counts them
	info.aliases = maps.Clone(cfg.Aliases)
	cfg.Activations = info.acts
	js, err := cfg.Marshal()
	if err != nil {
		return nil, info, err
	}
	md := maps.Clone(r.Metadata())
	if md == nil {
		md = map[string]string{}
	}
	md[MetadataKey] = js
	return md, info, nil
}

// OutputMetadata is the metadata Quantize gives the output of plan p over r (run.Calibration
// in static mode), for a caller that writes the index of a sharded output itself.
func OutputMetadata(r checkpoint.Reader, p *plan.Plan, run Run) (map[string]string, error) {
	md, _, err := outputMetadata(r, p, run)
	return md, err
}

// MergeReports joins the reports of runs over disjoint parts of one plan (Run.Only) into the
// report of the whole: sums, every tensor, and each warning once.
func MergeReports(reps []*Report) *Report {
	out := &Report{}
	seen := map[warning.Warning]bool{}
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
		if r.Aliases != nil && out.Aliases == nil {
			out.Aliases = r.Aliases // likewise
		}
	}
	out.finish()
	return out
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

// readTensorReusing is readTensor for a tensor needed only until the next one is read: from a
// file that can read ranges, it is copied into *buf (grown as needed and reused), so that the
// whole-tensor copies of a file's smaller tensors do not pile up as garbage between collections
// and raise the peak. The in-memory model's tensors are read as they are (views, no copy).
func readTensorReusing(r checkpoint.Reader, tp *plan.TensorPlan, buf *[]byte) (*tensor.Tensor, error) {
	rr, ok := r.(checkpoint.RangedReader)
	if _, inMemory := r.(*memCheckpoint); !ok || inMemory {
		return readTensor(r, tp)
	}
	n := entryBytes(tp.DType, tp.Shape)
	if int64(cap(*buf)) < n {
		*buf = make([]byte, n)
	}
	data := (*buf)[:n]
	if err := rr.ReadRange(tp.Name, 0, data); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	return &tensor.Tensor{DType: tp.DType, Shape: append([]int(nil), tp.Shape...), Data: data}, nil
}

// keptInPlace reports whether the writer's memory for kept tensor name is the in-memory
// reader's own (a caller that gives its input tensor as that output: Python's layer-by-layer
// quantize()): the write then finds the bytes in place and copies nothing.
func keptInPlace(r checkpoint.Reader, w checkpoint.Writer, name string) bool {
	mc, ok := r.(*memCheckpoint)
	mem, ok2 := w.(outputMemory)
	if !ok || !ok2 {
		return false
	}
	i, ok := mc.index[name]
	return ok && sameMemory(mem.memory(name), mc.data[i])
}

// maxInflight is how many tensors may wait for the writer.
const maxInflight = 1

// quantBuffers hold one tensor's quantized form; the pipeline reuses two sets.
type quantBuffers struct {
	in []byte // a streamed tensor's block of input, when the reader cannot view it in place

	data  []byte
	scale []float32
	zp    []int32
	// the slices of the current tensor
	d  []byte
	sc []float32
	z  []int32
	// the writer's own memory for the current tensor, when it has some (see outputMemory):
	// quantizing into it leaves nothing to copy
	outData []byte
	outSc   []float32
	outZ    []int32
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
	// extra: tensors written after the qparams (a weight's calibrated outlier columns).
	extra []namedBytes
	err   error
}

type namedBytes struct {
	name string
	data []byte
}

// pipeline writes tensors on its own goroutine while the caller computes the next one.
type pipeline struct {
	mem      outputMemory // the writer's memory per tensor, or nil
	jobs     chan *writeJob
	done     chan *writeJob
	free     []*quantBuffers
	inflight int
	stopped  bool
}

// ctx stops the copy of a large kept tensor between its blocks.
func newPipeline(ctx context.Context, w checkpoint.Writer) *pipeline {
	pl := &pipeline{jobs: make(chan *writeJob, maxInflight), done: make(chan *writeJob, maxInflight+1),
		free: []*quantBuffers{{}, {}}}
	pl.mem, _ = w.(outputMemory)
	go func() {
		var failed error
		var keptBuf []byte
		for j := range pl.jobs {
			if failed == nil {
				failed = writeTensor(ctx, w, j, &keptBuf)
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
func writeTensor(ctx context.Context, w checkpoint.Writer, j *writeJob, keptBuf *[]byte) error {
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
		*keptBuf, err = writeKeptParts(ctx, w.(checkpoint.PartWriter), j.ranges, name, entryBytes(j.tp.DType, j.tp.Shape), *keptBuf)
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
	if err := writeParams(w, j.tp, j.out); err != nil {
		return err
	}
	for _, e := range j.extra {
		if err := w.Write(e.name, e.data); err != nil {
			return fmt.Errorf("writing tensor %q: %w", e.name, err)
		}
	}
	return nil
}

// writeParams writes a quantized tensor's <name>.scale and <name>.zero_point (as its scheme needs).
func writeParams(w checkpoint.Writer, tp *plan.TensorPlan, b *quantBuffers) error {
	name, s := tp.Name, &tp.Spec
	if s.Format.IsInteger() {
		if err := w.Write(name+names.ScaleSuffix, tensor.Float32Bytes(b.sc)); err != nil {
			return fmt.Errorf("writing tensor %q: %w", name+names.ScaleSuffix, err)
		}
		if s.StoresZeroPoint() {
			if err := w.Write(name+names.ZeroPointSuffix, int32Bytes(b.z)); err != nil {
				return fmt.Errorf("writing tensor %q: %w", name+names.ZeroPointSuffix, err)
			}
		}
	}
	return nil
}

// outlierSplit is what splitOutliers takes out of a weight: the tensors that store the
// outlier columns and their Σx².
type outlierSplit struct {
	entries []namedBytes
	energy  float64
}

// splitOutliers takes the calibrated outlier columns tp.Outliers out of weight t ([out, in]):
// it returns a copy of t with those columns set to 0 — what the INT8 matmul sees, since the
// layer's input has them at 0 there, so they cost the other columns no range — and the stored
// form of the columns themselves: <name>.outlier_columns (int64 indices) and
// <name>.outlier_weight ([out, k] in t's dtype, the values bit for bit).
func splitOutliers(tp *plan.TensorPlan, t *tensor.Tensor) (*tensor.Tensor, *outlierSplit, error) {
	if len(t.Shape) != 2 {
		return nil, nil, fmt.Errorf("tensor %q: outlier columns need a 2-D weight, have shape %v", tp.Name, t.Shape)
	}
	rows, k, es := t.Shape[0], t.Shape[1], t.DType.Size()
	cols := tp.Outliers
	data := slices.Clone(t.Data)
	idx := make([]byte, 8*len(cols))
	ow := make([]byte, rows*len(cols)*es)
	for c, j := range cols {
		if j < 0 || j >= k {
			return nil, nil, fmt.Errorf("tensor %q: outlier column %d is outside its %d inputs", tp.Name, j, k)
		}
		binary.LittleEndian.PutUint64(idx[8*c:], uint64(j))
	}
	for r := 0; r < rows; r++ {
		row := data[r*k*es : (r+1)*k*es]
		for c, j := range cols {
			copy(ow[(r*len(cols)+c)*es:(r*len(cols)+c+1)*es], row[j*es:(j+1)*es])
			clear(row[j*es : (j+1)*es]) // +0.0 in every float dtype
		}
	}
	vals := make([]float32, rows*len(cols))
	tensor.ConvertToFloat32(vals, t.DType, ow)
	var energy float64
	for _, v := range vals {
		energy += float64(v) * float64(v)
	}
	out := &tensor.Tensor{DType: t.DType, Shape: t.Shape, Data: data}
	return out, &outlierSplit{energy: energy, entries: []namedBytes{{tp.Name + names.OutlierColumnsSuffix, idx}, {tp.Name + names.OutlierWeightSuffix, ow}}}, nil
}

// quantizeOne quantizes one tensor into reused buffers and measures its error.
func quantizeOne(tp *plan.TensorPlan, t *tensor.Tensor, b *quantBuffers, mo method.Options) (TensorReport, []warning.Warning, error) {
	view := &tensor.Tensor{DType: t.DType, Shape: tp.QuantShape, Data: t.Data}
	s := tp.Spec
	n := t.Len()
	need := quant.PackedLen(s.Format, n)
	if cap(b.data) < need && len(b.outData) != need {
		b.data = make([]byte, need)
	}
	data := b.data[:min(need, cap(b.data))]
	if len(b.outData) == need {
		data = b.outData
	}
	var sc []float32
	var z []int32
	if s.Format.IsInteger() {
		np := s.NumParams(tp.QuantShape)
		if cap(b.scale) < np {
			b.scale, b.zp = make([]float32, np), make([]int32, np)
		}
		sc, z = b.scale[:np], b.zp[:np]
		if len(b.outSc) == np {
			sc = b.outSc
		}
		if len(b.outZ) == np {
			z = b.outZ
		}
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
	return tensorReport(tp, tp.DType, st, sig, noise), warns, nil
}

// measureAgainst sets tr's signal, noise and SQNR to those of the stored form b against the
// tensor orig (the input before pruning).
func measureAgainst(tr *TensorReport, tp *plan.TensorPlan, orig *tensor.Tensor, b *quantBuffers) error {
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
func pruned(tp *plan.TensorPlan, t *tensor.Tensor) (*tensor.Tensor, error) {
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

// setOutliers gives each static layer of p with LLM.int8() outliers on, among the layers acts
// holds (calibrated), the input features calibration found (TensorPlan.Outliers), and warns
// about layers that would run mostly in float. Quantize and Model.OutputLayout both call it, so
// the layout a caller allocates is the one written.
func setOutliers(p *plan.Plan, cal *Calibration, acts map[string]ActivationParams) []warning.Warning {
	var warns []warning.Warning
	for _, t := range p.Quantized() {
		if _, calibrated := acts[t.Layer]; calibrated && t.Settings.Activations == recipe.ActivationsStatic && t.Settings.OutlierThreshold > 0 {
			t.Outliers = cal.OutlierColumns(t.Layer)
			if in := t.Shape[len(t.Shape)-1]; float64(len(t.Outliers)) > MaxOutlierFraction*float64(in) {
				warns = append(warns, warning.Warning{Code: warning.ManyOutliers, Tensor: t.Name, Layer: t.Layer,
					Message: fmt.Sprintf("%d of the %d input features of layer %q reached the outlier threshold %g during calibration, so most of the layer runs in float; raise outlier_threshold or turn outliers off for it", len(t.Outliers), in, t.Layer, t.Settings.OutlierThreshold)})
			}
		}
	}
	return warns
}
