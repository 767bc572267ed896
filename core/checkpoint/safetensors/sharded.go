package safetensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/monoquant/monoquant/core/tensor"
)

// IndexSuffix ends the name of a sharded checkpoint's index file, as Hugging Face writes it
// ("model.safetensors.index.json").
const IndexSuffix = ".safetensors.index.json"

// maxIndexSize bounds the index file read into memory; real indexes are a few hundred KB.
const maxIndexSize = 256 << 20

// Sharded is a checkpoint split over several safetensors files listed by an index. It implements
// checkpoint.Reader over all shards as if they were one file. Every shard is mapped and validated
// at open (mapping costs address space, not memory), so a broken shard is reported up front
// rather than halfway through a long job.
type Sharded struct {
	indexPath string
	shards    []*File
	entries   []tensor.Info
	where     map[string]*File
	meta      map[string]string
}

// OpenSharded opens an index file (`*.safetensors.index.json`: {"metadata": {...}, "weight_map":
// {tensor: shard file}}) and every shard it names. Shard names are resolved relative to the
// index's folder and must stay inside it. Every tensor listed must be in the shard the index
// names, and every tensor of a shard must be listed, exactly once.
//
// Metadata is the shards' __metadata__ (the first shard to set a key wins) overlaid with the
// index's "metadata" object; non-string index values (HF's "total_size" number) appear as their
// JSON text.
func OpenSharded(indexPath string) (*Sharded, error) {
	wrap := func(format string, args ...any) error {
		return fmt.Errorf("safetensors index %s: "+format, append([]any{indexPath}, args...)...)
	}
	raw, err := mapped.ReadRegular(indexPath, maxIndexSize)
	if err != nil {
		return nil, fmt.Errorf("safetensors index: %w: %w", ErrInvalid, err)
	}
	weightMap, indexMeta, err := ParseIndex(raw)
	if err != nil {
		return nil, wrap("%w", err)
	}

	dir := filepath.Dir(indexPath)
	shardNames, err := ShardFiles(weightMap)
	if err != nil {
		return nil, wrap("%w", err)
	}

	s := &Sharded{indexPath: indexPath, where: map[string]*File{}, meta: map[string]string{}}
	for _, shard := range shardNames {
		f, err := Open(filepath.Join(dir, shard))
		if err != nil {
			s.Close()
			if isZip(filepath.Join(dir, shard)) {
				// transformers' pytorch_model.bin.index.json has the same layout as ours.
				return nil, wrap("%w: shard %s is a torch zip file, which this safetensors reader does not read (checkpoint.Open reads sharded .bin sets)", ErrUnsupported, shard)
			}
			return nil, wrap("shard %s: %w", shard, err)
		}
		s.shards = append(s.shards, f)
		for _, e := range f.hdr.Entries {
			if other, dup := s.where[e.Name]; dup {
				s.Close()
				return nil, wrap("%w: tensor %q appears in both shard %s and shard %s", ErrInvalid, e.Name, filepath.Base(other.path), shard)
			}
			listed, ok := weightMap[e.Name]
			if !ok {
				s.Close()
				return nil, wrap("%w: tensor %q of shard %s is not listed in weight_map", ErrInvalid, e.Name, shard)
			}
			if listed != shard {
				s.Close()
				return nil, wrap("%w: tensor %q is in shard %s but weight_map says %s", ErrInvalid, e.Name, shard, listed)
			}
			s.where[e.Name] = f
			s.entries = append(s.entries, e)
		}
		for k, v := range f.hdr.Metadata {
			if _, ok := s.meta[k]; !ok {
				s.meta[k] = v
			}
		}
	}
	for name, shard := range weightMap {
		if _, ok := s.where[name]; !ok {
			s.Close()
			return nil, wrap("%w: weight_map lists tensor %q in shard %s, which has no such tensor", ErrInvalid, name, shard)
		}
	}
	if len(s.shards) > 1 && all(s.shards, nameSorted) {
		// Shards written by the safetensors library list their tensors sorted by name (within
		// each dtype), which carries no order of its own; shard after shard, they would read as
		// an order that is none ("model.layers.9" last in shard 1, "lm_head" first in shard 2).
		// Listed by name across all shards, the set reads as sorted, which it is.
		slices.SortStableFunc(s.entries, func(a, b tensor.Info) int { return strings.Compare(a.Name, b.Name) })
	}
	maps.Copy(s.meta, indexMeta)
	return s, nil
}

func all[T any](xs []T, f func(T) bool) bool {
	for _, x := range xs {
		if !f(x) {
			return false
		}
	}
	return true
}

// nameSorted reports whether a file lists its tensors sorted by name within each dtype, as the
// safetensors library writes them.
func nameSorted(f *File) bool {
	last := map[tensor.DType]string{}
	for _, e := range f.hdr.Entries {
		if prev, ok := last[e.DType]; ok && e.Name < prev {
			return false
		}
		last[e.DType] = e.Name
	}
	return true
}

