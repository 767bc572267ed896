package convert

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/model"
)

// Dequantize writes the float checkpoint of the quantized checkpoint at in to out: a file (or a
// sharded index) gives the file out, whose suffix picks the format; a model folder gives a model
// folder (DequantizeFolder).
func Dequantize(ctx context.Context, in, out string, progress model.ProgressFunc) error {
	r, err := checkpoint.Open(in)
	if err != nil {
		return err
	}
	defer r.Close()
	if checkpoint.IsDir(in) {
		return DequantizeFolder(ctx, r, in, out, progress)
	}
	if err := CheckNotInput(in, r, out); err != nil {
		return err
	}
	if !model.IsQuantized(r.Metadata()) {
		return fmt.Errorf("%w: %s is not a monoquant quantized checkpoint (no %q metadata); nothing to dequantize", model.ErrFormat, in, model.MetadataKey)
	}
	return model.Dequantize(ctx, r, model.CreateFile(out), progress)
}

// DequantizeFolder writes the float model folder of the quantized model folder `folder`, whose
// checkpoint r is open (checkpoint.Open(folder)), into out (made if missing; an existing one
// must be empty; never the input folder), laid out as the input is:
//
//   - the weights under the same file name, or, for a sharded folder, the same shard files and
//     an index (each float tensor in the shard its stored tensor was in; a tied name the folder
//     stores once goes with the tensor it names);
//   - the tensors and metadata of model.Dequantize (the "monoquant" config dropped);
//   - every other regular file of the folder (config.json, tokenizer files, ...) copied as it is.
//
// Nothing is left in out when it fails.
func DequantizeFolder(ctx context.Context, r checkpoint.Reader, folder, out string, progress model.ProgressFunc) (err error) {
	if SamePath(folder, out) {
		return fmt.Errorf("%w folder %s is the input folder; choose another output (monoquant never overwrites its input)", ErrOutput, out)
	}
	if !model.IsQuantized(r.Metadata()) {
		return fmt.Errorf("%w: model folder %s is not monoquant quantized (no %q metadata); nothing to dequantize", model.ErrFormat, folder, model.MetadataKey)
	}
	weights, err := checkpoint.FindWeights(folder)
	if err != nil {
		return err
	}
	cfg, err := model.LoadConfig(r)
	if err != nil {
		return fmt.Errorf("%s: %w", folder, err)
	}
	made, err := prepareFolder(out)
	if err != nil {
		return err
	}
	var written []string
	defer removeOnError(&err, out, made, &written)
	skip := map[string]bool{filepath.Base(weights): true}
	var create model.CreateFunc
	outWeights := filepath.Join(out, filepath.Base(weights))
	base, sharded := strings.CutSuffix(filepath.Base(weights), safetensors.IndexSuffix)
	if !sharded {
		if strings.HasSuffix(weights, ".index.json") || !strings.HasSuffix(weights, ".safetensors") {
			return fmt.Errorf("%w: model folder %s holds %s; monoquant writes quantized folders as safetensors, so this one was not written by it", model.ErrFormat, folder, filepath.Base(weights))
		}
		create = model.CreateFile(outWeights)
	} else {
		weightMap, err := readIndex(weights)
		if err != nil {
			return err
		}
		for _, f := range weightMap {
			skip[f] = true
		}
		create = func(entries []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
			files := make([]string, len(entries))
			for i, e := range entries {
				owner := e.Name
				if s, ok := cfg.Aliases[owner]; ok {
					owner = s // a tied name the folder stores once: beside the stored tensor
				}
				f, ok := weightMap[owner]
				if !ok {
					return nil, fmt.Errorf("checkpoint index %s lists no shard for %q", weights, owner)
				}
				files[i] = f
				if !skip[f] {
					return nil, fmt.Errorf("checkpoint index %s: shard %q is not a file of the folder", weights, f)
				}
			}
			for _, f := range files {
				p := filepath.Join(out, f)
				if len(written) == 0 || written[len(written)-1] != p {
					written = append(written, p)
				}
			}
			return safetensors.CreateShardedLayout(out, base, entries, files, shardMetadata(md))
		}
	}
	if err := model.Dequantize(ctx, r, create, progress); err != nil {
		return err
	}
	written = append(written, outWeights)
	return copyOthersTracked(ctx, folder, out, skip, &written)
}

// readIndex reads the weight_map of a sharded checkpoint's index (tensor → shard file name),
// refusing shard names that are not plain file names of the index's folder.
func readIndex(index string) (map[string]string, error) {
	st, err := os.Stat(index)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxIndexBytes {
		return nil, fmt.Errorf("checkpoint index %s: %d bytes is too large for an index file", index, st.Size())
	}
	raw, err := os.ReadFile(index)
	if err != nil {
		return nil, err
	}
	weightMap, _, err := safetensors.ParseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("checkpoint index %s: %w", index, err)
	}
	for n, f := range weightMap {
		if !filepath.IsLocal(f) || strings.ContainsAny(f, `/\`) {
			return nil, fmt.Errorf("checkpoint index %s: tensor %q is in %q, which is not a file of the index's folder", index, n, f)
		}
	}
	return weightMap, nil
}

// copyOthersTracked is copyOthers, adding each file it writes to written (when not nil: for the
// cleanup of a failed run).
func copyOthersTracked(ctx context.Context, folder, out string, skip map[string]bool, written *[]string) error {
	ents, err := os.ReadDir(folder)
	if err != nil {
		return fmt.Errorf("model folder %s: %w", folder, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || skip[e.Name()] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		dst := filepath.Join(out, e.Name())
		if err := copyFile(filepath.Join(folder, e.Name()), dst); err != nil {
			return err
		}
		if written != nil {
			*written = append(*written, dst)
		}
	}
	return nil
}
