package runlog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
)

// maxIndexBytes bounds the index file read to find a sharded checkpoint's shards (the
// checkpoint readers' own bound).
const maxIndexBytes = 256 << 20

// members lists the files whose content is a checkpoint's identity, by name relative to base:
// nil for a single file (its own digest is the identity); for a sharded checkpoint's index
// (*.index.json), the index and every shard its weight_map names; for a model folder, every
// regular file in it (weights, shards, index, config.json and the rest the conversion copies).
func members(path string) (base string, names []string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, err
	}
	if fi.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return "", nil, err
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
		if len(names) == 0 {
			return "", nil, fmt.Errorf("model folder %s has no files", path)
		}
		return path, names, nil
	}
	if !strings.HasSuffix(path, ".index.json") {
		return "", nil, nil
	}
	if fi.Size() > maxIndexBytes {
		return "", nil, fmt.Errorf("checkpoint index %s: %d bytes is too large for an index file", path, fi.Size())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	wm, _, err := safetensors.ParseIndex(raw)
	if err != nil {
		return "", nil, fmt.Errorf("checkpoint index %s: %w", path, err)
	}
	shards, err := safetensors.ShardFiles(wm)
	if err != nil {
		return "", nil, fmt.Errorf("checkpoint index %s: %w", path, err)
	}
	names = append(shards, filepath.Base(path))
	slices.Sort(names)
	return filepath.Dir(path), slices.Compact(names), nil
}

// combine is the identity of a multi-file checkpoint from its members' digests (XXH3-128 or
// sha256): the sha256 of the lines "<name>\t<digest of the file>\n", one per member sorted by
// name (names relative to the folder, or to the index's folder), so that `xxhsum -H2` or
// `sha256sum` of the members can check it.
func combine(names, sums []string) string {
	h := sha256.New()
	for i, n := range names {
		fmt.Fprintf(h, "%s\t%s\n", filepath.ToSlash(n), sums[i])
	}
	return hex.EncodeToString(h.Sum(nil))
}
