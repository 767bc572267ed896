package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/runlog"
)

func init() {
	register(&command{
		name:     "quantize",
		synopsis: "quantize --model IN --bits 8|4|16 [--out OUT] [flags]",
		summary:  "quantize a checkpoint's weights to INT8, INT4, FP16 or BF16",
		help: `Quantizes the weights of the selected layer types of a checkpoint and writes a quantized
checkpoint (docs/FORMAT.md): <name> holds the integer (or half) values, <name>.scale and, for
asymmetric schemes, <name>.zero_point the parameters; every other tensor is copied as it is and
the quantization config is stored in the file's metadata.

IN is a torch .pt/.pth/.bin file (a state_dict or a whole pickled nn.Module), a .safetensors
file, a sharded *.safetensors.index.json, or a Hugging Face model folder (config.json beside the
weights or their shards): a folder gives a folder, with the same shard layout (.bin shards
become .safetensors), every other file copied, and the layers config.json's architecture
implies (GPT-2's Conv1D, quantized per output channel on axis 1). Layer types come from the module classes when the
file holds a pickled module, else from tensor names and shapes. OUT defaults to the input's
name with the format as suffix, next to it, as safetensors unless --format pt says otherwise
(model.pt → model.int8.safetensors: plain tensors that load without unpickling); the input is never
overwritten and nothing appears at OUT unless the whole run succeeds.

--bits 8 is INT8 per-channel, 4 is INT4 group-wise (--group-size values per scale along each
row), 16 is FP16 (or BF16 with --dtype bf16). Without --calibration the run is weight-only
(dynamic): activations stay float. With --calibration FILE (a .pt or .safetensors mapping layer
names, or "<layer>.<batch>", to recorded input activations) the activation qparams of each layer
are computed by --observer and stored in the config (static mode).

After writing, the output is reopened and checked ("Weights validated"): every tensor and the
config, the SQNR of every quantized tensor recomputed from the file, and each Linear and Conv2d
layer run alone on a random input with the original and the dequantized weights (the "output
SQNR" column). That checks every weight, not the model: a checkpoint holds no forward pass, so
the whole model's outputs are compared only where the model runs (quantize it from Python).

Tensors that share one storage in a torch file (tied parameters: GPT-2's embedding and
lm_head) are quantized once and stored once; the config's "aliases" name the others, and
dequantize and Python's load tie them again (docs/HF-FOLDERS.md).

Examples:
  monoquant quantize --model model.pt --bits 8
  monoquant quantize --model model.safetensors --bits 4 --group-size 64 --out model.q4.safetensors
  monoquant quantize --model model.pt --bits 8 --layers linear --skip classifier --skip '*.lm_head'
  monoquant quantize --model model.pt --bits 16 --dtype bf16 --format safetensors
  monoquant quantize --model model.pt --bits 8 --calibration acts.safetensors --observer histogram
  monoquant quantize --model model.pt --bits 8 --json --quiet > report.json`,
		setup: setupQuantize,
	})
}

type quantizeArgs struct {
	model, out, calibration, recipe string
	format, bits, scheme            *choiceFlag
	observer, dtype, activations    *choiceFlag
	nonFinite, method               *choiceFlag
	groupSize                       int
	groupFallback                   bool
	layers, skip                    listFlag
	asJSON, quiet, noLog            bool
	set                             map[string]bool // flags given on the command line
}

