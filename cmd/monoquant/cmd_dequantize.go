package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
)

func init() {
	register(&command{
		name:     "dequantize",
		synopsis: "dequantize IN [--out OUT] [--format pt|safetensors] [--json] [--quiet]",
		summary:  "turn a quantized checkpoint back into float32 tensors",
		help: `Reads a checkpoint written by 'monoquant quantize', checks its config against its tensors and
writes every quantized tensor back as float32 in its original shape, under its own name (the
.scale and .zero_point tensors are dropped); every other tensor is copied as it is. The result
loads like the original checkpoint (a state_dict of plain tensors).

OUT defaults to the input's name with the format suffix replaced by "dequantized", next to it
(model.int8.safetensors → model.dequantized.safetensors).

A quantized model folder (what 'monoquant quantize' writes for a Hugging Face folder) gives a
model folder laid out the same way: the weights under the same file names (the same shard
files and index for a sharded folder, each tensor in its shard), safetensors only, and every
other file (config.json, tokenizer files, ...) copied as it is. OUT is a new or empty folder,
by default the input's name with its format tag replaced (my-model.int8 → my-model.dequantized).

Examples:
  monoquant dequantize model.int8.safetensors
  monoquant dequantize model.int4.pt --out restored.safetensors
  monoquant dequantize my-model.int8 --out my-model-restored`,
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			out := fs.String("out", "", "output `file` (.safetensors, .pt, .pth or .bin), or folder for a model folder")
			format := newChoice("", formatPT, formatSafetensors)
			fs.Var(format, "format", "output `format`: pt or safetensors (default: OUT's extension, else IN's format)")
			asJSON := fs.Bool("json", false, "print a summary as one JSON document on stdout")
			quiet := fs.Bool("quiet", false, "no progress bar")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageErr("dequantize: want exactly one input file, got %d arguments", len(args))
				}
				return runDequantize(ctx, e, args[0], *out, format.value, *asJSON, *quiet)
			}
		},
	})
}

type dequantizeResult struct {
	Input           string `json:"input"`
	Output          string `json:"output"`
	OutputFormat    string `json:"output_format"`
	TensorsRestored int    `json:"tensors_dequantized"`
	TensorsOut      int    `json:"tensors_written"`
	// TensorsRetied: tied names the file stored once (config aliases), written again.
	TensorsRetied   int   `json:"tensors_retied,omitempty"`
	FileBytesBefore int64 `json:"file_bytes_before"`
	FileBytesAfter  int64 `json:"file_bytes_after"`
}

func runDequantize(ctx context.Context, e *env, in, out, format string, asJSON, quiet bool) error {
	if err := checkInputPath("input", in); err != nil {
		return err
	}
	// "model.int8.safetensors" → "model.dequantized.safetensors", not "model.int8.dequantized…".
	folder := checkpoint.IsDir(in)
	base := in
	if folder {
		base = strings.TrimRight(in, string(filepath.Separator))
	}
	for _, tag := range []string{"int8", "int4", "fp16", "bf16"} {
		ext := base[len(stem(base)):]
		if s := stem(base); strings.HasSuffix(s, "."+tag) {
			base = strings.TrimSuffix(s, "."+tag) + ext
			break
		}
	}
	if out == "" {
		if folder {
			out = base + ".dequantized" // a model folder gives a model folder
		} else {
			if format == "" {
				format = formatOf(in)
			}
			out = stem(base) + ".dequantized" + extension(format)
		}
	}
	out, format, err := resolveOutput(in, out, format, "dequantized")
	if err != nil {
		return err
	}
	r, err := openInput("input", in)
	if err != nil {
		return err
	}
	defer r.Close()
	if !folder {
		if err := checkNotInput(in, r, out); err != nil {
			return err
		}
	}
	if !model.IsQuantized(r.Metadata()) {
		return fail(exitFormat, "input %s is not a monoquant quantized checkpoint (no %q metadata); nothing to dequantize", in, model.MetadataKey)
	}
	cfg, err := model.LoadConfig(r)
	if err != nil {
		return classifyCoreErr(fmt.Errorf("%s: %w", in, err))
	}
	bar := newProgress(e, quiet, "dequantizing")
	progress := func(p model.Progress) {
		bar.update(p.TensorsDone, p.TensorsTotal, p.BytesDone, p.BytesTotal)
	}
	if folder {
		// the same shard files and index, the other files copied (core/convert)
		err = convert.DequantizeFolder(ctx, r, in, out, progress)
	} else {
		err = model.Dequantize(ctx, r, createOutput(out), progress)
	}
	if err != nil {
		bar.abort()
		return classifyCoreErr(err)
	}
	bar.finish()
	res := &dequantizeResult{Input: in, Output: out, OutputFormat: format, TensorsRestored: len(cfg.Tensors), FileBytesBefore: fileBytes(r, in)}
	res.TensorsOut = len(r.Entries()) + len(cfg.Aliases)
	res.TensorsRetied = len(cfg.Aliases)
	for _, tc := range cfg.Tensors {
		res.TensorsOut-- // .scale
		if tc.ZeroPoint {
			res.TensorsOut--
		}
	}
	if folder {
		if ow, err := checkpoint.Open(out); err == nil {
			res.FileBytesAfter = fileBytes(ow, out)
			ow.Close()
		}
	} else if st, err := os.Stat(out); err == nil {
		res.FileBytesAfter = st.Size()
	}
	if asJSON {
		return writeJSON(e.stdout, res)
	}
	fmt.Fprintf(humanOut(e.stdout), "Dequantized %s → %s: %s back to F32, %s written; file %s → %s\n",
		in, out, plural(res.TensorsRestored, "tensor", "tensors"), plural(res.TensorsOut, "tensor", "tensors"),
		humanBytes(res.FileBytesBefore), humanBytes(res.FileBytesAfter))
	if res.TensorsRetied > 0 {
		fmt.Fprintf(humanOut(e.stdout), "Tied tensors: %s stored once, written under each name again\n", plural(res.TensorsRetied, "alias", "aliases"))
	}
	return nil
}
