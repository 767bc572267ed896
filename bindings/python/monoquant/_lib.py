"""The raw ctypes layer: finds libmonoquant.so and declares every function of monoquant.h.

This module mirrors include/monoquant.h one to one (llama-cpp-python style): each C function is
declared with its argtypes/restype under a comment holding its C prototype, and is callable as
``_lib.mq_name(...)``, returning the raw int status. The Pythonic layer (``_engine``) turns
statuses into exceptions with ``check()``.

Library lookup order:
  1. the MONOQUANT_LIBRARY environment variable (a path to the .so),
  2. the package's own folder (a wheel carries libmonoquant.so there),
  3. the repository's build output (``build/libmonoquant.so`` next to ``bindings/``).
A missing library, or one whose version does not match the header this module was written for,
is a single ImportError that says what to run.

ctypes.CDLL releases the GIL around every foreign call, so engine work in one Python thread does
not block the others.
"""

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint,
    c_uint32,
    c_uint64,
    c_void_p,
)

from ._errors import error_for_status

# The header version this layer was written against (MQ_VERSION_* in monoquant.h). Before 1.0 a
# minor bump may change the ABI, so major and minor must both match.
HEADER_VERSION = (0, 1, 0)

_LIBNAME = "libmonoquant.so" if sys.platform != "darwin" else "libmonoquant.dylib"
_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO_BUILD = os.path.normpath(os.path.join(_HERE, "..", "..", "..", "build", _LIBNAME))
_HOWTO = (
    "build it with `make lib` at the root of the monoquant repository (it writes build/"
    + _LIBNAME
    + "), or point MONOQUANT_LIBRARY at an existing "
    + _LIBNAME
)


def _candidates():
    env = os.environ.get("MONOQUANT_LIBRARY")
    if env:
        # An explicit choice is final: silently falling back to another copy would hide mistakes.
        return [("MONOQUANT_LIBRARY", env)]
    return [("package folder", os.path.join(_HERE, _LIBNAME)), ("repository build", _REPO_BUILD)]


