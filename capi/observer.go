package main

/*
#include "capi.h"
*/
import "C"

import (
	"unsafe"

	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/quant"
)

//export mq_observer_config_init
func mq_observer_config_init(cfg *C.mq_observer_config) (rc C.int) {
	defer guard(&rc)
	if cfg == nil {
		return mapErr(fail(mqEINVAL, "mq_observer_config_init: cfg is NULL"), mqEINVAL)
	}
	*cfg = C.mq_observer_config{
		size:    C.uint32_t(unsafe.Sizeof(*cfg)),
		version: C.MQ_OBSERVER_CONFIG_VERSION,
		kind:    C.MQ_OBSERVER_MINMAX,
	}
	return mqOK
}

var (
	_ = [1]int{}[int(C.MQ_OBSERVER_MINMAX)-int(observer.MinMax)]
	_ = [1]int{}[int(C.MQ_OBSERVER_MOVING_AVERAGE)-int(observer.MovingAverageMinMax)]
	_ = [1]int{}[int(C.MQ_OBSERVER_HISTOGRAM)-int(observer.Histogram)]
	_ = [1]int{}[int(C.MQ_OBSERVER_PER_CHANNEL_MINMAX)-int(observer.PerChannelMinMax)]
	_ = [1]int{}[int(C.MQ_OBSERVER_PER_CHANNEL_MOVING_AVERAGE)-int(observer.MovingAveragePerChannelMinMax)]
)

func observerOptionsFromC(cfg *C.mq_cobserver_config) (observer.Options, error) {
	if cfg == nil {
		return observer.Options{}, fail(mqEINVAL, "observer config is NULL")
	}
	if cfg.size != C.uint32_t(unsafe.Sizeof(C.mq_observer_config{})) || cfg.version < 1 || cfg.version > C.MQ_OBSERVER_CONFIG_VERSION {
		return observer.Options{}, fail(mqEINVAL, "observer config has size %d and version %d; this library wants size %d and version 1..%d (call mq_observer_config_init)",
			cfg.size, cfg.version, unsafe.Sizeof(C.mq_observer_config{}), C.MQ_OBSERVER_CONFIG_VERSION)
	}
	o := observer.Options{
		Kind:              observer.Kind(cfg.kind),
		DType:             quant.QDType(cfg.qdtype),
		Scheme:            quant.Scheme(cfg.scheme),
		ReduceRange:       cfg.reduce_range != 0,
		Eps:               float32(cfg.eps),
		AveragingConstant: float32(cfg.averaging_constant),
		ChAxis:            int(cfg.ch_axis),
		Bins:              int(cfg.bins),
	}
	if cfg.has_quant_range != 0 {
		o.QuantRange = &[2]int{int(cfg.quant_min), int(cfg.quant_max)}
	}
	return o, nil
}

//export mq_observer_new
func mq_observer_new(out **C.mq_observer, cfg *C.mq_cobserver_config) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_observer_new: out is NULL"), mqEINVAL)
	}
	*out = nil
	opts, err := observerOptionsFromC(cfg)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	obs, err := observer.New(opts)
	if err != nil {
		// The constructor fails only on options torch would refuse.
		return mapErr(err, mqEINVAL)
	}
	*out = C.mq__observer_from_id(C.uintptr_t(addHandle(kindObserver, obs)))
	return mqOK
}

func observerID(h *C.mq_observer) uintptr { return uintptr(C.mq__id_from_observer(h)) }

//export mq_observer_update
func mq_observer_update(h *C.mq_observer, input *C.mq_ctensor) (rc C.int) {
	defer guard(&rc)
	e, err := lockHandle(observerID(h), kindObserver)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	src, err := tensorFromC(input, true)
	if err == nil && !src.DType.IsFloat() {
		err = fail(mqEDTYPE, "observer input dtype %v is not F32, F16, BF16 or F64", src.DType)
	}
	if err == nil {
		// The engine's observers refuse bad input (NaN, a shape without ch_axis) with plain
		// errors: those are the caller's data, hence MQ_EINVAL unless a sentinel says more.
		err = e.value.(observer.Observer).Observe(src)
	}
	return mapErr(err, mqEINVAL)
}

// copyPair writes a and b into caller buffers of cap values each, reporting the needed count.
func copyPair(a []float32, b []int32, bf []float32, pa *C.float, pb unsafe.Pointer, cap C.size_t, nOut *C.size_t) error {
	n := len(a)
	*nOut = C.size_t(n)
	if uint64(cap) < uint64(n) {
		return fail(mqEBUFFER, "buffers hold %d values, need %d", uint64(cap), n)
	}
	if n == 0 {
		return nil
	}
	if pa == nil || pb == nil {
		return fail(mqEINVAL, "output buffer is NULL")
	}
	copy(floatsOut(pa, n), a)
	if b != nil {
		copy(int32sOut((*C.int32_t)(pb), n), b)
	} else {
		copy(floatsOut((*C.float)(pb), n), bf)
	}
	return nil
}

//export mq_observer_qparams
func mq_observer_qparams(h *C.mq_observer, scales *C.float, zps *C.int32_t, cap C.size_t, nOut *C.size_t) (rc C.int) {
	defer guard(&rc)
	if nOut == nil {
		return mapErr(fail(mqEINVAL, "mq_observer_qparams: n_out is NULL"), mqEINVAL)
	}
	e, err := lockHandle(observerID(h), kindObserver)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	s, z, err := e.value.(observer.Observer).QParams()
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if len(z) != len(s) {
		return mapErr(fail(mqEINTERNAL, "observer returned %d scales but %d zero points", len(s), len(z)), mqEINTERNAL)
	}
	return mapErr(copyPair(s, z, nil, scales, unsafe.Pointer(zps), cap, nOut), mqEINVAL)
}

//export mq_observer_minmax
func mq_observer_minmax(h *C.mq_observer, mins *C.float, maxs *C.float, cap C.size_t, nOut *C.size_t) (rc C.int) {
	defer guard(&rc)
	if nOut == nil {
		return mapErr(fail(mqEINVAL, "mq_observer_minmax: n_out is NULL"), mqEINVAL)
	}
	e, err := lockHandle(observerID(h), kindObserver)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	mn, mx := e.value.(observer.Observer).Range()
	if len(mn) != len(mx) {
		return mapErr(fail(mqEINTERNAL, "observer returned %d mins but %d maxes", len(mn), len(mx)), mqEINTERNAL)
	}
	return mapErr(copyPair(mn, nil, mx, mins, unsafe.Pointer(maxs), cap, nOut), mqEINVAL)
}

//export mq_observer_reset
func mq_observer_reset(h *C.mq_observer) (rc C.int) {
	defer guard(&rc)
	e, err := lockHandle(observerID(h), kindObserver)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	e.value.(observer.Observer).Reset()
	return mqOK
}

//export mq_observer_free
func mq_observer_free(h *C.mq_observer) (rc C.int) {
	defer guard(&rc)
	if h == nil {
		return mqOK
	}
	return mapErr(removeHandle(observerID(h), kindObserver), mqEHANDLE)
}
