// Command runlogso is a test-only shared library: core/runlog behind two C functions, loaded by
// tests/interop/test_runlog_sqlite.py into a Python process that also uses Python's own sqlite3
// module, as libmonoquant.so will be once the C ABI records runs.
package main

import "C"

import (
	"context"
	"encoding/json"

	"github.com/monoquant/monoquant/core/runlog"
)

// runlog_record records one run with the given metric in the log at path; returns its id, or 0
// (the warning is dropped: the test checks the id).
//
//export runlog_record
func runlog_record(path *C.char, metric C.double) C.longlong {
	r := runlog.Begin("c")
	r.Settings, _ = json.Marshal(map[string]any{"options": map[string]any{"Bits": 8}})
	r.Config = []byte(`{}`)
	r.Input = runlog.FileRef{Path: "/in.pt", SHA256: "00", Bytes: 1}
	r.Output = runlog.FileRef{Path: "/out.safetensors", SHA256: "11", Bytes: 1}
	r.Layers = []runlog.Layer{{Name: "fc.weight", Layer: "fc", LayerType: "linear", Format: "int8", Kernel: "int8", SQNR: 40}}
	r.Metrics["accuracy"] = float64(metric)
	id, _ := runlog.RecordOrWarn(context.Background(), C.GoString(path), r)
	return C.longlong(id)
}

// runlog_metric returns the metric named key of run id, or -1 when the log cannot be read.
//
//export runlog_metric
func runlog_metric(path *C.char, id C.longlong, key *C.char) C.double {
	l, err := runlog.Open(context.Background(), C.GoString(path))
	if err != nil {
		return -1
	}
	defer l.Close()
	r, err := l.Get(context.Background(), int64(id))
	if err != nil {
		return -1
	}
	v, ok := r.Metrics[C.GoString(key)]
	if !ok {
		return -1
	}
	return C.double(v)
}

func main() {}
