package main

/*
#include "model.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
)

//export mq_model_plan_json
func mq_model_plan_json(h *C.mq_model, cfg *C.mq_cmodel_config, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_model_plan_json: len is NULL"), mqEINVAL)
	}
	e, s, err := lockModel(h, "mq_model_plan_json")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_plan_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	opts, err := optionsFromC(cfg)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	p, err := m.Plan(opts)
	if err != nil {
		return modelErr(err, mqEINVAL)
	}
	return writeJSON("mq_model_plan_json", model.Describe(p), buf, cap, length)
}

//export mq_plan_file_json
func mq_plan_file_json(src *C.mq_cchar, cfg *C.mq_cmodel_config, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_plan_file_json: len is NULL"), mqEINVAL)
	}
	in, err := goString(src, "mq_plan_file_json", "src")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	opts, err := optionsFromC(cfg)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	p, err := convert.PlanFile(in, opts)
	if err != nil {
		return modelErr(err, mqEIO)
	}
	return writeJSON("mq_plan_file_json", model.Describe(p), buf, cap, length)
}

// reportState is what a report handle holds: the report as JSON.
type reportState struct{ js []byte }

//export mq_quantize_file
func mq_quantize_file(src, dst *C.mq_cchar, cfg *C.mq_cmodel_config, calibration *C.mq_cchar, progress C.mq_progress_fn, user unsafe.Pointer, report **C.mq_report) (rc C.int) {
	defer guard(&rc)
	return quantizeFile(src, dst, cfg, calibration, progress, user, nil, report)
}

//export mq_quantize_file_cancelable
func mq_quantize_file_cancelable(src, dst *C.mq_cchar, cfg *C.mq_cmodel_config, calibration *C.mq_cchar, progress C.mq_progress_fn, user unsafe.Pointer, cancel *C.mq_ccancel_flag, report **C.mq_report) (rc C.int) {
	defer guard(&rc)
	return quantizeFile(src, dst, cfg, calibration, progress, user, cancel, report)
}

// cancelPoll is how often a running call reads the caller's cancel flag on its own: well under
// the second a Ctrl-C may take, and rare enough to cost nothing. The engine's checks between
// blocks and tensors (ctx.Err) also read the flag, at once.
const cancelPoll = 10 * time.Millisecond

// flagContext is a context that the caller's cancel flag cancels: Err reads the flag (so the
// engine's checks between blocks see it at once), and a goroutine polls it every cancelPoll for
// the code that waits on Done.
type flagContext struct {
	context.Context
	flag   *int32
	cancel context.CancelFunc
	fired  atomic.Bool
}

func (c *flagContext) Err() error {
	c.poll()
	return c.Context.Err()
}

func (c *flagContext) poll() bool {
	if c.fired.Load() {
		return true
	}
	if atomic.LoadInt32(c.flag) != 0 {
		c.fired.Store(true)
		c.cancel()
		return true
	}
	return false
}

// withCancelFlag returns ctx cancelled also by a non-zero *flag (nil: never), the function
// that ends the polling (call it before the call returns: the flag's memory is the caller's),
// and a function reporting whether the flag was seen set.
func withCancelFlag(ctx context.Context, cancel context.CancelFunc, flag *C.mq_ccancel_flag) (context.Context, func(), func() bool) {
	if flag == nil {
		return ctx, func() {}, func() bool { return false }
	}
	fc := &flagContext{Context: ctx, flag: (*int32)(unsafe.Pointer(flag)), cancel: cancel}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(cancelPoll)
		defer t.Stop()
		for !fc.poll() {
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return fc, func() { close(done); <-exited }, fc.poll
}

// quantizeFile is mq_quantize_file, cancelled also by a non-zero *cancel when cancel is not NULL.
func quantizeFile(src, dst *C.mq_cchar, cfg *C.mq_cmodel_config, calibration *C.mq_cchar, progress C.mq_progress_fn, user unsafe.Pointer, cancelFlag *C.mq_ccancel_flag, report **C.mq_report) (rc C.int) {
	if report != nil {
		*report = nil
	}
	in, err := goString(src, "mq_quantize_file", "src")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	out, err := goString(dst, "mq_quantize_file", "dst")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	opts, err := optionsFromC(cfg)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	run := convert.Run{}
	if calibration != nil {
		run.CalibrationFile = C.GoString(calibration)
	}
	run.Validate = cfg.version >= 2 && cfg.validate != 0
	if cfg.version >= 2 && cfg.no_log == 0 {
		entry := "c"
		if cfg.entry_point != nil {
			entry = C.GoString(cfg.entry_point)
		}
		run.Log = &convert.Log{Entry: entry, OutputFormat: outputFormat(out), Getenv: liveGetenv}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, stopWatch, flagged := withCancelFlag(ctx, cancel, cancelFlag)
	canceled := false
	if progress != nil {
		run.Progress = func(p model.Progress) {
			if !canceled && C.mq__call_progress(progress, C.uint64_t(p.TensorsDone), C.uint64_t(p.TensorsTotal),
				C.uint64_t(p.BytesDone), C.uint64_t(p.BytesTotal), user) != 0 {
				canceled = true
				cancel()
			}
		}
	}
	res, err := offThread(func() (*convert.Result, error) { return convert.File(ctx, in, out, opts, run) })
	stopWatch()
	if canceled {
		return mapErr(fail(mqECANCELED, "mq_quantize_file: canceled by the progress callback; %s was not written", out), mqECANCELED)
	}
	if err != nil && flagged() {
		return mapErr(fail(mqECANCELED, "mq_quantize_file: canceled by the cancel flag; %s was not written", out), mqECANCELED)
	}
	if err != nil {
		return modelErr(err, mqEIO)
	}
	if report != nil {
		js, err := json.Marshal(struct {
			*model.Report
			Validation *convert.Validation `json:"validation,omitempty"`
			RunID      int64               `json:"run_id"`
			LogWarning string              `json:"log_warning,omitempty"`
		}{res.Report, res.Validation, res.RunID, res.LogWarning})
		if err != nil {
			return mapErr(fail(mqEINTERNAL, "mq_quantize_file: %v", err), mqEINTERNAL)
		}
		*report = C.mq__report_from_id(C.uintptr_t(addHandle(kindReport, &reportState{js: js})))
	}
	return mqOK
}

func reportID(r *C.mq_report) uintptr { return uintptr(C.mq__id_from_report(r)) }

//export mq_report_json
func mq_report_json(r *C.mq_report, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_report_json: len is NULL"), mqEINVAL)
	}
	e, err := lockHandle(reportID(r), kindReport)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	return mapErr(copyJSON(e.value.(*reportState).js, buf, cap, length), mqEINVAL)
}

//export mq_report_free
func mq_report_free(r *C.mq_report) (rc C.int) {
	defer guard(&rc)
	if r == nil {
		return mqOK
	}
	return mapErr(removeHandle(reportID(r), kindReport), mqEHANDLE)
}

//export mq_defaults_json
func mq_defaults_json(buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_defaults_json: len is NULL"), mqEINVAL)
	}
	d := recipe.Defaults()
	d["version"] = model.ToolVersion
	d["layers"] = plan.DefaultLayerTypes
	d["metadata_key"], d["format_version"] = model.MetadataKey, model.FormatVersion
	d["suffixes"] = names.StoredSuffixes()
	return writeJSON("mq_defaults_json", d, buf, cap, length)
}

func outputFormat(out string) string {
	if strings.HasSuffix(strings.ToLower(out), ".safetensors") || !strings.Contains(filepath.Base(out), ".") {
		return "safetensors"
	}
	return "pt"
}

// liveGetenv reads the process environment as it is now (C's getenv): a host may have changed
// it after the Go runtime copied it at load time (Python's os.environ["MONOQUANT_LOG"] = "0").
func liveGetenv(name string) string {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	if v := C.getenv(cs); v != nil {
		return C.GoString(v)
	}
	return ""
}

//export mq_dequantize_file
func mq_dequantize_file(src, dst *C.mq_cchar, progress C.mq_progress_fn, user unsafe.Pointer) (rc C.int) {
	defer guard(&rc)
	in, err := goString(src, "mq_dequantize_file", "src")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	out, err := goString(dst, "mq_dequantize_file", "dst")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	canceled := false
	var fn model.ProgressFunc
	if progress != nil {
		fn = func(p model.Progress) {
			if !canceled && C.mq__call_progress(progress, C.uint64_t(p.TensorsDone), C.uint64_t(p.TensorsTotal),
				C.uint64_t(p.BytesDone), C.uint64_t(p.BytesTotal), user) != 0 {
				canceled = true
				cancel()
			}
		}
	}
	_, err = offThread(func() (struct{}, error) { return struct{}{}, convert.Dequantize(ctx, in, out, fn) })
	if canceled {
		return mapErr(fail(mqECANCELED, "mq_dequantize_file: canceled by the progress callback; %s was not written", out), mqECANCELED)
	}
	return modelErr(err, mqEIO)
}
