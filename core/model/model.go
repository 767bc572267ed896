package model

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
)

// Model is a set of named tensors held in memory — the form the C ABI and the Python package
// use, handing tensors over by pointer. A Model keeps the tensors it is given without copying:
// their Data must stay valid and unchanged until the Model is no longer used (callers whose
// memory is only lent for one call copy it first).
type Model struct {
	ck  *memCheckpoint
	cal *Calibration
	// hessians: per-layer input Hessians for method gptq
	hessians map[string]*tensor.Tensor
}

// NewModel returns an empty model.
func NewModel() *Model { return &Model{ck: newMemCheckpoint()} }

// Add appends a named tensor; names are unique and the order of Add is the file order.
func (m *Model) Add(name string, t *tensor.Tensor) error { return m.ck.add(name, t) }

// SetModuleType records a module's class ("torch.nn.modules.linear.Linear", or just "Linear")
// for the module at path ("" for the root), so layer types come from classes rather than shapes.
func (m *Model) SetModuleType(path, class string) error {
	if class == "" {
		return fmt.Errorf("module %q: empty class name", path)
	}
	if m.ck.moduleTypes == nil {
		m.ck.moduleTypes = map[string]string{}
	}
	m.ck.moduleTypes[path] = class
	return nil
}

// SetMetadata records a metadata entry copied into saved files.
func (m *Model) SetMetadata(key, value string) error {
	if key == MetadataKey {
		return fmt.Errorf("metadata key %q is reserved for the quantization config", key)
	}
	m.ck.metadata[key] = value
	return nil
}

// WithConfig makes the model's tensors a quantized result with the config JSON configJSON (the
// value of the MetadataKey metadata, docs/FORMAT.md), checked as every reader of a quantized
// file checks it (LoadConfig). A caller that holds a quantized model in its own form (Python's
// modules, after later changes) writes it this way; the model is left unchanged on error.
func (m *Model) WithConfig(configJSON string) (*Result, error) {
	prev, had := m.ck.metadata[MetadataKey]
	m.ck.metadata[MetadataKey] = configJSON
	cfg, err := LoadConfig(m.ck)
	if err != nil {
		if had {
			m.ck.metadata[MetadataKey] = prev
		} else {
			delete(m.ck.metadata, MetadataKey)
		}
		return nil, err
	}
	return &Result{Config: cfg, ck: m.ck}, nil
}

// Entries lists the tensors in order.
func (m *Model) Entries() []checkpoint.Entry { return m.ck.Entries() }

// Tensor returns a tensor by name.
func (m *Model) Tensor(name string) (*tensor.Tensor, error) { return m.ck.Tensor(name) }

// Reader views the model as a checkpoint.
func (m *Model) Reader() checkpoint.Reader { return m.ck }

// Plan decides what Quantize would do with these options (with the calibration the model has:
// once StartCalibration ran, static activations are the default).
func (m *Model) Plan(opts plan.Options) (*plan.Plan, error) {
	if m.cal != nil {
		opts.Calibrated = true
	}
	r, err := plan.FoldReader(m.ck, opts)
	if err != nil {
		return nil, err
	}
	return plan.NewPlan(r.Entries(), m.ck.moduleTypes, opts)
}

// StartCalibration prepares one activation observer per quantized layer of the static-mode
// options; Calibrate then feeds them, and Quantize with the same options uses them. Options
// without static layers are accepted when a layer's method needs its input Hessian (gptq with
// activations "none"): the calibration data then serves the Hessians (SetHessian) only.
func (m *Model) StartCalibration(opts plan.Options) error {
	opts.Calibrated = true
	p, err := m.Plan(opts)
	if err != nil {
		return err
	}
	if len(p.StaticLayers()) == 0 && len(p.HessianLayers()) > 0 {
		m.cal = &Calibration{opts: p.Observers, allowed: map[string]bool{}, obs: map[string]observer.Observer{},
			batches: map[string]int{}, spiky: map[string]float32{}}
		return nil
	}
	c, err := NewCalibration(p)
	if err != nil {
		return err
	}
	m.cal = c
	return nil
}

// Calibrate feeds a batch of a layer's input activations to its observer.
func (m *Model) Calibrate(layer string, x *tensor.Tensor) error {
	if m.cal == nil {
		return fmt.Errorf("%w: call StartCalibration with static-mode options first", ErrCalibration)
	}
	return m.cal.Calibrate(layer, x)
}

// Quantize quantizes the model in memory. In static mode the observers fed by Calibrate give
// the activation qparams.
func (m *Model) Quantize(ctx context.Context, opts plan.Options, progress ProgressFunc) (*Result, error) {
	return m.quantize(ctx, opts, progress, nil)
}

