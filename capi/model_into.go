package main

/*
#include "model.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
)

// maxOutputs bounds the caller's output count before it is read: no model has more tensors.
const maxOutputs = 1 << 28

// layoutEntry is one tensor of mq_model_output_layout_json.
type layoutEntry struct {
	Name   string `json:"name"`
	DType  int32  `json:"dtype"` // an mq_dtype
	Shape  []int  `json:"shape"`
	NBytes int64  `json:"nbytes"`
}

//export mq_model_output_layout_json
func mq_model_output_layout_json(h *C.mq_model, cfg *C.mq_cmodel_config, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_model_output_layout_json: len is NULL"), mqEINVAL)
	}
	e, s, err := lockModel(h, "mq_model_output_layout_json")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_output_layout_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	opts, err := optionsFromC(cfg)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	entries, err := m.OutputLayout(opts)
	if err != nil {
		return modelErr(err, mqEINVAL)
	}
	js, err := layoutJSON(entries)
	if err != nil {
		return mapErr(fail(mqEINTERNAL, "mq_model_output_layout_json: %v", err), mqEINTERNAL)
	}
	return mapErr(copyJSON(js, buf, cap, length), mqEINVAL)
}

//export mq_model_quantize_into
func mq_model_quantize_into(h *C.mq_model, cfg *C.mq_cmodel_config, progress C.mq_progress_fn, user unsafe.Pointer, outputs *C.mq_coutput, n C.size_t, out **C.mq_model) (rc C.int) {
	defer guard(&rc)
	if outputs == nil && n > 0 {
		return mapErr(fail(mqEINVAL, "mq_model_quantize_into: outputs is NULL for %d outputs", uint64(n)), mqEINVAL)
	}
	if uint64(n) > maxOutputs {
		return mapErr(fail(mqEINVAL, "mq_model_quantize_into: %d outputs is more than any model has", uint64(n)), mqEINVAL)
	}
	return modelQuantize("mq_model_quantize_into", h, cfg, progress, user, out, callerBuffers("mq_model_quantize_into", outputs, n), nil)
}

//export mq_model_quantize_stream
func mq_model_quantize_stream(h *C.mq_model, cfg *C.mq_cmodel_config, progress C.mq_progress_fn, user unsafe.Pointer, outputs *C.mq_coutput, n C.size_t, onEvent C.mq_stream_fn, out **C.mq_model) (rc C.int) {
	defer guard(&rc)
	if outputs == nil && n > 0 {
		return mapErr(fail(mqEINVAL, "mq_model_quantize_stream: outputs is NULL for %d outputs", uint64(n)), mqEINVAL)
	}
	if uint64(n) > maxOutputs {
		return mapErr(fail(mqEINVAL, "mq_model_quantize_stream: %d outputs is more than any model has", uint64(n)), mqEINVAL)
	}
	bufs := callerBuffers("mq_model_quantize_stream", outputs, n)
	if onEvent == nil {
		return modelQuantize("mq_model_quantize_stream", h, cfg, progress, user, out, bufs, nil)
	}
	return modelQuantize("mq_model_quantize_stream", h, cfg, progress, user, out, bufs, onEvent)
}

// callerBuffers turns the caller's mq_output array into the engine's OutputBuffers: one per
// layout entry, in order, each checked for its name and size.
func callerBuffers(call string, outputs *C.mq_coutput, n C.size_t) model.OutputBuffers {
	var outs []C.mq_output
	if n > 0 {
		outs = unsafe.Slice((*C.mq_output)(unsafe.Pointer(outputs)), int(n))
	}
	return func(entries []checkpoint.Entry) ([][]byte, error) {
		if len(outs) != len(entries) {
			return nil, fail(mqEINVAL, "%s: %d outputs for the %d tensors of the layout", call, len(outs), len(entries))
		}
		bufs := make([][]byte, len(entries))
		for i, en := range entries {
			o := &outs[i]
			if o.name == nil || C.GoString(o.name) != en.Name {
				got := "NULL"
				if o.name != nil {
					got = "\"" + C.GoString(o.name) + "\""
				}
				return nil, fail(mqEINVAL, "%s: output %d is named %s, the layout has %q there", call, i, got, en.Name)
			}
			size := model.LayoutBytes(en)
			if uint64(o.nbytes) != uint64(size) {
				return nil, fail(mqEBUFFER, "%s: output %q holds %d bytes, the tensor needs %d", call, en.Name, uint64(o.nbytes), size)
			}
			if size == 0 {
				bufs[i] = []byte{}
				continue
			}
			if o.data == nil {
				return nil, fail(mqEINVAL, "%s: output %q has NULL data for %d bytes", call, en.Name, size)
			}
			bufs[i] = unsafe.Slice((*byte)(o.data), int(size))
		}
		return bufs, nil
	}
}

// layoutJSON is the JSON array of mq_model_output_layout_json and mq_model_dequantize_layout_json.
func layoutJSON(entries []checkpoint.Entry) ([]byte, error) {
	out := make([]layoutEntry, len(entries))
	for i, en := range entries {
		out[i] = layoutEntry{Name: en.Name, DType: int32(en.DType), Shape: append([]int{}, en.Shape...), NBytes: model.LayoutBytes(en)}
	}
	return json.Marshal(out)
}

//export mq_model_dequantize_layout_json
func mq_model_dequantize_layout_json(h *C.mq_model, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_model_dequantize_layout_json: len is NULL"), mqEINVAL)
	}
	e, s, err := lockModel(h, "mq_model_dequantize_layout_json")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	if s.res == nil {
		return mapErr(fail(mqEINVAL, "mq_model_dequantize_layout_json: the model is not quantized"), mqEINVAL)
	}
	entries, err := model.DequantizeLayout(s.res.Reader())
	if err != nil {
		return modelErr(err, mqEFORMAT)
	}
	js, err := layoutJSON(entries)
	if err != nil {
		return mapErr(fail(mqEINTERNAL, "mq_model_dequantize_layout_json: %v", err), mqEINTERNAL)
	}
	return mapErr(copyJSON(js, buf, cap, length), mqEINVAL)
}

//export mq_model_dequantize_into
func mq_model_dequantize_into(h *C.mq_model, outputs *C.mq_coutput, n C.size_t, out **C.mq_model) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_model_dequantize_into: out is NULL"), mqEINVAL)
	}
	*out = nil
	if outputs == nil && n > 0 {
		return mapErr(fail(mqEINVAL, "mq_model_dequantize_into: outputs is NULL for %d outputs", uint64(n)), mqEINVAL)
	}
	if uint64(n) > maxOutputs {
		return mapErr(fail(mqEINVAL, "mq_model_dequantize_into: %d outputs is more than any model has", uint64(n)), mqEINVAL)
	}
	e, s, err := lockModel(h, "mq_model_dequantize_into")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	if s.res == nil {
		return mapErr(fail(mqEINVAL, "mq_model_dequantize_into: the model is not quantized"), mqEINVAL)
	}
	bufs := callerBuffers("mq_model_dequantize_into", outputs, n)
	m, err := offThread(func() (*model.Model, error) { return model.DequantizeInto(context.Background(), s.res.Reader(), bufs) })
	if err != nil {
		return modelErr(err, mqEFORMAT)
	}
	*out = newModelHandle(&modelState{m: m})
	return mqOK
}
