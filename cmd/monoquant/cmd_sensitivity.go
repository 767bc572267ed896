package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/sensitivity"
)

func init() {
	register(&command{
		name:     "sensitivity",
		synopsis: "sensitivity FILE [--formats int8,int4] [--max-bits-per-weight X | --max-size BYTES --recipe-out R.json] [flags]",
		summary:  "rank the layers of a checkpoint by how much each format hurts their weights, and choose a mixed-precision recipe",
		help: `Quantizes every layer alone in each format and ranks the layers by weight SQNR, most
sensitive first (the CLI cannot run the model; Python's monoquant.sensitivity measures the
model's output instead). The flags of quantize choose the layers and the base of each format.

--formats takes format names (int8,int4,fp16,bf16) or a JSON list of recipe rule options
('[{"bits": 4, "group_size": 32, "method": "hqq"}, "int8"]'). --out writes the table as JSON.

With a budget (--max-bits-per-weight over the table's layers, or --max-size for the whole
checkpoint's tensor bytes), the engine's greedy knapsack chooses a format per layer; the recipe
goes to --recipe-out, for 'monoquant quantize --recipe'. --table reads a table saved earlier
(this command's --out, or Python's SensitivityTable.save) instead of measuring.

Examples:
  monoquant sensitivity model.safetensors
  monoquant sensitivity model.safetensors --formats int8,int4 --max-bits-per-weight 5 --recipe-out mixed.json
  monoquant sensitivity --table table.json --max-size 20000000 --recipe-out mixed.json`,
		setup: setupSensitivity,
	})
}

type sensitivityArgs struct {
	quantizeArgs
	formats   string
	out       string
	table     string
	maxBPW    float64
	maxSize   int64
	recipeOut string
}

func setupSensitivity(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	a := &sensitivityArgs{}
	optionFlags(fs, &a.quantizeArgs)
	fs.BoolVar(&a.asJSON, "json", false, "print the table (and the choice) as one JSON document on stdout")
	fs.StringVar(&a.formats, "formats", "", "formats to measure: names (int8,int4,fp16,bf16) or a JSON list of rule options (default int8,int4)")
	fs.StringVar(&a.out, "out", "", "write the table as JSON to this file")
	fs.StringVar(&a.table, "table", "", "read a saved table instead of measuring a checkpoint")
	fs.Float64Var(&a.maxBPW, "max-bits-per-weight", 0, "budget: bits per weight over the table's layers")
	fs.Int64Var(&a.maxSize, "max-size", 0, "budget: bytes of the whole checkpoint's tensors")
	fs.StringVar(&a.recipeOut, "recipe-out", "", "write the chosen recipe (JSON) to this file")
	return func(ctx context.Context, e *env, pos []string) error {
		a.set = map[string]bool{}
		fs.Visit(func(f *flag.Flag) { a.set[f.Name] = true })
		return runSensitivity(ctx, e, a, pos)
	}
}

// formatsJSON turns --formats into the engine's JSON: a JSON list as it is, else names.
func formatsJSON(s string) []byte {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasPrefix(s, "[") {
		return []byte(s)
	}
	var names []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	js, _ := json.Marshal(names)
	return js
}

func runSensitivity(ctx context.Context, e *env, a *sensitivityArgs, pos []string) error {
	budget := a.set["max-bits-per-weight"] || a.set["max-size"]
	if a.recipeOut != "" && !budget {
		return usageErr("sensitivity: --recipe-out needs a budget (--max-bits-per-weight or --max-size)")
	}
	var t *sensitivity.Table
	if a.table != "" {
		if len(pos) > 0 || a.model != "" {
			return usageErr("sensitivity: give a checkpoint or --table, not both")
		}
		js, err := os.ReadFile(a.table)
		if err != nil {
			return fail(exitInput, "sensitivity: %v", err)
		}
		if t, err = sensitivity.ParseTable(js); err != nil {
			return fail(exitUsage, "sensitivity: %s: %v", a.table, err)
		}
	} else {
		var err error
		if t, err = measureWeights(ctx, a, pos); err != nil {
			return err
		}
	}
	var choice *sensitivity.Choice
	if budget {
		b := sensitivity.Budget{MaxBitsPerWeight: a.maxBPW, MaxSize: a.maxSize}
		var err error
		if choice, err = sensitivity.RecipeFor(t, b); err != nil {
			return fail(exitUsage, "sensitivity: %v", err)
		}
	}
	if a.out != "" {
		if err := writeJSONFile(a.out, t); err != nil {
			return err
		}
	}
	if choice != nil && a.recipeOut != "" {
		if err := writeJSONFile(a.recipeOut, choice.Recipe); err != nil {
			return err
		}
	}
	if a.asJSON {
		if choice != nil {
			return writeJSON(e.stdout, map[string]any{"table": t, "choice": choice})
		}
		return writeJSON(e.stdout, t)
	}
	renderSensitivity(e, t, choice)
	return nil
}

