"""The engine's model API (mq_model_* in monoquant.h) as a Python handle class.

A ModelHandle owns one mq_model: built from caller tensors (borrowed by pointer: the handle
keeps the torch tensors alive until it is freed), loaded from a checkpoint, or produced by
quantize()/dequantize(). It is freed in close(), __exit__ or __del__, safely more than once.
"""

import ctypes
import json
import os
import threading
from collections import OrderedDict

import torch

from . import _lib
from ._engine import CTensor, Handle, QuantSpec, _dense_cpu
from ._lib import check

_DTYPES = {
    _lib.MQ_DTYPE_F32: torch.float32,
    _lib.MQ_DTYPE_F16: torch.float16,
    _lib.MQ_DTYPE_BF16: torch.bfloat16,
    _lib.MQ_DTYPE_F64: torch.float64,
    _lib.MQ_DTYPE_I8: torch.int8,
    _lib.MQ_DTYPE_U8: torch.uint8,
    _lib.MQ_DTYPE_I16: torch.int16,
    _lib.MQ_DTYPE_I32: torch.int32,
    _lib.MQ_DTYPE_I64: torch.int64,
    _lib.MQ_DTYPE_BOOL: torch.bool,
}

def _b(s):
    return s.encode("utf-8")


class ModelConfig:
    """An mq_model_config carrying the call's options by name (``options_json``) and an optional
    recipe (``recipe_json``), plus the memory its pointers refer to (kept alive with it). Every
    default and every check of these values is the engine's."""

    def __init__(self, options=None, recipe_json=None, recipe_file=None, observer_config=None, log=True):
        cfg = _lib.mq_model_config()
        check(_lib.mq_model_config_init(ctypes.byref(cfg)), "mq_model_config_init")
        cfg.no_log = 0 if log else 1
        cfg.entry_point = b"python"
        self._options = _b(json.dumps(options or {}))
        cfg.options_json = self._options
        if recipe_json is not None:
            self._recipe = _b(recipe_json)
            cfg.recipe_json = self._recipe
        if recipe_file is not None:
            self._recipe_file = _b(os.fspath(recipe_file))
            cfg.recipe_file = self._recipe_file
        if observer_config is not None:
            # torch's constructor arguments, as an engine observer config (read during the call)
            self._obs_config = observer_config
            cfg.activation_observer = ctypes.pointer(self._obs_config)
        self.struct = cfg

    @property
    def ref(self):
        return ctypes.byref(self.struct)

    def replace(self, log):
        """The same options, recipe and observer with the run log on or off."""
        c = ModelConfig(log=log)
        for k in ("_options", "_recipe", "_recipe_file", "_obs_config"):
            if hasattr(self, k):
                setattr(c, k, getattr(self, k))
        s, d = self.struct, c.struct
        d.options_json, d.recipe_json, d.recipe_file, d.activation_observer = s.options_json, s.recipe_json, s.recipe_file, s.activation_observer
        return c


def _json_call(fn, args, what):
    """Calls a buffer-convention JSON function of the ABI (sizing call, then the real one)."""
    n = ctypes.c_size_t()
    st = fn(*args, None, 0, ctypes.byref(n))
    if st not in (_lib.MQ_OK, _lib.MQ_EBUFFER):
        check(st, what)
    buf = ctypes.create_string_buffer(n.value + 1)
    check(fn(*args, buf, n.value + 1, ctypes.byref(n)), what)
    return json.loads(buf.value.decode("utf-8"))


def progress_callback(progress, err):
    """An mq_progress_fn calling ``progress(tensors_done, tensors_total)``; an exception in it
    (KeyboardInterrupt too) is kept in the list ``err`` and cancels the run, so the caller can
    re-raise it. Keep the returned object alive for the length of the call."""

    def cb(done, total, _bd, _bt, _user):
        try:
            if progress is not None:
                progress(int(done), int(total))
            return 0
        except BaseException as e:  # noqa: B902 (KeyboardInterrupt too: cancel cleanly)
            err.append(e)
            return 1

    return _lib.mq_progress_fn(cb)


def defaults():
    """The engine's defaults (bits, group_size, scheme, observer, method, activations per
    format, the methods and observers it knows, the layer types it selects by default)."""
    return _json_call(_lib.mq_defaults_json, (), "mq_defaults_json")


