// Package convert is the one file-to-file pipeline: read a checkpoint, plan it under the
// options and recipe (core/model), calibrate from a file of recorded activations, quantize
// tensor by tensor into a new file, and optionally reopen the output and check it. The CLI's
// quantize, the C ABI's mq_quantize_file and Python's quantize_file all run it, so the same
// input and options give the same bytes from every caller.
//
//	res, err := convert.File(ctx, "model.safetensors", "model.int4.safetensors",
//		plan.Options{Bits: 4}, convert.Run{Validate: true})
//
// A caller that needs the plan before choosing the output (the CLI names the output after the
// format) opens the conversion in two steps: New, then Write.
package convert

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/runlog"
)

// ErrOutput is wrapped by errors about where an output would go.
var ErrOutput = errors.New("output")

// ErrValidation is wrapped by the error of an output that failed its check (it was removed).
var ErrValidation = errors.New("the written output failed validation and was removed")

// Run carries what a conversion needs besides the options.
type Run struct {
	Progress model.ProgressFunc
	// CalibrationFile (.pt or .safetensors) maps layer names to recorded input activations
	// ("<layer>" or "<layer>.<batch>"); Calibration is the same already open. Either makes
	// static activations the default (and is required for them).
	CalibrationFile string
	Calibration     checkpoint.Reader
	// Create opens the output (nil: model.CreateFile, the format by the output's suffix).
	Create func(path string) model.CreateFunc
	// Validate reopens the written file and checks it (Validate); an output that fails is
	// removed and the error wraps ErrValidation.
	Validate bool
	// Log records the conversion in the run log (nil: not recorded).
	Log *Log
}

// Result is what a conversion did.
type Result struct {
	Plan       *plan.Plan
	Report     *model.Report
	Validation *Validation // nil unless Run.Validate
	// RunID is the run's id in the run log (0 when not recorded), RunLog the log's file and
	// LogWarning why the run could not be recorded (the conversion still succeeded).
	RunID      int64
	RunLog     string
	LogWarning string
}

// Conversion is an input opened and planned, waiting for its output.
type Conversion struct {
	in     string // the checkpoint file (a folder's weights file)
	folder string // the model folder the input came from, "" for a file
	r      checkpoint.Reader
	src    checkpoint.Reader // r, or r with the recipe's Conv-BN pairs folded (core/fold)
	plan   *plan.Plan
	run    Run
	cal    *model.Calibration
	opts   plan.Options
	rec    *recording
}

