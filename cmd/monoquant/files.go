package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/plan"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/pickle"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
	"golang.org/x/sys/unix"
)

// Output formats, named as the --format flag spells them.
const (
	formatPT          = "pt"
	formatSafetensors = "safetensors"
)

// checkInputPath fails early, with the input's own words, before any parsing starts.
func checkInputPath(what, path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(exitInput, "%s %s: no such file", what, path)
	case err != nil:
		return wrapExit(exitInput, err, "%s", what)
	case st.IsDir():
		// a Hugging Face model folder: its weights are found when it is opened
		return nil
	}
	if unix.Access(path, unix.R_OK) != nil {
		return fail(exitInput, "%s %s: permission denied", what, path)
	}
	return nil
}

// openInput opens a checkpoint and tags its failures (and later ones while reading tensors)
// with the input exit codes: a file that is there but cannot be parsed, or that names a
// forbidden pickle global, is rejected (exit 4).
func openInput(what, path string) (checkpoint.Reader, error) {
	if err := checkInputPath(what, path); err != nil {
		return nil, err
	}
	r, err := checkpoint.Open(path)
	if err != nil {
		var refused *pickle.RefusedError
		if errors.As(err, &refused) {
			return nil, wrapExit(exitFormat, err, "unsafe %s", what)
		}
		return nil, inputErr(err)
	}
	ir := &inputReader{Reader: r}
	if _, ok := r.(checkpoint.RangedReader); ok {
		return &rangeInputReader{ir}, nil // keeps streaming large tensors in blocks
	}
	return ir, nil
}

type rangeInputReader struct{ *inputReader }

func (r *rangeInputReader) ReadRange(name string, off int64, dst []byte) error {
	return inputErr(r.Reader.(checkpoint.RangedReader).ReadRange(name, off, dst))
}

func (r *rangeInputReader) ReleaseRange(name string, off, n int64) {
	r.Reader.(checkpoint.RangedReader).ReleaseRange(name, off, n)
}

// inputReader marks errors of lazily read tensors as input errors, so that the exit code says
// "the input is corrupt" and not "internal error".
type inputReader struct{ checkpoint.Reader }

var _ checkpoint.Reader = (*inputReader)(nil)

// Unwrap is the checkpoint's own reader: the run log asks it to hash the input from the
// quantization's reads (safetensors), which embedding hides.
func (r *inputReader) Unwrap() checkpoint.Reader { return r.Reader }

// Aliases passes on the input's tied tensors (checkpoint.Aliaser), which embedding hides.
func (r *inputReader) Aliases() map[string]string { return checkpoint.Aliases(r.Reader) }

func (r *inputReader) Tensor(name string) (*tensor.Tensor, error) {
	t, err := r.Reader.Tensor(name)
	if err != nil {
		return nil, inputErr(err)
	}
	return t, nil
}

// outputWriter marks write failures (disk full, I/O error) as output errors.
type outputWriter struct{ checkpoint.Writer }

func (w *outputWriter) Write(name string, data []byte) error {
	return wrapExit(exitOutput, w.Writer.Write(name, data), "")
}

func (w *outputWriter) Commit() error {
	return wrapExit(exitOutput, w.Writer.Commit(), "")
}

// Unwrap is the checkpoint's own writer (checkpoint.WrappedWriter): the run log asks it for the
// output's XXH3, computed while writing.
func (w *outputWriter) Unwrap() checkpoint.Writer { return w.Writer }

// createOutput returns the model.CreateFunc for a file target.
func createOutput(path string) model.CreateFunc {
	return func(entries []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
		w, err := checkpoint.Create(path, entries, md)
		if err != nil {
			return nil, wrapExit(exitOutput, err, "output %s", path)
		}
		if _, ok := w.(checkpoint.PartWriter); ok {
			return &partOutputWriter{&outputWriter{w}}, nil // keeps writing large tensors in parts
		}
		return &outputWriter{w}, nil
	}
}

type partOutputWriter struct{ *outputWriter }

func (w *partOutputWriter) WritePart(name string, part []byte) error {
	return wrapExit(exitOutput, w.Writer.(checkpoint.PartWriter).WritePart(name, part), "")
}

// formatOf names the checkpoint format a path's suffix implies ("" when it implies none).
func formatOf(path string) string {
	p := strings.ToLower(path)
	switch {
	case strings.HasSuffix(p, ".safetensors.index.json"), strings.HasSuffix(p, ".safetensors"):
		return formatSafetensors
	case strings.HasSuffix(p, ".pt"), strings.HasSuffix(p, ".pth"), strings.HasSuffix(p, ".bin"):
		return formatPT
	}
	return ""
}

// stem strips the checkpoint suffix: "dir/model.safetensors.index.json" → "dir/model".
func stem(path string) string {
	lower := strings.ToLower(path)
	for _, s := range []string{".safetensors.index.json", ".safetensors", ".pt", ".pth", ".bin"} {
		if strings.HasSuffix(lower, s) {
			return path[:len(path)-len(s)]
		}
	}
	return path
}

func extension(format string) string {
	if format == formatPT {
		return ".pt"
	}
	return ".safetensors"
}