# The names a quantized tensor <name> stores its parts under, after <name>, as the engine writes
# them (mq_defaults_json "suffixes"; docs/FORMAT.md): never spelled out anywhere else.
SUFFIXES = defaults()["suffixes"]
SCALE, ZERO_POINT = SUFFIXES["scale"], SUFFIXES["zero_point"]
OUTLIER_COLUMNS, OUTLIER_WEIGHT = SUFFIXES["outlier_columns"], SUFFIXES["outlier_weight"]


def plan_file(src, cfg):
    """mq_plan_file_json: the plan for a checkpoint file, from its list of tensors only."""
    return _json_call(lambda *a: _lib.mq_plan_file_json(_b(os.fspath(src)), cfg.ref, *a), (), "plan")


def quantize_file(src, dst, cfg, calibration=None, progress=None, cancel=None):
    """mq_quantize_file_cancelable: file to file through the engine's one pipeline; returns the
    report. ``cancel`` (a ctypes.c_int32, or None for a private one) stops the run at the next
    block once non-zero; see run_interruptible for Ctrl-C."""
    err = []
    c_cb = progress_callback(progress, err)
    rep = ctypes.c_void_p()
    cal = None if calibration is None else _b(os.fspath(calibration))
    flag = cancel if cancel is not None else ctypes.c_int32(0)
    st, msg = run_interruptible(
        lambda: _lib.mq_quantize_file_cancelable(_b(os.fspath(src)), _b(os.fspath(dst)), cfg.ref, cal, c_cb, None,
                                                 ctypes.byref(flag), ctypes.byref(rep)),
        flag)
    if err:
        raise err[0]
    if st != _lib.MQ_OK:
        from ._errors import error_for_status

        raise error_for_status(st, msg or f"status {st}", "quantize_file")
    try:
        return _json_call(_lib.mq_report_json, (rep,), "mq_report_json")
    finally:
        _lib.mq_report_free(rep)


def dequantize_file(src, dst, progress=None):
    """mq_dequantize_file: a quantized checkpoint (file, sharded index or model folder) to its
    float form, through the engine's one pipeline (the CLI's `monoquant dequantize`)."""
    err = []
    c_cb = progress_callback(progress, err)
    st = _lib.mq_dequantize_file(_b(os.fspath(src)), _b(os.fspath(dst)), c_cb, None)
    if err:
        raise err[0]
    check(st, "dequantize_file")


def run_interruptible(call, flag):
    """Runs ``call()`` (an engine call that stops once the ctypes.c_int32 ``flag`` is non-zero)
    on a worker thread while this thread waits, so that Ctrl-C, or any exception a signal
    handler raises here (e.g. a SIGTERM handler calling sys.exit), sets the flag: the engine
    stops at its next block, removes what it wrote, and the exception is re-raised once it has.
    Returns (status, mq_last_error() of the worker thread when the status is an error).

    Python runs signal handlers on the main thread between bytecodes only, never while that
    thread is inside a foreign call; hence the worker. Called from a thread other than the
    main one (no signals there), the call simply runs on the caller's thread."""
    if threading.current_thread() is not threading.main_thread():
        st = call()
        return st, (_lib.last_error() if st != _lib.MQ_OK else "")
    out = []

    def work():
        st = call()
        out.append((st, _lib.last_error() if st != _lib.MQ_OK else ""))

    t = threading.Thread(target=work, name="monoquant-quantize-file", daemon=True)
    t.start()
    try:
        while t.is_alive():
            t.join(0.25)
    except BaseException:
        flag.value = 1
        while t.is_alive():
            try:
                t.join()
            except BaseException:  # noqa: B902 (a second Ctrl-C: still wait, the engine is stopping)
                flag.value = 1
        raise
    return out[0]
def _report(fn, *args):
    """Calls an mq_ function whose last argument is an mq_report** and returns the report."""
    rep = ctypes.c_void_p()
    check(fn(*args, ctypes.byref(rep)), fn.__name__)
    try:
        return _json_call(_lib.mq_report_json, (rep,), "mq_report_json")
    finally:
        _lib.mq_report_free(rep)


def quantize_shards_begin(src, dst, cfg, calibration=None):
    """mq_quantize_shards_begin: the output shard names ([]: not a sharded model folder)."""
    cal = None if calibration is None else _b(os.fspath(calibration))
    return _json_call(lambda *a: _lib.mq_quantize_shards_begin(_b(os.fspath(src)), _b(os.fspath(dst)), cfg.ref, cal, *a), (), "quantize_file")


def quantize_shard(src, dst, cfg, k, calibration=None):
    """mq_quantize_shard: writes shard k; returns its report."""
    cal = None if calibration is None else _b(os.fspath(calibration))
    return _report(_lib.mq_quantize_shard, _b(os.fspath(src)), _b(os.fspath(dst)), cfg.ref, cal, k)


