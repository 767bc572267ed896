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
	"time"

	"github.com/monoquant/monoquant/core/runlog"
)

func init() {
	register(&command{
		name:     "runs",
		synopsis: "runs list|show|compare|reproduce|metric|export [flags] [arguments]",
		summary:  "list, compare, reproduce and export the recorded runs (the run log)",
		help: `Every 'monoquant quantize' is recorded in the run log, a SQLite file at
$MONOQUANT_HOME/runs.sqlite (default $XDG_DATA_HOME/monoquant or ~/.local/share/monoquant; any
SQLite tool opens it). 'quantize --no-log' or MONOQUANT_LOG=0 leaves a run out.

  runs list [--json] [--filter key=value]...   one line per run; keys as 'runs show --json' flattens
                                               them: entry_point, host, input, options.bits,
                                               options.spec.format, results.sqnr_db, metrics.NAME, ...
  runs show ID [--json] [--sha256]             everything recorded about one run; files are
                                               known by their XXH3-128 (xxhsum -H2), --sha256
                                               adds their sha256 to the record (one read each,
                                               checked against the recorded XXH3)
  runs compare ID ID... [--html out.html]      side by side: settings, sizes, SQNR per layer,
                                               metrics; differences marked with *. --html adds a
                                               size-versus-quality scatter with the Pareto front
  runs reproduce ID [--output OUT]             run the stored settings again through the same
                                               pipeline after checking the input's digest; says
                                               "identical" when the output's digest matches
  runs metric ID NAME VALUE                    attach a metric measured later (e.g. accuracy)
  runs export --format csv|jsonl|mlflow DIR    csv and jsonl write DIR/runs.csv or DIR/runs.jsonl;
                                               mlflow writes MLflow's file store into DIR
                                               (MLFLOW_ALLOW_FILE_STORE=true mlflow ui
                                               --backend-store-uri DIR; MLflow 3 needs the switch)

Examples:
  monoquant runs list --filter options.bits=4
  monoquant runs compare 1 2 3 --html compare.html
  monoquant runs reproduce 2
  monoquant runs metric 2 accuracy 0.91
  monoquant runs export --format mlflow mlruns`,
		setup: setupRuns,
	})
}

type runsArgs struct {
	asJSON       bool
	sha256       bool
	filters      listFlag
	html, output string
	format       *choiceFlag
	log          string
	quiet        bool
}

func setupRuns(fs *flag.FlagSet) func(context.Context, *env, []string) error {
	a := &runsArgs{format: newChoice("", "csv", "jsonl", "mlflow")}
	fs.BoolVar(&a.asJSON, "json", false, "list, show, compare: print JSON")
	fs.BoolVar(&a.sha256, "sha256", false, "show: compute the sha256 of the run's files and add it to the record")
	fs.Var(&a.filters, "filter", "list, export: keep the runs whose `key=value` matches; repeatable (all must match)")
	fs.StringVar(&a.html, "html", "", "compare: also write an HTML report with a size-versus-quality scatter to `file`")
	fs.StringVar(&a.output, "output", "", "reproduce: keep the reproduced checkpoint at `file` (default: a temporary file, removed)")
	fs.Var(a.format, "format", "export: `format` csv, jsonl or mlflow")
	fs.StringVar(&a.log, "log", "", "the run log `file` (default $MONOQUANT_HOME/runs.sqlite)")
	fs.BoolVar(&a.quiet, "quiet", false, "reproduce: no progress bar")
	return func(ctx context.Context, e *env, pos []string) error { return runRuns(ctx, e, a, pos) }
}

func runRuns(ctx context.Context, e *env, a *runsArgs, pos []string) error {
	if len(pos) == 0 {
		return usageErr("runs: want list, show, compare, reproduce, metric or export (run 'monoquant runs --help')")
	}
	verb, args := pos[0], pos[1:]
	switch verb {
	case "list", "show", "compare", "reproduce", "metric", "export":
	default:
		return usageErr("runs: unknown subcommand %q: want list, show, compare, reproduce, metric or export", verb)
	}
	path := a.log
	if path == "" {
		p, err := runlog.DefaultPath()
		if err != nil {
			return fail(exitInput, "%v", err)
		}
		path = p
	}
	if verb != "metric" && verb != "reproduce" {
		// Reading never creates a log where there was none.
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return fail(exitInput, "no run log at %s yet: 'monoquant quantize' creates it (or set MONOQUANT_HOME)", path)
		}
	}
	l, err := runlog.Open(ctx, path)
	if err != nil {
		return wrapExit(exitInput, err, "")
	}
	defer l.Close()
	switch verb {
	case "list":
		return runsList(ctx, e, a, l, args)
	case "show":
		return runsShow(ctx, e, a, l, args)
	case "compare":
		return runsCompare(ctx, e, a, l, args)
	case "reproduce":
		return runsReproduce(ctx, e, a, l, args)
	case "metric":
		return runsMetric(ctx, e, l, args)
	default:
		return runsExport(ctx, e, a, l, args)
	}
}