// optionFlags registers the flags that choose what is quantized and how; quantize and plan share
// them. No flag has a default of its own: an unset flag leaves the choice to core (core/recipe),
// whose defaults the help text reads.
func optionFlags(fs *flag.FlagSet, a *quantizeArgs) {
	a.bits = newChoice("", "8", "4", "16")
	a.scheme = newChoice("", recipe.Spellings("scheme")...)
	a.observer = newChoice("", recipe.Spellings("observer")...)
	a.dtype = newChoice("", recipe.Spellings("dtype")...)
	a.activations = newChoice("", recipe.Spellings("activations")...)
	a.nonFinite = newChoice("", "reject", "clamp")
	a.method = newChoice("", recipe.Spellings("method")...)
	a.layers.choices = layerChoices()
	fs.StringVar(&a.model, "model", "", "the `checkpoint` (.pt/.pth/.bin, .safetensors, .safetensors.index.json)")
	fs.Var(a.bits, "bits", fmt.Sprintf("`bits` per weight: 8 (INT8 per-channel), 4 (INT4 group-wise) or 16 (FP16/BF16); default %d", recipe.DefaultBits))
	fs.Var(a.dtype, "dtype", "the format by name: int8, int4, fp16 or bf16 (--bits 16 --dtype bf16 is BF16)")
	fs.Var(a.scheme, "scheme", fmt.Sprintf("integer `scheme`: symmetric or asymmetric; default %s", recipe.DefaultScheme))
	fs.IntVar(&a.groupSize, "group-size", 0, fmt.Sprintf("INT4 `values` per scale along a row; default %d, which falls back per tensor where it does not divide a row (a group size you give must divide every row, unless --group-fallback)", recipe.DefaultGroupSize))
	fs.BoolVar(&a.groupFallback, "group-fallback", false, "let a tensor whose rows the group size does not divide use the largest divisor from min(16, the size) up to it, else INT8 per-channel (with a warning)")
	fs.Var(&a.layers, "layers", "layer `types` to quantize, comma-separated or repeated: linear, conv2d, lstm, embedding, conv1d, conv3d, gru, rnn (default linear,conv2d,lstm)")
	fs.Var(&a.skip, "skip", "leave in float what a `pattern` selects: a module (and everything below it) or a tensor by name, or a glob over dotted names ('classifier.*', '*.lm_head'); repeatable")
	fs.StringVar(&a.recipe, "recipe", "", "a JSON `file` of per-layer rules, first match wins (docs/RECIPES.md); the other flags are the base its rules start from")
	fs.Var(a.activations, "activations", "activation `mode`: none (weight-only), dynamic (per batch at run time) or static (calibrated; needs --calibration); default static with --calibration, else dynamic for INT8 and none for the other formats")
	fs.Var(a.observer, "observer", fmt.Sprintf("static activation `observer`: minmax, moving_average or histogram; default %s", recipe.DefaultObserver))
	fs.StringVar(&a.calibration, "calibration", "", "a .pt/.safetensors `file` of recorded activations (layer name → input tensor): static qparams")
	fs.Var(a.nonFinite, "nonfinite", "NaN/Inf in a weight: reject (fail naming the tensor; the default) or clamp")
	fs.Var(a.method, "method", fmt.Sprintf("how weights become integers: %s (docs/methods.md; gptq needs each layer's input Hessian, which only Python's calibration and the C/Go APIs give); default %s", strings.Join(method.Names(), ", "), recipe.DefaultMethod))
}

func setupQuantize(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	a := &quantizeArgs{format: newChoice("", formatPT, formatSafetensors)}
	optionFlags(fs, a)
	fs.StringVar(&a.out, "out", "", "output `file` (.safetensors, .pt, .pth or .bin); default: next to IN, e.g. model.int8.safetensors")
	fs.Var(a.format, "format", "output `format`: pt or safetensors (default: OUT's extension, else safetensors)")
	fs.BoolVar(&a.asJSON, "json", false, "print the report as one JSON document on stdout")
	fs.BoolVar(&a.quiet, "quiet", false, "no progress bar")
	fs.BoolVar(&a.noLog, "no-log", false, "do not record this run in the run log (MONOQUANT_LOG=0 turns it off everywhere; see 'monoquant runs')")
	return func(ctx context.Context, e *env, pos []string) error {
		a.set = map[string]bool{}
		fs.Visit(func(f *flag.Flag) { a.set[f.Name] = true })
		return runQuantize(ctx, e, a, pos)
	}
}

