package checkpoint

import (
	"fmt"
	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"maps"
	"path/filepath"

	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/tensor"
)

// maxIndexBytes bounds an index file read into memory; real ones are a few hundred KB.
const maxIndexBytes = 256 << 20

// openIndex opens a sharded checkpoint from its index. All-safetensors sets go to
// safetensors.OpenSharded; others (transformers' pytorch_model.bin.index.json, or a mix) are
// read shard by shard through Open, with the same checks: shards stay inside the index's
// folder, every listed tensor is in the shard named for it, none is in two shards, none is
// unlisted.
func openIndex(path string) (Reader, error) {
	raw, err := mapped.ReadRegular(path, maxIndexBytes)
	if err != nil {
		return nil, fmt.Errorf("checkpoint index: %w", err)
	}
	weightMap, indexMeta, err := safetensors.ParseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("checkpoint index %s: %w", path, err)
	}
	shardNames, err := safetensors.ShardFiles(weightMap)
	if err != nil {
		return nil, fmt.Errorf("checkpoint index %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	allSafetensors := true
	for _, name := range shardNames {
		if f, err := Sniff(filepath.Join(dir, name)); err != nil || f != Safetensors {
			allSafetensors = false
		}
	}
	if allSafetensors {
		return safetensors.OpenSharded(path)
	}

	s := &shardedReader{index: path, where: map[string]Reader{}, meta: map[string]string{}}
	fail := func(format string, args ...any) (Reader, error) {
		s.Close()
		return nil, fmt.Errorf("checkpoint index %s: "+format, append([]any{path}, args...)...)
	}
	shardOf := map[string]string{}
	for _, name := range shardNames {
		shardPath := filepath.Join(dir, name)
		if f, err := Sniff(shardPath); err == nil && f == SafetensorsIndex {
			return fail("shard %s is itself an index", name)
		}
		r, err := Open(shardPath)
		if err != nil {
			return fail("shard %s: %w", name, err)
		}
		s.shards = append(s.shards, r)
		for _, e := range r.Entries() {
			if other, dup := shardOf[e.Name]; dup {
				return fail("tensor %q appears in both shard %s and shard %s", e.Name, other, name)
			}
			listed, ok := weightMap[e.Name]
			if !ok {
				return fail("tensor %q of shard %s is not listed in weight_map", e.Name, name)
			}
			if listed != name {
				return fail("tensor %q is in shard %s but weight_map says %s", e.Name, name, listed)
			}
			shardOf[e.Name] = name
			s.where[e.Name] = r
			s.entries = append(s.entries, e)
		}
		for k, v := range r.Metadata() {
			if _, ok := s.meta[k]; !ok {
				s.meta[k] = v
			}
		}
	}
	for name, shard := range weightMap {
		if _, ok := s.where[name]; !ok {
			return fail("weight_map lists tensor %q in shard %s, which has no such tensor", name, shard)
		}
	}
	maps.Copy(s.meta, indexMeta)
	return s, nil
}

// shardedReader is one Reader over several shard Readers of any format.
type shardedReader struct {
	index   string
	shards  []Reader
	entries []Entry
	where   map[string]Reader
	meta    map[string]string
}

func (s *shardedReader) Entries() []Entry {
	out := make([]Entry, len(s.entries))
	for i, e := range s.entries {
		out[i] = tensor.Info{Name: e.Name, DType: e.DType, Shape: append([]int{}, e.Shape...)}
	}
	return out
}

func (s *shardedReader) Tensor(name string) (*tensor.Tensor, error) {
	r, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("checkpoint index %s: no tensor named %q", s.index, name)
	}
	return r.Tensor(name)
}

func (s *shardedReader) Release(name string) {
	if r, ok := s.where[name]; ok {
		r.Release(name)
	}
}

func (s *shardedReader) Metadata() map[string]string { return maps.Clone(s.meta) }

// ModuleTypes is nil: sharded checkpoints are state dicts.
func (s *shardedReader) ModuleTypes() map[string]string { return nil }

func (s *shardedReader) Close() error {
	var first error
	for _, r := range s.shards {
		if err := r.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
