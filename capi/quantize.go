package main

/*
#include "capi.h"
*/
import "C"

import (
	"math"
	"unsafe"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

//export mq_config_init
func mq_config_init(cfg *C.mq_config) (rc C.int) {
	defer guard(&rc)
	if cfg == nil {
		return mapErr(fail(mqEINVAL, "mq_config_init: cfg is NULL"), mqEINVAL)
	}
	*cfg = C.mq_config{
		size:    C.uint32_t(unsafe.Sizeof(*cfg)),
		version: C.MQ_CONFIG_VERSION,
		format:  C.MQ_INT8,
		scheme:  C.MQ_SCHEME_DEFAULT,
		eps:     C.float(quant.DefaultEps),
	}
	return mqOK
}

// tensorJob is what every stateless call starts with: the spec normalized against the input's shape.
type tensorJob struct {
	spec    quant.Spec
	src     *tensor.Tensor
	data    int // bytes of quantized values
	nParams int // scale/zero-point pairs; 0 for the float formats
}

func newTensorJob(cfg *C.mq_cconfig, input *C.mq_ctensor, needData bool) (*tensorJob, error) {
	spec, err := specFromC(cfg)
	if err != nil {
		return nil, err
	}
	src, err := tensorFromC(input, needData)
	if err != nil {
		return nil, err
	}
	if !src.DType.IsFloat() {
		return nil, fail(mqEDTYPE, "input dtype %v is not F32, F16, BF16 or F64", src.DType)
	}
	if _, err := spec.Normalize(src.Shape); err != nil {
		return nil, err
	}
	p := &tensorJob{spec: spec, src: src, data: quant.PackedLen(spec.Format, src.Len())}
	if spec.Format.IsInteger() {
		p.nParams = spec.NumParams(src.Shape)
	}
	return p, nil
}

// checkBuffers refuses short caller buffers before the engine runs, so the caller gets
// MQ_EBUFFER with the sizes rather than the engine's generic spec error.
func (p *tensorJob) checkBuffers(out unsafe.Pointer, outBytes C.size_t, scales *C.float, zps *C.int32_t, nParams C.size_t) error {
	if out == nil && p.data > 0 {
		return fail(mqEINVAL, "output buffer is NULL")
	}
	if uint64(outBytes) < uint64(p.data) {
		return fail(mqEBUFFER, "output buffer has %d bytes, need %d", uint64(outBytes), p.data)
	}
	if p.nParams > 0 {
		if scales == nil || zps == nil {
			return fail(mqEINVAL, "scales or zero_points is NULL; %v needs %d of each", p.spec.Format, p.nParams)
		}
		if uint64(nParams) < uint64(p.nParams) {
			return fail(mqEBUFFER, "n_params is %d, need %d scales and zero points", uint64(nParams), p.nParams)
		}
	}
	return nil
}

//export mq_quantized_size
func mq_quantized_size(cfg *C.mq_cconfig, input *C.mq_ctensor, dataBytes *C.size_t, nParams *C.size_t) (rc C.int) {
	defer guard(&rc)
	if dataBytes == nil || nParams == nil {
		return mapErr(fail(mqEINVAL, "mq_quantized_size: data_bytes or n_params is NULL"), mqEINVAL)
	}
	p, err := newTensorJob(cfg, input, false)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	*dataBytes, *nParams = C.size_t(p.data), C.size_t(p.nParams)
	return mqOK
}

//export mq_quantized_layout
func mq_quantized_layout(cfg *C.mq_cconfig, input *C.mq_ctensor, out *C.mq_layout) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_quantized_layout: out is NULL"), mqEINVAL)
	}
	p, err := newTensorJob(cfg, input, false)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	l, err := model.Layout(p.spec, p.src.Shape)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if len(l.DataShape) > C.MQ_MAX_DIMS || len(l.ParamShape) > C.MQ_MAX_DIMS {
		return mapErr(fail(mqEUNSUPPORTED, "mq_quantized_layout: more than %d dimensions", C.MQ_MAX_DIMS), mqEUNSUPPORTED)
	}
	*out = C.mq_layout{data_dtype: C.int32_t(l.DataDType), data_ndim: C.int32_t(len(l.DataShape)), param_ndim: C.int32_t(len(l.ParamShape))}
	for i, d := range l.DataShape {
		out.data_shape[i] = C.int64_t(d)
	}
	for i, d := range l.ParamShape {
		out.param_shape[i] = C.int64_t(d)
	}
	if l.ZeroPoint {
		out.stores_zero_point = 1
	}
	out.resolved = *cfg
	s := l.Spec
	out.resolved.format, out.resolved.scheme, out.resolved.granularity = C.int32_t(s.Format), C.int32_t(s.Scheme), C.int32_t(s.Granularity)
	out.resolved.axis, out.resolved.group_size, out.resolved.qdtype = C.int32_t(s.Axis), C.int32_t(s.GroupSize), C.int32_t(s.QDType)
	out.resolved.eps = C.float(s.Eps)
	return mqOK
}