def quantize_shards_finish(src, dst, cfg, reports, calibration=None):
    """mq_quantize_shards_finish: index, other files, check, run log; returns the run's report."""
    cal = None if calibration is None else _b(os.fspath(calibration))
    return _report(_lib.mq_quantize_shards_finish, _b(os.fspath(src)), _b(os.fspath(dst)), cfg.ref, cal, _b(json.dumps(reports)))


def quantize_shards_abort(dst):
    _lib.mq_quantize_shards_abort(_b(os.fspath(dst)))


class ModelHandle(Handle):
    """One native mq_model."""

    _free_fn = staticmethod(lambda h: _lib.mq_model_free(h))
    _kind = "model"

    def __init__(self):
        super().__init__()
        self._borrowed = []  # tensors whose memory the native model points at
        self._named = {}  # those added by add_tensor, by name (forget() lets go of one)

    def close(self):
        """Frees the native model, then lets go of the borrowed tensors. Safe twice."""
        super().close()
        self._borrowed = []
        self._named = {}

    def forget(self, name):
        """Lets go of the tensor added as ``name``: only after the engine gave it back
        (quantize_stream's "released"), since the native model points at its memory."""
        self._named.pop(name, None)

    def __deepcopy__(self, memo):
        # Quantized models are read-only: copies of a module tree may share the snapshot.
        return self

    def __reduce__(self):
        # Native memory cannot travel through pickle: a pickled quantized model (torch.save of the
        # whole module) comes back runnable but without a snapshot, and save() says so.
        return (_detached, ())

    @classmethod
    def new(cls):
        h = cls()
        check(_lib.mq_model_new(ctypes.byref(h._h)), "mq_model_new")
        return h

    @classmethod
    def load(cls, path):
        h = cls()
        check(_lib.mq_model_load(ctypes.byref(h._h), _b(os.fspath(path))), "mq_model_load")
        return h

    @classmethod
    def open(cls, path):
        """mq_model_open: a quantized checkpoint checked but not read; read() copies each
        tensor straight from the file."""
        h = cls()
        check(_lib.mq_model_open(ctypes.byref(h._h), _b(os.fspath(path))), "mq_model_open")
        return h

    def add_tensor(self, name, t):
        """Adds t by pointer (a dense CPU tensor is borrowed as is; others are copied once here)."""
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
        if t.is_complex():
            raise TypeError(f"{name}: complex tensors ({t.dtype}) cannot be stored")
        src = _dense_cpu(t, name)
        if src.dtype not in _DTYPES.values():
            raise TypeError(f"{name}: dtype {src.dtype} cannot be stored (float, int8/16/32/64, uint8 and bool can)")
        ct = CTensor(src)
        self._named[name] = src
        check(_lib.mq_model_add_tensor(self._h, _b(name), ct.ref), f"mq_model_add_tensor({name})")

    def set_module_type(self, path, class_name):
        check(_lib.mq_model_set_module_type(self._h, _b(path), _b(class_name)), "mq_model_set_module_type")

    def set_metadata(self, key, value):
        check(_lib.mq_model_set_metadata(self._h, _b(key), _b(value)), "mq_model_set_metadata")

    def set_config(self, config_json):
        """mq_model_set_config: this model's tensors become a quantized model with that config
        (checked by the engine as a file's is)."""
        check(_lib.mq_model_set_config(self._h, _b(config_json)), "mq_model_set_config")

    def calibrate_begin(self, cfg):
        check(_lib.mq_model_calibrate_begin(self._h, cfg.ref), "mq_model_calibrate_begin")

    def calibrate(self, layer, x):
        from ._engine import c_float_input

        ct = c_float_input(x, f"input of {layer}")
        check(_lib.mq_model_calibrate(self._h, _b(layer), ct.ref), "mq_model_calibrate")

    def set_hessian(self, layer, h):
        """Gives layer's input Hessian XᵀX (a float32 [K, K] tensor) for method gptq, by pointer:
        the handle keeps h alive until it is freed."""
        src = _dense_cpu(h, f"Hessian of {layer}")
        hs = _lib.mq_hessian()
        check(_lib.mq_hessian_init(ctypes.byref(hs)), "mq_hessian_init")
        ct = CTensor(src)
        hs.matrix = ct.struct
        self._borrowed.append(src)
        check(_lib.mq_model_set_hessian(self._h, _b(layer), ctypes.byref(hs)), f"mq_model_set_hessian({layer})")

    def quantize(self, cfg, progress=None):
        """A new quantized ModelHandle. ``progress(tensors_done, tensors_total)`` is called per
        tensor; an exception in it cancels the run and is re-raised here."""
        out = ModelHandle()
        err = []
        c_cb = progress_callback(progress, err)
        st = _lib.mq_model_quantize(self._h, cfg.ref, c_cb, None, ctypes.byref(out._h))
        if err:
            out.close()
            raise err[0]
        check(st, "mq_model_quantize")
        return out

    def output_layout(self, cfg):
        """[(name, torch dtype, shape, nbytes)] of the tensors quantize(cfg) produces, in order
        (mq_model_output_layout_json: the engine decides them)."""
        rows = _json_call(lambda *a: _lib.mq_model_output_layout_json(self._h, cfg.ref, *a), (), "mq_model_output_layout_json")
        return [(r["name"], _DTYPES[r["dtype"]], tuple(r["shape"]), int(r["nbytes"])) for r in rows]

    def dequantize_into(self):
        """dequantize() with every tensor allocated by torch and written by the engine in place
        (mq_model_dequantize_into): returns (the new float ModelHandle, OrderedDict name →
        tensor); the handle borrows the tensors."""
        rows = _json_call(lambda *a: _lib.mq_model_dequantize_layout_json(self._h, *a), (), "mq_model_dequantize_layout_json")
        arr, outs, keep = _outputs([(r["name"], _DTYPES[r["dtype"]], tuple(r["shape"]), int(r["nbytes"])) for r in rows])
        out = ModelHandle()
        check(_lib.mq_model_dequantize_into(self._h, arr, len(outs), ctypes.byref(out._h)), "mq_model_dequantize_into")
        out._borrowed = list(outs.values())
        return out, outs

    def quantize_into(self, cfg, progress=None):
        """quantize() with every result tensor allocated by torch and written by the engine in
        place (mq_model_quantize_into): returns (the new quantized ModelHandle, OrderedDict name →
        tensor). The handle reads those same tensors (it borrows them), so nothing is copied on
        the way out and nothing is held twice."""
        layout = self.output_layout(cfg)
        arr, outs, keep = _outputs(layout)
        out = ModelHandle()
        err = []
        c_cb = progress_callback(progress, err)
        st = _lib.mq_model_quantize_into(self._h, cfg.ref, c_cb, None, arr, len(layout), ctypes.byref(out._h))
        if err:
            out.close()
            raise err[0]
        check(st, "mq_model_quantize_into")
        out._borrowed = list(outs.values())
        return out, outs

    def quantize_stream(self, cfg, progress=None, written=None, released=None, on_outputs=None, in_place=()):
        """quantize_into() telling, as it goes (mq_model_quantize_stream), ``written(name)``
        once every output of input tensor ``name`` is in its tensor, and ``released(name)`` once
        the engine reads that input no more (forget() may then let go of it). An exception in
        either cancels the run and is re-raised here. ``on_outputs(outputs)`` is given the
        output tensors (name → tensor, written as the run goes) before it starts. The tensors
        named in ``in_place`` (kept ones: the engine writes them unchanged) are their own
        output, so the engine finds their bytes in place and copies nothing. This handle is
        spent afterwards: only close() is left."""
        layout = self.output_layout(cfg)
        arr, outs, keep = _outputs(layout, {n: self._named[n] for n in in_place if n in self._named})
        if on_outputs is not None:
            on_outputs(outs)
        out = ModelHandle()
        err = []
        c_cb = progress_callback(progress, err)
        calls = {_lib.MQ_STREAM_WRITTEN: written, _lib.MQ_STREAM_RELEASED: released}

        def on_event(event, name, _user):
            try:
                fn = calls.get(event)
                if fn is not None:
                    fn(name.decode("utf-8"))
                return 0
            except BaseException as e:  # noqa: B902 (KeyboardInterrupt too: cancel cleanly)
                err.append(e)
                return 1

        c_ev = _lib.mq_stream_fn(on_event)
        st = _lib.mq_model_quantize_stream(self._h, cfg.ref, c_cb, None, arr, len(layout), c_ev, ctypes.byref(out._h))
        if err:
            out.close()
            raise err[0]
        check(st, "mq_model_quantize_stream")
        out._borrowed = list(outs.values())
        return out, outs

    def dequantize(self):
        out = ModelHandle()
        check(_lib.mq_model_dequantize(self._h, ctypes.byref(out._h)), "mq_model_dequantize")
        return out

    def save(self, path):
        check(_lib.mq_model_save(self._h, _b(os.fspath(path))), "mq_model_save")

    def infos(self):
        """[(name, dtype, shape, nbytes)] in the model's order."""
        n = ctypes.c_size_t()
        check(_lib.mq_model_tensor_count(self._h, ctypes.byref(n)), "mq_model_tensor_count")
        out = []
        info = _lib.mq_tensor_info()
        for i in range(n.value):
            check(_lib.mq_model_tensor_info(self._h, i, ctypes.byref(info)), "mq_model_tensor_info")
            dt = _DTYPES.get(info.dtype)
            name = info.name.decode("utf-8")
            if dt is None:
                from ._errors import UnsupportedError

                raise UnsupportedError(f"tensor {name}: element type {info.dtype} has no torch dtype")
            out.append((name, dt, tuple(info.shape[: info.ndim]), int(info.nbytes)))
        return out

    def read(self, name, dtype, shape, nbytes):
        """Copies one tensor into a new torch tensor."""
        t = torch.empty(shape, dtype=dtype)
        if t.numel() * t.element_size() != nbytes:
            # Packed INT4 values may not fill whole elements of the nominal shape.
            t = torch.empty(nbytes, dtype=torch.uint8)
        ptr = ctypes.c_void_p(t.data_ptr()) if nbytes else None
        check(_lib.mq_model_tensor_read(self._h, _b(name), ptr, nbytes), f"mq_model_tensor_read({name})")
        return t

    def tensors(self, names=None):
        """OrderedDict name → tensor (all, or those in ``names``), copied out of the model."""
        want = None if names is None else set(names)
        out = OrderedDict()
        for name, dt, shape, nbytes in self.infos():
            if want is None or name in want:
                out[name] = self.read(name, dt, shape, nbytes)
        return out

    def _json(self, fn, what):
        return _json_call(fn, (self._h,), what)

    def plan(self, cfg):
        """What the engine would do with this model under cfg (mq_model_plan_json), as a dict."""
        return _json_call(lambda *a: _lib.mq_model_plan_json(self._h, cfg.ref, *a), (), "plan")

    def metadata(self):
        """The metadata entries (str → str)."""
        return self._json(_lib.mq_model_metadata_json, "mq_model_metadata_json")

    def report(self):
        """The quantization report (a dict) of the mq_model_quantize call that made this model."""
        return self._json(_lib.mq_model_report_json, "mq_model_report_json")


