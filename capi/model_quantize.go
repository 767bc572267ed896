package main

/*
#include "model.h"
*/
import "C"

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"syscall"
	"unicode/utf8"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/runlog"
)

const (
	mqEIO          = C.MQ_EIO
	mqEFORMAT      = C.MQ_EFORMAT
	mqEUNSUPPORTED = C.MQ_EUNSUPPORTED
	mqECANCELED    = C.MQ_ECANCELED
	layerDefault   = C.MQ_LAYER_DEFAULT
)

// status is C.int under a name that Go test files, which cannot import "C", can write.
type status = C.int

// modelErr classifies an error of core/model or core/checkpoint by its sentinels: the engine's
// file and option errors carry them, and the same failure must get the same code from every
// call. fallback covers errors without one, which each export knows the meaning of.
func modelErr(err error, fallback C.int) C.int {
	if err == nil {
		return mqOK
	}
	code := fallback
	var se *statusError
	var pe *fs.PathError
	var le *os.LinkError
	var errno syscall.Errno
	switch {
	case errors.As(err, &se):
		code = se.code
	case errors.Is(err, context.Canceled):
		code = mqECANCELED
	case errors.Is(err, convert.ErrValidation):
		code = mqEIO // the written output failed its check and was removed
	case errors.Is(err, quant.ErrNonFinite):
		code = mqENONFINITE
	case errors.Is(err, plan.ErrOption), errors.Is(err, plan.ErrNothingToQuantize),
		errors.Is(err, model.ErrCalibration), errors.Is(err, quant.ErrSpec), errors.Is(err, convert.ErrOutput):
		code = mqEINVAL
	case errors.Is(err, model.ErrFormat), errors.Is(err, safetensors.ErrInvalid):
		code = mqEFORMAT
	case errors.Is(err, safetensors.ErrUnsupported):
		code = mqEUNSUPPORTED
	case errors.As(err, &pe), errors.As(err, &le), errors.As(err, &errno):
		code = mqEIO
	}
	return mapErr(&statusError{code: code, msg: err.Error()}, code)
}

//export mq_model_config_init
func mq_model_config_init(cfg *C.mq_model_config) (rc C.int) {
	defer guard(&rc)
	if cfg == nil {
		return mapErr(fail(mqEINVAL, "mq_model_config_init: cfg is NULL"), mqEINVAL)
	}
	*cfg = C.mq_model_config{
		size:    C.uint32_t(unsafe.Sizeof(*cfg)), // a version 1 caller's struct is smaller: it calls its own _init
		version: C.MQ_MODEL_CONFIG_VERSION,
		bits:    8,
		layers:  C.MQ_LAYER_DEFAULT,
		mode:    C.MQ_MODE_WEIGHT_ONLY,
	}
	if rc := mq_config_init(&cfg.spec); rc != mqOK {
		return rc
	}
	return mqOK
}

// layerBits lists the mq_layer_type bits in the order of their values.
var layerBits = []struct {
	bit uint32
	t   plan.LayerType
}{
	{C.MQ_LAYER_LINEAR, plan.Linear},
	{C.MQ_LAYER_CONV1D, plan.Conv1d},
	{C.MQ_LAYER_CONV2D, plan.Conv2d},
	{C.MQ_LAYER_CONV3D, plan.Conv3d},
	{C.MQ_LAYER_LSTM, plan.LSTM},
	{C.MQ_LAYER_GRU, plan.GRU},
	{C.MQ_LAYER_RNN, plan.RNN},
	{C.MQ_LAYER_EMBEDDING, plan.Embedding},
}

// optionsFromC checks the config's size and version and converts it to plan.Options; the
// engine validates the values themselves and names the bad option.
// modelConfigV1Size is sizeof(mq_model_config) as version 1 laid it out: the struct up to the
// first field version 2 added. Callers built against the older header pass that size.
var modelConfigV1Size = unsafe.Offsetof(C.mq_model_config{}.recipe_json)