func measureWeights(ctx context.Context, a *sensitivityArgs, pos []string) (*sensitivity.Table, error) {
	r, opts, err := openFloatInput("sensitivity", &a.quantizeArgs, pos)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	conv, err := convert.New(r, a.model, opts, convert.Run{})
	if err != nil {
		return nil, classifyCoreErr(err)
	}
	fs, err := sensitivity.ParseFormats(formatsJSON(a.formats))
	if err != nil {
		return nil, fail(exitUsage, "sensitivity: --formats: %v", err)
	}
	s, err := sensitivity.New(r, conv.Options(), fs)
	if err != nil {
		return nil, classifyCoreErr(err)
	}
	for _, c := range s.Candidates() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := s.Quantize(ctx, r, c.Layer, c.Format); err != nil {
			return nil, classifyCoreErr(err)
		}
	}
	t, err := s.Table()
	if err != nil {
		return nil, classifyCoreErr(err)
	}
	return t, nil
}

func writeJSONFile(path string, v any) error {
	js, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fail(exitInternal, "%v", err)
	}
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		return fail(exitOutput, "sensitivity: %v", err)
	}
	return nil
}

func renderSensitivity(e *env, t *sensitivity.Table, ch *sensitivity.Choice) {
	w := e.stdout
	hdr := []string{"rank", "layer", "type", "params"}
	for _, f := range t.Formats {
		hdr = append(hdr, f.Name)
	}
	right := []int{0, 3}
	for i := range t.Formats {
		right = append(right, 4+i)
	}
	tab := newTable(hdr...).alignRight(right...)
	for _, l := range t.Layers {
		row := []string{fmt.Sprint(l.Rank), l.Name, dash(l.Type), fmt.Sprint(l.Params)}
		for _, r := range l.Results {
			row = append(row, resultCell(t.Metric, r))
		}
		tab.add(row...)
	}
	tab.write(w)
	fmt.Fprintln(w)
	switch t.Metric {
	case sensitivity.MetricWeightSQNR:
		fmt.Fprintln(w, "Weight SQNR of each layer quantized alone; most sensitive first (lowest SQNR in its smallest format).")
	case sensitivity.MetricOutputSQNR:
		fmt.Fprintln(w, "Output SQNR of the model with only that layer quantized; most sensitive first.")
	default:
		fmt.Fprintf(w, "Your metric with only that layer quantized (float model: %g); most sensitive first.\n", *t.Baseline)
	}
	if ch == nil {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Chosen for %s: %.3f bits per weight, %s in all\n", budgetString(ch.Budget), ch.BitsPerWeight, humanBytes(ch.Bytes))
	ct := newTable("layer", "format", "bytes").alignRight(2)
	for _, c := range ch.Layers {
		ct.add(c.Layer, c.Format, humanBytes(c.BytesAfter))
	}
	ct.write(w)
}

func budgetString(b sensitivity.Budget) string {
	if b.MaxSize != 0 {
		return "at most " + humanBytes(b.MaxSize)
	}
	return fmt.Sprintf("at most %g bits per weight", b.MaxBitsPerWeight)
}

func resultCell(metric string, r sensitivity.Result) string {
	var v *model.Decibels
	switch metric {
	case sensitivity.MetricWeightSQNR:
		v = r.WeightSQNR
	case sensitivity.MetricOutputSQNR:
		v = r.OutputSQNR
	default:
		if r.Metric == nil {
			return "-"
		}
		return fmt.Sprintf("%.4g", *r.Metric)
	}
	if v == nil {
		return "-"
	}
	return dB(float64(*v))
}
