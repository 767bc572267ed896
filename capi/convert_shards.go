package main

/*
#include "model.h"
*/
import "C"

import (
	"context"
	"encoding/json"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
)

// openShards opens src and plans it under cfg, as mq_quantize_file does; close releases it.
func openShards(fn string, src, dst *C.mq_cchar, cfg *C.mq_cmodel_config, calibration *C.mq_cchar, log bool) (c *convert.Conversion, out string, close func(), err error) {
	in, err := goString(src, fn, "src")
	if err != nil {
		return nil, "", nil, err
	}
	if out, err = goString(dst, fn, "dst"); err != nil {
		return nil, "", nil, err
	}
	opts, err := optionsFromC(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	run := convert.Run{}
	if calibration != nil {
		run.CalibrationFile = C.GoString(calibration)
	}
	if log {
		run.Validate = cfg.version >= 2 && cfg.validate != 0
		if cfg.version >= 2 && cfg.no_log == 0 {
			entry := "c"
			if cfg.entry_point != nil {
				entry = C.GoString(cfg.entry_point)
			}
			run.Log = &convert.Log{Entry: entry, OutputFormat: outputFormat(out), Getenv: liveGetenv}
		}
	}
	r, err := checkpoint.Open(in)
	if err != nil {
		return nil, "", nil, err
	}
	if c, err = convert.New(r, in, opts, run); err != nil {
		r.Close()
		return nil, "", nil, err
	}
	return c, out, func() { r.Close() }, nil
}

func reportHandle(v any, out **C.mq_report) error {
	js, err := json.Marshal(v)
	if err != nil {
		return fail(mqEINTERNAL, "%v", err)
	}
	*out = C.mq__report_from_id(C.uintptr_t(addHandle(kindReport, &reportState{js: js})))
	return nil
}

//export mq_quantize_shards_begin
func mq_quantize_shards_begin(src, dst *C.mq_cchar, cfg *C.mq_cmodel_config, calibration *C.mq_cchar, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_quantize_shards_begin: len is NULL"), mqEINVAL)
	}
	c, out, closeIn, err := openShards("mq_quantize_shards_begin", src, dst, cfg, calibration, false)
	if err != nil {
		return modelErr(err, mqEIO)
	}
	defer closeIn()
	// A length query (a short buffer) prepares nothing: list first, then begin.
	shards, err := c.Shards()
	if err != nil {
		return modelErr(err, mqEIO)
	}
	if shards == nil {
		shards = []string{}
	}
	js, _ := json.Marshal(shards)
	if rc := mapErr(copyJSON(js, buf, cap, length), mqEINVAL); rc != mqOK || len(shards) == 0 {
		return rc
	}
	if _, err := c.BeginShards(out); err != nil {
		return modelErr(err, mqEIO)
	}
	return mqOK
}

//export mq_quantize_shard
func mq_quantize_shard(src, dst *C.mq_cchar, cfg *C.mq_cmodel_config, calibration *C.mq_cchar, shard C.size_t, report **C.mq_report) (rc C.int) {
	defer guard(&rc)
	if report == nil {
		return mapErr(fail(mqEINVAL, "mq_quantize_shard: report is NULL"), mqEINVAL)
	}
	*report = nil
	c, out, closeIn, err := openShards("mq_quantize_shard", src, dst, cfg, calibration, false)
	if err != nil {
		return modelErr(err, mqEIO)
	}
	defer closeIn()
	rep, err := offThread(func() (*model.Report, error) { return c.WriteShard(context.Background(), out, int(shard)) })
	if err != nil {
		return modelErr(err, mqEIO)
	}
	return mapErr(reportHandle(rep, report), mqEINTERNAL)
}

//export mq_quantize_shards_finish
func mq_quantize_shards_finish(src, dst *C.mq_cchar, cfg *C.mq_cmodel_config, calibration *C.mq_cchar, reports *C.mq_cchar, report **C.mq_report) (rc C.int) {
	defer guard(&rc)
	if report != nil {
		*report = nil
	}
	js, err := goString(reports, "mq_quantize_shards_finish", "reports_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	var reps []*model.Report
	if err := json.Unmarshal([]byte(js), &reps); err != nil {
		return mapErr(fail(mqEINVAL, "mq_quantize_shards_finish: reports_json is not a list of shard reports: %v", err), mqEINVAL)
	}
	c, out, closeIn, err := openShards("mq_quantize_shards_finish", src, dst, cfg, calibration, true)
	if err != nil {
		return modelErr(err, mqEIO)
	}
	defer closeIn()
	res, err := offThread(func() (*convert.Result, error) { return c.FinishShards(context.Background(), out, reps) })
	if err != nil {
		return modelErr(err, mqEIO)
	}
	if report == nil {
		return mqOK
	}
	return mapErr(reportHandle(struct {
		*model.Report
		Validation *convert.Validation `json:"validation,omitempty"`
		RunID      int64               `json:"run_id"`
		LogWarning string              `json:"log_warning,omitempty"`
	}{res.Report, res.Validation, res.RunID, res.LogWarning}, report), mqEINTERNAL)
}

//export mq_quantize_shards_abort
func mq_quantize_shards_abort(dst *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	out, err := goString(dst, "mq_quantize_shards_abort", "dst")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	convert.AbortShards(out)
	return mqOK
}
