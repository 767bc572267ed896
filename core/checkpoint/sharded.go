package checkpoint

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/tensor"
)

// maxIndexBytes bounds an index file read into memory; real ones are a few hundred KB.
const maxIndexBytes = 256 << 20

// openIndex opens a sharded checkpoint from its index (`model.safetensors.index.json`, or
// transformers' `pytorch_model.bin.index.json` over torch shards, or a mix: {"metadata": {...},
// "weight_map": {tensor: shard file}}) as one Reader. It is the one sharded reader: every shard
// is opened with Open and checked up front, so that a broken shard is reported before a long
// job rather than halfway through it. Shard names are resolved relative to the index's folder
// and must stay inside it; every listed tensor must be in the shard the index names, none in two
// shards, none unlisted. When every shard can read and release ranges (safetensors), so can the
// set, and large tensors stream.
//
// Metadata is the shards' metadata (the first shard to set a key wins) overlaid with the index's
// "metadata" object; non-string index values (HF's "total_size" number) appear as their JSON text.
func openIndex(path string) (Reader, error) {
	raw, err := mapped.ReadRegular(path, maxIndexBytes)
	if err != nil {
		return nil, fmt.Errorf("checkpoint index: %w: %w", safetensors.ErrInvalid, err)
	}
	fail := func(s *shardedReader, format string, args ...any) (Reader, error) {
		if s != nil {
			s.Close()
		}
		return nil, fmt.Errorf("checkpoint index %s: "+format, append([]any{path}, args...)...)
	}
	weightMap, indexMeta, err := safetensors.ParseIndex(raw)
	if err != nil {
		return fail(nil, "%w", err)
	}
	shardNames, err := safetensors.ShardFiles(weightMap)
	if err != nil {
		return fail(nil, "%w", err)
	}
	dir := filepath.Dir(path)
	s := &shardedReader{index: path, where: map[string]Reader{}, meta: map[string]string{}}
	shardOf := map[string]string{}
	sorted := len(shardNames) > 1
	for _, name := range shardNames {
		shardPath := filepath.Join(dir, name)
		if f, err := Sniff(shardPath); err == nil && f == SafetensorsIndex {
			return fail(s, "%w: shard %s is itself an index", safetensors.ErrInvalid, name)
		}
		r, err := Open(shardPath)
		if err != nil {
			return fail(s, "shard %s: %w", name, err)
		}
		s.shards = append(s.shards, r)
		s.paths = append(s.paths, shardPath)
		entries := r.Entries()
		sorted = sorted && nameSorted(entries)
		for _, e := range entries {
			if other, dup := shardOf[e.Name]; dup {
				return fail(s, "%w: tensor %q appears in both shard %s and shard %s", safetensors.ErrInvalid, e.Name, other, name)
			}
			listed, ok := weightMap[e.Name]
			if !ok {
				return fail(s, "%w: tensor %q of shard %s is not listed in weight_map", safetensors.ErrInvalid, e.Name, name)
			}
			if listed != name {
				return fail(s, "%w: tensor %q is in shard %s but weight_map says %s", safetensors.ErrInvalid, e.Name, name, listed)
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
			return fail(s, "%w: weight_map lists tensor %q in shard %s, which has no such tensor", safetensors.ErrInvalid, name, shard)
		}
	}
	if sorted {
		// Shards written by the safetensors library list their tensors sorted by name (within
		// each dtype), which carries no order of its own; shard after shard, they would read as
		// an order that is none ("model.layers.9" last in shard 1, "lm_head" first in shard 2).
		// Listed by name across all shards, the set reads as sorted, which it is.
		slices.SortStableFunc(s.entries, func(a, b tensor.Info) int { return strings.Compare(a.Name, b.Name) })
	}
	maps.Copy(s.meta, indexMeta)
	for _, r := range s.shards {
		if _, ok := r.(RangedReader); !ok {
			return s, nil
		}
	}
	return &rangedShardedReader{s}, nil
}

// nameSorted reports whether entries are sorted by name within each dtype, as the safetensors
// library writes them.
func nameSorted(entries []Entry) bool {
	last := map[tensor.DType]string{}
	for _, e := range entries {
		if prev, ok := last[e.DType]; ok && e.Name < prev {
			return false
		}
		last[e.DType] = e.Name
	}
	return true
}

// shardedReader is one Reader over several shard Readers of any format.
type shardedReader struct {
	index   string
	shards  []Reader
	paths   []string
	entries []Entry
	where   map[string]Reader
	meta    map[string]string
}

// Path is the index file's path.
func (s *shardedReader) Path() string { return s.index }

// Shards lists the shard files' paths, sorted.
func (s *shardedReader) Shards() []string { return slices.Clone(s.paths) }

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

// rangedShardedReader is a set whose shards all read and release ranges.
type rangedShardedReader struct{ *shardedReader }

func (s *rangedShardedReader) ReadRange(name string, off int64, dst []byte) error {
	r, ok := s.where[name]
	if !ok {
		return fmt.Errorf("checkpoint index %s: no tensor named %q", s.index, name)
	}
	return r.(RangedReader).ReadRange(name, off, dst)
}

func (s *rangedShardedReader) ReleaseRange(name string, off, n int64) {
	if r, ok := s.where[name]; ok {
		r.(RangedReader).ReleaseRange(name, off, n)
	}
}
