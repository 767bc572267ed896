package model

import (
	"context"
	"fmt"

	"github.com/monoquant/monoquant/core/checkpoint"
)

// CreateFile is the CreateFunc for a file path: checkpoint.Create, format by suffix
// (.safetensors, or .pt/.pth/.bin), written atomically.
func CreateFile(path string) CreateFunc {
	return func(entries []checkpoint.Entry, metadata map[string]string) (checkpoint.Writer, error) {
		return checkpoint.Create(path, entries, metadata)
	}
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

// OpenResult opens a quantized checkpoint without reading its tensors into memory: the config
// is checked as LoadResult checks it (LoadConfig reads only the qparams), and each tensor is
// read from the file when asked (Tensor, or checkpoint.RangeReader's ReadRange on Reader()).
// A loader that copies the tensors into its own memory (Python's monoquant.load) so holds
// them once, not twice. The file must stay as it is while the result is open: a file
// truncated meanwhile is an error on read, not a crash. Close releases it.
func OpenResult(path string) (*Result, error) {
	r, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(r)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Result{Config: cfg, ck: r}, nil
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
