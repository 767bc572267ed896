package model

import (
	"context"
	"fmt"
	"os"

	"github.com/monoquant/monoquant/core/checkpoint"
)

// CreateFile is the CreateFunc for a file path: checkpoint.Create, format by suffix
// (.safetensors, or .pt/.pth/.bin), written atomically.
func CreateFile(path string) CreateFunc {
	return func(entries []checkpoint.Entry, metadata map[string]string) (checkpoint.Writer, error) {
		return checkpoint.Create(path, entries, metadata)
	}
}

// FileRun is Run for files: the calibration data can come from a file of recorded activations.
type FileRun struct {
	Progress ProgressFunc
	// CalibrationFile (.pt or .safetensors) maps layer names to recorded input activations
	// ("<layer>" or "<layer>.<batch>"); required in static mode.
	CalibrationFile string
}

// QuantizeFile quantizes the checkpoint at in into out (any supported formats, chosen by content
// and by out's suffix), streaming tensor by tensor. The report includes both files' sizes.
func QuantizeFile(ctx context.Context, in, out string, opts Options, run FileRun) (*Report, error) {
	r, err := checkpoint.Open(in)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	p, err := PlanReader(r, opts)
	if err != nil {
		return nil, err
	}
	rr := Run{Progress: run.Progress}
	if p.opts.mode == Static {
		if run.CalibrationFile == "" {
			return nil, fmt.Errorf("%w: static mode needs calibration data (a file of recorded activations)", ErrCalibration)
		}
		c, err := NewCalibration(p)
		if err != nil {
			return nil, err
		}
		cr, err := checkpoint.Open(run.CalibrationFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCalibration, err)
		}
		err = c.CalibrateReader(cr)
		cr.Close()
		if err != nil {
			return nil, err
		}
		rr.Calibration = c
	} else if run.CalibrationFile != "" {
		return nil, optErr("calibration", "calibration data is only used in static mode")
	}
	rep, err := Quantize(ctx, r, CreateFile(out), p, rr)
	if err != nil {
		return nil, err
	}
	rep.FileBytesBefore, rep.FileBytesAfter = fileSize(in), fileSize(out)
	return rep, nil
}

// DequantizeFile dequantizes the quantized checkpoint at in into a float32 checkpoint at out.
func DequantizeFile(ctx context.Context, in, out string, progress ProgressFunc) error {
	r, err := checkpoint.Open(in)
	if err != nil {
		return err
	}
	defer r.Close()
	return Dequantize(ctx, r, CreateFile(out), progress)
}

// Save writes the quantized model to a file (.safetensors, or .pt/.pth/.bin).
func (r *Result) Save(ctx context.Context, path string) error {
	return Copy(ctx, r.ck, CreateFile(path))
}

// Save writes the model's tensors to a file (.safetensors, or .pt/.pth/.bin).
func (m *Model) Save(ctx context.Context, path string) error {
	return Copy(ctx, m.ck, CreateFile(path))
}

// LoadModel reads a whole checkpoint into memory (tensors copied out of the file), with its
// module types and metadata.
func LoadModel(path string) (*Model, error) {
	r, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	m := NewModel()
	for _, e := range r.Entries() {
		t, err := r.Tensor(e.Name)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", e.Name, err)
		}
		t.Data = append([]byte(nil), t.Data...)
		r.Release(e.Name)
		if err := m.Add(e.Name, t); err != nil {
			return nil, err
		}
	}
	for k, v := range r.ModuleTypes() {
		m.SetModuleType(k, v)
	}
	for k, v := range r.Metadata() {
		m.ck.metadata[k] = v
	}
	return m, nil
}

// LoadResult reads a quantized checkpoint into memory and validates its config.
func LoadResult(path string) (*Result, error) {
	m, err := LoadModel(path)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(m.ck)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Result{Config: cfg, ck: m.ck}, nil
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
