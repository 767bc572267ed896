package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
)

func init() {
	register(&command{
		name:     "plan",
		synopsis: "plan --model IN [--bits 8|4|16] [--recipe FILE] [flags]",
		summary:  "show what quantize would do to each tensor, and the projected size, without quantizing",
		help: `Shows the decision for every tensor of a checkpoint — quantized or kept, the format, group
size, scheme, activation mode and method, the rule of the recipe that chose it (or why it is
kept) — and the projected size, without reading a single weight. The flags are quantize's;
the decisions are the engine's, the same that quantize, Python's monoquant.plan() and the
C ABI's mq_model_plan_json make.

Examples:
  monoquant plan --model model.safetensors --bits 4
  monoquant plan --model model.pt --recipe mixed.json --json`,
		setup: setupPlan,
	})
}

func setupPlan(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	a := &quantizeArgs{}
	optionFlags(fs, a)
	fs.BoolVar(&a.asJSON, "json", false, "print the plan as one JSON document on stdout")
	return func(ctx context.Context, e *env, pos []string) error {
		a.set = map[string]bool{}
		fs.Visit(func(f *flag.Flag) { a.set[f.Name] = true })
		return runPlan(e, a, pos)
	}
}

func runPlan(e *env, a *quantizeArgs, pos []string) error {
	r, opts, err := openFloatInput("plan", a, pos)
	if err != nil {
		return err
	}
	defer r.Close()
	conv, err := convert.New(r, a.model, opts, convert.Run{})
	if err != nil {
		return classifyCoreErr(err)
	}
	d := model.Describe(conv.Plan())
	if a.asJSON {
		return writeJSON(e.stdout, d)
	}
	w := e.stdout
	t := newTable("tensor", "layer type", "shape", "decision", "activations", "rule", "bytes").alignRight(6)
	for _, td := range d.Tensors {
		dec := string(td.Action)
		act := "-"
		if c := td.Config; c != nil {
			dec = c.Format
			switch c.Granularity {
			case "per_group":
				dec += fmt.Sprintf(" g%d", c.GroupSize)
			case "per_channel":
				dec += " per-channel"
			case "per_tensor":
				dec += " per-tensor"
			}
			if c.Scheme == "asymmetric" {
				dec += " asym"
			}
			if c.Method != "" && c.Method != "rtn" {
				dec += " " + c.Method
			}
			act = c.Activations
		} else if td.Reason != "" {
			dec += ": " + td.Reason
		}
		rule := "-"
		if td.Rule >= 0 {
			rule = fmt.Sprint(td.Rule + 1)
		}
		t.add(td.Name, dash(td.LayerType), shapeString(td.Shape), dec, act, rule,
			humanBytes(td.Bytes)+" → "+humanBytes(td.After))
	}
	t.write(w)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Resolved recipe (first match wins; defaults filled in):")
	for i, rr := range d.Recipe.Rules {
		var parts []string
		if rr.Skip {
			parts = append(parts, "skip")
		} else {
			parts = append(parts, rr.DType)
			if rr.GroupSize > 0 {
				parts = append(parts, fmt.Sprintf("group_size %d", rr.GroupSize))
			}
			if rr.Scheme != "" {
				parts = append(parts, rr.Scheme)
			}
			parts = append(parts, "activations "+rr.Activations, "method "+rr.Method)
		}
		if len(rr.Layers) > 0 {
			parts = append(parts, "layers "+strings.Join(rr.Layers, ","))
		}
		fmt.Fprintf(w, "  %d. %-24s %s\n", i+1, rr.Match, strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Projected size %s → %s (%s)\n", humanBytes(d.BytesBefore), humanBytes(d.BytesAfter), ratio(d.BytesAfter, d.BytesBefore))
	if len(d.Warnings) > 0 {
		fmt.Fprintf(w, "Warnings (%d):\n", len(d.Warnings))
		for _, wr := range d.Warnings {
			fmt.Fprintf(w, "  - %s: %s\n", wr.Code, wr.Message)
		}
	}
	return nil
}
