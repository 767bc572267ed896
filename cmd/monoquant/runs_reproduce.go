package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/runlog"
)

// runsReproduce runs a recorded run's settings again through quantizeFile, the pipeline
// 'quantize' uses, after checking that the input is the file the run read.
func runsReproduce(ctx context.Context, e *env, a *runsArgs, l *runlog.Log, args []string) error {
	if len(args) != 1 {
		return usageErr("runs reproduce: want one run id")
	}
	r, err := getRun(ctx, l, args[0])
	if err != nil {
		return err
	}
	s, err := runlog.DecodeSettings(r.Settings)
	if err != nil {
		return fail(exitFormat, "run %d: %v", r.ID, err)
	}
	if err := checkInputPath("input", r.Input.Path); err != nil {
		return fmt.Errorf("run %d: %w", r.ID, err)
	}
	in, err := runlog.HashFile(r.Input.Path)
	if err != nil {
		return wrapExit(exitInput, err, "")
	}
	if in.SHA256 != r.Input.SHA256 {
		return fail(exitInput, "run %d: input %s changed since the run (sha256 %s, recorded %s): nothing reproduced", r.ID, r.Input.Path, in.SHA256, r.Input.SHA256)
	}
	if s.Calibration != "" && r.Calibration != nil && r.Calibration.SHA256 != "" {
		c, err := runlog.HashFile(s.Calibration)
		if err != nil {
			return wrapExit(exitInput, err, "calibration file")
		}
		if c.SHA256 != r.Calibration.SHA256 {
			return fail(exitInput, "run %d: calibration file %s changed since the run (sha256 %s, recorded %s)", r.ID, s.Calibration, c.SHA256, r.Calibration.SHA256)
		}
	}
	out := a.output
	if out == "" {
		dir, err := os.MkdirTemp("", "monoquant-reproduce-")
		if err != nil {
			return wrapExit(exitOutput, err, "")
		}
		defer os.RemoveAll(dir)
		ext := filepath.Ext(r.Output.Path)
		if ext == "" {
			ext = ".safetensors"
		}
		out = filepath.Join(dir, "reproduced"+ext)
	}
	inR, err := openInput("input", r.Input.Path)
	if err != nil {
		return err
	}
	defer inR.Close()
	res, err := quantizeFile(ctx, e, inR, quantizeJob{
		model: r.Input.Path, out: out, format: s.OutputFormat, calibration: s.Calibration,
		opts: s.Options, quiet: a.quiet, log: runlog.Enabled(), logPath: l.Path(),
	})
	if err != nil {
		return err
	}
	got, err := runlog.HashFile(out)
	if err != nil {
		return wrapExit(exitOutput, err, "")
	}
	w := e.stdout
	newID := ""
	if res.RunID > 0 {
		newID = fmt.Sprintf(" (recorded as run %d)", res.RunID)
	}
	if got.SHA256 == r.Output.SHA256 {
		fmt.Fprintf(w, "identical: run %d reproduced%s; output sha256 %s\n", r.ID, newID, got.SHA256)
		if a.output != "" {
			fmt.Fprintf(w, "Wrote %s\n", out)
		}
		return nil
	}
	fmt.Fprintf(w, "different: run %d reproduced%s, but the output sha256 is %s, recorded %s\n", r.ID, newID, got.SHA256, r.Output.SHA256)
	for _, d := range reproduceDiffs(r, res) {
		fmt.Fprintf(w, "  - %s\n", d)
	}
	if a.output != "" {
		fmt.Fprintf(w, "Wrote %s\n", out)
	}
	return fail(exitNotRepro, "run %d did not reproduce byte for byte", r.ID)
}

// reproduceDiffs says what differs between a recorded run and its reproduction: the
// monoquant version, the resolved per-tensor config, the tensors quantized and their SQNR.
func reproduceDiffs(r *runlog.Run, res *quantizeResult) []string {
	var d []string
	if v := r.Versions["monoquant"]; v != "" && v != currentVersion() {
		d = append(d, fmt.Sprintf("monoquant version: recorded %s, now %s", v, currentVersion()))
	}
	// The resolved config: a default that changed since the run shows here, tensor by tensor.
	var was model.Config
	if json.Unmarshal(r.Config, &was) == nil && res.config != nil {
		for _, name := range sortedKeys(res.config.Tensors) {
			now, _ := json.Marshal(res.config.Tensors[name])
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
	for _, t := range res.Report.Tensors {
		seen[t.Name] = true
		old, ok := sq[t.Name]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("tensor %s is quantized now, was not in run %d", t.Name, r.ID))
		case fmt.Sprintf("%.6f", old) != fmt.Sprintf("%.6f", float64(t.SQNR)):
			d = append(d, fmt.Sprintf("tensor %s: SQNR %.3f dB now, %.3f dB recorded", t.Name, float64(t.SQNR), old))
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

func currentVersion() string { return strings.TrimSpace(runlog.Begin("").Versions["monoquant"]) }