//export mq_quantize_tensor
func mq_quantize_tensor(cfg *C.mq_cconfig, input *C.mq_ctensor, out unsafe.Pointer, outBytes C.size_t,
	scales *C.float, zps *C.int32_t, nParams C.size_t, stats *C.mq_quant_stats) (rc C.int) {
	defer guard(&rc)
	p, err := newTensorJob(cfg, input, true)
	if err == nil {
		err = p.checkBuffers(out, outBytes, scales, zps, nParams)
	}
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	st, err := quant.Quantize(bytesOut(out, p.data), p.src, p.spec, floatsOut(scales, p.nParams), int32sOut(zps, p.nParams))
	if stats != nil {
		*stats = C.mq_quant_stats{nonfinite: C.uint64_t(st.NonFinite), first_nonfinite: C.int64_t(st.FirstNonFinite), overflow: C.uint64_t(st.Overflow)}
		if st.NonFinite == 0 {
			stats.first_nonfinite = -1
		}
	}
	return mapErr(err, mqEINTERNAL)
}

//export mq_quantize_tensor_with_params
func mq_quantize_tensor_with_params(cfg *C.mq_cconfig, input *C.mq_ctensor, out unsafe.Pointer, outBytes C.size_t,
	scales *C.mq_cfloat, zps *C.mq_cint32, nParams C.size_t) (rc C.int) {
	defer guard(&rc)
	p, err := newTensorJob(cfg, input, true)
	if err == nil && !p.spec.Format.IsInteger() {
		err = fail(mqEINVAL, "format %v has no scales or zero points; use mq_quantize_tensor", p.spec.Format)
	}
	cs, cz := (*C.float)(unsafe.Pointer(scales)), (*C.int32_t)(unsafe.Pointer(zps))
	if err == nil {
		err = p.checkBuffers(out, outBytes, cs, cz, nParams)
	}
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	err = quant.QuantizeWithParams(bytesOut(out, p.data), p.src, p.spec, floatsOut(cs, p.nParams), int32sOut(cz, p.nParams))
	return mapErr(err, mqEINTERNAL)
}

//export mq_dequantize_tensor
func mq_dequantize_tensor(cfg *C.mq_cconfig, q *C.mq_cvoid, qBytes C.size_t, ndim C.int32_t, shape *C.mq_cint64,
	scales *C.mq_cfloat, zps *C.mq_cint32, nParams C.size_t, out *C.float, outCount C.size_t) (rc C.int) {
	defer guard(&rc)
	err := func() error {
		spec, err := specFromC(cfg)
		if err != nil {
			return err
		}
		dims, err := shapeFromC(ndim, shape)
		if err != nil {
			return err
		}
		if _, err := spec.Normalize(dims); err != nil {
			return err
		}
		n := tensor.NumElements(dims)
		need := quant.PackedLen(spec.Format, n)
		np := 0
		if spec.Format.IsInteger() {
			np = spec.NumParams(dims)
		}
		switch {
		case n > 0 && (q == nil || out == nil):
			return fail(mqEINVAL, "quantized data or output is NULL")
		case uint64(qBytes) < uint64(need):
			return fail(mqEBUFFER, "quantized data has %d bytes, shape %v of %v needs %d", uint64(qBytes), dims, spec.Format, need)
		case uint64(outCount) < uint64(n):
			return fail(mqEBUFFER, "output has room for %d floats, shape %v needs %d", uint64(outCount), dims, n)
		case np > 0 && (scales == nil || zps == nil):
			return fail(mqEINVAL, "scales or zero_points is NULL; %v needs %d of each", spec.Format, np)
		case uint64(nParams) < uint64(np):
			return fail(mqEBUFFER, "n_params is %d, need %d scales and zero points", uint64(nParams), np)
		}
		return quant.Dequantize(floatsOut(out, n), bytesOut(unsafe.Pointer(q), need), dims, spec,
			floatsOut((*C.float)(unsafe.Pointer(scales)), np), int32sOut((*C.int32_t)(unsafe.Pointer(zps)), np))
	}()
	return mapErr(err, mqEINTERNAL)
}

//export mq_sqnr
func mq_sqnr(a *C.mq_cfloat, b *C.mq_cfloat, n C.size_t, out *C.double) (rc C.int) {
	defer guard(&rc)
	switch {
	case out == nil:
		return mapErr(fail(mqEINVAL, "mq_sqnr: out is NULL"), mqEINVAL)
	case n > 0 && (a == nil || b == nil):
		return mapErr(fail(mqEINVAL, "mq_sqnr: a or b is NULL for n = %d", uint64(n)), mqEINVAL)
	case uint64(n) > math.MaxInt/4:
		return mapErr(fail(mqESHAPE, "mq_sqnr: n = %d is larger than memory", uint64(n)), mqESHAPE)
	}
	x := floatsOut((*C.float)(unsafe.Pointer(a)), int(n))
	y := floatsOut((*C.float)(unsafe.Pointer(b)), int(n))
	*out = C.double(quant.SQNR(x, y))
	return mqOK
}

//export mq_size_report
func mq_size_report(cfg *C.mq_cconfig, input *C.mq_ctensor, out *C.mq_size_info) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_size_report: out is NULL"), mqEINVAL)
	}
	p, err := newTensorJob(cfg, input, false)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	s := quant.SizeOf(p.src.Shape, p.src.DType.Size(), &p.spec)
	*out = C.mq_size_info{
		elements:        C.uint64_t(s.Elements),
		original_bytes:  C.uint64_t(s.OriginalBytes),
		data_bytes:      C.uint64_t(s.DataBytes),
		param_bytes:     C.uint64_t(s.ParamBytes),
		quantized_bytes: C.uint64_t(s.QuantizedBytes()),
		bits_per_weight: C.double(s.BitsPerWeight()),
	}
	return mqOK
}
