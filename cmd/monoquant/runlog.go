package main

import (
	"context"
	"path/filepath"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/runlog"
)

// recordRun fills the run record from a finished quantization and stores it. It never fails the
// quantization: anything that goes wrong comes back as one warning line.
func recordRun(ctx context.Context, j quantizeJob, rec *runlog.Run, s runlog.Settings, plan *model.Plan, rep *model.Report,
	v *convert.Validation, inHash, outHash, calHash *runlog.Hashing) (id int64, path, warning string) {
	path = j.logPath
	if path == "" {
		p, err := runlog.DefaultPath()
		if err != nil {
			return 0, "", "run not recorded: " + err.Error()
		}
		path = p
	}
	if err := rec.SetReport(s, plan, rep); err != nil {
		return 0, path, "run not recorded: " + err.Error()
	}
	var err error
	if err = inHash.SetInput(rec); err != nil {
		return 0, path, "run not recorded: " + err.Error()
	}
	if rec.Output, err = outHash.Wait(); err != nil {
		return 0, path, "run not recorded: " + err.Error()
	}
	rec.Input.Path, rec.Output.Path = absPath(rec.Input.Path), absPath(rec.Output.Path)
	if calHash != nil {
		ref, err := calHash.Wait()
		if err != nil {
			return 0, path, "run not recorded: " + err.Error()
		}
		rec.Calibration.Path, rec.Calibration.SHA256 = absPath(ref.Path), ref.SHA256
		s.Calibration = rec.Calibration.Path
		if err := rec.SetReport(s, plan, rep); err != nil {
			return 0, path, "run not recorded: " + err.Error()
		}
	}
	if v != nil {
		worst := 0.0
		for i, l := range v.LayerOutputs {
			if i == 0 || float64(l.OutputSQNR) < worst {
				worst = float64(l.OutputSQNR)
			}
		}
		if len(v.LayerOutputs) > 0 {
			rec.Results["validation_worst_output_sqnr_db"] = worst
		}
		rec.Results["validation_tensors_checked"] = float64(v.TensorsChecked)
	}
	// Stored paths are absolute so that `runs reproduce` works from any folder.
	id, warning = runlog.RecordOrWarn(ctx, path, rec)
	return id, path, warning
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// calibrationFingerprint records how many batches the calibration file held and their shapes.
func calibrationFingerprint(entries []checkpoint.Entry) *runlog.Calibration {
	c := &runlog.Calibration{Count: len(entries), Shapes: [][]int{}}
	for i, e := range entries {
		if i == runlog.MaxShapes {
			break
		}
		c.Shapes = append(c.Shapes, append([]int{}, e.Shape...))
	}
	return c
}
