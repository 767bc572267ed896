package main

/*
#include "model.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/runlog"
	"github.com/monoquant/monoquant/core/tensor"
)

// modelState is what a model handle holds: exactly one of m (a float model, which may borrow
// caller memory) and res (a quantized model, which owns its data).
type modelState struct {
	m   *model.Model
	res *model.Result
	// names holds the C copies of tensor names handed out by mq_model_tensor_info, so each
	// pointer stays valid until mq_model_free, which frees them.
	names  map[string]*C.char
	closed bool
	// spent: mq_model_quantize_stream may have let the caller free the tensors; only
	// mq_model_free is left.
	spent bool
	// cal fingerprints the calibration data of a float model for the run log (nil: not logged);
	// runID, runLog and logWarning are a quantized model's record there (its report carries them).
	cal                *runlog.CalibrationHash
	runID              int64
	runLog, logWarning string
	// entries and index cache reader().Entries() (which copies every entry) for the per-tensor
	// calls, so that walking a model of n tensors costs O(n), not O(n²); built on first use and
	// dropped by every change of the model's tensors (changed).
	entries []checkpoint.Entry
	index   map[string]int
}

// entryList is the model's tensors in order (cached: see entries).
func (s *modelState) entryList() []checkpoint.Entry {
	if s.entries == nil {
		s.entries = s.reader().Entries()
		s.index = make(map[string]int, len(s.entries))
		for i, e := range s.entries {
			if _, dup := s.index[e.Name]; !dup {
				s.index[e.Name] = i
			}
		}
	}
	return s.entries
}

// entryNamed finds a tensor by name (cached: see entries).
func (s *modelState) entryNamed(name string) (checkpoint.Entry, bool) {
	es := s.entryList()
	i, ok := s.index[name]
	if !ok {
		return checkpoint.Entry{}, false
	}
	return es[i], true
}

// changed drops the cached entries after the model's tensors changed.
func (s *modelState) changed() { s.entries, s.index = nil, nil }

func (s *modelState) reader() checkpoint.Reader {
	if s.res != nil {
		return s.res.Reader()
	}
	return s.m.Reader()
}

// floatModel refuses the calls that would change a quantized model.
func (s *modelState) floatModel(call string) (*model.Model, error) {
	if s.res != nil {
		return nil, fail(mqEINVAL, "%s: the model is quantized and read-only (mq_model_dequantize gives a float model)", call)
	}
	return s.m, nil
}

func modelID(h *C.mq_model) uintptr { return uintptr(C.mq__id_from_model(h)) }

func newModelHandle(s *modelState) *C.mq_model {
	return C.mq__model_from_id(C.uintptr_t(addHandle(kindModel, s)))
}

// inCallback maps a model id to the OS thread running mq_model_quantize on it while its
// progress callback may run. A call on that model from that same thread comes from inside the
// callback and would wait forever for the handle's lock, so it is refused instead; other threads
// wait as usual.
var inCallback sync.Map // uintptr -> C.uint64_t

// lockModel looks up a model handle, locked; the caller unlocks e.mu.
func lockModel(h *C.mq_model, call string) (*entry, *modelState, error) {
	id := modelID(h)
	if t, ok := inCallback.Load(id); ok && t.(C.uint64_t) == C.mq__thread_id() {
		return nil, nil, fail(mqEINVAL, "%s: called from inside this model's progress callback", call)
	}
	e, err := lockHandle(id, kindModel)
	if err != nil {
		return nil, nil, err
	}
	s := e.value.(*modelState)
	if s.closed {
		e.mu.Unlock()
		return nil, nil, fail(mqEHANDLE, "%s: model handle %#x was freed", call, id)
	}
	if s.spent && call != "mq_model_free" {
		e.mu.Unlock()
		return nil, nil, fail(mqEINVAL, "%s: the model's tensors were given back to the caller by mq_model_quantize_stream; only mq_model_free is left", call)
	}
	return e, s, nil
}

// goString reads a NUL-terminated caller string, naming the argument when it is NULL.
func goString(p *C.mq_cchar, call, arg string) (string, error) {
	if p == nil {
		return "", fail(mqEINVAL, "%s: %s is NULL", call, arg)
	}
	s := C.GoString((*C.char)(unsafe.Pointer(p)))
	if !utf8.ValidString(s) {
		return "", fail(mqEINVAL, "%s: %s is not valid UTF-8", call, arg)
	}
	return s, nil
}

// goStringPair is goString of two arguments of one call, the first error first.
func goStringPair(call string, a *C.mq_cchar, aName string, b *C.mq_cchar, bName string) (string, string, error) {
	x, err := goString(a, call, aName)
	if err != nil {
		return "", "", err
	}
	y, err := goString(b, call, bName)
	return x, y, err
}

//export mq_model_new
func mq_model_new(out **C.mq_model) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_model_new: out is NULL"), mqEINVAL)
	}
	*out = newModelHandle(&modelState{m: model.NewModel()})
	return mqOK
}

//export mq_model_load
func mq_model_load(out **C.mq_model, path *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_model_load: out is NULL"), mqEINVAL)
	}
	*out = nil
	p, err := goString(path, "mq_model_load", "path")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	// A Hugging Face model folder loads its weights (the one file or the index of its shards,
	// as monoquant quantize wrote them); a folder without them is MQ_EIO.
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		w, err := checkpoint.FindWeights(p)
		if err != nil {
			return mapErr(fail(mqEIO, "mq_model_load: %v", err), mqEIO)
		}
		p = w
	}
	// A path that is not a file is the caller's path, not the content's fault: MQ_EIO, as for
	// a missing file, rather than the MQ_EFORMAT the reader's own check would map to.
	if st, err := os.Stat(p); err == nil && !st.Mode().IsRegular() {
		return mapErr(fail(mqEIO, "mq_model_load: %v", mapped.NotRegular(p, st)), mqEIO)
	}
	// Opening reads only headers; it tells which loader to run, so the tensors are read once.
	r, err := checkpoint.Open(p)
	if err != nil {
		return modelErr(err, mqEFORMAT)
	}
	quantized := model.IsQuantized(r.Metadata())
	r.Close()
	var s *modelState
	if quantized {
		res, err := model.LoadResult(p)
		if err != nil {
			return modelErr(err, mqEFORMAT)
		}
		s = &modelState{res: res}
	} else {
		m, err := model.LoadModel(p)
		if err != nil {
			return modelErr(err, mqEFORMAT)
		}
		s = &modelState{m: m}
	}
	*out = newModelHandle(s)
	return mqOK
}

//export mq_model_add_tensor
func mq_model_add_tensor(h *C.mq_model, name *C.mq_cchar, t *C.mq_ctensor) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(h, "mq_model_add_tensor")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_add_tensor")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	n, err := goString(name, "mq_model_add_tensor", "name")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if n == "" {
		return mapErr(fail(mqEINVAL, "mq_model_add_tensor: name is empty"), mqEINVAL)
	}
	// tensorFromC wraps contiguous caller memory in place (the borrow the header documents)
	// and gathers strided data into a Go buffer the model then owns.
	src, err := tensorFromC(t, true)
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	s.changed()
	if err := m.Add(n, src); err != nil {
		return modelErr(err, mqEINVAL)
	}
	return mqOK
}

//export mq_model_set_module_type
func mq_model_set_module_type(h *C.mq_model, path, class *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(h, "mq_model_set_module_type")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_set_module_type")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	p, err := goString(path, "mq_model_set_module_type", "path")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	c, err := goString(class, "mq_model_set_module_type", "class_name")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	return modelErr(m.SetModuleType(p, c), mqEINVAL)
}

//export mq_model_set_metadata
func mq_model_set_metadata(h *C.mq_model, key, value *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(h, "mq_model_set_metadata")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_set_metadata")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	k, err := goString(key, "mq_model_set_metadata", "key")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	v, err := goString(value, "mq_model_set_metadata", "value")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	return modelErr(m.SetMetadata(k, v), mqEINVAL)
}

//export mq_model_open
func mq_model_open(out **C.mq_model, path *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_model_open: out is NULL"), mqEINVAL)
	}
	*out = nil
	p, err := goString(path, "mq_model_open", "path")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	if st, err := os.Stat(p); err == nil && !st.Mode().IsRegular() {
		return mapErr(fail(mqEIO, "mq_model_open: %v", mapped.NotRegular(p, st)), mqEIO)
	}
	res, err := model.OpenResult(p)
	if err != nil {
		return modelErr(err, mqEFORMAT)
	}
	*out = newModelHandle(&modelState{res: res})
	return mqOK
}

//export mq_model_set_config
func mq_model_set_config(h *C.mq_model, configJSON *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(h, "mq_model_set_config")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	m, err := s.floatModel("mq_model_set_config")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	cfg, err := goString(configJSON, "mq_model_set_config", "config_json")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	res, err := m.WithConfig(cfg)
	if err != nil {
		return modelErr(err, mqEFORMAT)
	}
	s.res, s.m = res, nil
	s.changed()
	return mqOK
}

//export mq_model_save
func mq_model_save(h *C.mq_model, path *C.mq_cchar) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(h, "mq_model_save")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	p, err := goString(path, "mq_model_save", "path")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	// OS errors are MQ_EIO (modelErr); what remains is the request itself, such as a
	// suffix that names no format.
	if s.res != nil {
		return modelErr(s.res.Save(context.Background(), p), mqEINVAL)
	}
	return modelErr(s.m.Save(context.Background(), p), mqEINVAL)
}

//export mq_model_tensor_count
func mq_model_tensor_count(h *C.mq_model, count *C.size_t) (rc C.int) {
	defer guard(&rc)
	if count == nil {
		return mapErr(fail(mqEINVAL, "mq_model_tensor_count: count is NULL"), mqEINVAL)
	}
	e, s, err := lockModel(h, "mq_model_tensor_count")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	*count = C.size_t(len(s.entryList()))
	return mqOK
}

//export mq_model_tensor_info
func mq_model_tensor_info(h *C.mq_model, i C.size_t, info *C.mq_tensor_info) (rc C.int) {
	defer guard(&rc)
	if info == nil {
		return mapErr(fail(mqEINVAL, "mq_model_tensor_info: info is NULL"), mqEINVAL)
	}
	e, s, err := lockModel(h, "mq_model_tensor_info")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	entries := s.entryList()
	if uint64(i) >= uint64(len(entries)) {
		return mapErr(fail(mqEINVAL, "mq_model_tensor_info: index %d is out of range (the model has %d tensors)", uint64(i), len(entries)), mqEINVAL)
	}
	en := entries[i]
	if len(en.Shape) > C.MQ_MAX_DIMS {
		return mapErr(fail(C.MQ_EUNSUPPORTED, "mq_model_tensor_info: tensor %q has %d dimensions, more than MQ_MAX_DIMS (%d)", en.Name, len(en.Shape), C.MQ_MAX_DIMS), C.MQ_EUNSUPPORTED)
	}
	cname, ok := s.names[en.Name]
	if !ok {
		if s.names == nil {
			s.names = map[string]*C.char{}
		}
		cname = C.CString(en.Name)
		s.names[en.Name] = cname
	}
	*info = C.mq_tensor_info{name: cname, dtype: C.int32_t(en.DType), ndim: C.int32_t(len(en.Shape))}
	for d, n := range en.Shape {
		info.shape[d] = C.int64_t(n)
	}
	info.nbytes = C.uint64_t(entryBytes(en))
	return mqOK
}

// entryBytes is the stored size of a tensor; checkpoint entries were checked for overflow
// when they were added or read.
func entryBytes(en checkpoint.Entry) int64 {
	return int64(tensor.NumElements(en.Shape)) * int64(en.DType.Size())
}

//export mq_model_tensor_read
func mq_model_tensor_read(h *C.mq_model, name *C.mq_cchar, buf unsafe.Pointer, bytes C.size_t) (rc C.int) {
	defer guard(&rc)
	e, s, err := lockModel(h, "mq_model_tensor_read")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	n, err := goString(name, "mq_model_tensor_read", "name")
	if err != nil {
		return mapErr(err, mqEINVAL)
	}
	r := s.reader()
	en, ok := s.entryNamed(n)
	if !ok {
		return mapErr(fail(mqEINVAL, "mq_model_tensor_read: the model has no tensor named %q", n), mqEINVAL)
	}
	need := entryBytes(en)
	if uint64(bytes) < uint64(need) {
		return mapErr(fail(mqEBUFFER, "mq_model_tensor_read: buffer has %d bytes, tensor %q needs %d", uint64(bytes), n, need), mqEBUFFER)
	}
	if need == 0 {
		return mqOK
	}
	if buf == nil {
		return mapErr(fail(mqEINVAL, "mq_model_tensor_read: buf is NULL"), mqEINVAL)
	}
	// A model opened on a file (mq_model_open) copies straight from the file into buf and
	// drops the pages it read as it goes: the caller's copy is the only one.
	if rr, ok := r.(checkpoint.RangedReader); ok {
		if err := checkpoint.ReadReleasing(rr, n, 0, bytesOut(buf, int(need))); err != nil {
			return modelErr(err, mqEIO)
		}
		return mqOK
	}
	t, err := r.Tensor(n)
	if err != nil {
		return modelErr(err, mqEINTERNAL)
	}
	copy(bytesOut(buf, int(need)), t.Data)
	r.Release(n)
	return mqOK
}

// copyJSON hands a JSON document to a caller buffer, NUL-terminated, with the size-query
// convention of the header.
func copyJSON(js []byte, buf *C.char, cap C.size_t, length *C.size_t) error {
	*length = C.size_t(len(js))
	if uint64(cap) < uint64(len(js))+1 {
		return fail(mqEBUFFER, "buffer has %d bytes, the JSON needs %d (with its NUL)", uint64(cap), len(js)+1)
	}
	if buf == nil {
		return fail(mqEINVAL, "buf is NULL but cap is %d", uint64(cap))
	}
	out := bytesOut(unsafe.Pointer(buf), len(js)+1)
	copy(out, js)
	out[len(js)] = 0
	return nil
}

// writeJSON marshals v and hands it to the caller's buffer (copyJSON), mapping the failures
// to status codes; call names the C function in messages.
func writeJSON(call string, v any, buf *C.char, cap C.size_t, length *C.size_t) C.int {
	js, err := json.Marshal(v)
	if err != nil {
		return mapErr(fail(mqEINTERNAL, "%s: %v", call, err), mqEINTERNAL)
	}
	return mapErr(copyJSON(js, buf, cap, length), mqEINVAL)
}

//export mq_model_metadata_json
func mq_model_metadata_json(h *C.mq_model, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_model_metadata_json: len is NULL"), mqEINVAL)
	}
	e, s, err := lockModel(h, "mq_model_metadata_json")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	md := s.reader().Metadata()
	if md == nil {
		md = map[string]string{}
	}
	return writeJSON("mq_model_metadata_json", md, buf, cap, length)
}

//export mq_model_report_json
func mq_model_report_json(h *C.mq_model, buf *C.char, cap C.size_t, length *C.size_t) (rc C.int) {
	defer guard(&rc)
	if length == nil {
		return mapErr(fail(mqEINVAL, "mq_model_report_json: len is NULL"), mqEINVAL)
	}
	e, s, err := lockModel(h, "mq_model_report_json")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	if s.res == nil || s.res.Report == nil {
		return mapErr(fail(mqEINVAL, "mq_model_report_json: the model has no report (only models made by mq_model_quantize have one)"), mqEINVAL)
	}
	return writeJSON("mq_model_report_json", struct {
		*model.Report
		RunID      int64  `json:"run_id"`
		RunLog     string `json:"run_log,omitempty"`
		LogWarning string `json:"log_warning,omitempty"`
	}{s.res.Report, s.runID, s.runLog, s.logWarning}, buf, cap, length)
}

//export mq_model_dequantize
func mq_model_dequantize(h *C.mq_model, out **C.mq_model) (rc C.int) {
	defer guard(&rc)
	if out == nil {
		return mapErr(fail(mqEINVAL, "mq_model_dequantize: out is NULL"), mqEINVAL)
	}
	*out = nil
	e, s, err := lockModel(h, "mq_model_dequantize")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	defer e.mu.Unlock()
	if s.res == nil {
		return mapErr(fail(mqEINVAL, "mq_model_dequantize: the model is not quantized"), mqEINVAL)
	}
	m, err := offThread(func() (*model.Model, error) { return s.res.Dequantize(context.Background()) })
	if err != nil {
		// The config was validated when the result was made or loaded, so what remains is
		// stored data that does not agree with it.
		return modelErr(err, mqEFORMAT)
	}
	*out = newModelHandle(&modelState{m: m})
	return mqOK
}

//export mq_model_free
func mq_model_free(h *C.mq_model) (rc C.int) {
	defer guard(&rc)
	if h == nil {
		return mqOK
	}
	e, s, err := lockModel(h, "mq_model_free")
	if err != nil {
		return mapErr(err, mqEHANDLE)
	}
	// The names are C memory the collector does not see; closed keeps a call that was waiting
	// for the lock from handing out new ones between this unlock and the removal.
	for _, p := range s.names {
		C.free(unsafe.Pointer(p))
	}
	s.names, s.closed = nil, true
	if s.res != nil {
		s.res.Close() // the file of mq_model_open; nothing for models in memory
	}
	e.mu.Unlock()
	return mapErr(removeHandle(modelID(h), kindModel), mqEHANDLE)
}
