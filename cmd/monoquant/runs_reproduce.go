package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/reproduce"
	"github.com/monoquant/monoquant/core/runlog"
)

// runsReproduce runs a recorded run again (core/reproduce decides what is checked and
// compared) and prints "identical" or what differs.
func runsReproduce(ctx context.Context, e *env, a *runsArgs, l *runlog.Log, args []string) error {
	if len(args) != 1 {
		return usageErr("runs reproduce: want one run id")
	}
	r, err := getRun(ctx, l, args[0])
	if err != nil {
		return err
	}
	if r.Input.Path != "" {
		if err := checkInputPath("input", r.Input.Path); err != nil {
			return fmt.Errorf("run %d: %w", r.ID, err)
		}
	}
	opts := reproduce.Options{Output: a.output, Create: createOutput}
	if runlog.Enabled() {
		opts.Log = &convert.Log{Entry: "cli", Path: l.Path()}
	}
	var bar *progress
	opts.Progress = func(p model.Progress) { bar.update(p.TensorsDone, p.TensorsTotal, p.BytesDone, p.BytesTotal) }
	bar = newProgress(e, a.quiet, "reproducing")
	res, err := reproduce.Run(ctx, r, opts)
	if err != nil {
		bar.abort()
		switch {
		case errors.Is(err, reproduce.ErrInputChanged), errors.Is(err, reproduce.ErrNotReproducible):
			return wrapExit(exitInput, err, "")
		case errors.Is(err, runlog.ErrSettings):
			return wrapExit(exitFormat, err, "")
		}
		return classifyCoreErr(err)
	}
	bar.finish()
	if res.LogWarning != "" {
		fmt.Fprintf(e.stderr, "monoquant: warning: %s\n", res.LogWarning)
	}
	w := e.stdout
	newID := ""
	if res.NewRunID > 0 {
		newID = fmt.Sprintf(" (recorded as run %d)", res.NewRunID)
	}
	if res.Identical {
		fmt.Fprintf(w, "identical: run %d reproduced%s; output %s\n", r.ID, newID, res.OutputDigest)
	} else {
		fmt.Fprintf(w, "different: run %d reproduced%s, but the output is %s, recorded %s\n", r.ID, newID, res.OutputDigest, res.RecordedDigest)
		for _, d := range res.Differences {
			fmt.Fprintf(w, "  - %s\n", d)
		}
	}
	if res.Output != "" {
		fmt.Fprintf(w, "Wrote %s\n", res.Output)
	}
	if !res.Identical {
		return fail(exitNotRepro, "run %d did not reproduce byte for byte", r.ID)
	}
	return nil
}