// quantize is Quantize; outputs, when not nil, gives the output buffers once the plan is made
// (see QuantizeInto).
func (m *Model) quantize(ctx context.Context, opts plan.Options, progress ProgressFunc, outputs OutputBuffers) (*Result, error) {
	if m.cal != nil {
		opts.Calibrated = true
	}
	p, err := m.Plan(opts)
	if err != nil {
		return nil, err
	}
	run := Run{Progress: progress, Hessians: m.hessians}
	if len(p.StaticLayers()) > 0 {
		if m.cal == nil {
			return nil, fmt.Errorf("%w: static mode needs calibration data: call StartCalibration and Calibrate first", ErrCalibration)
		}
		run.Calibration = m.cal
	}
	var mw *memWriter
	create := func(entries []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
		mw = newMemWriter(entries, md)
		if outputs != nil {
			bufs, err := outputs(entries)
			if err != nil {
				return nil, err
			}
			if err := checkOutputBuffers(entries, bufs); err != nil {
				return nil, err
			}
			copy(mw.bufs, bufs)
		}
		return mw, nil
	}
	r, err := plan.FoldReader(m.ck, opts)
	if err != nil {
		return nil, err
	}
	rep, err := Quantize(ctx, r, create, p, run)
	if err != nil {
		return nil, err
	}
	cfg, err := ReadConfig(mw.out.Entries(), mw.out.Metadata())
	if err != nil {
		return nil, fmt.Errorf("internal: the quantized model does not validate: %w", err)
	}
	return &Result{Report: rep, Config: cfg, Plan: p, ck: mw.out}, nil
}

// ErrHessianDType marks a Hessian whose element type is not a float type (C callers get
// MQ_EDTYPE for it).
var ErrHessianDType = errors.New("the Hessian must be a float matrix")

// SetHessian gives a layer's input Hessian H = XᵀX ([K, K] over the inputs of its weight
// viewed as [rows, K]), which method gptq needs; a nil h removes it. A Hessian that is not a
// square float matrix is refused here; whether K fits the layer's weight is checked when the
// plan is known (Quantize).
func (m *Model) SetHessian(layer string, h *tensor.Tensor) error {
	if layer == "" {
		return fmt.Errorf("%w: the layer name of a Hessian is empty", ErrCalibration)
	}
	if h == nil {
		delete(m.hessians, layer)
		return nil
	}
	if !h.DType.IsFloat() {
		return fmt.Errorf("%w: the Hessian of layer %q is %v", ErrHessianDType, layer, h.DType)
	}
	if len(h.Shape) != 2 || h.Shape[0] != h.Shape[1] {
		return fmt.Errorf("%w: the Hessian of layer %q has shape %v; it must be a square [K, K] matrix", ErrCalibration, layer, h.Shape)
	}
	if m.hessians == nil {
		m.hessians = map[string]*tensor.Tensor{}
	}
	m.hessians[layer] = h
	return nil
}

// Result is a quantized model in memory: the stored tensors of the quantized checkpoint format
// (docs/FORMAT.md), the config and the report.
type Result struct {
	Report *Report
	Config *Config
	Plan   *plan.Plan // the plan the quantization applied (the run log stores its resolved config and recipe)
	// ck is the in-memory checkpoint of a quantization or LoadResult, or the open file of
	// OpenResult (closed by Close).
	ck checkpoint.Reader
}

// Entries lists the stored tensors in order (<name>, <name>.scale, <name>.zero_point, …).
func (r *Result) Entries() []checkpoint.Entry { return r.ck.Entries() }

// Tensor returns a stored tensor by name; its Data belongs to the Result.
func (r *Result) Tensor(name string) (*tensor.Tensor, error) { return r.ck.Tensor(name) }

// Metadata returns the metadata a saved file carries, with the config under "monoquant".
func (r *Result) Metadata() map[string]string { return maps.Clone(r.ck.Metadata()) }

// Close releases the file of a result from OpenResult (its tensors cannot be read afterwards);
// for results in memory it does nothing. Closing twice is harmless.
func (r *Result) Close() error { return r.ck.Close() }

// Reader views the result as a checkpoint.
func (r *Result) Reader() checkpoint.Reader { return r.ck }

// Dequantize returns the float32 model the result stands for.
func (r *Result) Dequantize(ctx context.Context) (*Model, error) { return DequantizeToModel(ctx, r.ck) }

// DequantizeToModel dequantizes a quantized checkpoint into memory.
func DequantizeToModel(ctx context.Context, r checkpoint.Reader) (*Model, error) {
	var mw *memWriter
	create := func(entries []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
		mw = newMemWriter(entries, md)
		return mw, nil
	}
	if err := Dequantize(ctx, r, create, nil); err != nil {
		return nil, err
	}
	return &Model{ck: mw.out}, nil
}

// Copy writes every tensor of r, with its metadata, through create (saving an in-memory model
// or result to a file).
func Copy(ctx context.Context, r checkpoint.Reader, create CreateFunc) (err error) {
	w, err := create(r.Entries(), maps.Clone(r.Metadata()))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	for _, e := range r.Entries() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyTensor(r, w, e.Name); err != nil {
			return err
		}
	}
	return w.Commit()
}

// copyTensor writes one tensor of r unchanged through w and drops it from r's memory.
func copyTensor(r checkpoint.Reader, w checkpoint.Writer, name string, aliases ...string) error {
	t, err := r.Tensor(name)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	defer r.Release(name)
	for _, n := range append([]string{name}, aliases...) {
		if err := w.Write(n, t.Data); err != nil {
			return fmt.Errorf("writing tensor %q: %w", n, err)
		}
	}
	return nil
}
