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
	"unsafe"

	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
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
	js, err := json.Marshal(model.Describe(p))
	if err != nil {
		return mapErr(fail(mqEINTERNAL, "mq_model_plan_json: %v", err), mqEINTERNAL)
	}
	return mapErr(copyJSON(js, buf, cap, length), mqEINVAL)
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
	js, err := json.Marshal(model.Describe(p))
	if err != nil {
		return mapErr(fail(mqEINTERNAL, "mq_plan_file_json: %v", err), mqEINTERNAL)
	}
	return mapErr(copyJSON(js, buf, cap, length), mqEINVAL)
}

// reportState is what a report handle holds: the report as JSON.
type reportState struct{ js []byte }

//export mq_quantize_file
func mq_quantize_file(src, dst *C.mq_cchar, cfg *C.mq_cmodel_config, calibration *C.mq_cchar, progress C.mq_progress_fn, user unsafe.Pointer, report **C.mq_report) (rc C.int) {
	defer guard(&rc)
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
	res, err := convert.File(ctx, in, out, opts, run)
	if canceled {
		return mapErr(fail(mqECANCELED, "mq_quantize_file: canceled by the progress callback; %s was not written", out), mqECANCELED)
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
	js, err := json.Marshal(d)
	if err != nil {
		return mapErr(fail(mqEINTERNAL, "mq_defaults_json: %v", err), mqEINTERNAL)
	}
	return mapErr(copyJSON(js, buf, cap, length), mqEINVAL)
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
