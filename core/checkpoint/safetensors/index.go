package safetensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// IndexSuffix ends the name of a sharded checkpoint's index file, as Hugging Face writes it
// ("model.safetensors.index.json").
const IndexSuffix = ".safetensors.index.json"

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