// optionsFromC checks the config's size and version and converts it to plan.Options; the
// engine validates the values themselves and names the bad option.
func optionsFromC(cfg *C.mq_cmodel_config) (plan.Options, error) {
	var o plan.Options
	if cfg == nil {
		return o, fail(mqEINVAL, "model config is NULL")
	}
	v2 := cfg.version == 2 && cfg.size == C.uint32_t(unsafe.Sizeof(C.mq_model_config{}))
	v1 := cfg.version == 1 && uintptr(cfg.size) == modelConfigV1Size
	if !v1 && !v2 {
		return o, fail(mqEINVAL, "model config has size %d and version %d; this library takes version 1 (size %d) or %d (size %d): call mq_model_config_init",
			cfg.size, cfg.version, modelConfigV1Size, C.MQ_MODEL_CONFIG_VERSION, unsafe.Sizeof(C.mq_model_config{}))
	}
	if v2 && cfg.options_json != nil {
		o, err := optionsFromJSON(cfg)
		if err != nil {
			return o, err
		}
		return o, recipeFromC(cfg, &o)
	}
	spec, err := specFromC((*C.mq_cconfig)(unsafe.Pointer(&cfg.spec)))
	if err != nil {
		return o, fail(mqEINVAL, "model config spec: %v", err)
	}
	switch cfg.bits {
	case 0:
		o.Spec = spec
	case 4, 8, 16:
		o.Bits, o.BFloat16 = int(cfg.bits), cfg.bf16 != 0
		// Format unset: the engine builds the template for Bits and takes these from it.
		o.Spec = quant.Spec{Scheme: spec.Scheme, GroupSize: spec.GroupSize, QDType: spec.QDType,
			NonFinite: spec.NonFinite, SaturateFloat16: spec.SaturateFloat16}
		if cfg.bits == 16 {
			// mq_config_init always fills scheme and qdtype; they mean nothing for a float cast
			o.Spec.Scheme, o.Spec.QDType = 0, 0
		}
	default:
		return o, fail(mqEINVAL, "model config bits is %d; want 8, 4, 16, or 0 to use spec.format", int(cfg.bits))
	}
	layers := uint32(cfg.layers)
	if layers == 0 {
		return o, fail(mqEINVAL, "model config layers is 0: no layer type selected (MQ_LAYER_DEFAULT selects linear, conv2d and lstm)")
	}
	var known uint32
	for _, lb := range layerBits {
		known |= lb.bit
		if layers&lb.bit != 0 {
			o.LayerTypes = append(o.LayerTypes, lb.t)
		}
	}
	if layers&^known != 0 {
		return o, fail(mqEINVAL, "model config layers %#x has unknown bits %#x (want MQ_LAYER_* values)", layers, layers&^known)
	}
	if cfg.n_skip > 0 {
		if cfg.skip == nil {
			return o, fail(mqEINVAL, "model config skip is NULL but n_skip is %d", uint64(cfg.n_skip))
		}
		if uint64(cfg.n_skip) > 1<<20 {
			return o, fail(mqEINVAL, "model config n_skip is %d; more than 2^20 skip patterns is surely a mistake", uint64(cfg.n_skip))
		}
		ps := unsafe.Slice((**C.char)(unsafe.Pointer(cfg.skip)), int(cfg.n_skip))
		for i, p := range ps {
			if p == nil {
				return o, fail(mqEINVAL, "model config skip[%d] is NULL", i)
			}
			sk := C.GoString(p)
			if !utf8.ValidString(sk) {
				return o, fail(mqEINVAL, "model config skip[%d] is not valid UTF-8", i)
			}
			o.Skip = append(o.Skip, sk)
		}
	}
	switch cfg.mode {
	case C.MQ_MODE_WEIGHT_ONLY:
	case C.MQ_MODE_STATIC:
		o.Mode = plan.Static
	default:
		return o, fail(mqEINVAL, "model config mode is %d; want MQ_MODE_WEIGHT_ONLY or MQ_MODE_STATIC", int(cfg.mode))
	}
	if cfg.observer != nil {
		o.Observer = C.GoString(cfg.observer)
		if !utf8.ValidString(o.Observer) {
			return o, fail(mqEINVAL, "model config observer is not valid UTF-8")
		}
	}
	if cfg.activation_observer != nil {
		ao, err := observerOptionsFromC(cfg.activation_observer)
		if err != nil {
			return o, err
		}
		o.ActivationObserver = ao
	}
	if v1 {
		return o, nil
	}
	if err := recipeFromC(cfg, &o); err != nil {
		return o, err
	}
	if cfg.activations != nil {
		o.Activations = C.GoString(cfg.activations)
	}
	if cfg.method != nil {
		o.Method = C.GoString(cfg.method)
	}
	o.Outliers = cfg.outliers != 0
	if t := float64(cfg.outlier_threshold); t != 0 {
		if err := recipe.CheckOutlierThreshold(t); err != nil {
			return o, fail(mqEINVAL, "model config %v", err)
		}
		o.OutlierThreshold = t
	}
	switch cfg.group_fallback {
	case C.MQ_GROUP_FALLBACK_DEFAULT:
	case C.MQ_GROUP_FALLBACK_ALLOW, C.MQ_GROUP_FALLBACK_REFUSE:
		fb := cfg.group_fallback == C.MQ_GROUP_FALLBACK_ALLOW
		o.GroupFallback = &fb
	default:
		return o, fail(mqEINVAL, "model config group_fallback is %d; want an MQ_GROUP_FALLBACK_* value", int(cfg.group_fallback))
	}
	return o, nil
}

