// Package checkpointtest has helpers for tests of code that reads checkpoints.
package checkpointtest

import (
	"os"
	"path/filepath"
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

// WriteShardedFolder writes a Hugging Face-style model folder into dir: the tensors (infos in
// order, their bytes in data) as safetensors shards of at most 20000 bytes behind
// model.safetensors.index.json, config.json holding config, and a tokenizer.json; or fails the
// test.
func WriteShardedFolder(t testing.TB, dir string, infos []tensor.Info, data map[string][]byte, config string) {
	t.Helper()
	w, err := safetensors.CreateSharded(dir, "model", infos, map[string]string{"format": "pt"}, 20000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range infos {
		if err := w.Write(e.Name, data[e.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"config.json": config, "tokenizer.json": `{"version": "1.0"}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// IndexWeightMap is the weight map (tensor → shard file) of dir/model.safetensors.index.json,
// or fails the test.
func IndexWeightMap(t testing.TB, dir string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "model"+safetensors.IndexSuffix))
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := safetensors.ParseIndex(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
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
