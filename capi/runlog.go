package main

/*
#include "model.h"
#include "search.h"
typedef const mq_runlog_options mq_crunlog_options;
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"unsafe"

	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/reproduce"
	"github.com/monoquant/monoquant/core/runlog"
	"github.com/monoquant/monoquant/core/search"
)

// The run log exports: each checks its arguments, opens the log, calls core/runlog or
// core/reproduce and maps the error.

// runlogOptions is a checked mq_runlog_options (NULL: the defaults).
type runlogOptions struct {
	path, entry string
	noLog       bool
}

func runlogOptionsFromC(o *C.mq_crunlog_options, call string) (runlogOptions, error) {
	r := runlogOptions{entry: "c"}
	if o == nil {
		return r, nil
	}
	if o.version != C.MQ_RUNLOG_OPTIONS_VERSION || o.size != C.uint32_t(unsafe.Sizeof(C.mq_runlog_options{})) {
		return r, fail(mqEINVAL, "%s: run log options have size %d and version %d; this library takes version %d (size %d): call mq_runlog_options_init",
			call, o.size, o.version, C.MQ_RUNLOG_OPTIONS_VERSION, unsafe.Sizeof(C.mq_runlog_options{}))
	}
	if o.path != nil {
		r.path = C.GoString(o.path)
	}
	if o.entry_point != nil {
		r.entry = C.GoString(o.entry_point)
	}
	r.noLog = o.no_log != 0
	return r, nil
}

// openLog opens the log the options name; a log that does not exist yet is an error unless
// create (reading never creates a log where there was none).
func (o runlogOptions) open(ctx context.Context, call string, create bool) (*runlog.Log, error) {
	path := o.path
	if path == "" {
		p, err := runlog.DefaultPathEnv(liveGetenv)
		if err != nil {
			return nil, fail(mqEIO, "%s: %v", call, err)
		}
		path = p
	}
	if !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fail(mqEIO, "%s: no run log at %s yet: a quantization creates it (or set MONOQUANT_HOME)", call, path)
		}
	}
	l, err := runlog.Open(ctx, path)
	if err != nil {
		return nil, fail(mqEIO, "%s: %v", call, err)
	}
	return l, nil
}

func runlogErr(call string, err error) C.int {
	switch {
	case errors.Is(err, runlog.ErrMetricValue):
		return mapErr(fail(mqENONFINITE, "%s: %v", call, err), mqENONFINITE)
	case errors.Is(err, runlog.ErrNotFound), errors.Is(err, runlog.ErrMetricName):
		return mapErr(fail(mqEINVAL, "%s: %v", call, err), mqEINVAL)
	case errors.Is(err, reproduce.ErrInputChanged), errors.Is(err, runlog.ErrFileChanged):
		return mapErr(fail(mqEIO, "%s: %v", call, err), mqEIO)
	case errors.Is(err, reproduce.ErrNotReproducible):
		return mapErr(fail(mqEUNSUPPORTED, "%s: %v", call, err), mqEUNSUPPORTED)
	case errors.Is(err, runlog.ErrSettings):
		return mapErr(fail(mqEFORMAT, "%s: %v", call, err), mqEFORMAT)
	}
	return modelErr(err, mqEIO)
}

// openRunlog opens the run log an existing-runs call reads (mq_run_show_json, compare,
// reproduce, log_metric): MQ_EINVAL for bad options, MQ_EIO when it cannot be opened.
func openRunlog(ctx context.Context, lo *C.mq_crunlog_options, call string) (runlogOptions, *runlog.Log, C.int) {
	o, err := runlogOptionsFromC(lo, call)
	if err != nil {
		return o, nil, mapErr(err, mqEINVAL)
	}
	l, err := o.open(ctx, call, false)
	if err != nil {
		return o, nil, mapErr(err, mqEIO)
	}
	return o, l, mqOK
}

//export mq_runlog_options_init
func mq_runlog_options_init(o *C.mq_runlog_options) (rc C.int) {
	defer guard(&rc)
	if o == nil {
		return mapErr(fail(mqEINVAL, "mq_runlog_options_init: opts is NULL"), mqEINVAL)
	}
	*o = C.mq_runlog_options{size: C.uint32_t(unsafe.Sizeof(*o)), version: C.MQ_RUNLOG_OPTIONS_VERSION}
	return mqOK
}

//export mq_runs_list_json
func mq_runs_list_json(lo *C.mq_crunlog_options, filters *C.mq_cchar, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	const call = "mq_runs_list_json"
	if length == nil {
		return mapErr(fail(mqEINVAL, "%s: len is NULL", call), mqEINVAL)
	}
	o, err := runlogOptionsFromC(lo, call)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	var f map[string]string
	if filters != nil {
		if err := json.Unmarshal([]byte(C.GoString(filters)), &f); err != nil {
			return mapErr(fail(mqEINVAL, `%s: filters_json is not a JSON object of strings ({"options.bits": "4"}): %v`, call, err), mqEINVAL)
		}
	}
	ctx := context.Background()
	l, err := o.open(ctx, call, false)
	if err != nil {
		var se *statusError
		if errors.As(err, &se) && se.code == mqEIO && noLogYet(o) {
			return writeJSON(call, []any{}, buf, cap, length)
		}
		return mapErr(err, mqEIO)
	}
	defer l.Close()
	runs, err := l.List(ctx, f)
	if err != nil {
		return runlogErr(call, err)
	}
	if runs == nil {
		runs = []*runlog.Run{}
	}
	return writeJSON(call, runlog.JSONSafe(runs), buf, cap, length)
}

// noLogYet says the log the options name does not exist (list shows it as empty).
func noLogYet(o runlogOptions) bool {
	path := o.path
	if path == "" {
		path, _ = runlog.DefaultPathEnv(liveGetenv)
	}
	_, err := os.Stat(path)
	return path != "" && errors.Is(err, os.ErrNotExist)
}

//export mq_run_show_json
func mq_run_show_json(lo *C.mq_crunlog_options, id C.int64_t, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	const call = "mq_run_show_json"
	if length == nil {
		return mapErr(fail(mqEINVAL, "%s: len is NULL", call), mqEINVAL)
	}
	ctx := context.Background()
	_, l, rc := openRunlog(ctx, lo, call)
	if rc != mqOK {
		return rc
	}
	defer l.Close()
	r, err := l.Get(ctx, int64(id))
	if err != nil {
		return runlogErr(call, err)
	}
	return writeJSON(call, runlog.JSONSafe([]*runlog.Run{r})[0], buf, cap, length)
}

// maxCompare bounds the runs one comparison takes.
const maxCompare = 1024

//export mq_runs_compare_json
func mq_runs_compare_json(lo *C.mq_crunlog_options, ids *C.mq_cint64, n C.size_t, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	const call = "mq_runs_compare_json"
	if length == nil {
		return mapErr(fail(mqEINVAL, "%s: len is NULL", call), mqEINVAL)
	}
	if ids == nil || n == 0 || uint64(n) > maxCompare {
		return mapErr(fail(mqEINVAL, "%s: want 1 to %d run ids, got %d (ids %p)", call, maxCompare, uint64(n), ids), mqEINVAL)
	}
	ctx := context.Background()
	_, l, rc := openRunlog(ctx, lo, call)
	if rc != mqOK {
		return rc
	}
	defer l.Close()
	var runs []*runlog.Run
	for _, id := range unsafe.Slice((*C.int64_t)(unsafe.Pointer(ids)), int(n)) {
		r, err := l.Get(ctx, int64(id))
		if err != nil {
			return runlogErr(call, err)
		}
		runs = append(runs, r)
	}
	return writeJSON(call, runlog.Compare(runs), buf, cap, length)
}

//export mq_run_reproduce
func mq_run_reproduce(lo *C.mq_crunlog_options, id C.int64_t, output *C.mq_cchar, progress C.mq_progress_fn, user unsafe.Pointer, result **C.mq_report) (rc C.int) {
	defer guard(&rc)
	const call = "mq_run_reproduce"
	if result != nil {
		*result = nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o, l, rc := openRunlog(ctx, lo, call)
	if rc != mqOK {
		return rc
	}
	defer l.Close()
	r, err := l.Get(ctx, int64(id))
	if err != nil {
		return runlogErr(call, err)
	}
	opts := reproduce.Options{}
	if output != nil {
		opts.Output = C.GoString(output)
	}
	if !o.noLog && runlog.EnabledEnv(liveGetenv) {
		opts.Log = &convert.Log{Entry: o.entry, Path: l.Path(), Getenv: liveGetenv}
	}
	canceled := false
	if progress != nil {
		opts.Progress = func(p model.Progress) {
			if !canceled && C.mq__call_progress(progress, C.uint64_t(p.TensorsDone), C.uint64_t(p.TensorsTotal),
				C.uint64_t(p.BytesDone), C.uint64_t(p.BytesTotal), user) != 0 {
				canceled = true
				cancel()
			}
		}
	}
	res, err := offThread(func() (*reproduce.Result, error) { return reproduce.Run(ctx, r, opts) })
	if canceled {
		return mapErr(fail(mqECANCELED, "%s: canceled by the progress callback", call), mqECANCELED)
	}
	if err != nil {
		return runlogErr(call, err)
	}
	if result != nil {
		js, err := json.Marshal(struct {
			*reproduce.Result
			Report *model.Report `json:"report"`
		}{res, res.Report})
		if err != nil {
			return mapErr(fail(mqEINTERNAL, "%s: %v", call, err), mqEINTERNAL)
		}
		*result = C.mq__report_from_id(C.uintptr_t(addHandle(kindReport, &reportState{js: js})))
	}
	return mqOK
}

//export mq_run_log_metric
func mq_run_log_metric(lo *C.mq_crunlog_options, id C.int64_t, name *C.mq_cchar, value C.double) (rc C.int) {
	defer guard(&rc)
	const call = "mq_run_log_metric"
	key, err := goString(name, call, "name")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	ctx := context.Background()
	_, l, rc := openRunlog(ctx, lo, call)
	if rc != mqOK {
		return rc
	}
	defer l.Close()
	return runlogErr(call, l.AddMetric(ctx, int64(id), key, float64(value)))
}

//export mq_run_add_sha256
func mq_run_add_sha256(lo *C.mq_crunlog_options, id C.int64_t) (rc C.int) {
	defer guard(&rc)
	const call = "mq_run_add_sha256"
	ctx := context.Background()
	_, l, rc := openRunlog(ctx, lo, call)
	if rc != mqOK {
		return rc
	}
	defer l.Close()
	// reads whole files: on a goroutine of its own, as the other long calls (offThread)
	_, err := offThread(func() (*runlog.Run, error) { return l.AddSHA256(ctx, int64(id)) })
	return runlogErr(call, err)
}

//export mq_runlog_set_version
func mq_runlog_set_version(component, version *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	const call = "mq_runlog_set_version"
	c, err := goString(component, call, "component")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	v, err := goString(version, call, "version")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if c == "" || c == "monoquant" || c == "go" {
		return mapErr(fail(mqEINVAL, "%s: component %q: want a non-empty name other than the library's own \"monoquant\" and \"go\"", call, c), mqEINVAL)
	}
	runlog.SetVersion(c, v)
	return mqOK
}

//export mq_search_record_run
func mq_search_record_run(h *C.mq_search, trial C.int64_t, lo *C.mq_crunlog_options, runID *C.int64_t) (rc C.int) {
	defer guard(&rc)
	const call = "mq_search_record_run"
	if runID != nil {
		*runID = 0
	}
	o, err := runlogOptionsFromC(lo, call)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	e, err := lockHandle(searchID(h), kindSearch)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	trials, sp := e.value.(*searchState).e.Trials(), e.value.(*searchState).e.Space()
	e.mu.Unlock()
	if trial < 0 || int64(trial) >= int64(len(trials)) || trials[trial].Trial != int(trial) {
		return mapErr(fail(mqEINVAL, "%s: the search has no trial %d", call, int64(trial)), mqEINVAL)
	}
	t := trials[trial]
	if t.Status != search.StatusDone {
		return mapErr(fail(mqEINVAL, "%s: trial %d is %s, not told", call, int64(trial), t.Status), mqEINVAL)
	}
	if !runlog.EnabledEnv(liveGetenv) {
		return mqOK
	}
	path := o.path
	if path == "" {
		if path, err = runlog.DefaultPathEnv(liveGetenv); err != nil {
			setLastError("run not recorded: " + err.Error())
			return mqOK
		}
	}
	goals := map[string]string{}
	for _, ob := range sp.Objectives {
		goals[ob.Name] = ob.Goal
	}
	id, warning := runlog.RecordTrial(context.Background(), path, runlog.Trial{EntryPoint: "search", Recipe: t.Recipe,
		Objectives: t.Objectives, Goals: goals, Results: map[string]float64{"bits_per_weight": t.BitsPerWeight, "trial": float64(t.Trial)}})
	if warning != "" {
		setLastError(warning)
	}
	if runID != nil {
		*runID = C.int64_t(id)
	}
	return mqOK
}
