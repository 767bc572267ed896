// Package checkpointtest has helpers for tests of code that reads checkpoints.
package checkpointtest

import (
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/tensor"
)

// WriteSafetensors writes tensors to a safetensors file at path, in the given order, or fails
// the test.
func WriteSafetensors(t testing.TB, path string, tensors map[string]*tensor.Tensor, order ...string) {
	t.Helper()
	var entries []tensor.Info
	for _, n := range order {
		tt := tensors[n]
		entries = append(entries, tensor.Info{Name: n, DType: tt.DType, Shape: tt.Shape})
	}
	w, err := safetensors.Create(path, entries, map[string]string{"source": "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range order {
		if err := w.Write(n, tensors[n].Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// CountingReader counts a reader's Tensor and Release calls; with Copies set it returns a new
// copy of the data on every fetch, as a reader of strided .pt tensors does.
type CountingReader struct {
	checkpoint.Reader
	Fetches, Releases int
	Copies            bool
	// Views makes every fetch of a name return the same bytes, as a reader handing out views
	// of a mapping would. The file readers return copies (read under mapped.Guard, so that a
	// file truncated while it is read cannot crash); this keeps window logic for view readers
	// tested.
	Views map[string][]byte
}

// Tensor counts the fetch and returns the tensor (a fresh copy with Copies).
func (c *CountingReader) Tensor(name string) (*tensor.Tensor, error) {
	c.Fetches++
	t, err := c.Reader.Tensor(name)
	if err == nil && c.Copies {
		t.Data = append([]byte(nil), t.Data...)
	}
	if err == nil && c.Views != nil {
		if v, ok := c.Views[name]; ok {
			t.Data = v
		} else {
			c.Views[name] = t.Data
		}
	}
	return t, err
}

// Release counts the release and passes it on.
func (c *CountingReader) Release(name string) {
	c.Releases++
	c.Reader.Release(name)
}
