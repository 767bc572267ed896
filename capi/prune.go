package main

/*
#include "capi.h"
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/monoquant/monoquant/core/prune"
)

//export mq_prune_units
func mq_prune_units(w1, b1, w2 *C.mq_ctensor, fraction C.double, keep *C.int64_t, cap C.size_t, nKeep *C.size_t) (rc C.int) {
	defer guard(&rc)
	if nKeep == nil {
		return mapErr(fail(mqEINVAL, "mq_prune_units: n_keep is NULL"), mqEINVAL)
	}
	*nKeep = 0
	t1, err := tensorFromC(w1, true)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	t2, err := tensorFromC(w2, true)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if len(t1.Shape) < 1 || len(t2.Shape) < 2 || t1.Shape[0] != t2.Shape[1] {
		return mapErr(fail(mqESHAPE, "mq_prune_units: w1 %v and w2 %v are not coupled: w1's outputs (dim 0) must be w2's inputs (dim 1)", t1.Shape, t2.Shape), mqESHAPE)
	}
	hidden := t1.Shape[0]
	inner := 1
	for _, d := range t2.Shape[2:] {
		inner *= d
	}
	x1, err := t1.Float32s()
	if err != nil {
		return mapErr(fail(mqEINVAL, "mq_prune_units: w1: %v", err), mqEINVAL)
	}
	x2, err := t2.Float32s()
	if err != nil {
		return mapErr(fail(mqEINVAL, "mq_prune_units: w2: %v", err), mqEINVAL)
	}
	var xb []float32
	if b1 != nil {
		tb, err := tensorFromC(b1, true)
		if err != nil {
			return mapErr(err, mqEINVAL)
		}
		if xb, err = tb.Float32s(); err != nil {
			return mapErr(fail(mqEINVAL, "mq_prune_units: b1: %v", err), mqEINVAL)
		}
	}
	kept, err := prune.Units(x1, xb, x2, hidden, inner, float64(fraction))
	if err != nil {
		code := C.int(mqEINVAL)
		if !errors.Is(err, prune.ErrPrune) {
			code = mqEINTERNAL
		}
		return mapErr(fail(code, "mq_prune_units: %v", err), code)
	}
	*nKeep = C.size_t(len(kept))
	if uint64(cap) < uint64(len(kept)) {
		return mapErr(fail(mqEBUFFER, "mq_prune_units: keep has room for %d indices, %d units stay", uint64(cap), len(kept)), mqEBUFFER)
	}
	if keep == nil {
		return mapErr(fail(mqEINVAL, "mq_prune_units: keep is NULL but cap is %d", uint64(cap)), mqEINVAL)
	}
	out := unsafe.Slice((*int64)(unsafe.Pointer(keep)), len(kept))
	for i, k := range kept {
		out[i] = int64(k)
	}
	return mqOK
}