// ParseIndex parses a sharded checkpoint's index JSON: the weight_map (tensor → shard file name,
// as written, not yet checked against the file system) and the "metadata" object (non-string
// values as their JSON text). Duplicate keys, a missing weight_map and non-string shard names are
// errors. transformers writes the same layout for sharded torch .bin checkpoints.
func ParseIndex(raw []byte) (weightMap, meta map[string]string, err error) {
	members, err := decodeObject(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: index is not a valid JSON object: %v", ErrInvalid, err)
	}
	meta = map[string]string{}
	var wm []keyVal
	found := false
	for _, kv := range members {
		switch kv.key {
		case "weight_map":
			found = true
			if wm, err = decodeObject(kv.val); err != nil {
				return nil, nil, fmt.Errorf("%w: weight_map: %v", ErrInvalid, err)
			}
		case "metadata":
			if string(kv.val) == "null" {
				continue
			}
			md, err := decodeObject(kv.val)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: metadata: %v", ErrInvalid, err)
			}
			for _, m := range md {
				var s string
				if json.Unmarshal(m.val, &s) == nil && bytes.HasPrefix(m.val, []byte{'"'}) {
					meta[m.key] = s
				} else {
					meta[m.key] = string(m.val)
				}
			}
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("%w: index has no weight_map", ErrInvalid)
	}
	weightMap = make(map[string]string, len(wm))
	for _, kv := range wm {
		var s string
		if !bytes.HasPrefix(kv.val, []byte{'"'}) || json.Unmarshal(kv.val, &s) != nil {
			return nil, nil, fmt.Errorf("%w: weight_map[%q] is %s, not a file name", ErrInvalid, kv.key, abbreviate(kv.val))
		}
		if s == "" {
			return nil, nil, fmt.Errorf("%w: weight_map[%q] is an empty file name", ErrInvalid, kv.key)
		}
		weightMap[kv.key] = s
	}
	return weightMap, meta, nil
}

// ShardFiles lists the distinct shard files of a weight_map, sorted, after checking that each is
// a relative path that stays inside the index's folder (no "../", no absolute paths).
func ShardFiles(weightMap map[string]string) ([]string, error) {
	// A set, not a list search: an index may list every tensor in its own shard, and the
	// dedup must stay linear in the index's size.
	seen := make(map[string]struct{})
	var names []string
	for name, shard := range weightMap {
		if !filepath.IsLocal(shard) || strings.Contains(shard, `\`) {
			return nil, fmt.Errorf("%w: tensor %q: shard path %q leaves the index's folder", ErrInvalid, name, shard)
		}
		if _, dup := seen[shard]; !dup {
			seen[shard] = struct{}{}
			names = append(names, shard)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Path is the index file's path.
func (s *Sharded) Path() string { return s.indexPath }

// Shards lists the shard files in the order their tensors appear in Entries.
func (s *Sharded) Shards() []string {
	out := make([]string, len(s.shards))
	for i, f := range s.shards {
		out[i] = f.path
	}
	return out
}

// Entries lists all tensors: shard by shard (shards sorted by name), file order within a shard.
func (s *Sharded) Entries() []tensor.Info {
	out := make([]tensor.Info, len(s.entries))
	for i, e := range s.entries {
		out[i] = tensor.Info{Name: e.Name, DType: e.DType, Shape: append([]int{}, e.Shape...)}
	}
	return out
}

// Tensor returns a view into the mapping of the shard holding name.
func (s *Sharded) Tensor(name string) (*tensor.Tensor, error) {
	f, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("safetensors index %s: no tensor named %q", s.indexPath, name)
	}
	return f.Tensor(name)
}

// Release drops the resident pages of a tensor.
func (s *Sharded) Release(name string) {
	if f, ok := s.where[name]; ok {
		f.Release(name)
	}
}

// ReleaseRange drops the resident pages of bytes [off, off+n) of a tensor (see File.ReleaseRange).
func (s *Sharded) ReleaseRange(name string, off, n int64) {
	if f, ok := s.where[name]; ok {
		f.ReleaseRange(name, off, n)
	}
}

// ReadRange copies part of a tensor's bytes (File.ReadRange).
func (s *Sharded) ReadRange(name string, off int64, dst []byte) error {
	f, ok := s.where[name]
	if !ok {
		return fmt.Errorf("safetensors index %s: no tensor named %q", s.indexPath, name)
	}
	return f.ReadRange(name, off, dst)
}

// Metadata is a copy of the merged metadata (see OpenSharded).
func (s *Sharded) Metadata() map[string]string { return maps.Clone(s.meta) }

// ModuleTypes is always nil.
func (s *Sharded) ModuleTypes() map[string]string { return nil }

// Close unmaps every shard; safe to call twice.
func (s *Sharded) Close() error {
	var first error
	for _, f := range s.shards {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func isZip(path string) bool {
	f, _, err := mapped.OpenRegular(path)
	if err != nil {
		return false
	}
	defer f.Close()
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	return err == nil && string(magic) == "PK\x03\x04"
}
