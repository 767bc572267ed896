package main

/*
#include "capi.h"
*/
import "C"

import (
	"math"
	"unsafe"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// The C enums share their values with core's types, so the conversions below are casts plus
// range checks. Each line fails to compile (constant index out of range) if the two drift apart.
var (
	_ = [1]int{}[int(C.MQ_DTYPE_F32)-int(tensor.F32)]
	_ = [1]int{}[int(C.MQ_DTYPE_F16)-int(tensor.F16)]
	_ = [1]int{}[int(C.MQ_DTYPE_BF16)-int(tensor.BF16)]
	_ = [1]int{}[int(C.MQ_DTYPE_F64)-int(tensor.F64)]
	_ = [1]int{}[int(C.MQ_DTYPE_I8)-int(tensor.I8)]
	_ = [1]int{}[int(C.MQ_DTYPE_U8)-int(tensor.U8)]
	_ = [1]int{}[int(C.MQ_DTYPE_I16)-int(tensor.I16)]
	_ = [1]int{}[int(C.MQ_DTYPE_I32)-int(tensor.I32)]
	_ = [1]int{}[int(C.MQ_DTYPE_I64)-int(tensor.I64)]
	_ = [1]int{}[int(C.MQ_DTYPE_BOOL)-int(tensor.Bool)]
	_ = [1]int{}[int(C.MQ_INT8)-int(quant.Int8)]
	_ = [1]int{}[int(C.MQ_INT4)-int(quant.Int4)]
	_ = [1]int{}[int(C.MQ_FP16)-int(quant.Float16)]
	_ = [1]int{}[int(C.MQ_BF16)-int(quant.BFloat16)]
	_ = [1]int{}[int(C.MQ_SYMMETRIC)-int(quant.Symmetric)]
	_ = [1]int{}[int(C.MQ_ASYMMETRIC)-int(quant.Asymmetric)]
	_ = [1]int{}[int(C.MQ_PER_TENSOR)-int(quant.PerTensor)]
	_ = [1]int{}[int(C.MQ_PER_CHANNEL)-int(quant.PerChannel)]
	_ = [1]int{}[int(C.MQ_PER_GROUP)-int(quant.PerGroup)]
	_ = [1]int{}[int(C.MQ_QINT8)-int(quant.QInt8)]
	_ = [1]int{}[int(C.MQ_QUINT8)-int(quant.QUInt8)]
	_ = [1]int{}[int(C.MQ_QINT4)-int(quant.QInt4)]
	_ = [1]int{}[int(C.MQ_QUINT4)-int(quant.QUInt4)]
	_ = [1]int{}[int(C.MQ_QINT32)-int(quant.QInt32)]
)

func dtypeFromC(dt C.int32_t) (tensor.DType, error) {
	d := tensor.DType(dt)
	if !d.Valid() {
		return tensor.Invalid, fail(mqEDTYPE, "unknown dtype %d (want an MQ_DTYPE_* value)", int(dt))
	}
	return d, nil
}

// shapeFromC reads ndim sizes, refusing what the engine could not index.
func shapeFromC(ndim C.int32_t, shape *C.mq_cint64) ([]int, error) {
	if ndim < 0 || ndim > C.MQ_MAX_DIMS {
		return nil, fail(mqESHAPE, "ndim %d is outside 0..%d", int(ndim), C.MQ_MAX_DIMS)
	}
	if ndim == 0 {
		return []int{}, nil
	}
	if shape == nil {
		return nil, fail(mqEINVAL, "shape is NULL for ndim %d", int(ndim))
	}
	cs := unsafe.Slice((*int64)(unsafe.Pointer(shape)), int(ndim))
	out := make([]int, ndim)
	for i, d := range cs {
		if d < 0 || d > math.MaxInt {
			return nil, fail(mqESHAPE, "dimension %d is %d", i, d)
		}
		out[i] = int(d)
	}
	if tensor.NumElements(out) < 0 {
		return nil, fail(mqESHAPE, "shape %v has more elements than fit in memory", out)
	}
	return out, nil
}

// tensorFromC views a C tensor as an engine tensor for the length of one call. Contiguous data is
// wrapped in place; strided data is gathered once into a Go buffer (documented in the header).
// With needData false only the dtype and shape are checked (size queries).
func tensorFromC(t *C.mq_ctensor, needData bool) (*tensor.Tensor, error) {
	if t == nil {
		return nil, fail(mqEINVAL, "input tensor is NULL")
	}
	dt, err := dtypeFromC(t.dtype)
	if err != nil {
		return nil, err
	}
	shape, err := shapeFromC(t.ndim, t.shape)
	if err != nil {
		return nil, err
	}
	n := tensor.NumElements(shape)
	es := dt.Size()
	if n > math.MaxInt/es {
		return nil, fail(mqESHAPE, "shape %v of %v does not fit in memory", shape, dt)
	}
	out := &tensor.Tensor{DType: dt, Shape: shape}
	if !needData || n == 0 {
		out.Data = []byte{}
		return out, nil
	}
	if t.data == nil {
		return nil, fail(mqEINVAL, "tensor data is NULL for shape %v", shape)
	}
	base := unsafe.Pointer(t.data)
	if t.strides == nil {
		out.Data = unsafe.Slice((*byte)(base), n*es)
		return out, nil
	}
	strides := unsafe.Slice((*int64)(unsafe.Pointer(t.strides)), len(shape))
	contiguous, span := true, int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if strides[i] < 0 {
			return nil, fail(mqESHAPE, "stride %d is negative (%d); pass a copy with positive strides", i, strides[i])
		}
		if shape[i] != 1 && strides[i] != span {
			contiguous = false
		}
		span *= int64(shape[i])
	}
	if contiguous {
		out.Data = unsafe.Slice((*byte)(base), n*es)
		return out, nil
	}
	// Overflow-checked reach of the view, and the engine's bound on materialising a broadcast
	// (stride-0) view: its copy may be at most tensor.ViewExpansion times the bytes it spans.
	reach, err := tensor.ViewSpan(shape, strides)
	if err != nil {
		return nil, fail(mqESHAPE, "%v", err)
	}
	if reach > math.MaxInt64/int64(es) {
		return nil, fail(mqESHAPE, "shape %v with strides %v addresses more bytes than fit in memory", shape, strides)
	}
	if err := tensor.CheckMaterialize("input tensor", n, es, reach); err != nil {
		return nil, fail(mqESHAPE, "%v", err)
	}
	out.Data = gather(base, shape, strides, es, n)
	return out, nil
}