func layerChoices() []string {
	var out []string
	for _, t := range []plan.LayerType{plan.Linear, plan.Conv2d, plan.LSTM, plan.Embedding, plan.Conv1d, plan.Conv3d, plan.GRU, plan.RNN} {
		out = append(out, string(t))
	}
	return out
}

// options turns the flags that were given into core options; every default and every check of
// what goes with what is core's.
func (a *quantizeArgs) options() (plan.Options, error) {
	o := plan.Options{Skip: a.skip.values, Scheme: a.scheme.value, DType: a.dtype.value, Activations: a.activations.value,
		Observer: a.observer.value, Calibrated: a.calibration != "", Method: a.method.value}
	if a.bits.value != "" {
		o.Bits, _ = strconv.Atoi(a.bits.value)
	}
	if a.set["group-size"] {
		if err := recipe.CheckGroupSize(a.groupSize); err != nil {
			return o, usageErr("%s", flagWords(err.Error()))
		}
		o.Spec.GroupSize = a.groupSize
	}
	if a.set["group-fallback"] {
		fb := a.groupFallback
		o.GroupFallback = &fb
	}
	if a.nonFinite.value == "clamp" {
		o.Spec.NonFinite = quant.ClampNonFinite
	}
	for _, l := range a.layers.values {
		t, err := plan.ParseLayerType(l)
		if err != nil {
			return o, usageErr("--layers: %v", err)
		}
		o.LayerTypes = append(o.LayerTypes, t)
	}
	if o.Method == "gptq" {
		// (a capability of this front end: it has no forward pass to accumulate Hessians with)
		return o, usageErr("--method gptq needs each layer's input Hessian XᵀX from calibration data, which the command line cannot compute: use Python (monoquant.quantize(model, method=\"gptq\", calibration_data=...)) or --method rtn, mse or hqq")
	}
	if a.recipe != "" {
		r, err := recipe.Load(a.recipe)
		if err != nil {
			return o, wrapExit(exitUsage, err, "")
		}
		o.Recipe = r
	}
	return o, nil
}

// formatTag names the output after what the plan quantizes: the format the options ask for
// (int8, int4, fp16, bf16), or with a recipe the one format of every quantized tensor, else
// "mixed".
func formatTag(p *plan.Plan, withRecipe bool) string {
	if !withRecipe {
		return p.Recipe.Rules[len(p.Recipe.Rules)-1].DType
	}
	tag := ""
	for _, t := range p.Quantized() {
		f := t.Spec.Format.String()
		if tag != "" && tag != f {
			return "mixed"
		}
		tag = f
	}
	return tag
}

// openFloatInput takes the input from --model or the one positional argument, turns the flags
// into options and opens the input, refusing one monoquant already quantized (quantize, plan).
func openFloatInput(verb string, a *quantizeArgs, pos []string) (checkpoint.Reader, plan.Options, error) {
	switch {
	case len(pos) == 1 && a.model == "":
		a.model = pos[0]
	case len(pos) > 0:
		return nil, plan.Options{}, usageErr("%s: unexpected argument %q (the input goes in --model)", verb, pos[0])
	case a.model == "":
		return nil, plan.Options{}, usageErr("%s: --model is required (run 'monoquant %s --help')", verb, verb)
	}
	opts, err := a.options()
	if err != nil {
		return nil, opts, err
	}
	for _, in := range [][2]string{{"input", a.model}, {"calibration file", a.calibration}} {
		if in[1] != "" {
			if err := checkInputPath(in[0], in[1]); err != nil {
				return nil, opts, err
			}
		}
	}
	r, err := openInput("input", a.model)
	if err != nil {
		return nil, opts, err
	}
	if model.IsQuantized(r.Metadata()) {
		r.Close()
		return nil, opts, fail(exitFormat, "input %s is already quantized by monoquant; dequantize it first ('monoquant dequantize %s')", a.model, a.model)
	}
	return r, opts, nil
}

