package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/quant"
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
file or a sharded *.safetensors.index.json. Layer types come from the module classes when the
file holds a pickled module, else from tensor names and shapes. OUT defaults to the input's
name with the format as suffix, next to it, as safetensors unless --format pt says otherwise
(model.pt → model.int8.safetensors: plain tensors that load without unpickling); the input is never
overwritten and nothing appears at OUT unless the whole run succeeds.

--bits 8 is INT8 per-channel, 4 is INT4 group-wise (--group-size values per scale along each
row), 16 is FP16 (or BF16 with --dtype bf16). Without --calibration the run is weight-only
(dynamic): activations stay float. With --calibration FILE (a .pt or .safetensors mapping layer
names, or "<layer>.<batch>", to recorded input activations) the activation qparams of each layer
are computed by --observer and stored in the config (static mode).

After writing, the output is reopened and checked: every tensor and the config, the SQNR of
every quantized tensor recomputed from the file, and each Linear and Conv2d layer run on a
random input with the original and the dequantized weights (the "output SQNR" column).

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
	model, out, calibration string
	format, bits, scheme    *choiceFlag
	method                  *choiceFlag
	observer, dtype         *choiceFlag
	nonFinite               *choiceFlag
	groupSize               int
	layers, skip            listFlag
	asJSON, quiet           bool
	set                     map[string]bool // flags given on the command line
}

func setupQuantize(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	a := &quantizeArgs{
		format:    newChoice("", formatPT, formatSafetensors),
		bits:      newChoice("8", "8", "4", "16"),
		scheme:    newChoice("", "symmetric", "asymmetric", "sym", "asym"),
		observer:  newChoice("histogram", "minmax", "moving_average", "histogram"),
		dtype:     newChoice("fp16", "fp16", "bf16"),
		nonFinite: newChoice("reject", "reject", "clamp"),
		method:    newChoice(string(method.Default), method.Names()...),
	}
	a.layers.choices = layerChoices()
	fs.StringVar(&a.model, "model", "", "the `checkpoint` to quantize (.pt/.pth/.bin, .safetensors, .safetensors.index.json)")
	fs.StringVar(&a.out, "out", "", "output `file` (.safetensors, .pt, .pth or .bin); default: next to IN, e.g. model.int8.safetensors")
	fs.Var(a.format, "format", "output `format`: pt or safetensors (default: OUT's extension, else safetensors)")
	fs.Var(a.bits, "bits", "`bits` per weight: 8 (INT8 per-channel), 4 (INT4 group-wise) or 16 (FP16/BF16)")
	fs.Var(a.scheme, "scheme", "integer `scheme`: symmetric or asymmetric (when not given: asymmetric for --method hqq, else symmetric)")
	fs.Var(a.method, "method", "how weights become integers: rtn (round to nearest), mse (clip search), hqq (half-quadratic zero points; asymmetric); gptq needs calibration Hessians and is not available here")
	fs.IntVar(&a.groupSize, "group-size", 128, "INT4 `values` per scale along a row (--bits 4 only)")
	fs.Var(&a.layers, "layers", "layer `types` to quantize, comma-separated or repeated: linear, conv2d, lstm, embedding, conv1d, conv3d, gru, rnn (default linear,conv2d,lstm)")
	fs.Var(&a.skip, "skip", "leave alone the modules or tensors a `pattern` names: exact name, prefix or glob; repeatable")
	fs.Var(a.observer, "observer", "activation `observer` for --calibration: minmax, moving_average or histogram")
	fs.StringVar(&a.calibration, "calibration", "", "a .pt/.safetensors `file` of recorded activations (layer name → input tensor): static qparams")
	fs.Var(a.dtype, "dtype", "16-bit `type` for --bits 16: fp16 or bf16")
	fs.Var(a.nonFinite, "nonfinite", "NaN/Inf in a weight: reject (fail naming the tensor) or clamp")
	fs.BoolVar(&a.asJSON, "json", false, "print the report as one JSON document on stdout")
	fs.BoolVar(&a.quiet, "quiet", false, "no progress bar")
	return func(ctx context.Context, e *env, pos []string) error {
		a.set = map[string]bool{}
		fs.Visit(func(f *flag.Flag) { a.set[f.Name] = true })
		return runQuantize(ctx, e, a, pos)
	}
}

func layerChoices() []string {
	var out []string
	for _, t := range []model.LayerType{model.Linear, model.Conv2d, model.LSTM, model.Embedding, model.Conv1d, model.Conv3d, model.GRU, model.RNN} {
		out = append(out, string(t))
	}
	return out
}

