package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint/atomicfile"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/filebench"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/search"
)

func init() {
	register(&command{
		name:     "search",
		synopsis: "search --reference FLOAT [--trials N] [--objective output-sqnr|weight-sqnr] [--formats ...] [--limits JSON] [--recipes-out DIR] [--state FILE] [--resume FILE] [--json]",
		summary:  "evolve per-layer recipes toward the front of SQNR against size, from the checkpoint alone",
		help: `Searches per-layer recipes (format, INT4 group size, scheme, method per layer) for the
Pareto front of two objectives a file can measure: the SQNR of the quantized model against
--reference (higher is better) and its size (the stored tensor bytes, scales included, lower
is better). The candidates come from the engine's NSGA-II search (core/search, the one
Python's monoquant.search and the C ABI's mq_search_* drive); each trial quantizes the
reference with the candidate recipe into a temporary file and measures it as 'monoquant bench'
does (core/filebench), over every layer the engine quantizes by default:
  output-sqnr  every Linear and Conv2d layer run on --samples random normal inputs (or the
               layer inputs of --input), output energies summed over layers and samples;
  weight-sqnr  the weights' energies summed over the layers.
These are proxies of accuracy, not accuracy: the command line cannot run the model. To search
on your own metric (accuracy, perplexity) and latency, use Python's monoquant.search.

--recipes-out writes every recipe of the front as DIR/trial-N.json, for
'monoquant quantize --recipe'. --state rewrites the engine's state after every trial;
--resume continues a search from it (its space and objectives; up to --trials in total).

Examples:
  monoquant search --reference model.safetensors --trials 40 --recipes-out front/
  monoquant search --reference model.safetensors --formats int8,int4 --limits '[{"match": "lm_head", "min_bits": 8}]' --json`,
		setup: setupSearch,
	})
}

type searchArgs struct {
	reference, input, objective, formats, groupSizes, schemes, limits, recipesOut, state, resume string
	trials, population, samples                                                                  int
	seed                                                                                         uint64
	asJSON                                                                                       bool
}

