package model

import (
	"fmt"
	"maps"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

// memCheckpoint is a checkpoint held in memory: the in-memory Model's tensors, and the
// tensors of a quantized or dequantized Result. It implements checkpoint.Reader.
type memCheckpoint struct {
	entries     []checkpoint.Entry
	index       map[string]int
	data        [][]byte
	metadata    map[string]string
	moduleTypes map[string]string
}

func newMemCheckpoint() *memCheckpoint {
	return &memCheckpoint{index: map[string]int{}, metadata: map[string]string{}}
}

func (m *memCheckpoint) add(name string, t *tensor.Tensor) error {
	if name == "" {
		return fmt.Errorf("a tensor needs a name")
	}
	if t == nil {
		return fmt.Errorf("tensor %q is nil", name)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	if _, dup := m.index[name]; dup {
		return fmt.Errorf("tensor %q is already in the model", name)
	}
	m.index[name] = len(m.entries)
	m.entries = append(m.entries, checkpoint.Entry{Name: name, DType: t.DType, Shape: append([]int(nil), t.Shape...)})
	m.data = append(m.data, t.Data)
	return nil
}

func (m *memCheckpoint) Entries() []checkpoint.Entry { return m.entries }

func (m *memCheckpoint) Tensor(name string) (*tensor.Tensor, error) {
	i, ok := m.index[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	e := m.entries[i]
	return &tensor.Tensor{DType: e.DType, Shape: append([]int(nil), e.Shape...), Data: m.data[i]}, nil
}

func (m *memCheckpoint) Release(string)                 {}
func (m *memCheckpoint) Metadata() map[string]string    { return m.metadata }
func (m *memCheckpoint) ModuleTypes() map[string]string { return m.moduleTypes }
func (m *memCheckpoint) Close() error                   { return nil }

// memWriter collects a written checkpoint into a memCheckpoint, copying each tensor (callers
// reuse their buffers between tensors).
type memWriter struct {
	out      *memCheckpoint
	declared []checkpoint.Entry
	next     int
	done     bool
}

func newMemWriter(entries []checkpoint.Entry, metadata map[string]string) *memWriter {
	out := newMemCheckpoint()
	out.metadata = maps.Clone(metadata)
	if out.metadata == nil {
		out.metadata = map[string]string{}
	}
	return &memWriter{out: out, declared: entries}
}

func (w *memWriter) Write(name string, data []byte) error {
	if w.done {
		return fmt.Errorf("write of %q after Commit", name)
	}
	if w.next >= len(w.declared) {
		return fmt.Errorf("write of %q: all %d declared tensors are written", name, len(w.declared))
	}
	e := w.declared[w.next]
	if e.Name != name {
		return fmt.Errorf("write of %q out of order: %q comes next", name, e.Name)
	}
	t := &tensor.Tensor{DType: e.DType, Shape: e.Shape, Data: append([]byte(nil), data...)}
	if err := w.out.add(name, t); err != nil {
		return err
	}
	w.next++
	return nil
}

func (w *memWriter) Commit() error {
	if w.next != len(w.declared) {
		return fmt.Errorf("commit after %d of %d declared tensors", w.next, len(w.declared))
	}
	w.done = true
	return nil
}

func (w *memWriter) Abort() error { return nil }