func parseFilters(fl []string) (map[string]string, error) {
	m := map[string]string{}
	for _, f := range fl {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, usageErr("runs: --filter %q: want key=value, e.g. options.bits=4", f)
		}
		m[k] = v
	}
	return m, nil
}

func parseRunID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, usageErr("runs: %q is not a run id (a positive number, as 'monoquant runs list' shows)", s)
	}
	return id, nil
}

func getRun(ctx context.Context, l *runlog.Log, s string) (*runlog.Run, error) {
	id, err := parseRunID(s)
	if err != nil {
		return nil, err
	}
	r, err := l.Get(ctx, id)
	if errors.Is(err, runlog.ErrNotFound) {
		return nil, fail(exitInput, "%v", err)
	}
	if err != nil {
		return nil, wrapExit(exitInput, err, "")
	}
	return r, nil
}

func runsList(ctx context.Context, e *env, a *runsArgs, l *runlog.Log, args []string) error {
	if len(args) > 0 {
		return usageErr("runs list: unexpected argument %q (filters go in --filter key=value)", args[0])
	}
	filters, err := parseFilters(a.filters.values)
	if err != nil {
		return err
	}
	runs, err := l.List(ctx, filters)
	if err != nil {
		return wrapExit(exitInput, err, "")
	}
	if a.asJSON {
		if runs == nil {
			runs = []*runlog.Run{}
		}
		return writeJSON(e.stdout, jsonRuns(runs))
	}
	t := newTable("id", "started (UTC)", "entry", "input", "format", "size", "SQNR", "metrics").alignRight(0, 5, 6)
	for _, r := range runs {
		f := runlog.Fields(r)
		var ms []string
		for _, k := range sortedKeys(r.Metrics) {
			ms = append(ms, fmt.Sprintf("%s=%g", k, r.Metrics[k]))
		}
		t.add(strconv.FormatInt(r.ID, 10), r.Started.UTC().Format("2006-01-02 15:04:05"), r.EntryPoint, inputName(r),
			runFormat(f), humanBytes(int64(r.Size())), dB(r.Quality()), strings.Join(ms, " "))
	}
	t.write(e.stdout)
	fmt.Fprintf(e.stdout, "%s in %s\n", plural(len(runs), "run", "runs"), l.Path())
	return nil
}

// runFormat names a run's quantization in a few characters: int8, int4 g128, fp16, ...
func runFormat(f map[string]string) string {
	if f["entry_point"] == "search" {
		return "recipe" // a trial: one rule per layer
	}
	s := f["options.spec.format"]
	if s == "" || s == "default" {
		switch f["options.bits"] {
		case "4":
			s = "int4"
		case "16":
			s = "fp16"
			if f["options.bfloat16"] == "true" {
				s = "bf16"
			}
		default:
			s = "int8"
		}
	}
	if g := f["options.spec.groupsize"]; g != "" && g != "0" {
		s += " g" + g
	}
	if f["options.spec.scheme"] == "asymmetric" {
		s += " asym"
	}
	if f["options.mode"] == "static" {
		s += " static"
	}
	return s
}

// inputName is the input column of `runs list`: the file's name, or how an in-memory model or a
// search trial was given.
func inputName(r *runlog.Run) string {
	switch {
	case r.Input.Path != "":
		return filepath.Base(r.Input.Path)
	case r.Input.SHA256 != "":
		return "(in memory)"
	}
	return "-"
}

// digests names a file's recorded digests: "xxh3 X, sha256 S"; a sha256 not computed yet says
// how to get it.
func digests(xxh3, sha string) string {
	var d []string
	if xxh3 != "" {
		d = append(d, "xxh3 "+xxh3)
	}
	if sha != "" {
		d = append(d, "sha256 "+sha)
	} else {
		d = append(d, "sha256 on request: runs show --sha256")
	}
	return strings.Join(d, ", ")
}

// jsonRuns makes runs JSON-safe (runlog.JSONSafe).
func jsonRuns(runs []*runlog.Run) []*runlog.Run { return runlog.JSONSafe(runs) }