func setupSearch(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	a := &searchArgs{}
	fs.StringVar(&a.reference, "reference", "", "the float checkpoint `file` to quantize (required)")
	fs.IntVar(&a.trials, "trials", 40, "candidates to evaluate (in total, counting a resumed search's)")
	fs.Uint64Var(&a.seed, "seed", 0, "the engine's seed and the random inputs'")
	fs.StringVar(&a.objective, "objective", "output-sqnr", "the quality objective: output-sqnr or weight-sqnr")
	fs.StringVar(&a.formats, "formats", "", "formats the genes may take, of skip,fp16,bf16,int8,int4 (default skip,fp16,int8,int4)")
	fs.StringVar(&a.groupSizes, "group-sizes", "", "INT4 group sizes, e.g. 32,64,128 (the default)")
	fs.StringVar(&a.schemes, "schemes", "", "integer schemes: symmetric,asymmetric (the default)")
	fs.StringVar(&a.limits, "limits", "", `per-layer limits as JSON, first match wins: '[{"match": "lm_head", "min_bits": 8}]'`)
	fs.IntVar(&a.population, "population", 0, "population size (default 16)")
	fs.IntVar(&a.samples, "samples", filebench.DefaultSamples, "random input samples per layer (output-sqnr)")
	fs.StringVar(&a.input, "input", "", "a checkpoint `file` of layer inputs, as for bench (default: random inputs)")
	fs.StringVar(&a.recipesOut, "recipes-out", "", "write the front's recipes to this `folder` (trial-N.json)")
	fs.StringVar(&a.state, "state", "", "rewrite the engine's state to this `file` after every trial")
	fs.StringVar(&a.resume, "resume", "", "continue the search saved in this state `file`")
	fs.BoolVar(&a.asJSON, "json", false, "print the front (and every trial) as one JSON document on stdout")
	return func(ctx context.Context, e *env, args []string) error {
		if len(args) != 0 {
			return usageErr("search: unexpected argument %q (the model is --reference)", args[0])
		}
		return runSearch(ctx, e, a)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type searchOutput struct {
	Reference string          `json:"reference"`
	Objective string          `json:"objective"`
	Trials    int             `json:"trials"`
	Front     []search.Result `json:"front"`
	All       []search.Result `json:"trials_all"`
	Recipes   []string        `json:"recipe_files,omitempty"`
}

func runSearch(ctx context.Context, e *env, a *searchArgs) error {
	if a.reference == "" {
		return usageErr("search: --reference is required: the float checkpoint to search recipes for")
	}
	obj := map[string]string{"output-sqnr": "output_sqnr", "weight-sqnr": "weight_sqnr"}[a.objective]
	if obj == "" {
		return usageErr("search: --objective %q is not output-sqnr or weight-sqnr", a.objective)
	}
	if a.trials < 1 || a.trials > 100000 {
		return usageErr("search: --trials %d is not in [1, 100000]", a.trials)
	}
	if err := checkInputPath("reference", a.reference); err != nil {
		return err
	}
	p, err := convert.PlanFile(a.reference, plan.Options{})
	if err != nil {
		return classifyCoreErr(err)
	}
	var tensors []filebench.Tensor
	runnable := false
	for _, t := range p.Tensors {
		if t.Action == plan.ActionQuantize {
			tensors = append(tensors, filebench.Tensor{Name: t.Name, Layer: t.Layer, LayerType: string(t.LayerType)})
			runnable = runnable || t.LayerType == plan.Linear || t.LayerType == plan.Conv2d
		}
	}
	var eng *search.Engine
	if a.resume != "" {
		b, err := os.ReadFile(a.resume)
		if err != nil {
			return fail(exitInput, "search: --resume: %v", err)
		}
		if eng, err = search.Load(b); err != nil {
			return wrapExit(exitFormat, err, "search: --resume %s", a.resume)
		}
		obj = eng.Space().Objectives[0].Name
	} else {
		layers, err := search.PlanLayers(p)
		if err != nil {
			return wrapExit(exitNothing, err, "search: %s", a.reference)
		}
		sp := &search.Space{Layers: layers, Objectives: []search.Objective{{Name: obj, Goal: "max"}, {Name: "size", Goal: "min"}},
			Formats: splitList(a.formats), Schemes: splitList(a.schemes), Population: a.population}
		for _, g := range splitList(a.groupSizes) {
			n, err := strconv.Atoi(g)
			if err != nil {
				return usageErr("search: --group-sizes: %q is not a number", g)
			}
			sp.GroupSizes = append(sp.GroupSizes, n)
		}
		if a.limits != "" {
			if err := json.Unmarshal([]byte(a.limits), &sp.Limits); err != nil {
				return usageErr("search: --limits is not a JSON list of limits: %v", err)
			}
		}
		if eng, err = search.New(sp, a.seed); err != nil {
			return wrapExit(exitUsage, err, "search")
		}
	}
	if obj == "output_sqnr" && !runnable {
		return usageErr("search: no Linear or Conv2d layer to run for output-sqnr in %s: use --objective weight-sqnr", a.reference)
	}
	tmp, err := os.MkdirTemp("", "monoquant-search-")
	if err != nil {
		return wrapExit(exitOutput, err, "temporary folder")
	}
	defer os.RemoveAll(tmp)
	done := 0
	for _, t := range eng.Trials() {
		if t.Status != search.StatusPending {
			done++
		}
	}
	for ; done < a.trials; done++ {
		c := eng.Ask()
		vals, err := scoreTrial(ctx, a, c, tensors, tmp)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if ferr := eng.Fail(c.Trial, err.Error()); ferr != nil {
				return wrapExit(exitInternal, ferr, "search")
			}
		} else if err := eng.Tell(c.Trial, map[string]float64{obj: vals[0], "size": vals[1]}); err != nil {
			return wrapExit(exitInternal, err, "search")
		}
		if a.state != "" {
			if err := saveState(eng, a.state); err != nil {
				return wrapExit(exitOutput, err, "search: --state %s", a.state)
			}
		}
	}
	out := searchOutput{Reference: a.reference, Objective: obj, Trials: done, Front: eng.Front(), All: eng.Trials()}
	if a.recipesOut != "" {
		if err := os.MkdirAll(a.recipesOut, 0o755); err != nil {
			return wrapExit(exitOutput, err, "--recipes-out")
		}
		for _, r := range out.Front {
			path := filepath.Join(a.recipesOut, fmt.Sprintf("trial-%d.json", r.Trial))
			if err := writeJSONFile(path, r.Recipe); err != nil {
				return wrapExit(exitOutput, err, "--recipes-out")
			}
			out.Recipes = append(out.Recipes, path)
		}
	}
	if a.asJSON {
		return writeJSON(e.stdout, out)
	}
	w := humanOut(e.stdout)
	label := map[string]string{"output_sqnr": "output SQNR", "weight_sqnr": "weight SQNR"}[obj]
	fmt.Fprintf(w, "Searched %d trials over %s: %s (max) against size (min)\n\n", done, a.reference, label)
	t := newTable("trial", "size", label, "bits/weight", "recipe").alignRight(0, 1, 2, 3)
	for i, r := range out.Front {
		file := "-"
		if out.Recipes != nil {
			file = out.Recipes[i]
		}
		t.add(strconv.Itoa(r.Trial), humanBytes(int64(r.Objectives["size"])), fmt.Sprintf("%.2f dB", r.Objectives[obj]), fmt.Sprintf("%.2f", r.BitsPerWeight), file)
	}
	t.write(w)
	failed := 0
	for _, r := range out.All {
		if r.Status == search.StatusFailed {
			failed++
		}
	}
	fmt.Fprintf(w, "\nThe front: %s of %d (%d failed).", plural(len(out.Front), "recipe", "recipes"), done, failed)
	if out.Recipes == nil {
		fmt.Fprint(w, " --recipes-out DIR writes them for 'monoquant quantize --recipe'.")
	}
	fmt.Fprintln(w)
	return nil
}

// scoreTrial quantizes the reference with the candidate and returns (quality, size).
func scoreTrial(ctx context.Context, a *searchArgs, c search.Candidate, tensors []filebench.Tensor, tmp string) ([2]float64, error) {
	var v [2]float64
	out := filepath.Join(tmp, fmt.Sprintf("trial-%d.safetensors", c.Trial))
	defer os.Remove(out)
	res, err := convert.File(ctx, a.reference, out, plan.Options{Recipe: c.Recipe}, convert.Run{})
	if err != nil {
		return v, err
	}
	m, err := filebench.Measure(ctx, filebench.Options{Reference: a.reference, Candidates: []filebench.Candidate{{Name: "trial", Path: out}},
		Inputs: a.input, Samples: a.samples, Seed: a.seed, Tensors: tensors})
	if err != nil {
		if errors.Is(err, filebench.ErrOption) {
			return v, wrapExit(exitUsage, err, "")
		}
		return v, err
	}
	q := float64(m[0].OutputSQNR)
	if a.objective == "weight-sqnr" {
		q = float64(m[0].WeightSQNR)
	}
	if math.IsNaN(q) || q > filebench.SQNRCap {
		q = filebench.SQNRCap
	}
	return [2]float64{q, float64(res.Report.TotalBytesAfter)}, nil
}

// saveState writes the engine's state atomically: a stop mid-write leaves the previous state.
func saveState(eng *search.Engine, path string) error {
	st, err := eng.Save()
	if err != nil {
		return err
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(st); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}
