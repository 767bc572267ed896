package convert

import (
	"context"
	"os"
	"path/filepath"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/runlog"
)

// Log asks a conversion to record itself in the run log (core/runlog). Recording never costs
// the conversion: a log that cannot be written gives Result.LogWarning, and the output stands.
type Log struct {
	// Entry names the entry point: "cli", "c", "python", "go".
	Entry string
	// Path is the log file ("" for runlog.DefaultPath).
	Path string
	// OutputFormat ("safetensors" or "pt") is stored with the settings, for a reproduction.
	OutputFormat string
	// Getenv reads MONOQUANT_LOG and the log's folder (nil: os.Getenv); the C ABI passes the
	// process's live environment.
	Getenv func(string) string
}

func (l *Log) getenv() func(string) string {
	if l.Getenv != nil {
		return l.Getenv
	}
	return os.Getenv
}

// recording is the run record of a conversion while it runs.
type recording struct {
	log                      *Log
	rec                      *runlog.Run
	inHash, outHash, calHash *runlog.Hashing
}

// streamedReader is a reader that can hash its whole file from its own reads (safetensors).
type streamedReader interface {
	HashWhileReading() error
	runlog.StreamedDigest
}

// startRecording starts the record and the input's identity: from the log's cache, else from
// the reads the quantization makes of src when src can hash them (one safetensors file), else
// hashed in the background; nil when there is no Log or MONOQUANT_LOG=0. src is nil when the
// input is more than the file it reads (a model folder).
func startRecording(l *Log, in string, run Run, cal, src checkpoint.Reader) *recording {
	if l == nil || !runlog.EnabledEnv(l.getenv()) {
		return nil
	}
	r := &recording{log: l, rec: runlog.Begin(l.Entry)}
	if l.Path == "" {
		l.Path, _ = runlog.DefaultPathEnv(l.getenv()) // "" when there is none: finish says why
	}
	if s, ok := src.(streamedReader); ok && s.HashWhileReading() == nil {
		r.inHash = runlog.HashInputStreamed(context.Background(), l.Path, in, s)
	} else {
		r.inHash = runlog.HashInputAsync(context.Background(), l.Path, in)
	}
	if run.CalibrationFile != "" {
		r.calHash = runlog.HashFileAsync(run.CalibrationFile)
	}
	if cal != nil {
		entries := cal.Entries()
		c := &runlog.Calibration{Count: len(entries), Shapes: [][]int{}}
		for i, e := range entries {
			if i == runlog.MaxShapes {
				break
			}
			c.Shapes = append(c.Shapes, append([]int{}, e.Shape...))
		}
		r.rec.Calibration = c
	}
	return r
}

// finish fills the record from the finished conversion and stores it.
func (r *recording) finish(ctx context.Context, c *Conversion, res *Result) {
	path := r.log.Path
	if path == "" {
		p, err := runlog.DefaultPathEnv(r.log.getenv())
		if err != nil {
			res.LogWarning = "run not recorded: " + err.Error()
			return
		}
		path = p
	}
	res.RunLog = path
	fail := func(err error) { res.LogWarning = "run not recorded: " + err.Error() }
	s := runlog.Settings{Options: c.opts, OutputFormat: r.log.OutputFormat, Calibration: c.run.CalibrationFile, Recipe: c.plan.Recipe}
	rec := r.rec
	if err := r.inHash.SetInput(rec); err != nil {
		fail(err)
		return
	}
	var err error
	if r.outHash != nil {
		if rec.Output, err = r.outHash.Wait(); err != nil {
			fail(err)
			return
		}
	}
	rec.Input.Path, rec.Output.Path = absPath(rec.Input.Path), absPath(rec.Output.Path)
	if r.calHash != nil {
		ref, err := r.calHash.Wait()
		if err != nil {
			fail(err)
			return
		}
		rec.Calibration.Path, rec.Calibration.SHA256, rec.Calibration.XXH3 = absPath(ref.Path), ref.SHA256, ref.XXH3
		s.Calibration = rec.Calibration.Path
	}
	if err := rec.SetReport(s, c.plan, res.Report); err != nil {
		fail(err)
		return
	}
	if v := res.Validation; v != nil {
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
	res.RunID, res.LogWarning = runlog.RecordOrWarn(ctx, path, rec)
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