func runQuantize(ctx context.Context, e *env, a *quantizeArgs, pos []string) error {
	r, opts, err := openFloatInput("quantize", a, pos)
	if err != nil {
		return err
	}
	defer r.Close()
	res, err := quantizeFile(ctx, e, r, quantizeJob{
		model: a.model, out: a.out, format: a.format.value, calibration: a.calibration,
		opts: opts, quiet: a.quiet, log: !a.noLog && runlog.Enabled(),
	})
	if err != nil {
		return err
	}
	if a.asJSON {
		return writeJSON(e.stdout, res)
	}
	res.print(e)
	return nil
}

// quantizeJob is one quantization of a file, from the flags or from a logged run (runs
// reproduce).
type quantizeJob struct {
	model, out, format, calibration string
	opts                            plan.Options
	quiet                           bool
	log                             bool   // record the run in the run log
	logPath                         string // "" for runlog.DefaultPath
}

// quantizeFile runs core's pipeline (plan, calibrate, quantize, validate) on the open input r
// and records the run.
func quantizeFile(ctx context.Context, e *env, r checkpoint.Reader, j quantizeJob) (*quantizeResult, error) {
	a := struct{ model, out, calibration string }{j.model, j.out, j.calibration}
	opts := j.opts
	var bar *progress // drawn once the output is known; the pipeline reports while writing
	run := convert.Run{Create: createOutput, Validate: true, CalibrationFile: a.calibration,
		Progress: func(p model.Progress) { bar.update(p.TensorsDone, p.TensorsTotal, p.BytesDone, p.BytesTotal) }}
	if j.log {
		run.Log = &convert.Log{Entry: "cli", Path: j.logPath}
	}
	if a.calibration != "" {
		cr, err := openInput("calibration file", a.calibration)
		if err != nil {
			return nil, err
		}
		defer cr.Close()
		run.Calibration = cr
	}
	// The one pipeline (core/convert), in two steps: the plan names the output.
	conv, err := convert.New(r, a.model, opts, run)
	if err != nil {
		return nil, classifyCoreErr(err)
	}
	qp := conv.Plan()
	format := j.format
	if format == "" && a.out == "" {
		format = formatSafetensors // the default output: no pickle, opens anywhere
	}
	out, format, err := resolveOutput(a.model, a.out, format, formatTag(qp, opts.Recipe != nil))
	if err != nil {
		return nil, err
	}
	if err := checkNotInput(a.model, r, out, a.calibration); err != nil {
		return nil, err
	}
	if run.Log != nil {
		run.Log.OutputFormat = format
	}
	bar = newProgress(e, j.quiet, "quantizing")
	done, err := conv.Write(ctx, out)
	if err != nil {
		bar.abort()
		return nil, classifyCoreErr(err)
	}
	bar.finish()
	res := &quantizeResult{
		Input: a.model, Output: out, OutputFormat: format, Format: formatTag(qp, opts.Recipe != nil),
		Mode: model.PlanConfig(qp).Mode, Report: done.Report, Validation: done.Validation, Recipe: qp.Recipe, ShowRules: opts.Recipe != nil,
		config: model.PlanConfig(qp), RunID: done.RunID, RunLog: done.RunLog, LogWarning: done.LogWarning,
	}
	if f := res.Format; f != "mixed" {
		res.Bits = map[string]int{"int8": 8, "int4": 4, "fp16": 16, "bf16": 16}[f]
	}
	if res.Mode == "dynamic" {
		res.Note = "no --calibration given: activations are quantized per batch at run time (dynamic)"
	}
	if res.LogWarning != "" {
		fmt.Fprintf(e.stderr, "monoquant: warning: %s\n", res.LogWarning)
	}
	return res, nil
}