def _load():
    tried = []
    for origin, path in _candidates():
        if not os.path.isfile(path):
            tried.append(f"{path} ({origin}: no such file)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"{path} ({origin}: {e})")
    raise ImportError("monoquant: cannot load the engine library " + _LIBNAME + "; tried " + "; ".join(tried) + ". " + _HOWTO)


_dll, LIBRARY_PATH = _load()

# Names of header functions the loaded library does not export (an old build); calling one raises.
MISSING = []


def _fn(name, argtypes, restype):
    """Declares one C function; a symbol missing from the library becomes a stub that raises."""
    try:
        f = getattr(_dll, name)
    except AttributeError:
        MISSING.append(name)

        def missing(*_args):
            raise ImportError(f"monoquant: {LIBRARY_PATH} does not export {name}; it is older than this package: " + _HOWTO)

        missing.__name__ = name
        globals()[name] = missing
        return missing
    f.argtypes = argtypes
    f.restype = restype
    globals()[name] = f
    return f


# ------------------------------------------------------------------------------------------------
# Version

# unsigned mq_version_number(void);
_fn("mq_version_number", [], c_uint)
# const char* mq_version_string(void);
_fn("mq_version_string", [], c_char_p)


def _check_version():
    if "mq_version_number" in MISSING:
        raise ImportError(f"monoquant: {LIBRARY_PATH} is not a monoquant library (no mq_version_number). " + _HOWTO)
    n = int(mq_version_number())  # noqa: F821 (declared by _fn)
    got = (n // 10000, n // 100 % 100, n % 100)
    if got[:2] != HEADER_VERSION[:2]:
        raise ImportError(
            "monoquant: version mismatch: the library at %s is %d.%d.%d but this package needs %d.%d.x; "
            % ((LIBRARY_PATH,) + got + HEADER_VERSION[:2])
            + _HOWTO
        )
    return got


LIBRARY_VERSION = _check_version()

# ------------------------------------------------------------------------------------------------
# Status codes and errors

MQ_OK = 0
MQ_EINVAL = -1
MQ_EHANDLE = -2
MQ_EDTYPE = -3
MQ_ESHAPE = -4
MQ_EBUFFER = -5
MQ_ENONFINITE = -6
MQ_EIO = -7
MQ_EFORMAT = -8
MQ_EUNSUPPORTED = -9
MQ_EINTERNAL = -10
MQ_EPANIC = -11
MQ_ECANCELED = -12

# const char* mq_status_string(int status);
_fn("mq_status_string", [c_int], c_char_p)
# const char* mq_last_error(void);
_fn("mq_last_error", [], c_char_p)


def last_error():
    """The calling thread's last error message from the library ("" if none)."""
    s = mq_last_error()  # noqa: F821
    return s.decode("utf-8", "replace") if s else ""


def check(status, function):
    """Raises the typed exception for a negative status, with mq_last_error()'s message."""
    if status == MQ_OK:
        return
    msg = last_error()
    if not msg:
        s = mq_status_string(status)  # noqa: F821
        msg = s.decode() if s else f"status {status}"
    raise error_for_status(status, msg, function)


# ------------------------------------------------------------------------------------------------
# Tensors

MQ_DTYPE_F32 = 1
MQ_DTYPE_F16 = 2
MQ_DTYPE_BF16 = 3
MQ_DTYPE_F64 = 4
MQ_DTYPE_I8 = 5
MQ_DTYPE_U8 = 6
MQ_DTYPE_I16 = 7
MQ_DTYPE_I32 = 8
MQ_DTYPE_I64 = 9
MQ_DTYPE_BOOL = 10
MQ_MAX_DIMS = 8


class mq_tensor(Structure):
    """typedef struct mq_tensor { const void* data; int32_t dtype; int32_t ndim;
    const int64_t* shape; const int64_t* strides; } mq_tensor;"""

    _fields_ = [
        ("data", c_void_p),
        ("dtype", c_int32),
        ("ndim", c_int32),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
    ]


# ------------------------------------------------------------------------------------------------
# Quantization config

MQ_INT8 = 1
MQ_INT4 = 2
MQ_FP16 = 3
MQ_BF16 = 4

MQ_SCHEME_DEFAULT = 0
MQ_SYMMETRIC = 1
MQ_ASYMMETRIC = 2

MQ_GRANULARITY_DEFAULT = 0
MQ_PER_TENSOR = 1
MQ_PER_CHANNEL = 2
MQ_PER_GROUP = 3

MQ_QDTYPE_DEFAULT = 0
MQ_QINT8 = 1
MQ_QUINT8 = 2
MQ_QINT4 = 3
MQ_QUINT4 = 4
MQ_QINT32 = 5

MQ_NONFINITE_REJECT = 0
MQ_NONFINITE_CLAMP = 1

MQ_CONFIG_VERSION = 1


class mq_config(Structure):
    """typedef struct mq_config { uint32_t size; uint32_t version; int32_t format; int32_t scheme;
    int32_t granularity; int32_t axis; int32_t group_size; int32_t qdtype; int32_t reduce_range;
    int32_t has_quant_range; int32_t quant_min; int32_t quant_max; float eps; int32_t nonfinite;
    int32_t saturate_fp16; } mq_config;"""

    _fields_ = [
        ("size", c_uint32),
        ("version", c_uint32),
        ("format", c_int32),
        ("scheme", c_int32),
        ("granularity", c_int32),
        ("axis", c_int32),
        ("group_size", c_int32),
        ("qdtype", c_int32),
        ("reduce_range", c_int32),
        ("has_quant_range", c_int32),
        ("quant_min", c_int32),
        ("quant_max", c_int32),
        ("eps", c_float),
        ("nonfinite", c_int32),
        ("saturate_fp16", c_int32),
    ]


class mq_layout(Structure):
    """typedef struct mq_layout { int32_t data_dtype; int32_t data_ndim;
    int64_t data_shape[MQ_MAX_DIMS]; int32_t param_ndim; int64_t param_shape[MQ_MAX_DIMS];
    int32_t stores_zero_point; mq_config resolved; } mq_layout;"""

    _fields_ = [
        ("data_dtype", c_int32),
        ("data_ndim", c_int32),
        ("data_shape", c_int64 * MQ_MAX_DIMS),
        ("param_ndim", c_int32),
        ("param_shape", c_int64 * MQ_MAX_DIMS),
        ("stores_zero_point", c_int32),
        ("resolved", mq_config),
    ]


class mq_quant_stats(Structure):
    """typedef struct mq_quant_stats { uint64_t nonfinite; int64_t first_nonfinite;
    uint64_t overflow; } mq_quant_stats;"""

    _fields_ = [("nonfinite", c_uint64), ("first_nonfinite", c_int64), ("overflow", c_uint64)]


class mq_size_info(Structure):
    """typedef struct mq_size_info { uint64_t elements; uint64_t original_bytes;
    uint64_t data_bytes; uint64_t param_bytes; uint64_t quantized_bytes;
    double bits_per_weight; } mq_size_info;"""

    _fields_ = [
        ("elements", c_uint64),
        ("original_bytes", c_uint64),
        ("data_bytes", c_uint64),
        ("param_bytes", c_uint64),
        ("quantized_bytes", c_uint64),
        ("bits_per_weight", c_double),
    ]


# int mq_config_init(mq_config* cfg);
_fn("mq_config_init", [POINTER(mq_config)], c_int)

# ------------------------------------------------------------------------------------------------
# Stateless tensor quantization

# int mq_quantized_size(const mq_config* cfg, const mq_tensor* input, size_t* data_bytes,
#                       size_t* n_params);
_fn("mq_quantized_size", [POINTER(mq_config), POINTER(mq_tensor), POINTER(c_size_t), POINTER(c_size_t)], c_int)
# int mq_quantized_layout(const mq_config* cfg, const mq_tensor* input, mq_layout* out);
_fn("mq_quantized_layout", [POINTER(mq_config), POINTER(mq_tensor), POINTER(mq_layout)], c_int)
# int mq_quantize_tensor(const mq_config* cfg, const mq_tensor* input, void* out, size_t out_bytes,
#                        float* scales, int32_t* zero_points, size_t n_params, mq_quant_stats* stats);
_fn(
    "mq_quantize_tensor",
    [POINTER(mq_config), POINTER(mq_tensor), c_void_p, c_size_t, c_void_p, c_void_p, c_size_t, POINTER(mq_quant_stats)],
    c_int,
)
# int mq_quantize_tensor_with_params(const mq_config* cfg, const mq_tensor* input, void* out,
#                                    size_t out_bytes, const float* scales,
#                                    const int32_t* zero_points, size_t n_params);
_fn(
    "mq_quantize_tensor_with_params",
    [POINTER(mq_config), POINTER(mq_tensor), c_void_p, c_size_t, c_void_p, c_void_p, c_size_t],
    c_int,
)
# int mq_dequantize_tensor(const mq_config* cfg, const void* q, size_t q_bytes, int32_t ndim,
#                          const int64_t* shape, const float* scales, const int32_t* zero_points,
#                          size_t n_params, float* out, size_t out_count);
_fn(
    "mq_dequantize_tensor",
    [POINTER(mq_config), c_void_p, c_size_t, c_int32, POINTER(c_int64), c_void_p, c_void_p, c_size_t, c_void_p, c_size_t],
    c_int,
)
# int mq_sqnr(const float* a, const float* b, size_t n, double* out);
_fn("mq_sqnr", [c_void_p, c_void_p, c_size_t, POINTER(c_double)], c_int)
# int mq_size_report(const mq_config* cfg, const mq_tensor* input, mq_size_info* out);
_fn("mq_size_report", [POINTER(mq_config), POINTER(mq_tensor), POINTER(mq_size_info)], c_int)

# ------------------------------------------------------------------------------------------------
# Observers

MQ_OBSERVER_MINMAX = 1
MQ_OBSERVER_MOVING_AVERAGE = 2
MQ_OBSERVER_HISTOGRAM = 3
MQ_OBSERVER_PER_CHANNEL_MINMAX = 4
MQ_OBSERVER_PER_CHANNEL_MOVING_AVERAGE = 5

MQ_OBSERVER_CONFIG_VERSION = 1


class mq_observer_config(Structure):
    """typedef struct mq_observer_config { uint32_t size; uint32_t version; int32_t kind;
    int32_t qdtype; int32_t scheme; int32_t reduce_range; int32_t has_quant_range;
    int32_t quant_min; int32_t quant_max; float eps; float averaging_constant; int32_t ch_axis;
    int32_t bins; } mq_observer_config;"""

    _fields_ = [
        ("size", c_uint32),
        ("version", c_uint32),
        ("kind", c_int32),
        ("qdtype", c_int32),
        ("scheme", c_int32),
        ("reduce_range", c_int32),
        ("has_quant_range", c_int32),
        ("quant_min", c_int32),
        ("quant_max", c_int32),
        ("eps", c_float),
        ("averaging_constant", c_float),
        ("ch_axis", c_int32),
        ("bins", c_int32),
    ]


# Opaque handles are plain pointers on this side (really integer ids inside the library).
mq_observer_p = c_void_p
mq_model_p = c_void_p
mq_report_p = c_void_p

# int mq_observer_config_init(mq_observer_config* cfg);
_fn("mq_observer_config_init", [POINTER(mq_observer_config)], c_int)
# int mq_observer_new(mq_observer** out, const mq_observer_config* cfg);
_fn("mq_observer_new", [POINTER(mq_observer_p), POINTER(mq_observer_config)], c_int)
# int mq_observer_update(mq_observer* obs, const mq_tensor* input);
_fn("mq_observer_update", [mq_observer_p, POINTER(mq_tensor)], c_int)
# int mq_observer_qparams(mq_observer* obs, float* scales, int32_t* zero_points, size_t cap,
#                         size_t* n_out);
_fn("mq_observer_qparams", [mq_observer_p, c_void_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_observer_minmax(mq_observer* obs, float* mins, float* maxs, size_t cap, size_t* n_out);
_fn("mq_observer_minmax", [mq_observer_p, c_void_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_observer_reset(mq_observer* obs);
_fn("mq_observer_reset", [mq_observer_p], c_int)
# int mq_observer_free(mq_observer* obs);
_fn("mq_observer_free", [mq_observer_p], c_int)

# ------------------------------------------------------------------------------------------------
# Models

MQ_LAYER_LINEAR = 1 << 0
MQ_LAYER_CONV1D = 1 << 1
MQ_LAYER_CONV2D = 1 << 2
MQ_LAYER_CONV3D = 1 << 3
MQ_LAYER_LSTM = 1 << 4
MQ_LAYER_GRU = 1 << 5
MQ_LAYER_RNN = 1 << 6
MQ_LAYER_EMBEDDING = 1 << 7
MQ_LAYER_DEFAULT = MQ_LAYER_LINEAR | MQ_LAYER_CONV2D | MQ_LAYER_LSTM

MQ_MODE_WEIGHT_ONLY = 0
MQ_MODE_STATIC = 1

MQ_GROUP_FALLBACK_DEFAULT = 0
MQ_GROUP_FALLBACK_ALLOW = 1
MQ_GROUP_FALLBACK_REFUSE = 2

MQ_MODEL_CONFIG_VERSION = 2


class mq_model_config(Structure):
    """typedef struct mq_model_config { uint32_t size; uint32_t version; int32_t bits;
    int32_t bf16; mq_config spec; uint32_t layers; const char* const* skip; size_t n_skip;
    int32_t mode; const char* observer; const mq_observer_config* activation_observer;
    const char* recipe_json; const char* activations; const char* method;
    int32_t group_fallback; const char* options_json; const char* recipe_file; int32_t no_log; const char* entry_point; int32_t validate;
    int32_t outliers; double outlier_threshold; } mq_model_config;"""

    _fields_ = [
        ("size", c_uint32),
        ("version", c_uint32),
        ("bits", c_int32),
        ("bf16", c_int32),
        ("spec", mq_config),
        ("layers", c_uint32),
        ("skip", POINTER(c_char_p)),
        ("n_skip", c_size_t),
        ("mode", c_int32),
        ("observer", c_char_p),
        ("activation_observer", POINTER(mq_observer_config)),
        ("recipe_json", c_char_p),
        ("activations", c_char_p),
        ("method", c_char_p),
        ("group_fallback", c_int32),
        ("options_json", c_char_p),
        ("recipe_file", c_char_p),
        ("no_log", c_int32),
        ("entry_point", c_char_p),
        ("validate", c_int32),
        ("outliers", c_int32),
        ("outlier_threshold", c_double),
    ]


class mq_tensor_info(Structure):
    """typedef struct mq_tensor_info { const char* name; int32_t dtype; int32_t ndim;
    int64_t shape[MQ_MAX_DIMS]; uint64_t nbytes; } mq_tensor_info;"""

    _fields_ = [
        ("name", c_char_p),
        ("dtype", c_int32),
        ("ndim", c_int32),
        ("shape", c_int64 * MQ_MAX_DIMS),
        ("nbytes", c_uint64),
    ]


# typedef int (*mq_progress_fn)(uint64_t tensors_done, uint64_t tensors_total,
#                               uint64_t bytes_done, uint64_t bytes_total, void* user);
mq_progress_fn = CFUNCTYPE(c_int, c_uint64, c_uint64, c_uint64, c_uint64, c_void_p)

# int mq_model_config_init(mq_model_config* cfg);
_fn("mq_model_config_init", [POINTER(mq_model_config)], c_int)
# int mq_model_new(mq_model** out);
_fn("mq_model_new", [POINTER(mq_model_p)], c_int)
# int mq_model_load(mq_model** out, const char* path);
_fn("mq_model_load", [POINTER(mq_model_p), c_char_p], c_int)
# int mq_model_add_tensor(mq_model* m, const char* name, const mq_tensor* t);
_fn("mq_model_add_tensor", [mq_model_p, c_char_p, POINTER(mq_tensor)], c_int)
# int mq_model_set_module_type(mq_model* m, const char* path, const char* class_name);
_fn("mq_model_set_module_type", [mq_model_p, c_char_p, c_char_p], c_int)
# int mq_model_set_metadata(mq_model* m, const char* key, const char* value);
_fn("mq_model_set_metadata", [mq_model_p, c_char_p, c_char_p], c_int)
# int mq_model_calibrate_begin(mq_model* m, const mq_model_config* cfg);
_fn("mq_model_calibrate_begin", [mq_model_p, POINTER(mq_model_config)], c_int)
# int mq_model_calibrate(mq_model* m, const char* layer, const mq_tensor* activation);
_fn("mq_model_calibrate", [mq_model_p, c_char_p, POINTER(mq_tensor)], c_int)
# int mq_model_quantize(mq_model* m, const mq_model_config* cfg, mq_progress_fn progress,
#                       void* user, mq_model** out);
_fn("mq_model_quantize", [mq_model_p, POINTER(mq_model_config), mq_progress_fn, c_void_p, POINTER(mq_model_p)], c_int)
# int mq_model_save(mq_model* m, const char* path);
_fn("mq_model_save", [mq_model_p, c_char_p], c_int)
class mq_output(Structure):
    """typedef struct mq_output { const char* name; void* data; uint64_t nbytes; } mq_output;"""

    _fields_ = [("name", c_char_p), ("data", c_void_p), ("nbytes", c_uint64)]


# int mq_model_output_layout_json(mq_model* m, const mq_model_config* cfg, char* buf, size_t cap, size_t* len);
_fn("mq_model_output_layout_json", [mq_model_p, POINTER(mq_model_config), c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_model_quantize_into(mq_model* m, const mq_model_config* cfg, mq_progress_fn progress, void* user,
#                            const mq_output* outputs, size_t n_outputs, mq_model** out);
_fn("mq_model_quantize_into", [mq_model_p, POINTER(mq_model_config), mq_progress_fn, c_void_p, POINTER(mq_output), c_size_t, POINTER(mq_model_p)], c_int)
# typedef int (*mq_stream_fn)(int32_t event, const char* name, void* user);
mq_stream_fn = CFUNCTYPE(c_int, ctypes.c_int32, ctypes.c_char_p, c_void_p)
MQ_STREAM_WRITTEN, MQ_STREAM_RELEASED = 1, 2
# int mq_model_quantize_stream(mq_model* m, const mq_model_config* cfg, mq_progress_fn progress, void* user,
#                              const mq_output* outputs, size_t n_outputs, mq_stream_fn on_event, mq_model** out);
_fn("mq_model_quantize_stream", [mq_model_p, POINTER(mq_model_config), mq_progress_fn, c_void_p, POINTER(mq_output), c_size_t, mq_stream_fn, POINTER(mq_model_p)], c_int)
# int mq_model_dequantize_layout_json(mq_model* m, char* buf, size_t cap, size_t* len);
_fn("mq_model_dequantize_layout_json", [mq_model_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_model_dequantize_into(mq_model* m, const mq_output* outputs, size_t n_outputs, mq_model** out);
_fn("mq_model_dequantize_into", [mq_model_p, POINTER(mq_output), c_size_t, POINTER(mq_model_p)], c_int)
# int mq_model_tensor_count(mq_model* m, size_t* count);
_fn("mq_model_tensor_count", [mq_model_p, POINTER(c_size_t)], c_int)
# int mq_model_tensor_info(mq_model* m, size_t i, mq_tensor_info* info);
_fn("mq_model_tensor_info", [mq_model_p, c_size_t, POINTER(mq_tensor_info)], c_int)
# int mq_model_tensor_read(mq_model* m, const char* name, void* buf, size_t bytes);
_fn("mq_model_tensor_read", [mq_model_p, c_char_p, c_void_p, c_size_t], c_int)
# int mq_model_metadata_json(mq_model* m, char* buf, size_t cap, size_t* len);
_fn("mq_model_metadata_json", [mq_model_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_model_report_json(mq_model* m, char* buf, size_t cap, size_t* len);
_fn("mq_model_report_json", [mq_model_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_model_dequantize(mq_model* m, mq_model** out);
_fn("mq_model_dequantize", [mq_model_p, POINTER(mq_model_p)], c_int)
# int mq_model_plan_json(mq_model* m, const mq_model_config* cfg, char* buf, size_t cap, size_t* len);
_fn("mq_model_plan_json", [mq_model_p, POINTER(mq_model_config), c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_plan_file_json(const char* src, const mq_model_config* cfg, char* buf, size_t cap, size_t* len);
_fn("mq_plan_file_json", [c_char_p, POINTER(mq_model_config), c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_quantize_file(const char* src, const char* dst, const mq_model_config* cfg,
#                      const char* calibration, mq_progress_fn progress, void* user, mq_report** report);
_fn("mq_quantize_file", [c_char_p, c_char_p, POINTER(mq_model_config), c_char_p, mq_progress_fn, c_void_p, POINTER(mq_report_p)], c_int)
# int mq_quantize_file_cancelable(const char* src, const char* dst, const mq_model_config* cfg,
#                                 const char* calibration, mq_progress_fn progress, void* user,
#                                 const volatile int32_t* cancel, mq_report** report);
_fn("mq_quantize_file_cancelable", [c_char_p, c_char_p, POINTER(mq_model_config), c_char_p, mq_progress_fn, c_void_p, POINTER(c_int32), POINTER(mq_report_p)], c_int)
# int mq_quantize_shards_begin(const char* src, const char* dst, const mq_model_config* cfg,
#                              const char* calibration, char* buf, size_t cap, size_t* len);
_fn("mq_quantize_shards_begin", [c_char_p, c_char_p, POINTER(mq_model_config), c_char_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_quantize_shard(const char* src, const char* dst, const mq_model_config* cfg,
#                       const char* calibration, size_t k, mq_report** report);
_fn("mq_quantize_shard", [c_char_p, c_char_p, POINTER(mq_model_config), c_char_p, c_size_t, POINTER(mq_report_p)], c_int)
# int mq_quantize_shards_finish(const char* src, const char* dst, const mq_model_config* cfg,
#                               const char* calibration, const char* reports_json, mq_report** report);
_fn("mq_quantize_shards_finish", [c_char_p, c_char_p, POINTER(mq_model_config), c_char_p, c_char_p, POINTER(mq_report_p)], c_int)
# int mq_quantize_shards_abort(const char* dst);
_fn("mq_quantize_shards_abort", [c_char_p], c_int)
# int mq_dequantize_file(const char* src, const char* dst, mq_progress_fn progress, void* user);
_fn("mq_dequantize_file", [c_char_p, c_char_p, mq_progress_fn, c_void_p], c_int)
# int mq_report_json(mq_report* r, char* buf, size_t cap, size_t* len);
_fn("mq_report_json", [mq_report_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_report_free(mq_report* r);
_fn("mq_report_free", [mq_report_p], c_int)
# int mq_defaults_json(char* buf, size_t cap, size_t* len);
_fn("mq_defaults_json", [c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_model_free(mq_model* m);
_fn("mq_model_free", [mq_model_p], c_int)
# int mq_model_set_config(mq_model* m, const char* config_json);
_fn("mq_model_set_config", [mq_model_p, c_char_p], c_int)
# int mq_model_open(mq_model** out, const char* path);
_fn("mq_model_open", [POINTER(mq_model_p), c_char_p], c_int)

MQ_HESSIAN_VERSION = 1


class mq_hessian(Structure):
    """typedef struct mq_hessian { uint32_t size; uint32_t version; mq_tensor matrix; } mq_hessian;"""

    _fields_ = [
        ("size", c_uint32),
        ("version", c_uint32),
        ("matrix", mq_tensor),
    ]


# int mq_hessian_init(mq_hessian* h);
_fn("mq_hessian_init", [POINTER(mq_hessian)], c_int)
# int mq_model_set_hessian(mq_model* m, const char* layer, const mq_hessian* h);
_fn("mq_model_set_hessian", [mq_model_p, c_char_p, POINTER(mq_hessian)], c_int)

# ------------------------------------------------------------------------------------------------
# Search

mq_search_p = c_void_p
# int mq_search_new(const char* space_json, uint64_t seed, mq_search** out);
_fn("mq_search_new", [c_char_p, c_uint64, POINTER(mq_search_p)], c_int)
# int mq_search_load(const char* state_json, mq_search** out);
_fn("mq_search_load", [c_char_p, POINTER(mq_search_p)], c_int)
# int mq_search_ask(mq_search* s, int64_t* trial, char* buf, size_t cap, size_t* len);
_fn("mq_search_ask", [mq_search_p, POINTER(c_int64), c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_search_tell(mq_search* s, int64_t trial, const double* values, size_t n);
_fn("mq_search_tell", [mq_search_p, c_int64, POINTER(c_double), c_size_t], c_int)
# int mq_search_fail(mq_search* s, int64_t trial, const char* reason);
_fn("mq_search_fail", [mq_search_p, c_int64, c_char_p], c_int)
# int mq_search_front_json(mq_search* s, char* buf, size_t cap, size_t* len);
_fn("mq_search_front_json", [mq_search_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_search_trials_json(mq_search* s, char* buf, size_t cap, size_t* len);
_fn("mq_search_trials_json", [mq_search_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_search_save_json(mq_search* s, char* buf, size_t cap, size_t* len);
_fn("mq_search_save_json", [mq_search_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_search_free(mq_search* s);
_fn("mq_search_free", [mq_search_p], c_int)

# int mq_prune_units(const mq_tensor* w1, const mq_tensor* b1, const mq_tensor* w2, double fraction,
#                    int64_t* keep, size_t cap, size_t* n_keep);
_fn("mq_prune_units", [POINTER(mq_tensor), POINTER(mq_tensor), POINTER(mq_tensor), c_double, POINTER(c_int64), c_size_t, POINTER(c_size_t)], c_int)

# int mq_abtest_json(const char* request_json, char* buf, size_t cap, size_t* len);
_fn("mq_abtest_json", [c_char_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_search_layers_json(const char* plan_json, char* buf, size_t cap, size_t* len);
_fn("mq_search_layers_json", [c_char_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)

# ------------------------------------------------------------------------------------------------
# Run log

MQ_RUNLOG_OPTIONS_VERSION = 1


class mq_runlog_options(Structure):
    """typedef struct mq_runlog_options { uint32_t size; uint32_t version; const char* path;
    const char* entry_point; int32_t no_log; } mq_runlog_options;"""

    _fields_ = [
        ("size", c_uint32),
        ("version", c_uint32),
        ("path", c_char_p),
        ("entry_point", c_char_p),
        ("no_log", c_int32),
    ]


# int mq_runlog_options_init(mq_runlog_options* opts);
_fn("mq_runlog_options_init", [POINTER(mq_runlog_options)], c_int)
# int mq_runs_list_json(const mq_runlog_options* log, const char* filters_json, char* buf, size_t cap, size_t* len);
_fn("mq_runs_list_json", [POINTER(mq_runlog_options), c_char_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_run_show_json(const mq_runlog_options* log, int64_t id, char* buf, size_t cap, size_t* len);
_fn("mq_run_show_json", [POINTER(mq_runlog_options), c_int64, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_runs_compare_json(const mq_runlog_options* log, const int64_t* ids, size_t n_ids, char* buf, size_t cap, size_t* len);
_fn("mq_runs_compare_json", [POINTER(mq_runlog_options), POINTER(c_int64), c_size_t, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_run_reproduce(const mq_runlog_options* log, int64_t id, const char* output,
#                      mq_progress_fn progress, void* user, mq_report** result);
_fn("mq_run_reproduce", [POINTER(mq_runlog_options), c_int64, c_char_p, mq_progress_fn, c_void_p, POINTER(mq_report_p)], c_int)
# int mq_run_add_sha256(const mq_runlog_options* log, int64_t id);
_fn("mq_run_add_sha256", [POINTER(mq_runlog_options), c_int64], c_int)
# int mq_run_log_metric(const mq_runlog_options* log, int64_t id, const char* name, double value);
_fn("mq_run_log_metric", [POINTER(mq_runlog_options), c_int64, c_char_p, c_double], c_int)
# int mq_runlog_set_version(const char* component, const char* version);
_fn("mq_runlog_set_version", [c_char_p, c_char_p], c_int)
# int mq_search_record_run(mq_search* s, int64_t trial, const mq_runlog_options* log, int64_t* run_id);
_fn("mq_search_record_run", [mq_search_p, c_int64, POINTER(mq_runlog_options), POINTER(c_int64)], c_int)
# Sensitivity

mq_sensitivity_p = c_void_p
# int mq_sensitivity_new(mq_sensitivity** out, mq_model* m, const mq_model_config* cfg, const char* formats_json);
_fn("mq_sensitivity_new", [POINTER(mq_sensitivity_p), mq_model_p, POINTER(mq_model_config), c_char_p], c_int)
# int mq_sensitivity_candidates_json(mq_sensitivity* s, char* buf, size_t cap, size_t* len);
_fn("mq_sensitivity_candidates_json", [mq_sensitivity_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_sensitivity_quantize(mq_sensitivity* s, mq_model* m, const char* layer, const char* format, mq_model** out);
_fn("mq_sensitivity_quantize", [mq_sensitivity_p, mq_model_p, c_char_p, c_char_p, POINTER(mq_model_p)], c_int)
# int mq_sensitivity_add_output(mq_sensitivity* s, const char* layer, const char* format,
#                               const mq_tensor* reference, const mq_tensor* output);
_fn("mq_sensitivity_add_output", [mq_sensitivity_p, c_char_p, c_char_p, POINTER(mq_tensor), POINTER(mq_tensor)], c_int)
# int mq_sensitivity_set_metric(mq_sensitivity* s, const char* layer, const char* format, double value);
_fn("mq_sensitivity_set_metric", [mq_sensitivity_p, c_char_p, c_char_p, c_double], c_int)
# int mq_sensitivity_table_json(mq_sensitivity* s, char* buf, size_t cap, size_t* len);
_fn("mq_sensitivity_table_json", [mq_sensitivity_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)
# int mq_sensitivity_free(mq_sensitivity* s);
_fn("mq_sensitivity_free", [mq_sensitivity_p], c_int)
# int mq_recipe_for_json(const char* table_json, const char* budget_json, char* buf, size_t cap, size_t* len);
_fn("mq_recipe_for_json", [c_char_p, c_char_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int)

# ------------------------------------------------------------------------------------------------
# Debugging and testing (experimental)

# int64_t mq_debug_live_handles(void);
_fn("mq_debug_live_handles", [], c_int64)
# int mq_debug_panic(void);
_fn("mq_debug_panic", [], c_int)

# Keep the names ctypes users reach for importable from here.
__all__ = [n for n in list(globals()) if n.startswith(("mq_", "MQ_"))] + [
    "check",
    "last_error",
    "LIBRARY_PATH",
    "LIBRARY_VERSION",
    "MISSING",
]