// options turns the flags into core options, refusing combinations that would be silently
// ignored (a group size for INT8, an observer without calibration data).
func (a *quantizeArgs) options() (model.Options, error) {
	bits, _ := strconv.Atoi(a.bits.value)
	if a.set["group-size"] && bits != 4 {
		return model.Options{}, usageErr("--group-size applies to --bits 4 only")
	}
	if a.groupSize < 1 {
		return model.Options{}, usageErr("--group-size %d must be a positive number", a.groupSize)
	}
	if a.set["dtype"] && bits != 16 {
		return model.Options{}, usageErr("--dtype applies to --bits 16 only")
	}
	if a.set["scheme"] && bits == 16 {
		return model.Options{}, usageErr("--scheme applies to the integer formats (--bits 8 or 4) only")
	}
	if a.set["observer"] && a.calibration == "" {
		return model.Options{}, usageErr("--observer chooses the activation observer and needs --calibration (weights always use min/max)")
	}
	m, err := method.Parse(a.method.value)
	if err != nil {
		return model.Options{}, usageErr("--method: %v", err)
	}
	if m.NeedsHessian() {
		return model.Options{}, usageErr("--method %s needs each layer's input Hessian XᵀX from calibration data, which the CLI cannot compute without running the model: quantize from Python or Go (model.Run.Hessians), or use --method mse or hqq, which need no data", m)
	}
	o := model.Options{Bits: bits, BFloat16: a.dtype.value == "bf16", Skip: a.skip.values, Observer: a.observer.value, Method: string(m)}
	if a.set["scheme"] { // unset: core's default for the bits and method
		switch a.scheme.value {
		case "asymmetric", "asym":
			o.Spec.Scheme = quant.Asymmetric
		default:
			o.Spec.Scheme = quant.Symmetric
		}
	}
	if bits == 4 {
		o.Spec.GroupSize = a.groupSize
	}
	if a.nonFinite.value == "clamp" {
		o.Spec.NonFinite = quant.ClampNonFinite
	}
	for _, l := range a.layers.values {
		t, err := model.ParseLayerType(l)
		if err != nil {
			return o, usageErr("--layers: %v", err)
		}
		o.LayerTypes = append(o.LayerTypes, t)
	}
	if a.calibration != "" {
		o.Mode = model.Static
	}
	return o, nil
}

func runQuantize(ctx context.Context, e *env, a *quantizeArgs, pos []string) error {
	switch {
	case len(pos) == 1 && a.model == "":
		a.model = pos[0]
	case len(pos) > 0:
		return usageErr("quantize: unexpected argument %q (the input goes in --model)", pos[0])
	case a.model == "":
		return usageErr("quantize: --model is required (run 'monoquant quantize --help')")
	}
	opts, err := a.options()
	if err != nil {
		return err
	}
	spec, err := model.SpecForBits(opts.Bits, opts.BFloat16)
	if err != nil {
		return classifyCoreErr(err)
	}
	if err := checkInputPath("input", a.model); err != nil {
		return err
	}
	format := a.format.value
	if format == "" && a.out == "" {
		format = formatSafetensors // the default output: no pickle, opens anywhere
	}
	out, format, err := resolveOutput(a.model, a.out, format, formatTag(spec.Format))
	if err != nil {
		return err
	}
	if a.calibration != "" {
		if err := checkInputPath("calibration file", a.calibration); err != nil {
			return err
		}
	}

	r, err := openInput("input", a.model)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := checkNotInput(r, out, a.calibration); err != nil {
		return err
	}
	if model.IsQuantized(r.Metadata()) {
		return fail(exitFormat, "input %s is already quantized by monoquant; dequantize it first ('monoquant dequantize %s')", a.model, a.model)
	}
	plan, err := model.NewPlan(r.Entries(), r.ModuleTypes(), opts)
	if err != nil {
		return classifyCoreErr(wrapPlanErr(err, a.model))
	}
	run := model.Run{}
	if opts.Mode == model.Static {
		cal, err := model.NewCalibration(plan)
		if err != nil {
			return classifyCoreErr(err)
		}
		cr, err := openInput("calibration file", a.calibration)
		if err != nil {
			return err
		}
		err = cal.CalibrateReader(cr)
		cr.Close()
		if err != nil {
			return classifyCoreErr(err)
		}
		run.Calibration = cal
	}

	bar := newProgress(e, a.quiet, "quantizing")
	run.Progress = func(p model.Progress) { bar.update(p.TensorsDone, p.TensorsTotal, p.BytesDone, p.BytesTotal) }
	rep, err := model.Quantize(ctx, r, createOutput(out), plan, run)
	if err != nil {
		bar.abort()
		return classifyCoreErr(err)
	}
	bar.finish()
	rep.FileBytesBefore = fileBytes(r, a.model)
	if st, err := os.Stat(out); err == nil {
		rep.FileBytesAfter = st.Size()
	}

	v, err := validateOutput(ctx, r, out, plan, rep)
	if err != nil {
		os.Remove(out)
		if exitCode(err) == exitInterrupted {
			return err
		}
		return wrapExit(exitValidation, err, "the written output failed validation and was removed")
	}
	res := &quantizeResult{
		Input: a.model, Output: out, OutputFormat: format, Bits: opts.Bits, Format: spec.Format.String(),
		Mode: plan.Config().Mode, Report: rep, Validation: v,
	}
	if opts.Mode != model.Static {
		res.Note = "weight-only (dynamic): no --calibration given, activations stay float"
	}
	if a.asJSON {
		return writeJSON(e.stdout, res)
	}
	res.print(e)
	return nil
}

func wrapPlanErr(err error, path string) error {
	return fmt.Errorf("%s: %w", path, err)
}
