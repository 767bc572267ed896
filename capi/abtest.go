package main

/*
#include "model.h"
*/
import "C"

import "github.com/monoquant/monoquant/core/abtest"

//export mq_abtest_json
func mq_abtest_json(request *C.mq_cchar, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_abtest_json: len is NULL"), mqEINVAL)
	}
	js, err := goString(request, "mq_abtest_json", "request_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	req, err := abtest.ParseRequest([]byte(js))
	if err != nil {
		return mapErr(fail(mqEINVAL, "mq_abtest_json: %v", err), mqEINVAL)
	}
	d, err := abtest.Compare(req)
	if err != nil {
		return mapErr(fail(mqEINVAL, "mq_abtest_json: %v", err), mqEINVAL)
	}
	return writeJSON("mq_abtest_json", d, buf, cap, length)
}
