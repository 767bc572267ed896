package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/monoquant/monoquant/core/abtest"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/filebench"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/runlog"
)

func init() {
	register(&command{
		name:     "bench",
		synopsis: "bench --reference FLOAT [NAME=]CANDIDATE... [--input FILE] [--repeats N] [--samples N] [--seed N] [--objective output-sqnr|load-time] [--json]",
		summary:  "A/B/n comparison of quantized checkpoints of one model: size, weight and output SQNR, load time, a winner only when significant",
		help: `Compares two or more quantized versions of one model against the float checkpoint they
were quantized from (--reference), from the files alone: the command line cannot run a model,
so it measures what a file can tell.

A candidate is a quantized checkpoint, a recipe (.json: quantized from the reference first, into
a temporary file, not recorded in the run log) or run:ID (the output file of a run in the run
log, checked against its recorded digest). NAME= names it (default: the file's name without its extension; run:ID).

For every candidate:
  - its stored tensor bytes and file bytes;
  - the weight SQNR of every quantized tensor (against the reference);
  - the output SQNR of every Linear and Conv2d layer on the same inputs: --samples random normal
    inputs per layer drawn from --seed, or the layer inputs of --input (a checkpoint of one
    tensor per layer, named by the layer, e.g. "classifier.1": Linear [batch, ..., in], Conv2d
    [batch, C, H, W]; every input has the same batch, the samples; layers without one are not
    run). Each sample's SQNR sums the energies of every layer run;
  - the time to open the file and dequantize every quantized tensor to float32, in --repeats
    rounds that run the candidates in a shuffled order (after one untimed round).
A winner is named only when the 95% bootstrap confidence interval of its difference with every
other candidate excludes 0 — mean output SQNR (paired: every candidate sees the same inputs) or
median load time, by --objective; otherwise "no significant difference". The rule is the
engine's (core/abtest), the one Python's monoquant.benchmark applies. Size and weight SQNR have
no sampling noise: their differences are exact and shown as they are.

Examples:
  monoquant bench --reference model.safetensors model.int8.safetensors model.int4.safetensors
  monoquant bench --reference model.safetensors int8=q8.safetensors mixed=mixed.json run:12 --json
  monoquant bench --reference model.safetensors a.safetensors b.safetensors --input acts.safetensors`,
		setup: setupBench,
	})
}

type benchArgs struct {
	reference, input, objective, log string
	samples, repeats, boot           int
	seed                             uint64
	asJSON                           bool
}

