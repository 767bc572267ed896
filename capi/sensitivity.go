package main

/*
#include "sensitivity.h"
#include "model.h"
*/
import "C"

import (
	"context"
	"errors"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/sensitivity"
)

func sensitivityID(h *C.mq_sensitivity) uintptr { return uintptr(C.mq__id_from_sensitivity(h)) }

func sensitivityErr(err error) C.int {
	code := C.int(mqEINVAL)
	if errors.Is(err, sensitivity.ErrNonFinite) {
		code = mqENONFINITE
	}
	if !errors.Is(err, sensitivity.ErrSensitivity) {
		return modelErr(err, mqEINVAL)
	}
	return mapErr(fail(code, "%s", err.Error()), code)
}

func lockSensitivity(h *C.mq_sensitivity) (*entry, *sensitivity.Session, error) {
	e, err := lockHandle(sensitivityID(h), kindSensitivity)
	if err != nil {
		return nil, nil, err
	}
	return e, e.value.(*sensitivity.Session), nil
}

// optString reads a caller string that may be NULL ("" then).
func optString(p *C.mq_cchar, call, arg string) (string, error) {
	if p == nil {
		return "", nil
	}
	return goString(p, call, arg)
}

//export mq_sensitivity_new
func mq_sensitivity_new(out **C.mq_sensitivity, hm *C.mq_model, cfg *C.mq_cmodel_config, formats *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_sensitivity_new: out is NULL"), mqEINVAL)
	}
	*out = nil
	fj, err := optString(formats, "mq_sensitivity_new", "formats_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	fs, err := sensitivity.ParseFormats([]byte(fj))
	if err != nil {
		return sensitivityErr(err)
	}
	opts, err := optionsFromC(cfg)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	e, ms, err := lockModel(hm, "mq_sensitivity_new")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := ms.floatModel("mq_sensitivity_new")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	s, err := sensitivity.New(m.Reader(), opts, fs)
	if err != nil {
		return sensitivityErr(err)
	}
	*out = C.mq__sensitivity_from_id(C.uintptr_t(addHandle(kindSensitivity, s)))
	return mqOK
}

//export mq_sensitivity_candidates_json
func mq_sensitivity_candidates_json(h *C.mq_sensitivity, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_sensitivity_candidates_json: len is NULL"), mqEINVAL)
	}
	e, s, err := lockSensitivity(h)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	return writeJSON("mq_sensitivity_candidates_json", map[string]any{"layers": s.Layers(), "formats": s.Formats(), "candidates": s.Candidates()}, buf, cap, length)
}

//export mq_sensitivity_quantize
func mq_sensitivity_quantize(h *C.mq_sensitivity, hm *C.mq_model, layer, format *C.mq_cchar, out **C.mq_model) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_sensitivity_quantize: out is NULL"), mqEINVAL)
	}
	*out = nil
	l, f, err := goStringPair("mq_sensitivity_quantize", layer, "layer", format, "format")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	e, s, err := lockSensitivity(h)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	em, ms, err := lockModel(hm, "mq_sensitivity_quantize")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer em.mu.Unlock()
	m, err := ms.floatModel("mq_sensitivity_quantize")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	res, err := offThread(func() (*model.Result, error) { return s.Quantize(context.Background(), m.Reader(), l, f) })
	if err != nil {
		return sensitivityErr(err)
	}
	*out = newModelHandle(&modelState{res: res})
	return mqOK
}

//export mq_sensitivity_add_output
func mq_sensitivity_add_output(h *C.mq_sensitivity, layer, format *C.mq_cchar, ref, output *C.mq_ctensor) (rc C.int) {
	defer guard(&rc)
	l, f, err := goStringPair("mq_sensitivity_add_output", layer, "layer", format, "format")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	r, err := tensorFromC(ref, true)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	o, err := tensorFromC(output, true)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	e, s, err := lockSensitivity(h)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	return sensitivityErr2(s.AddOutput(l, f, r, o))
}

func sensitivityErr2(err error) C.int {
	if err == nil {
		return mqOK
	}
	return sensitivityErr(err)
}

//export mq_sensitivity_set_metric
func mq_sensitivity_set_metric(h *C.mq_sensitivity, layer, format *C.mq_cchar, value C.double) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockSensitivity(h)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	if layer == nil && format == nil {
		return sensitivityErr2(s.SetBaseline(float64(value)))
	}
	l, f, err := goStringPair("mq_sensitivity_set_metric", layer, "layer", format, "format")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	return sensitivityErr2(s.SetMetric(l, f, float64(value)))
}

//export mq_sensitivity_table_json
func mq_sensitivity_table_json(h *C.mq_sensitivity, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_sensitivity_table_json: len is NULL"), mqEINVAL)
	}
	e, s, err := lockSensitivity(h)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	t, err := s.Table()
	if err != nil {
		return sensitivityErr(err)
	}
	return writeJSON("mq_sensitivity_table_json", t, buf, cap, length)
}

//export mq_sensitivity_free
func mq_sensitivity_free(h *C.mq_sensitivity) (rc C.int) {
	defer guard(&rc)
	if h == nil {
		return mqOK
	}
	return mapErr(removeHandle(sensitivityID(h), kindSensitivity), mqEHANDLE)
}

//export mq_recipe_for_json
func mq_recipe_for_json(table, budget *C.mq_cchar, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_recipe_for_json: len is NULL"), mqEINVAL)
	}
	tj, bj, err := goStringPair("mq_recipe_for_json", table, "table_json", budget, "budget_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	t, err := sensitivity.ParseTable([]byte(tj))
	if err != nil {
		return sensitivityErr(err)
	}
	b, err := sensitivity.ParseBudget([]byte(bj))
	if err != nil {
		return sensitivityErr(err)
	}
	ch, err := sensitivity.RecipeFor(t, b)
	if err != nil {
		return sensitivityErr(err)
	}
	return writeJSON("mq_recipe_for_json", ch, buf, cap, length)
}
