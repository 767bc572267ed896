package main

/*
#include "model.h"
typedef const mq_hessian mq_chessian;
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/monoquant/monoquant/core/model"
)

//export mq_hessian_init
func mq_hessian_init(h *C.mq_hessian) (rc C.int) {
	defer guard(&rc)
	if h == nil {
		return mapErr(fail(mqEINVAL, "mq_hessian_init: h is NULL"), mqEINVAL)
	}
	*h = C.mq_hessian{}
	h.size = C.uint32_t(unsafe.Sizeof(C.mq_hessian{}))
	h.version = C.MQ_HESSIAN_VERSION
	return mqOK
}

//export mq_model_set_hessian
func mq_model_set_hessian(hm *C.mq_model, layer *C.mq_cchar, h *C.mq_chessian) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(hm, "mq_model_set_hessian")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_set_hessian")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	l, err := goString(layer, "mq_model_set_hessian", "layer")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if h == nil {
		return hessianErr(m.SetHessian(l, nil))
	}
	if h.size != C.uint32_t(unsafe.Sizeof(C.mq_hessian{})) || h.version < 1 || h.version > C.MQ_HESSIAN_VERSION {
		return mapErr(fail(mqEINVAL, "mq_model_set_hessian: the mq_hessian has size %d and version %d; this library knows size %d, versions 1..%d (fill it with mq_hessian_init)",
			h.size, h.version, unsafe.Sizeof(C.mq_hessian{}), C.MQ_HESSIAN_VERSION), mqEINVAL)
	}
	// Contiguous caller memory is borrowed in place, as mq_model_add_tensor borrows.
	t, err := tensorFromC((*C.mq_ctensor)(unsafe.Pointer(&h.matrix)), true)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	return hessianErr(m.SetHessian(l, t))
}

// hessianErr maps Model.SetHessian's refusals: a non-float matrix is MQ_EDTYPE, the rest
// MQ_EINVAL.
func hessianErr(err error) C.int {
	switch {
	case err == nil:
		return mqOK
	case errors.Is(err, model.ErrHessianDType):
		return mapErr(fail(mqEDTYPE, "mq_model_set_hessian: %v", err), mqEDTYPE)
	}
	return mapErr(fail(mqEINVAL, "mq_model_set_hessian: %v", err), mqEINVAL)
}
