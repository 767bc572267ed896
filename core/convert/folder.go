package convert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/names"
)

// maxIndexBytes bounds an index file read into memory (as core/checkpoint does).
const maxIndexBytes = 256 << 20

// writeFolder writes a model folder: the quantized weights under the input's file names and
// shard layout, then a copy of every other regular file of the input folder. Nothing is left
// in out when it fails.
func (c *Conversion) writeFolder(ctx context.Context, out string) (res *Result, err error) {
	if SamePath(c.folder, out) {
		return nil, fmt.Errorf("%w folder %s is the input folder; choose another output (monoquant never overwrites its input)", ErrOutput, out)
	}
	made, err := prepareFolder(out)
	if err != nil {
		return nil, err
	}
	var written []string
	defer removeOnError(&err, out, made, &written)
	weights, create, shardNames, err := c.folderLayout(out)
	if err != nil {
		return nil, err
	}
	res, err = c.write(ctx, weights, create)
	if err != nil {
		return nil, err
	}
	outShards := shardNames()
	written = append(written, weights)
	for _, s := range outShards {
		written = append(written, filepath.Join(out, s))
	}
	skip := map[string]bool{filepath.Base(c.in): true}
	if sh, ok := c.r.(interface{ Shards() []string }); ok {
		for _, s := range sh.Shards() {
			skip[filepath.Base(s)] = true
		}
	}
	for _, s := range append([]string{filepath.Base(weights)}, outShards...) {
		skip[s] = true
	}
	ents, err := os.ReadDir(c.folder)
	if err != nil {
		return nil, fmt.Errorf("model folder %s: %w", c.folder, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || skip[e.Name()] {
			continue // weights are written above; subfolders and links are not copied
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dst := filepath.Join(out, e.Name())
		if err := copyFile(filepath.Join(c.folder, e.Name()), dst); err != nil {
			return nil, err
		}
		written = append(written, dst)
	}
	return res, nil
}

// copyOthers copies every regular file of folder not in skip into out.
func copyOthers(ctx context.Context, folder, out string, skip map[string]bool) error {
	return copyOthersTracked(ctx, folder, out, skip, nil)
}

// prepareFolder makes out, or checks that the existing folder is empty (monoquant never mixes
// its output with files it did not write). made says whether it created the folder.
func prepareFolder(out string) (made bool, err error) {
	st, err := os.Stat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(out, 0o755); err != nil {
			return false, fmt.Errorf("%w folder %s: %v", ErrOutput, out, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%w folder %s: %v", ErrOutput, out, err)
	case !st.IsDir():
		return false, fmt.Errorf("%w %s is a file; a model folder's output is a folder", ErrOutput, out)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return false, fmt.Errorf("%w folder %s: %v", ErrOutput, out, err)
	}
	if len(ents) > 0 {
		return false, fmt.Errorf("%w folder %s is not empty; give a new or empty folder", ErrOutput, out)
	}
	return false, nil
}

// outputName is the file name a weights file keeps in the output: the same for safetensors,
// and for torch's pytorch_model*.bin the safetensors name transformers gives (model*.safetensors).
func outputName(in string) string {
	for _, ext := range []string{".bin", ".pt", ".pth"} {
		if stem, ok := strings.CutSuffix(in, ext); ok {
			if rest, ok := strings.CutPrefix(stem, "pytorch_model"); ok {
				stem = "model" + rest
			}
			return stem + ".safetensors"
		}
	}
	return in
}

// folderLayout says where the quantized weights go: the weights file (the index of a sharded
// set), its CreateFunc, and a function that lists the shard file names once it has run.
func (c *Conversion) folderLayout(out string) (string, model.CreateFunc, func() []string, error) {
	l, err := c.shardLayout()
	if err != nil {
		return "", nil, nil, err
	}
	if l == nil {
		w := filepath.Join(out, outputName(filepath.Base(c.in)))
		return w, model.CreateFile(w), func() []string { return nil }, nil
	}
	var shards []string
	create := func(entries []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
		files, order, err := l.files(entries)
		if err != nil {
			return nil, err
		}
		shards = order
		return safetensors.CreateShardedLayout(out, l.base, entries, files, shardMetadata(md))
	}
	return filepath.Join(out, l.base+safetensors.IndexSuffix), create, func() []string { return shards }, nil
}

// shardLayout maps the output tensors of a sharded model folder to output shards: each keeps
// the shard of its input tensor (scales and zero points go with their tensor).
type shardLayout struct {
	index     string            // the input index
	base      string            // the output's base name: its index is base + IndexSuffix
	weightMap map[string]string // input tensor → input shard file
	quantized map[string]bool
}

// shardLayout reads the input index of a sharded model folder; nil for any other input.
func (c *Conversion) shardLayout() (*shardLayout, error) {
	if c.folder == "" {
		return nil, nil
	}
	idxStem, sharded := strings.CutSuffix(filepath.Base(c.in), ".index.json")
	if !sharded {
		return nil, nil
	}
	st, err := os.Stat(c.in)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxIndexBytes {
		return nil, fmt.Errorf("checkpoint index %s: %d bytes is too large for an index file", c.in, st.Size())
	}
	raw, err := os.ReadFile(c.in)
	if err != nil {
		return nil, err
	}
	weightMap, _, err := safetensors.ParseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("checkpoint index %s: %w", c.in, err)
	}
	l := &shardLayout{index: c.in, base: strings.TrimSuffix(outputName(idxStem), ".safetensors"), weightMap: weightMap, quantized: map[string]bool{}}
	for _, t := range c.plan.Quantized() {
		l.quantized[t.Name] = true
	}
	return l, nil
}

// owner is the input tensor an output entry comes from.
func (l *shardLayout) owner(name string) string {
	for _, suf := range []string{names.ScaleSuffix, names.ZeroPointSuffix} {
		if b, ok := strings.CutSuffix(name, suf); ok && l.quantized[b] {
			return b
		}
	}
	return name
}

// files gives the output shard file of every entry, and the shard files in the order their
// first tensor comes.
func (l *shardLayout) files(entries []checkpoint.Entry) (files, order []string, err error) {
	files = make([]string, len(entries))
	seen := map[string]bool{}
	for i, e := range entries {
		in, ok := l.weightMap[l.owner(e.Name)]
		if !ok {
			return nil, nil, fmt.Errorf("checkpoint index %s lists no shard for %q", l.index, l.owner(e.Name))
		}
		files[i] = outputName(in)
		if !seen[files[i]] {
			seen[files[i]] = true
			order = append(order, files[i])
		}
	}
	return files, order, nil
}

// shardMetadata is the metadata of every output shard and of the index: the quantized file's,
// without the input index's total_size (the output index has its own).
func shardMetadata(md map[string]string) map[string]string {
	md = maps.Clone(md)
	delete(md, "total_size")
	return md
}

// copyFile copies a regular file into a new file dst (written to a temporary name first), with
// the source's permission bits (a temporary file is created 0600).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".monoquant-copy-*")
	if err != nil {
		return err
	}
	err = tmp.Chmod(st.Mode().Perm())
	if err == nil {
		_, err = io.Copy(tmp, in)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}

// removeOnError, deferred by a folder conversion, removes the files it wrote and the folder
// when it made it, once it returns an error: a failed conversion leaves nothing behind.
func removeOnError(err *error, out string, made bool, written *[]string) {
	if *err == nil {
		return
	}
	for _, p := range *written {
		os.Remove(p)
	}
	if made {
		os.Remove(out)
	}
}
