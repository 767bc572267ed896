// Package reproduce runs a recorded run (core/runlog) again from its stored settings and says
// whether the output came out byte-identical, or what differs. It is the one place that decides
// what a reproduction checks and compares: the CLI's `monoquant runs reproduce`, the C ABI's
// mq_run_reproduce and Python's monoquant.reproduce all call Run.
//
//	l, _ := runlog.Open(ctx, "")
//	rec, _ := l.Get(ctx, 2)
//	res, err := reproduce.Run(ctx, rec, reproduce.Options{Log: &convert.Log{Entry: "go", Path: l.Path()}})
//	// res.Identical, or res.Differences says how the output differs
//
// The steps: the settings are decoded (a run recorded by a newer monoquant, with settings this
// one does not know, is refused rather than half reproduced); the input's digest is checked
// against the record, and the calibration file's for static runs (ErrInputChanged: nothing
// runs); the stored settings — options, resolved recipe, output format, calibration file — go
// through the same file pipeline as the first run (core/convert, output validated); the new
// output's digest is compared with the recorded one. The digest is the one the run recorded:
// XXH3-128 (runlog.HashFile), or the sha256 of runs recorded before the log's schema 2.
package reproduce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/runlog"
)

// ErrInputChanged is wrapped by the error of a run whose input (or calibration file) no longer
// has the digest recorded: nothing is run.
var ErrInputChanged = errors.New("changed since the run")

// ErrNotReproducible is wrapped by the error of a run that has no input file to run again: an
// in-memory quantization (Python's quantize) or a search trial recorded from its results.
var ErrNotReproducible = errors.New("cannot be reproduced from a file")

// Options says where a reproduction goes and how it is recorded.
type Options struct {
	// Output keeps the reproduced file there; "" writes it to a temporary folder, removed
	// before Run returns.
	Output string
	// Log records the reproduction as a new run (nil: not recorded). Its OutputFormat is set
	// from the stored settings.
	Log *convert.Log
	// Progress is called per tensor, as for a quantization.
	Progress model.ProgressFunc
	// Create opens the output (nil: the format by the output's suffix, as convert does).
	Create func(path string) model.CreateFunc
}

// Result is what a reproduction found.
type Result struct {
	Run       int64 `json:"run_id"`    // the run reproduced
	Identical bool  `json:"identical"` // the output's digest is the recorded one
	// OutputDigest is the reproduction's, RecordedDigest the run's output's as recorded, each
	// named by its algorithm: "xxh3 <32 hex digits>" (or "sha256 <64 hex digits>" for a run
	// recorded before XXH3).
	OutputDigest   string `json:"output_digest"`
	RecordedDigest string `json:"recorded_digest"`
	// Output is the reproduced file when Options.Output kept it ("" when it was removed).
	Output string `json:"output,omitempty"`
	// Differences says how a non-identical output differs (empty when identical): the
	// monoquant version, the resolved config per tensor, the tensors quantized, their SQNR.
	Differences []string `json:"differences"`
	// NewRunID is the reproduction's own id in the run log (0 when not recorded); LogWarning
	// says why it could not be recorded.
	NewRunID   int64  `json:"new_run_id"`
	LogWarning string `json:"log_warning,omitempty"`
	// Report is the reproduction's quantization report.
	Report *model.Report `json:"-"`
}