def _outputs(layout, reuse=None):
    """(mq_output array, OrderedDict name → new torch tensor, the name bytes to keep alive) for
    a layout [(name, dtype, shape, nbytes)]. ``reuse`` (name → tensor) gives tensors to use as
    they are where they have the layout's dtype, shape and bytes (dense, on the CPU)."""
    outs = OrderedDict()
    arr = (_lib.mq_output * max(len(layout), 1))()
    names = []
    reuse = reuse or {}
    for i, (name, dt, shape, nbytes) in enumerate(layout):
        t = reuse.get(name)
        if t is None or t.dtype != dt or tuple(t.shape) != tuple(shape) or t.numel() * t.element_size() != nbytes \
                or t.device.type != "cpu" or not t.is_contiguous():
            t = _empty_for(dt, shape, nbytes)
        outs[name] = t
        names.append(_b(name))
        arr[i].name = names[-1]
        arr[i].data = t.data_ptr() if nbytes else None
        arr[i].nbytes = nbytes
    return arr, outs, names


def _empty_for(dtype, shape, nbytes):
    """An uninitialised torch tensor of nbytes for a tensor of (dtype, shape): that dtype and
    shape, or flat uint8 when the bytes are not the shape's (packed INT4 values)."""
    t = torch.empty(shape, dtype=dtype)
    if t.numel() * t.element_size() != nbytes:
        t = torch.empty(nbytes, dtype=torch.uint8)
    return t


def _detached():
    """A closed handle: what an unpickled quantized model carries instead of the snapshot."""
    return ModelHandle()


def write_checkpoint(tensors, metadata, path):
    """Writes plain named tensors (and string metadata) to path through the engine."""
    with ModelHandle.new() as m:
        for name, t in tensors.items():
            m.add_tensor(name, t)
        for k, v in metadata.items():
            m.set_metadata(k, v)
        m.save(path)


def read_checkpoint(path):
    """(OrderedDict of tensors, metadata dict, the handle) of a checkpoint file."""
    m = ModelHandle.load(path)
    try:
        return m.tensors(), m.metadata(), m
    except BaseException:
        m.close()
        raise
