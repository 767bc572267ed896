// Package runlog records every quantization in a SQLite database, so runs can be listed,
// compared, reproduced and exported later.
//
// The log is a plain SQLite file (WAL mode, foreign keys on, a schema_version table) that any
// SQLite tool can open; by default it lives at $MONOQUANT_HOME/runs.sqlite, else
// $XDG_DATA_HOME/monoquant/runs.sqlite, else ~/.local/share/monoquant/runs.sqlite (see
// DefaultPath). MONOQUANT_LOG=0 turns it off (see Enabled).
//
// Every entry point (the CLI, the C ABI, Python) calls the same functions:
//
//	rec := runlog.Begin("cli")                              // clock, host, versions
//	in := runlog.HashInputAsync(ctx, "", inputPath)         // cached, or hashed beside the work
//	... plan.NewPlan, model.Quantize ...
//	rec.SetReport(runlog.Settings{Options: opts}, plan, rep) // settings, config, layers, results
//	in.SetInput(rec)
//	rec.Output, _ = runlog.HashFile(outputPath)
//	id, warning := runlog.RecordOrWarn(ctx, "", rec)        // never fails the quantization
//
// An in-memory quantization (model.Model.Quantize: Python's quantize, C's mq_model_quantize)
// has no file: StartModel fingerprints the model's tensors beside the quantization
// (StateDictFingerprint, the documented input identity) and Finish records it, with the
// calibration data's CalibrationHash. A search trial known by its results only is recorded by
// RecordTrial (its objectives as metrics; Compare of one search's trials finds the front on
// them). SetVersion names the host of a binding (torch, python) in every run it records.
//
// Reading: Open, then List (with Fields-style filters), Get, AddMetric; Compare puts runs side
// by side and marks the Pareto front; WriteCSV, WriteJSONL and WriteMLflow export.
//
// The log never costs a quantization: a locked, corrupt, read-only or full database makes
// RecordOrWarn return one warning and no error. Concurrent writers (processes and threads) wait
// on SQLite's busy timeout and retry, so none is lost.
//
// The run's settings (options, output format, calibration file) are stored as JSON by
// EncodeSettings, the one place that decides that encoding; reproduction decodes them with
// DecodeSettings and runs the same pipeline again (core/reproduce, which every caller uses).
package runlog
