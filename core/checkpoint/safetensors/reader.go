package safetensors

import (
	"fmt"
	"maps"
	"sync"

	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/tensor"
)

// File is an open safetensors file. It implements checkpoint.Reader. Tensor and Release may be
// called from several goroutines; the data of a tensor must not be used after Close.
type File struct {
	path  string
	hdr   *Header
	index map[string]int
	mu    sync.RWMutex
	m     *mapped.File // nil once closed
	seq   *seqHash     // the file's XXH3 from its reads (HashWhileReading), nil when not asked
}

// Open maps path and validates its header. The tensor data is not read until used.
func Open(path string) (*File, error) {
	m, err := mapped.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	var hdr *Header
	err = mapped.Guard(path, func() (err error) {
		hdr, err = ParseHeader(m.Bytes())
		return err
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	f := &File{path: path, hdr: hdr, m: m, index: make(map[string]int, len(hdr.Entries))}
	for i, e := range hdr.Entries {
		f.index[e.Name] = i
	}
	return f, nil
}

// Path is the file's path as given to Open.
func (f *File) Path() string { return f.path }

// Entries lists the tensors in file order (by data offset). The slice is a copy.
func (f *File) Entries() []tensor.Info {
	out := make([]tensor.Info, len(f.hdr.Entries))
	for i, e := range f.hdr.Entries {
		out[i] = tensor.Info{Name: e.Name, DType: e.DType, Shape: append([]int{}, e.Shape...)}
	}
	return out
}

// Has reports whether the file holds a tensor of that name.
func (f *File) Has(name string) bool {
	_, ok := f.index[name]
	return ok
}

// Tensor returns a tensor whose Data is a copy of its bytes, read under mapped.Guard (a file
// truncated meanwhile gives an error wrapping mapped.ErrChanged, never a crash).
func (f *File) Tensor(name string) (*tensor.Tensor, error) {
	i, ok := f.index[name]
	if !ok {
		return nil, fmt.Errorf("safetensors %s: no tensor named %s", f.path, names.Quote(name))
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.m == nil {
		return nil, fmt.Errorf("safetensors %s: file is closed", f.path)
	}
	e, off := f.hdr.Entries[i], f.hdr.Offsets[i]
	// A checked copy, not a slice of the mapping: a file truncated under the mapping must end
	// in an error here (mapped.ErrChanged), not in a SIGBUS wherever the caller later reads.
	data, err := f.m.Copy(f.path, f.hdr.DataStart+off[0], off[1]-off[0])
	if err == nil {
		err = f.seq.saw(f, f.hdr.DataStart+off[0], data)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: tensor %s: %w", f.path, names.Quote(name), err)
	}
	return &tensor.Tensor{DType: e.DType, Shape: append([]int{}, e.Shape...), Data: data}, nil
}

// Release drops the resident pages of a tensor; unknown names and a closed file are ignored.
// Reading the tensor's data afterwards still works (the kernel reads it from disk again).
func (f *File) Release(name string) {
	i, ok := f.index[name]
	if !ok {
		return
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.m == nil {
		return
	}
	off := f.hdr.Offsets[i]
	f.m.Release(f.hdr.DataStart+off[0], off[1]-off[0])
}

// ReleaseRange drops the resident pages of bytes [off, off+n) of a tensor's data (clipped to the
// tensor; only whole pages inside the range); unknown names and a closed file are ignored.
func (f *File) ReleaseRange(name string, off, n int64) {
	i, ok := f.index[name]
	if !ok || off < 0 || n <= 0 {
		return
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.m == nil {
		return
	}
	o := f.hdr.Offsets[i]
	size := o[1] - o[0]
	if off >= size {
		return
	}
	f.m.Release(f.hdr.DataStart+o[0]+off, min(n, size-off))
}

// ReadRange copies bytes [off, off+len(dst)) of a tensor's data into dst, under mapped.Guard.
func (f *File) ReadRange(name string, off int64, dst []byte) error {
	i, ok := f.index[name]
	if !ok {
		return fmt.Errorf("safetensors %s: no tensor named %s", f.path, names.Quote(name))
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.m == nil {
		return fmt.Errorf("safetensors %s: file is closed", f.path)
	}
	o := f.hdr.Offsets[i]
	if off < 0 || off > o[1]-o[0] || int64(len(dst)) > o[1]-o[0]-off {
		return fmt.Errorf("safetensors %s: tensor %s: bytes [%d, %d) are outside its %d", f.path, names.Quote(name), off, off+int64(len(dst)), o[1]-o[0])
	}
	err := f.m.CopyTo(f.path, f.hdr.DataStart+o[0]+off, dst)
	if err == nil {
		err = f.seq.saw(f, f.hdr.DataStart+o[0]+off, dst)
	}
	if err != nil {
		return fmt.Errorf("safetensors %s: tensor %s: %w", f.path, names.Quote(name), err)
	}
	return nil
}

// Metadata is a copy of __metadata__ (empty, never nil, when the file has none).
func (f *File) Metadata() map[string]string { return maps.Clone(f.hdr.Metadata) }

// ModuleTypes is always nil: safetensors files hold no module structure.
func (f *File) ModuleTypes() map[string]string { return nil }

// Close unmaps the file; tensors handed out before are invalid afterwards. Closing twice is
// harmless.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		return nil
	}
	err := f.m.Close()
	f.m = nil
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", f.path, err)
	}
	return nil
}
