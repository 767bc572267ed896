package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include -std=gnu99 -Wall
#include "capi.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"unsafe"

	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/quant"
)

// Status codes of include/monoquant.h.
const (
	mqOK         = C.MQ_OK
	mqEINVAL     = C.MQ_EINVAL
	mqEHANDLE    = C.MQ_EHANDLE
	mqEDTYPE     = C.MQ_EDTYPE
	mqESHAPE     = C.MQ_ESHAPE
	mqEBUFFER    = C.MQ_EBUFFER
	mqENONFINITE = C.MQ_ENONFINITE
	mqEINTERNAL  = C.MQ_EINTERNAL
	mqEPANIC     = C.MQ_EPANIC
)

// statusError is an error that already knows its status code: the argument checks of capi
// produce these, the engine's errors are classified by mapErr.
type statusError struct {
	code C.int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func fail(code C.int, format string, a ...any) error {
	return &statusError{code: code, msg: fmt.Sprintf(format, a...)}
}

// mapErr turns err into a status code and records its message for mq_last_error. fallback is
// the code for engine errors that carry no sentinel: each export knows what its engine call can
// fail on (an observer constructor only on bad options, for instance), which a generic mapping
// cannot.
func mapErr(err error, fallback C.int) C.int {
	if err == nil {
		return mqOK
	}
	var code C.int
	var se *statusError
	switch {
	case errors.As(err, &se):
		code = se.code
	case errors.Is(err, quant.ErrNonFinite):
		code = mqENONFINITE
	case errors.Is(err, quant.ErrSpec):
		code = mqEINVAL
	default:
		code = fallback
	}
	msg := err.Error()
	if code == mqENONFINITE {
		msg = strings.ReplaceAll(msg, quant.NonFiniteHint, nonFiniteHintC)
	}
	setLastError(msg)
	return code
}

// nonFiniteHintC is quant.NonFiniteHint in the C interface's words (bindings that wrap the C
// functions replace it with their own option's name in turn).
const nonFiniteHintC = `set nonfinite = MQ_NONFINITE_CLAMP in the config, or "nonfinite": "clamp" in options JSON, to quantize anyway`

// setLastError records msg for mq_last_error, bounded to names.MaxMessage bytes and with any
// NUL shown as \x00 (a C string would end there).
func setLastError(msg string) {
	msg = names.Message(strings.ReplaceAll(msg, "\x00", `\x00`))
	cs := C.CString(msg)
	defer C.free(unsafe.Pointer(cs))
	C.mq__set_last_error(cs, C.size_t(len(msg)))
}

// guard is deferred by every export: a panic must never unwind into C (it would kill the host
// process), so it becomes MQ_EPANIC with the panic value in mq_last_error and the stack on stderr
// for the bug report.
func guard(rc *C.int) {
	if r := recover(); r != nil {
		setLastError(fmt.Sprintf("internal error (panic): %v", r))
		fmt.Fprintf(os.Stderr, "monoquant: panic in C ABI call: %v\n%s", r, debug.Stack())
		*rc = mqEPANIC
	}
}

// offThread runs f on a goroutine of its own and waits for it. The goroutine of a call from C
// is locked to the caller's thread, so each time it blocks and is woken again (the hand-offs
// of a pipeline between its reader, workers and writer), the scheduler must wake that one OS
// thread to run it, instead of running it on whichever thread is free: measured on a busy
// 2-core machine, mq_quantize_file took 1.2-1.5x the CLI's wall time with the same CPU time.
// Long calls therefore run their work here, and the locked goroutine blocks once. A panic in
// f is raised again in the caller's goroutine (with f's stack), where guard reports it.
func offThread[T any](f func() (T, error)) (T, error) {
	type result struct {
		v     T
		err   error
		panic any
		stack []byte
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.panic, r.stack = p, debug.Stack()
			}
			ch <- r
		}()
		r.v, r.err = f()
	}()
	r := <-ch
	if r.panic != nil {
		panic(fmt.Sprintf("%v\n%s", r.panic, r.stack))
	}
	return r.v, r.err
}

//export mq_debug_panic
func mq_debug_panic() (rc C.int) {
	defer guard(&rc)
	var m map[string]int
	m["deliberate"]++ // a real runtime panic (nil map write), not a hand-made one
	return mqOK
}

//export mq_debug_live_handles
func mq_debug_live_handles() C.int64_t { return C.int64_t(liveHandles.Load()) }