func setupBench(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	a := &benchArgs{}
	fs.StringVar(&a.reference, "reference", "", "the float checkpoint `file` the candidates were quantized from (required)")
	fs.StringVar(&a.input, "input", "", "a checkpoint `file` of layer inputs, one tensor per layer (default: random normal inputs)")
	fs.IntVar(&a.samples, "samples", filebench.DefaultSamples, "random input samples per layer")
	fs.IntVar(&a.repeats, "repeats", filebench.DefaultRepeats, "timed rounds of loading and dequantizing every candidate")
	fs.Uint64Var(&a.seed, "seed", 0, "seed of the random inputs, the order of the rounds and the bootstrap")
	fs.IntVar(&a.boot, "boot", abtest.DefaultBoot, "bootstrap resamples")
	fs.StringVar(&a.objective, "objective", "output-sqnr", "what names the winner: output-sqnr (higher mean) or load-time (lower median)")
	fs.StringVar(&a.log, "log", "", "the run log `file` for run:ID candidates (default $MONOQUANT_HOME/runs.sqlite)")
	fs.BoolVar(&a.asJSON, "json", false, "print one JSON document on stdout")
	return func(ctx context.Context, e *env, args []string) error {
		if a.reference == "" {
			return usageErr("bench: --reference is required: the float checkpoint the candidates were quantized from")
		}
		if len(args) < 2 {
			return usageErr("bench: want at least two candidates, got %d", len(args))
		}
		obj := map[string]string{"output-sqnr": filebench.OutputSQNR, "load-time": filebench.LoadTime}[a.objective]
		if obj == "" {
			return usageErr("bench: --objective %q is not output-sqnr or load-time", a.objective)
		}
		if err := checkInputPath("reference", a.reference); err != nil {
			return err
		}
		if a.input != "" {
			if err := checkInputPath("input", a.input); err != nil {
				return err
			}
		}
		tmp, err := os.MkdirTemp("", "monoquant-bench-")
		if err != nil {
			return wrapExit(exitOutput, err, "temporary folder")
		}
		defer os.RemoveAll(tmp)
		var cands []filebench.Candidate
		for i, arg := range args {
			c, err := a.candidate(ctx, arg, tmp, i)
			if err != nil {
				return err
			}
			cands = append(cands, c)
		}
		res, err := filebench.Run(ctx, filebench.Options{Reference: a.reference, Candidates: cands, Inputs: a.input,
			Samples: a.samples, Repeats: a.repeats, Seed: a.seed, Boot: a.boot, Objective: obj})
		if err != nil {
			return benchErr(err)
		}
		for i, arg := range args { // what the user gave, not the temporary file of a recipe
			if _, p := splitName(arg); strings.HasSuffix(strings.ToLower(p), ".json") {
				res.Candidates[i].Path = p
			}
		}
		if a.asJSON {
			return writeJSON(e.stdout, res)
		}
		printBench(e, res)
		return nil
	}
}

// splitName splits NAME=PATH; a file without a name is named by its base name without the
// extension (q8.safetensors: q8), run:ID by itself.
func splitName(arg string) (string, string) {
	if n, p, ok := strings.Cut(arg, "="); ok && n != "" && p != "" && !strings.ContainsRune(n, filepath.Separator) {
		return n, p
	}
	if strings.HasPrefix(arg, "run:") {
		return arg, arg
	}
	base := filepath.Base(arg)
	if ext := filepath.Ext(base); ext != "" && ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return base, arg
}

// candidate resolves one argument to a quantized file.
func (a *benchArgs) candidate(ctx context.Context, arg, tmp string, i int) (filebench.Candidate, error) {
	name, p := splitName(arg)
	if id, ok := strings.CutPrefix(p, "run:"); ok {
		path, err := a.runOutput(ctx, id)
		return filebench.Candidate{Name: name, Path: path}, err
	}
	if err := checkInputPath("candidate", p); err != nil {
		return filebench.Candidate{}, err
	}
	if !strings.HasSuffix(strings.ToLower(p), ".json") {
		return filebench.Candidate{Name: name, Path: p}, nil
	}
	r, err := recipe.Load(p)
	if err != nil {
		return filebench.Candidate{}, wrapExit(exitUsage, err, "candidate %s", name)
	}
	out := filepath.Join(tmp, fmt.Sprintf("candidate-%d.safetensors", i))
	if _, err := convert.File(ctx, a.reference, out, plan.Options{Recipe: r}, convert.Run{}); err != nil {
		return filebench.Candidate{}, classifyCoreErr(fmt.Errorf("candidate %s: quantizing %s with %s: %w", name, a.reference, p, err))
	}
	return filebench.Candidate{Name: name, Path: out}, nil
}

