// Package checkpointtest has helpers for tests of code that reads checkpoints.
package checkpointtest

import (
	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

// CountingReader counts a reader's Tensor and Release calls; with Copies set it returns a new
// copy of the data on every fetch, as a reader of strided .pt tensors does.
type CountingReader struct {
	checkpoint.Reader
	Fetches, Releases int
	Copies            bool
}

// Tensor counts the fetch and returns the tensor (a fresh copy with Copies).
func (c *CountingReader) Tensor(name string) (*tensor.Tensor, error) {
	c.Fetches++
	t, err := c.Reader.Tensor(name)
	if err == nil && c.Copies {
		t.Data = append([]byte(nil), t.Data...)
	}
	return t, err
}

// Release counts the release and passes it on.
func (c *CountingReader) Release(name string) {
	c.Releases++
	c.Reader.Release(name)
}