// gather copies a strided tensor into a new row-major buffer.
func gather(base unsafe.Pointer, shape []int, strides []int64, es, n int) []byte {
	dst := make([]byte, n*es)
	idx := make([]int, len(shape))
	var off int64 // element offset of idx in the source
	last := len(shape) - 1
	for i := 0; i < n; i++ {
		src := unsafe.Slice((*byte)(unsafe.Add(base, off*int64(es))), es)
		copy(dst[i*es:], src)
		for d := last; d >= 0; d-- {
			idx[d]++
			off += strides[d]
			if idx[d] < shape[d] {
				break
			}
			off -= strides[d] * int64(shape[d])
			idx[d] = 0
		}
	}
	return dst
}

// specFromC checks the config's size and version and converts it to a quant.Spec.
func specFromC(cfg *C.mq_cconfig) (quant.Spec, error) {
	if cfg == nil {
		return quant.Spec{}, fail(mqEINVAL, "config is NULL")
	}
	if cfg.size != C.uint32_t(unsafe.Sizeof(C.mq_config{})) || cfg.version < 1 || cfg.version > C.MQ_CONFIG_VERSION {
		return quant.Spec{}, fail(mqEINVAL, "config has size %d and version %d; this library wants size %d and version 1..%d (call mq_config_init)",
			cfg.size, cfg.version, unsafe.Sizeof(C.mq_config{}), C.MQ_CONFIG_VERSION)
	}
	s := quant.Spec{
		Format:          quant.Format(cfg.format),
		Scheme:          quant.Scheme(cfg.scheme),
		Granularity:     quant.Granularity(cfg.granularity),
		Axis:            int(cfg.axis),
		GroupSize:       int(cfg.group_size),
		QDType:          quant.QDType(cfg.qdtype),
		ReduceRange:     cfg.reduce_range != 0,
		Eps:             float32(cfg.eps),
		SaturateFloat16: cfg.saturate_fp16 != 0,
	}
	if cfg.has_quant_range != 0 {
		s.QuantRange = &[2]int{int(cfg.quant_min), int(cfg.quant_max)}
	}
	switch cfg.nonfinite {
	case C.MQ_NONFINITE_REJECT:
		s.NonFinite = quant.RejectNonFinite
	case C.MQ_NONFINITE_CLAMP:
		s.NonFinite = quant.ClampNonFinite
	default:
		return quant.Spec{}, fail(mqEINVAL, "nonfinite policy %d is not MQ_NONFINITE_REJECT or MQ_NONFINITE_CLAMP", int(cfg.nonfinite))
	}
	return s, nil
}

// floatsOut views a caller float buffer of n values (nil when n is 0).
func floatsOut(p *C.float, n int) []float32 {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), n)
}

func int32sOut(p *C.int32_t, n int) []int32 {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(p)), n)
}

func bytesOut(p unsafe.Pointer, n int) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), n)
}