func runsShow(ctx context.Context, e *env, a *runsArgs, l *runlog.Log, args []string) error {
	if len(args) != 1 {
		return usageErr("runs show: want one run id")
	}
	r, err := getRun(ctx, l, args[0])
	if err != nil {
		return err
	}
	if a.sha256 {
		if r, err = l.AddSHA256(ctx, r.ID); err != nil {
			return wrapExit(exitInput, err, "")
		}
	}
	if a.asJSON {
		return writeJSON(e.stdout, jsonRuns([]*runlog.Run{r})[0])
	}
	w := e.stdout
	fmt.Fprintf(w, "Run %d (%s)\n", r.ID, r.UUID)
	fmt.Fprintf(w, "Started   %s, took %s, on %s via %s\n", r.Started.UTC().Format(time.RFC3339), r.Duration.Round(time.Millisecond), r.Host, r.EntryPoint)
	var vs []string
	for _, k := range sortedKeys(r.Versions) {
		vs = append(vs, k+" "+r.Versions[k])
	}
	fmt.Fprintf(w, "Versions  %s\n", strings.Join(vs, ", "))
	switch {
	case r.Input.Path != "":
		fmt.Fprintf(w, "Input     %s (%s, %s)\n", r.Input.Path, humanBytes(r.Input.Bytes), digests(r.Input.XXH3, r.Input.SHA256))
	case r.Input.SHA256 != "":
		fmt.Fprintf(w, "Input     in memory (%s, state-dict fingerprint %s)\n", humanBytes(r.Input.Bytes), r.Input.SHA256)
	default:
		fmt.Fprintf(w, "Input     not recorded (a run known by its results)\n")
	}
	if r.Output.Path != "" {
		fmt.Fprintf(w, "Output    %s (%s, %s)\n", r.Output.Path, humanBytes(r.Output.Bytes), digests(r.Output.XXH3, r.Output.SHA256))
	} else {
		fmt.Fprintf(w, "Output    none written (in memory)\n")
	}
	if c := r.Calibration; c != nil {
		d := digests(c.XXH3, c.SHA256)
		if c.Path == "" {
			d = "fingerprint " + c.SHA256
		}
		fmt.Fprintf(w, "Calibration %s (%d batches, %s)\n", c.Path, c.Count, d)
	}
	fmt.Fprintf(w, "Peak RSS  %s\n\nSettings:\n", humanBytes(r.PeakRSS))
	sf := runlog.SettingsFields(r.Settings)
	for _, k := range sortedKeys(sf) {
		fmt.Fprintf(w, "  %-40s %s\n", k, sf[k])
	}
	fmt.Fprintln(w, "\nResults:")
	for _, k := range sortedKeys(r.Results) {
		fmt.Fprintf(w, "  %-40s %g\n", k, r.Results[k])
	}
	if len(r.Metrics) > 0 {
		fmt.Fprintln(w, "\nMetrics:")
		for _, k := range sortedKeys(r.Metrics) {
			fmt.Fprintf(w, "  %-40s %g\n", k, r.Metrics[k])
		}
	}
	fmt.Fprintln(w)
	t := newTable("tensor", "layer type", "kernel", "SQNR", "before", "after").alignRight(3, 4, 5)
	for _, ly := range r.Layers {
		t.add(ly.Name, ly.LayerType, ly.Kernel, dB(ly.SQNR), humanBytes(ly.BytesBefore), humanBytes(ly.BytesAfter))
	}
	t.write(w)
	if len(r.Warnings) > 0 {
		fmt.Fprintf(w, "\nWarnings (%d):\n", len(r.Warnings))
		for _, s := range r.Warnings {
			fmt.Fprintf(w, "  - %s\n", s)
		}
	}
	return nil
}

func runsMetric(ctx context.Context, e *env, l *runlog.Log, args []string) error {
	if len(args) != 3 {
		return usageErr("runs metric: want ID NAME VALUE, e.g. 'monoquant runs metric 2 accuracy 0.91'")
	}
	id, err := parseRunID(args[0])
	if err != nil {
		return err
	}
	v, err := strconv.ParseFloat(args[2], 64)
	if err != nil {
		return usageErr("runs metric: value %q is not a number", args[2])
	}
	if err := l.AddMetric(ctx, id, args[1], v); err != nil {
		switch {
		case errors.Is(err, runlog.ErrNotFound):
			return fail(exitInput, "%v", err)
		case errors.Is(err, runlog.ErrMetricName), errors.Is(err, runlog.ErrMetricValue):
			return usageErr("runs metric: %v", err) // the log's rule for a metric
		}
		return wrapExit(exitOutput, err, "")
	}
	fmt.Fprintf(e.stdout, "run %d: %s = %g\n", id, args[1], v)
	return nil
}

func runsExport(ctx context.Context, e *env, a *runsArgs, l *runlog.Log, args []string) error {
	if len(args) != 1 {
		return usageErr("runs export: want one folder, e.g. 'monoquant runs export --format mlflow mlruns'")
	}
	if a.format.value == "" {
		return usageErr("runs export: --format is required: csv, jsonl or mlflow")
	}
	filters, err := parseFilters(a.filters.values)
	if err != nil {
		return err
	}
	runs, err := l.List(ctx, filters)
	if err != nil {
		return wrapExit(exitInput, err, "")
	}
	dir := args[0]
	switch a.format.value {
	case "mlflow":
		if err := runlog.WriteMLflow(dir, runs); err != nil {
			return wrapExit(exitOutput, err, "export to %s", dir)
		}
		fmt.Fprintf(e.stdout, "Exported %s to %s (MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri %s)\n", plural(len(runs), "run", "runs"), dir, dir)
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return wrapExit(exitOutput, err, "export folder")
	}
	path := filepath.Join(dir, "runs."+a.format.value)
	f, err := os.Create(path)
	if err != nil {
		return wrapExit(exitOutput, err, "")
	}
	if a.format.value == "csv" {
		err = runlog.WriteCSV(f, runs)
	} else {
		err = runlog.WriteJSONL(f, runs)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return wrapExit(exitOutput, err, "writing %s", path)
	}
	fmt.Fprintf(e.stdout, "Exported %s to %s\n", plural(len(runs), "run", "runs"), path)
	return nil
}
