package main

/*
#include "search.h"
#include "model.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"unsafe"

	"github.com/monoquant/monoquant/core/search"
)

// searchState is what a search handle holds: the engine, and a candidate asked but not yet
// delivered (mq_search_ask with a short buffer keeps it for the next call).
type searchState struct {
	e    *search.Engine
	next *search.Candidate
	js   []byte
}

func searchID(h *C.mq_search) uintptr { return uintptr(C.mq__id_from_search(h)) }

func searchErr(err error) C.int {
	code := C.int(mqEINVAL)
	if errors.Is(err, search.ErrNonFinite) {
		code = mqENONFINITE
	}
	return mapErr(fail(code, "%s", err.Error()), code)
}

func newSearchHandle(e *search.Engine) *C.mq_search {
	return C.mq__search_from_id(C.uintptr_t(addHandle(kindSearch, &searchState{e: e})))
}

//export mq_search_new
func mq_search_new(space *C.mq_cchar, seed C.uint64_t, out **C.mq_search) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_search_new: out is NULL"), mqEINVAL)
	}
	*out = nil
	js, err := goString(space, "mq_search_new", "space_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	sp, err := search.ParseSpace([]byte(js))
	if err != nil {
		return searchErr(err)
	}
	e, err := search.New(sp, uint64(seed))
	if err != nil {
		return searchErr(err)
	}
	*out = newSearchHandle(e)
	return mqOK
}

//export mq_search_load
func mq_search_load(state *C.mq_cchar, out **C.mq_search) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_search_load: out is NULL"), mqEINVAL)
	}
	*out = nil
	js, err := goString(state, "mq_search_load", "state_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	e, err := search.Load([]byte(js))
	if err != nil {
		return searchErr(err)
	}
	*out = newSearchHandle(e)
	return mqOK
}

//export mq_search_ask
func mq_search_ask(h *C.mq_search, trial *C.int64_t, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil || trial == nil {
		return mapErr(fail(mqEINVAL, "mq_search_ask: trial or len is NULL"), mqEINVAL)
	}
	e, err := lockHandle(searchID(h), kindSearch)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	s := e.value.(*searchState)
	if s.next == nil {
		c := s.e.Ask()
		js, err := json.Marshal(c.Recipe)
		if err != nil {
			return mapErr(fail(mqEINTERNAL, "mq_search_ask: %v", err), mqEINTERNAL)
		}
		s.next, s.js = &c, js
	}
	*trial = C.int64_t(s.next.Trial)
	if err := copyJSON(s.js, buf, cap, length); err != nil {
		return mapErr(err, mqEINVAL)
	}
	s.next, s.js = nil, nil
	return mqOK
}

//export mq_search_tell
func mq_search_tell(h *C.mq_search, trial C.int64_t, values *C.mq_cdouble, n C.size_t) (rc C.int) {
	defer guard(&rc)
	if values == nil && n > 0 {
		return mapErr(fail(mqEINVAL, "mq_search_tell: values is NULL"), mqEINVAL)
	}
	e, err := lockHandle(searchID(h), kindSearch)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	s := e.value.(*searchState)
	if uint64(n) > 64 {
		return mapErr(fail(mqEINVAL, "mq_search_tell: %d objective values is more than a space has", uint64(n)), mqEINVAL)
	}
	vals := make([]float64, int(n))
	if n > 0 {
		copy(vals, unsafe.Slice((*float64)(unsafe.Pointer(values)), int(n)))
	}
	if err := s.e.TellValues(int(trial), vals); err != nil {
		return searchErr(err)
	}
	return mqOK
}

//export mq_search_fail
func mq_search_fail(h *C.mq_search, trial C.int64_t, reason *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	why := ""
	if reason != nil {
		why = C.GoString((*C.char)(unsafe.Pointer(reason)))
	}
	e, err := lockHandle(searchID(h), kindSearch)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	if err := e.value.(*searchState).e.Fail(int(trial), why); err != nil {
		return searchErr(err)
	}
	return mqOK
}

// searchJSON serves the JSON getters of a search handle.
func searchJSON(h *C.mq_search, call string, get func(*search.Engine) (any, error), buf *C.char, cap C.size_t, length *C.size_t) C.int {
	if length == nil {
		return mapErr(fail(mqEINVAL, "%s: len is NULL", call), mqEINVAL)
	}
	e, err := lockHandle(searchID(h), kindSearch)
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	v, err := get(e.value.(*searchState).e)
	if err != nil {
		return mapErr(fail(mqEINTERNAL, "%s: %v", call, err), mqEINTERNAL)
	}
	if js, ok := v.([]byte); ok {
		v = json.RawMessage(js)
	}
	return writeJSON(call, v, buf, cap, length)
}

//export mq_search_front_json
func mq_search_front_json(h *C.mq_search, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	return searchJSON(h, "mq_search_front_json", func(e *search.Engine) (any, error) {
		f := e.Front()
		if f == nil {
			f = []search.Result{}
		}
		return f, nil
	}, buf, cap, length)
}

//export mq_search_trials_json
func mq_search_trials_json(h *C.mq_search, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	return searchJSON(h, "mq_search_trials_json", func(e *search.Engine) (any, error) { return e.Trials(), nil }, buf, cap, length)
}

//export mq_search_save_json
func mq_search_save_json(h *C.mq_search, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	return searchJSON(h, "mq_search_save_json", func(e *search.Engine) (any, error) { return e.Save() }, buf, cap, length)
}

//export mq_search_free
func mq_search_free(h *C.mq_search) (rc C.int) {
	defer guard(&rc)
	if h == nil {
		return mqOK
	}
	return mapErr(removeHandle(searchID(h), kindSearch), mqEHANDLE)
}
