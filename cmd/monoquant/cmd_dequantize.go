package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

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

Examples:
  monoquant dequantize model.int8.safetensors
  monoquant dequantize model.int4.pt --out restored.safetensors`,
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			out := fs.String("out", "", "output `file` (.safetensors, .pt, .pth or .bin)")
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
	base := in
	for _, tag := range []string{"int8", "int4", "fp16", "bf16"} {
		ext := in[len(stem(in)):]
		if s := stem(in); strings.HasSuffix(s, "."+tag) {
			base = strings.TrimSuffix(s, "."+tag) + ext
			break
		}
	}
	if out == "" {
		if format == "" {
			format = formatOf(in)
		}
		out = stem(base) + ".dequantized" + extension(format)
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
	if err := checkNotInput(in, r, out); err != nil {
		return err
	}
	if !model.IsQuantized(r.Metadata()) {
		return fail(exitFormat, "input %s is not a monoquant quantized checkpoint (no %q metadata); nothing to dequantize", in, model.MetadataKey)
	}
	cfg, err := model.LoadConfig(r)
	if err != nil {
		return classifyCoreErr(fmt.Errorf("%s: %w", in, err))
	}
	bar := newProgress(e, quiet, "dequantizing")
	err = model.Dequantize(ctx, r, createOutput(out), func(p model.Progress) {
		bar.update(p.TensorsDone, p.TensorsTotal, p.BytesDone, p.BytesTotal)
	})
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
	if st, err := os.Stat(out); err == nil {
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