// optionsFromJSON reads a version 2 config whose options come by name (options_json); of the
// struct, recipe_json and activation_observer still apply.
func optionsFromJSON(cfg *C.mq_cmodel_config) (plan.Options, error) {
	o, err := plan.ParseOptions([]byte(C.GoString(cfg.options_json)))
	if err != nil {
		return o, fail(mqEINVAL, "%v", err)
	}
	if cfg.activation_observer != nil {
		ao, err := observerOptionsFromC(cfg.activation_observer)
		if err != nil {
			return o, err
		}
		o.ActivationObserver = ao
	}
	return o, nil
}

// recipeFromC reads a version 2 config's recipe, from recipe_json or recipe_file.
func recipeFromC(cfg *C.mq_cmodel_config, o *plan.Options) error {
	switch {
	case cfg.recipe_json != nil && cfg.recipe_file != nil:
		return fail(mqEINVAL, "model config has both recipe_json and recipe_file; give one")
	case cfg.recipe_json != nil:
		r, err := recipe.Parse([]byte(C.GoString(cfg.recipe_json)))
		if err != nil {
			return fail(mqEINVAL, "%v", err)
		}
		o.Recipe = r
	case cfg.recipe_file != nil:
		r, err := recipe.Load(C.GoString(cfg.recipe_file))
		if err != nil {
			return fail(mqEINVAL, "%v", err)
		}
		o.Recipe = r
	}
	return nil
}

//export mq_model_calibrate_begin
func mq_model_calibrate_begin(h *C.mq_model, cfg *C.mq_cmodel_config) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(h, "mq_model_calibrate_begin")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_calibrate_begin")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	opts, err := optionsFromC(cfg)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if err := m.StartCalibration(opts); err != nil {
		return modelErr(err, mqEINVAL)
	}
	s.cal = nil // the run log's fingerprint of the calibration data, when the run is recorded
	if logsRun(cfg) {
		s.cal = runlog.NewCalibrationHash()
	}
	return mqOK
}

// logsRun says a quantization under cfg is recorded in the run log: a version 2 config without
// no_log, and MONOQUANT_LOG not 0 in the live environment.
func logsRun(cfg *C.mq_cmodel_config) bool {
	return cfg.version >= 2 && cfg.no_log == 0 && runlog.EnabledEnv(liveGetenv)
}

// entryPoint is the entry point cfg records its runs under.
func entryPoint(cfg *C.mq_cmodel_config) string {
	if cfg.version >= 2 && cfg.entry_point != nil {
		return C.GoString(cfg.entry_point)
	}
	return "c"
}

//export mq_model_calibrate
func mq_model_calibrate(h *C.mq_model, layer *C.mq_cchar, act *C.mq_ctensor) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(h, "mq_model_calibrate")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_calibrate")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	l, err := goString(layer, "mq_model_calibrate", "layer")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	x, err := tensorFromC(act, true)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if !x.DType.IsFloat() {
		return mapErr(fail(mqEDTYPE, "mq_model_calibrate: activation dtype %v is not F32, F16, BF16 or F64", x.DType), mqEDTYPE)
	}
	if err := m.Calibrate(l, x); err != nil {
		return modelErr(err, mqEINVAL)
	}
	if s.cal != nil {
		s.cal.Add(l, x)
	}
	return mqOK
}