// resolveOutput picks the output path and format from --out, --format and the input, and
// refuses a target that is the input itself. tag names what was done ("int8", "dequantized").
func resolveOutput(in, out, format, tag string) (string, string, error) {
	if checkpoint.IsDir(in) {
		// A model folder in, a model folder out (core/convert keeps its layout).
		if format != "" && format != formatSafetensors {
			return "", "", usageErr("--format %s: a model folder is written as safetensors", format)
		}
		if out == "" {
			out = strings.TrimRight(in, string(filepath.Separator)) + "." + tag
		}
		if convert.SamePath(in, out) {
			return "", "", fail(exitOutput, "output %s is the input folder; choose another --out (monoquant never overwrites its input)", out)
		}
		if err := checkOutputDir(out); err != nil && !checkpoint.IsDir(out) {
			return "", "", err // (an existing folder is fine if empty: core/convert checks)
		}
		return out, formatSafetensors, nil
	}
	if out == "" {
		if format == "" {
			format = formatOf(in)
			if format == "" {
				format = formatSafetensors
			}
		}
		out = stem(in) + "." + tag + extension(format)
	} else {
		implied := formatOf(out)
		if implied == "" || strings.HasSuffix(strings.ToLower(out), ".index.json") {
			return "", "", usageErr("--out %s: unknown extension (want .safetensors, .pt, .pth or .bin)", out)
		}
		if format != "" && format != implied {
			return "", "", usageErr("--out %s is a %s file but --format is %s", out, implied, format)
		}
		format = implied
	}
	if convert.SamePath(in, out) {
		return "", "", fail(exitOutput, "output %s is the input; choose another --out (monoquant never overwrites its input)", out)
	}
	if err := checkOutputDir(out); err != nil {
		return "", "", err
	}
	return out, format, nil
}

// checkOutputDir fails before any work is done when the output cannot be written.
func checkOutputDir(out string) error {
	dir := filepath.Dir(out)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(exitOutput, "output folder %s does not exist", dir)
	case err != nil:
		return wrapExit(exitOutput, err, "output folder %s", dir)
	case !st.IsDir():
		return fail(exitOutput, "output folder %s is not a folder", dir)
	}
	if unix.Access(dir, unix.W_OK) != nil {
		return fail(exitOutput, "output folder %s is not writable", dir)
	}
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return fail(exitOutput, "output %s is a folder", out)
	}
	return nil
}

// checkNotInput refuses an output path that is one of the files the input was read from (core's
// rule, with this command's exit code).
func checkNotInput(in string, r checkpoint.Reader, out string, others ...string) error {
	if err := convert.CheckNotInput(in, unwrapReader(r), out, others...); err != nil {
		return fail(exitOutput, "output %s is one of the input files; choose another --out (monoquant never overwrites its input)", out)
	}
	return nil
}

// fileBytes is the size on disk of a checkpoint: all shards for a sharded index, the weights of
// a model folder.
func fileBytes(r checkpoint.Reader, path string) int64 {
	if checkpoint.IsDir(path) {
		w, err := checkpoint.FindWeights(path)
		if err != nil {
			return 0
		}
		path = w
	}
	var n int64
	if sh, ok := unwrapReader(r).(interface{ Shards() []string }); ok {
		for _, s := range sh.Shards() {
			if st, err := os.Stat(s); err == nil {
				n += st.Size()
			}
		}
	}
	if st, err := os.Stat(path); err == nil {
		n += st.Size()
	}
	return n
}

func unwrapReader(r checkpoint.Reader) checkpoint.Reader {
	if ir, ok := r.(*inputReader); ok {
		return ir.Reader
	}
	if ir, ok := r.(*rangeInputReader); ok {
		return ir.Reader
	}
	return r
}

// describeFormat names the container a reader was opened from, for inspect.
func describeFormat(r checkpoint.Reader, path string) string {
	f, err := checkpoint.Sniff(path)
	if err != nil {
		return "unknown"
	}
	if r.ModuleTypes() != nil {
		return f.String() + " (pickled nn.Module)"
	}
	return f.String()
}

// classifyCoreErr picks the exit code of an error from core/model that carries none yet.
func classifyCoreErr(err error) error {
	var ee *exitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return err
	case errors.Is(err, plan.ErrNothingToQuantize):
		return wrapExit(exitNothing, err, "")
	case errors.Is(err, convert.ErrValidation):
		return wrapExit(exitValidation, err, "")
	case errors.Is(err, convert.ErrOutput):
		return wrapExit(exitOutput, err, "")
	case errors.Is(err, plan.ErrOption):
		return wrapExit(exitUsage, errors.New(flagWords(err.Error())), "")
	case errors.Is(err, model.ErrFormat):
		return wrapExit(exitFormat, err, "")
	case errors.Is(err, quant.ErrNonFinite):
		return wrapExit(exitData, errors.New(strings.ReplaceAll(err.Error(), quant.NonFiniteHint, "pass --nonfinite clamp to quantize anyway")), "")
	case errors.Is(err, model.ErrCalibration), errors.Is(err, quant.ErrSpec):
		return wrapExit(exitData, err, "")
	}
	return wrapExit(exitData, err, "")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// coreFlags maps core's option names (recipe keys) to this command line's flags.
var coreFlags = map[string]string{
	"bits": "--bits", "dtype": "--dtype", "group_size": "--group-size", "group_fallback": "--group-fallback",
	"scheme": "--scheme", "activations": "--activations", "observer": "--observer", "layers": "--layers",
	"skip": "--skip", "method": "--method", "outlier_threshold": "--outlier-threshold",
}

var reOptionWord = regexp.MustCompile(`\b(bits|dtype|group_size|group_fallback|scheme|activations|observer|layers|skip|method|outlier_threshold)\b`)

// flagWords says a core error about the call's options in this command line's words
// (group_size → --group-size); an error about a recipe rule keeps the recipe's keys.
func flagWords(msg string) string {
	if strings.Contains(msg, "rule ") && strings.Contains(msg, "recipe") || strings.Contains(msg, "(rule ") {
		return msg
	}
	msg = strings.TrimPrefix(msg, "invalid option: ")
	return reOptionWord.ReplaceAllStringFunc(msg, func(w string) string { return coreFlags[w] })
}