// Run reproduces the recorded run r (from runlog.Log.Get). It returns an error, and runs
// nothing, when the run cannot be reproduced (ErrNotReproducible), its settings cannot be read,
// or its input changed (ErrInputChanged); a quantization error is returned as convert returns
// it. A reproduction whose bytes differ is not an error: Result.Identical is false.
func Run(ctx context.Context, r *runlog.Run, o Options) (*Result, error) {
	if r.Input.Path == "" || r.Output.Identity() == "" {
		return nil, fmt.Errorf("run %d (entry point %s): %w: it recorded no input file and output (an in-memory or search run; quantize the same model again with its recipe)", r.ID, r.EntryPoint, ErrNotReproducible)
	}
	s, err := runlog.DecodeSettings(r.Settings)
	if err != nil {
		return nil, fmt.Errorf("run %d: %w", r.ID, err)
	}
	if err := checkHash("input", r.Input.Path, r.Input, r.ID); err != nil {
		return nil, err
	}
	if c := r.Calibration; s.Calibration != "" && c != nil && (c.SHA256 != "" || c.XXH3 != "") {
		if err := checkHash("calibration file", s.Calibration, runlog.FileRef{SHA256: c.SHA256, XXH3: c.XXH3}, r.ID); err != nil {
			return nil, err
		}
	}
	folder := checkpoint.IsDir(r.Input.Path) // a model folder's run: its output is a folder too
	out := o.Output
	if out == "" {
		dir, err := os.MkdirTemp("", "monoquant-reproduce-")
		if err != nil {
			return nil, fmt.Errorf("%w: temporary folder for the reproduction: %v", convert.ErrOutput, err)
		}
		defer os.RemoveAll(dir)
		ext := filepath.Ext(r.Output.Path)
		if ext == "" {
			ext = ".safetensors"
		}
		out = filepath.Join(dir, "reproduced"+ext)
		if folder {
			out = filepath.Join(dir, "reproduced")
		}
	}
	run := convert.Run{Validate: true, CalibrationFile: s.Calibration, Progress: o.Progress, Create: o.Create}
	if o.Log != nil {
		l := *o.Log
		l.OutputFormat = s.OutputFormat
		run.Log = &l
	}
	done, err := convert.File(ctx, r.Input.Path, out, s.Options, run)
	if err != nil {
		return nil, err
	}
	hashed := out
	if folder {
		// a folder's run records its weights (the file, or the index and its shards) as the output
		hashed = filepath.Join(out, filepath.Base(r.Output.Path))
	}
	got, err := runlog.HashLike(hashed, r.Output)
	if err != nil {
		return nil, err
	}
	if r.Output.XXH3 == "" {
		got.XXH3 = "" // named by the digest compared
	}
	res := &Result{Run: r.ID, OutputDigest: got.Identity(), RecordedDigest: r.Output.Identity(), Differences: []string{},
		NewRunID: done.RunID, LogWarning: done.LogWarning, Report: done.Report}
	if o.Output != "" {
		res.Output = out
	}
	res.Identical, _ = runlog.SameContent(got, r.Output)
	if !res.Identical {
		res.Differences = Differences(r, model.PlanConfig(done.Plan), done.Report)
	}
	return res, nil
}

// checkHash checks that path holds the content want records (by the digest it has).
func checkHash(what, path string, want runlog.FileRef, id int64) error {
	ref, err := runlog.HashLike(path, want)
	if err != nil {
		return fmt.Errorf("run %d: %s: %w", id, what, err)
	}
	if want.XXH3 == "" {
		ref.XXH3 = "" // named by the digest compared
	}
	if same, _ := runlog.SameContent(ref, want); !same {
		return fmt.Errorf("run %d: %s %s %w (%s, recorded %s): nothing reproduced", id, what, path, ErrInputChanged, ref.Identity(), want.Identity())
	}
	return nil
}

// Differences says what differs between a recorded run and a new quantization of its input
// (the resolved config and report of the new one): the monoquant version, the resolved config
// per tensor (a default that changed since the run shows here), the tensors quantized and their
// SQNR. It never returns an empty list: when all of these agree the bytes differ elsewhere.
func Differences(r *runlog.Run, config *model.Config, rep *model.Report) []string {
	var d []string
	if v := r.Versions["monoquant"]; v != "" && v != model.ToolVersion {
		d = append(d, fmt.Sprintf("monoquant version: recorded %s, now %s", v, model.ToolVersion))
	}
	var was model.Config
	if json.Unmarshal(r.Config, &was) == nil && config != nil {
		names := make([]string, 0, len(config.Tensors))
		for n := range config.Tensors {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			now, _ := json.Marshal(config.Tensors[name])
			old, _ := json.Marshal(was.Tensors[name])
			if was.Tensors[name] != nil && string(now) != string(old) {
				d = append(d, fmt.Sprintf("tensor %s: resolved config %s now, %s recorded", name, now, old))
			}
		}
	}
	sq := map[string]float64{}
	for _, l := range r.Layers {
		sq[l.Name] = l.SQNR
	}
	seen := map[string]bool{}
	if rep != nil {
		for _, t := range rep.Tensors {
			seen[t.Name] = true
			old, ok := sq[t.Name]
			switch {
			case !ok:
				d = append(d, fmt.Sprintf("tensor %s is quantized now, was not in run %d", t.Name, r.ID))
			case fmt.Sprintf("%.6f", old) != fmt.Sprintf("%.6f", float64(t.SQNR)):
				d = append(d, fmt.Sprintf("tensor %s: SQNR %.3f dB now, %.3f dB recorded", t.Name, float64(t.SQNR), old))
			}
		}
	}
	for _, l := range r.Layers {
		if !seen[l.Name] {
			d = append(d, fmt.Sprintf("tensor %s was quantized in run %d, is not now", l.Name, r.ID))
		}
	}
	if len(d) == 0 {
		d = append(d, "same tensors and SQNR: the bytes differ elsewhere (metadata or layout: compare the files with 'monoquant compare')")
	}
	return d
}