// runOutput is the output file of a logged run, checked against its recorded hash.
func (a *benchArgs) runOutput(ctx context.Context, id string) (string, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 1 {
		return "", usageErr("bench: run:%s is not a run id (run:N, N >= 1)", id)
	}
	path := a.log
	if path == "" {
		if path, err = runlog.DefaultPath(); err != nil {
			return "", fail(exitInput, "%v", err)
		}
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return "", fail(exitInput, "run:%d: no run log at %s", n, path)
	}
	l, err := runlog.Open(ctx, path)
	if err != nil {
		return "", wrapExit(exitInput, err, "")
	}
	defer l.Close()
	r, err := l.Get(ctx, n)
	if err != nil {
		return "", wrapExit(exitInput, err, "run:%d", n)
	}
	if r.Output.Path == "" {
		return "", fail(exitInput, "run:%d wrote no file (an in-memory quantization or a search trial): give its recipe instead", n)
	}
	got, err := runlog.HashLike(r.Output.Path, r.Output)
	if err != nil {
		return "", wrapExit(exitInput, err, "run:%d's output", n)
	}
	if same, _ := runlog.SameContent(got, r.Output); !same {
		return "", fail(exitInput, "run:%d's output %s has changed since the run (now %s, recorded %s)", n, r.Output.Path, got.Identity(), r.Output.Identity())
	}
	return r.Output.Path, nil
}

func benchErr(err error) error {
	switch {
	case errors.Is(err, filebench.ErrOption):
		return wrapExit(exitUsage, err, "")
	case errors.Is(err, filebench.ErrBench), errors.Is(err, abtest.ErrInvalid):
		return wrapExit(exitFormat, err, "")
	case errors.Is(err, context.Canceled):
		return err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return wrapExit(exitInput, err, "")
	}
	return classifyCoreErr(err)
}

func printBench(e *env, res *filebench.Result) {
	w := humanOut(e.stdout)
	inputs := fmt.Sprintf("%d random normal samples per layer (seed %d)", res.Samples, res.Seed)
	if res.Inputs != "random" {
		inputs = fmt.Sprintf("%d samples from %s", res.Samples, res.Inputs)
	}
	fmt.Fprintf(w, "Reference %s\nInputs    %s; %s run\nTiming    %d interleaved rounds of loading and dequantizing each candidate\n\n",
		res.Reference, inputs, plural(res.LayersRun, "layer", "layers"), res.Repeats)
	t := newTable("candidate", "tensor bytes", "weight SQNR", "output SQNR", "95% CI", "load median", "95% CI").alignRight(1, 2, 3, 5)
	for i, c := range res.Candidates {
		out, outCI := dB(float64(c.OutputSQNR)), "-"
		if res.Output != nil {
			est := res.Output.Estimates[i]
			out, outCI = fmt.Sprintf("%.2f dB", est.Value), fmt.Sprintf("[%.2f, %.2f]", est.Low, est.High)
		}
		l := res.Load.Estimates[i]
		t.add(c.Name, humanBytes(c.TensorBytes), dB(float64(c.WeightSQNR)), out, outCI, ms(l.Value), fmt.Sprintf("[%s, %s]", ms(l.Low), ms(l.High)))
	}
	t.write(w)
	fmt.Fprintln(w)
	lt := newTable("layer", "type", "candidate", "format", "weight SQNR", "output SQNR (all samples)").alignRight(4, 5)
	for li := range res.Candidates[0].Layers {
		for _, c := range res.Candidates {
			l := c.Layers[li]
			out := "not run"
			if l.Ran {
				out = dB(float64(l.OutputSQNR))
			}
			lt.add(l.Layer, l.LayerType, c.Name, l.Format, dB(float64(l.WeightSQNR)), out)
		}
	}
	lt.write(w)
	fmt.Fprintln(w)
	if res.Output != nil {
		fmt.Fprintf(w, "Output SQNR  %s\n", res.Output.Verdict)
	}
	fmt.Fprintf(w, "Load time    %s\n", res.Load.Verdict)
	by := map[string]string{filebench.OutputSQNR: "output SQNR", filebench.LoadTime: "load time"}[res.Objective]
	if res.Winner != "" {
		fmt.Fprintf(w, "Winner       %s (by %s)\n", res.Winner, by)
	} else {
		fmt.Fprintf(w, "Winner       none: no significant difference in %s\n", by)
	}
}

func ms(s float64) string { return fmt.Sprintf("%.3f ms", s*1e3) }