// New plans the conversion of the checkpoint r (read from the path in) under opts, and
// calibrates it when the plan has static layers. r stays the caller's to close.
//
// in may be a Hugging Face model folder (r then reads its weights, checkpoint.FindWeights): the
// output is then a folder too (Write). The architecture config.json names — of the folder, or
// beside a checkpoint file — types the layers the file cannot (GPT-2's Conv1D:
// plan.ArchitectureModuleTypes).
func New(r checkpoint.Reader, in string, opts plan.Options, run Run) (*Conversion, error) {
	c := &Conversion{in: in, r: r, run: run}
	dir := filepath.Dir(in)
	if checkpoint.IsDir(in) {
		w, err := checkpoint.FindWeights(in)
		if err != nil {
			return nil, err
		}
		c.folder, c.in, dir = in, w, in
	}
	if opts.Recipe.PrunesUnits() {
		// Removing hidden units changes two layers' shapes together; only a caller holding the
		// live model applies it (core/prune.Units decides which units).
		return nil, fmt.Errorf("%w prune_units: a recipe that removes hidden units is applied to a live model (Python's monoquant.quantize(model, recipe=...), or a C program that applies mq_prune_units to its own model); the file pipeline does not shrink checkpoints", plan.ErrOption)
	}
	if model.IsQuantized(r.Metadata()) {
		return nil, fmt.Errorf("%w: input %s is already quantized by monoquant; dequantize it first", model.ErrFormat, in)
	}
	if run.CalibrationFile != "" || run.Calibration != nil {
		opts.Calibrated = true
	}
	fr, err := plan.FoldReader(r, opts) // the recipe's Conv-BN pairs, folded on the way (core/fold)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	r, c.src = fr, fr
	mc, err := checkpoint.ReadModelConfig(dir)
	if err != nil {
		return nil, err
	}
	if arch := plan.ArchitectureModuleTypes(mc.ModelType, r.Entries()); arch != nil {
		merged := maps.Clone(arch)
		maps.Copy(merged, opts.ModuleTypes)
		opts.ModuleTypes = merged
	}
	p, err := plan.PlanReader(r, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	if mc.TieWordEmbeddings != nil && *mc.TieWordEmbeddings {
		p.NoteTiedHead(mc.VocabSize)
	}
	c.plan, c.opts = p, opts
	if len(p.StaticLayers()) == 0 {
		if run.CalibrationFile != "" || run.Calibration != nil {
			return nil, fmt.Errorf("%w activations: calibration data is for static activations, and the options make none static", plan.ErrOption)
		}
		c.rec = startRecording(run.Log, c.recordedInput(), run, nil, c.fileReader())
		return c, nil
	}
	cal, err := model.NewCalibration(p)
	if err != nil {
		return nil, err
	}
	cr := run.Calibration
	if cr == nil {
		if run.CalibrationFile == "" {
			return nil, fmt.Errorf("%w: static activations need calibration data (a file of recorded activations)", model.ErrCalibration)
		}
		if cr, err = checkpoint.Open(run.CalibrationFile); err != nil {
			return nil, fmt.Errorf("%w: %v", model.ErrCalibration, err)
		}
		defer cr.Close()
	}
	if err := cal.CalibrateReader(cr); err != nil {
		return nil, err
	}
	c.cal = cal
	c.rec = startRecording(run.Log, c.recordedInput(), run, cr, c.fileReader())
	return c, nil
}

// Plan is what the conversion will do.
func (c *Conversion) Plan() *plan.Plan { return c.plan }

// Options are the options the plan was made with: the caller's, with the module classes the
// architecture's config.json implies added (what core/sensitivity needs to see the same layers).
func (c *Conversion) Options() plan.Options { return c.opts }

// Write quantizes into out (atomically: nothing appears there unless the whole run succeeds)
// and, with Run.Validate, checks what it wrote.
//
// For a model folder, out is a folder (made if missing; an existing one must be empty): the
// weights keep their file names and shard layout (torch .bin shards become .safetensors ones:
// pytorch_model*.bin → model*.safetensors), and every other file of the input folder (config,
// tokenizer, ...) is copied.
func (c *Conversion) Write(ctx context.Context, out string) (*Result, error) {
	if c.folder != "" {
		return c.writeFolder(ctx, out)
	}
	if err := CheckNotInput(c.in, c.r, out, c.run.CalibrationFile); err != nil {
		return nil, err
	}
	create := model.CreateFile(out)
	if c.run.Create != nil {
		create = c.run.Create(out)
	}
	return c.write(ctx, out, create)
}

// digestOf is the XXH3 and size a DigestWriter computed ("" for none).
func digestOf(d checkpoint.DigestWriter) (string, int64) {
	if d == nil {
		return "", 0
	}
	return d.XXH3()
}

// fileReader is the reader of the recorded input when that is the one file it reads (nil for a
// model folder, whose identity covers all of its files).
func (c *Conversion) fileReader() checkpoint.Reader {
	if c.folder != "" {
		return nil
	}
	r := c.r
	for {
		u, ok := r.(interface{ Unwrap() checkpoint.Reader }) // a caller's wrapper (error marking)
		if !ok {
			return r
		}
		r = u.Unwrap()
	}
}

// recordedInput is what the run log records as the input: the model folder (all of its files
// are its identity, and `runs reproduce` converts the folder again), else the checkpoint.
func (c *Conversion) recordedInput() string {
	if c.folder != "" {
		return c.folder
	}
	return c.in
}

// write quantizes through create into the checkpoint at out (a file, or a folder's weights).
func (c *Conversion) write(ctx context.Context, out string, create model.CreateFunc) (*Result, error) {
	var digest checkpoint.DigestWriter
	if c.rec != nil {
		// the output's identity (XXH3) for the run log, computed while it is written (the
		// writer's goroutine, beside the quantization) when the writer can: no second read
		inner := create
		create = func(entries []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
			w, err := inner(entries, md)
			if d := checkpoint.AsDigestWriter(w); err == nil && d != nil && d.HashXXH3() {
				digest = d
			}
			return w, err
		}
	}
	rep, err := model.Quantize(ctx, c.src, create, c.plan, model.Run{Progress: c.run.Progress, Calibration: c.cal})
	if err != nil {
		return nil, err
	}
	rep.FileBytesBefore, rep.FileBytesAfter = FileBytes(c.r, c.in), fileSize(out)
	if ow, err := checkpoint.Open(out); err == nil {
		rep.FileBytesAfter = FileBytes(ow, out) // with the shards of a sharded output
		ow.Close()
	}
	res := &Result{Plan: c.plan, Report: rep}
	if c.rec != nil {
		if sum, n := digestOf(digest); sum != "" {
			c.rec.outHash = runlog.Hashed(runlog.FileRef{Path: out, XXH3: sum, Bytes: n})
		} else {
			c.rec.outHash = runlog.HashFileAsync(out) // beside the validation, which rereads it
		}
	}
	if c.run.Validate {
		v, err := Validate(ctx, c.src, out, c.plan, rep)
		if err != nil {
			removeOutput(c.r, out)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %w", ErrValidation, err)
		}
		res.Validation = v
	}
	if c.rec != nil {
		c.rec.finish(ctx, c, res)
	}
	return res, nil
}

// removeOutput deletes a written output that failed its check: the file, or the index and
// shards of a sharded one.
func removeOutput(_ checkpoint.Reader, out string) {
	if r, err := checkpoint.Open(out); err == nil {
		if sh, ok := r.(interface{ Shards() []string }); ok {
			for _, s := range sh.Shards() {
				os.Remove(s)
			}
		}
		r.Close()
	}
	os.Remove(out)
}

// File converts the checkpoint at in into out: New and Write in one call.
func File(ctx context.Context, in, out string, opts plan.Options, run Run) (*Result, error) {
	r, err := checkpoint.Open(in)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	c, err := New(r, in, opts, run)
	if err != nil {
		return nil, err
	}
	return c.Write(ctx, out)
}

// PlanReader decides what File would do with the open checkpoint r read from in (a file or a
// model folder): the plan New makes, with config.json's architecture and r's tied tensors.
func PlanReader(r checkpoint.Reader, in string, opts plan.Options) (*plan.Plan, error) {
	c, err := New(r, in, opts, Run{})
	if err != nil {
		return nil, err
	}
	return c.Plan(), nil
}

// PlanFile decides what File would do with the checkpoint (or model folder) at path, reading
// only its list of tensors (and module classes, and config.json), not the weights.
func PlanFile(path string, opts plan.Options) (*plan.Plan, error) {
	r, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	c, err := New(r, path, opts, Run{})
	if err != nil {
		return nil, err
	}
	return c.Plan(), nil
}

// CheckNotInput refuses an output path that is one of the files the input is read from: the
// input itself, the shards of a sharded checkpoint (r), or any of others (a calibration file).
// Every file-to-file path runs it: monoquant never overwrites its input.
func CheckNotInput(in string, r checkpoint.Reader, out string, others ...string) error {
	inputs := append([]string{in}, others...)
	if sh, ok := r.(interface{ Shards() []string }); ok {
		inputs = append(inputs, sh.Shards()...)
	}
	for _, p := range inputs {
		if p != "" && SamePath(p, out) {
			return fmt.Errorf("%w %s is one of the input files; choose another output (monoquant never overwrites its input)", ErrOutput, out)
		}
	}
	return nil
}

// SamePath reports whether two paths name the same file (the same absolute path, or the same
// inode through links).
func SamePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == bb {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// FileBytes is the size on disk of a checkpoint: the file at path, plus every shard of a
// sharded one.
func FileBytes(r checkpoint.Reader, path string) int64 {
	n := fileSize(path)
	if sh, ok := r.(interface{ Shards() []string }); ok {
		for _, s := range sh.Shards() {
			n += fileSize(s)
		}
	}
	return n
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