//export mq_model_quantize
func mq_model_quantize(h *C.mq_model, cfg *C.mq_cmodel_config, progress C.mq_progress_fn, user unsafe.Pointer, out **C.mq_model) (rc C.int) {
	defer guard(&rc)
	return modelQuantize("mq_model_quantize", h, cfg, progress, user, out, nil, nil)
}

// modelQuantize is mq_model_quantize (outputs nil) and mq_model_quantize_into (the caller's
// buffers, asked for once the plan is made).
//
// onEvent, when not nil, makes it mq_model_quantize_stream: the model counts the releases of
// its tensors (by the quantization and the run log's fingerprint), and is spent afterwards.
func modelQuantize(call string, h *C.mq_model, cfg *C.mq_cmodel_config, progress C.mq_progress_fn, user unsafe.Pointer, out **C.mq_model, outputs model.OutputBuffers, onEvent C.mq_stream_fn) C.int {
	if out == nil {
		return mapErr(fail(mqEINVAL, "%s: out is NULL", call), mqEINVAL)
	}
	*out = nil
	e, s, err := lockModel(h, call)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel(call)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	opts, err := optionsFromC(cfg)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fn model.ProgressFunc
	canceled := false
	if progress != nil {
		id := modelID(h)
		inCallback.Store(id, C.mq__thread_id())
		defer inCallback.Delete(id)
		fn = func(p model.Progress) {
			if canceled {
				return
			}
			if C.mq__call_progress(progress, C.uint64_t(p.TensorsDone), C.uint64_t(p.TensorsTotal),
				C.uint64_t(p.BytesDone), C.uint64_t(p.BytesTotal), user) != 0 {
				canceled = true
				cancel()
			}
		}
	}
	logs := logsRun(cfg)
	var ev model.StreamEvents
	if onEvent != nil {
		readers := 1 // the quantization; the run log's fingerprint releases each tensor too
		if logs {
			readers = 2
		}
		m.CountReleases(readers)
		s.spent = true
		tell := func(event C.int32_t) func(string) error {
			return func(name string) error {
				if canceled {
					return context.Canceled
				}
				cs := C.CString(name)
				defer C.free(unsafe.Pointer(cs))
				if C.mq__call_stream(onEvent, event, cs, user) != 0 {
					canceled = true
					cancel()
					return context.Canceled
				}
				return nil
			}
		}
		ev = model.StreamEvents{Written: tell(C.MQ_STREAM_WRITTEN), Released: tell(C.MQ_STREAM_RELEASED)}
		if progress == nil {
			id := modelID(h)
			inCallback.Store(id, C.mq__thread_id())
			defer inCallback.Delete(id)
		}
	}
	var rec *runlog.ModelRecording // the run log's record, its fingerprint computed beside
	if logs {
		path, _ := runlog.DefaultPathEnv(liveGetenv)
		rec = runlog.StartModel(entryPoint(cfg), path, m)
	}
	var res *model.Result
	switch {
	case onEvent != nil:
		res, err = m.QuantizeStream(ctx, opts, fn, outputs, ev)
	case outputs != nil:
		res, err = m.QuantizeInto(ctx, opts, fn, outputs)
	default:
		res, err = m.Quantize(ctx, opts, fn)
	}
	// The engine looks at ctx between tensors, so a stop asked for at the last one would
	// otherwise go unheard; the caller was promised no model after asking.
	if canceled || err != nil {
		if rec != nil {
			rec.Abandon()
		}
	}
	if canceled {
		return mapErr(fail(mqECANCELED, "%s: canceled by the progress callback", call), mqECANCELED)
	}
	if err != nil {
		return modelErr(err, mqEINVAL)
	}
	ns := &modelState{res: res}
	if rec != nil {
		ns.runID, ns.runLog, ns.logWarning = rec.Finish(context.Background(), opts, res, s.cal.Calibration())
	}
	*out = newModelHandle(ns)
	return mqOK
}
