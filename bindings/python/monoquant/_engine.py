"""The Pythonic layer over the raw ctypes functions: torch tensors in, torch tensors out.

Tensors reach the engine by ``data_ptr()``:

* a contiguous CPU tensor of a float dtype (float32, float16, bfloat16, float64) goes straight
  through, no copy (float32 is read in place by the engine; the half types are widened there);
* a tensor on another device, a non-contiguous view, a sparse tensor or one with a conjugate or
  negative bit is first made a dense contiguous CPU tensor by torch, once, for the length of the
  call;
* integer, bool and complex tensors are a TypeError naming the dtype.

Outputs (quantized values, scales, zero points, dequantized floats) are allocated by torch and
filled in place by the engine.
"""

import ctypes
import threading

import torch

from . import _lib
from ._lib import check

_FLOAT_DTYPES = {
    torch.float32: _lib.MQ_DTYPE_F32,
    torch.float16: _lib.MQ_DTYPE_F16,
    torch.bfloat16: _lib.MQ_DTYPE_BF16,
    torch.float64: _lib.MQ_DTYPE_F64,
}

# Element types the engine can receive for storage tensors (quantized values, zero points).
_ALL_DTYPES = dict(_FLOAT_DTYPES)
_ALL_DTYPES.update(
    {
        torch.int8: _lib.MQ_DTYPE_I8,
        torch.uint8: _lib.MQ_DTYPE_U8,
        torch.int16: _lib.MQ_DTYPE_I16,
        torch.int32: _lib.MQ_DTYPE_I32,
        torch.int64: _lib.MQ_DTYPE_I64,
        torch.bool: _lib.MQ_DTYPE_BOOL,
    }
)


def _dense_cpu(t, what):
    """Returns t as a dense, contiguous CPU tensor (the input itself when it already is one)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()
    return t.detach()


def as_float_input(t, what="input"):
    """Checks that t is a real floating-point tensor and returns its dense CPU form."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex():
        raise TypeError(f"{what} has complex dtype {t.dtype}; monoquant quantizes real floating-point tensors only")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{what} has dtype {t.dtype}; monoquant quantizes floating-point tensors "
            "(float32, float16, bfloat16, float64), not integer or bool ones"
        )
    if t.dim() > _lib.MQ_MAX_DIMS:
        raise ValueError(f"{what} has {t.dim()} dimensions; the engine accepts at most {_lib.MQ_MAX_DIMS}")
    return _dense_cpu(t, what)


class CTensor:
    """An mq_tensor describing a dense CPU torch tensor; keeps the tensor alive while it lives."""

    __slots__ = ("tensor", "shape", "struct")

    def __init__(self, t, dtype_code=None):
        self.tensor = t
        nd = t.dim()
        self.shape = (ctypes.c_int64 * max(nd, 1))(*t.shape)
        code = dtype_code if dtype_code is not None else _ALL_DTYPES[t.dtype]
        self.struct = _lib.mq_tensor(t.data_ptr() if t.numel() else None, code, nd, self.shape, None)

    @property
    def ref(self):
        return ctypes.byref(self.struct)


def c_float_input(t, what="input"):
    """as_float_input + CTensor in one step."""
    return CTensor(as_float_input(t, what))


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None and t.numel() else None


# ------------------------------------------------------------------------------------------------
# Quantization specs

FORMATS = {"int8": _lib.MQ_INT8, "int4": _lib.MQ_INT4, "fp16": _lib.MQ_FP16, "bf16": _lib.MQ_BF16}
SCHEMES = {"symmetric": _lib.MQ_SYMMETRIC, "asymmetric": _lib.MQ_ASYMMETRIC}
GRANULARITIES = {"per_tensor": _lib.MQ_PER_TENSOR, "per_channel": _lib.MQ_PER_CHANNEL, "per_group": _lib.MQ_PER_GROUP}
QDTYPES = {"qint8": _lib.MQ_QINT8, "quint8": _lib.MQ_QUINT8, "qint4": _lib.MQ_QINT4, "quint4": _lib.MQ_QUINT4}

_SCHEME_ALIASES = {"symmetric": "symmetric", "sym": "symmetric", "asymmetric": "asymmetric", "asym": "asymmetric", "affine": "asymmetric"}


def _reverse(table):
    return {code: name for name, code in table.items()}


_FORMAT_OF, _SCHEME_OF, _GRANULARITY_OF, _QDTYPE_OF = (_reverse(t) for t in (FORMATS, SCHEMES, GRANULARITIES, QDTYPES))
_STORAGE = {_lib.MQ_DTYPE_I8: torch.int8, _lib.MQ_DTYPE_U8: torch.uint8, _lib.MQ_DTYPE_F16: torch.float16, _lib.MQ_DTYPE_BF16: torch.bfloat16}


def _lookup(table, value, what):
    if value is None:
        return None
    code = table.get(value)
    if code is None:
        raise ValueError(f"unknown {what} {value!r}; use one of {sorted(k for k in table if '_' in k or k.isalnum())}")
    return code


class QuantSpec:
    """How one tensor is quantized: the Python form of ``mq_config``. Arguments left as None take
    the engine's defaults (INT8, symmetric, per-channel for INT8 and per-group for INT4, the
    default group size, signed storage), which the engine fills in at construction: the
    attributes hold the resolved values.

    Args:
        format: "int8", "int4", "fp16" or "bf16".
        scheme: "symmetric" (torch's *_symmetric) or "asymmetric" (torch's *_affine).
        granularity: "per_tensor", "per_channel" or "per_group".
        axis: the channel dimension for per_channel (negative counts from the end).
        group_size: values per group along the last dimension for per_group.
        qdtype: "qint8", "quint8", "qint4" or "quint4".
        reduce_range, quant_range, eps: torch's observer arguments.
        clamp_nonfinite: leave NaN/Inf out of the ranges instead of failing.
    """

    def __init__(self, format=None, scheme=None, granularity=None, axis=0, group_size=None, qdtype=None,
                 reduce_range=False, quant_range=None, eps=0.0, clamp_nonfinite=False):
        cfg = _lib.mq_config()
        check(_lib.mq_config_init(ctypes.byref(cfg)), "mq_config_init")
        for field, value in (("format", _lookup(FORMATS, format, "format")), ("scheme", _lookup(SCHEMES, _SCHEME_ALIASES.get(scheme, scheme), "scheme")),
                             ("granularity", _lookup(GRANULARITIES, granularity, "granularity")), ("qdtype", _lookup(QDTYPES, qdtype, "qdtype"))):
            if value is not None:
                setattr(cfg, field, value)
        cfg.axis = int(axis)
        cfg.group_size = 0 if group_size is None else int(group_size)
        cfg.reduce_range = int(bool(reduce_range))
        if quant_range is not None:
            cfg.has_quant_range = 1
            cfg.quant_min, cfg.quant_max = int(quant_range[0]), int(quant_range[1])
        cfg.eps = float(eps)
        cfg.nonfinite = _lib.MQ_NONFINITE_CLAMP if clamp_nonfinite else _lib.MQ_NONFINITE_REJECT
        # Resolve every default in the engine, against a probe shape any granularity accepts.
        ndim = max(2, int(axis) + 1, -int(axis))
        lay = self._layout_of(cfg, (1,) * (ndim - 1) + (0,))
        r = lay.resolved
        self.format = _FORMAT_OF[r.format]
        self.is_integer = self.format in ("int8", "int4")
        self.scheme = _SCHEME_OF[r.scheme] if self.is_integer else "symmetric"
        self.granularity = _GRANULARITY_OF[r.granularity] if self.is_integer else None
        self.axis = int(axis)
        self.group_size = int(r.group_size) if self.granularity == "per_group" else None
        self.qdtype = _QDTYPE_OF[r.qdtype] if self.is_integer else None
        self.reduce_range = bool(reduce_range)
        self.quant_range = None if quant_range is None else (int(quant_range[0]), int(quant_range[1]))
        self.eps = float(eps)
        self.clamp_nonfinite = bool(clamp_nonfinite)
        self.stores_zero_point = bool(lay.stores_zero_point)
        self._dtype = _STORAGE[lay.data_dtype]
        self._cfg = cfg

    @staticmethod
    def _layout_of(cfg, shape):
        shp = (ctypes.c_int64 * max(len(shape), 1))(*shape)
        t = _lib.mq_tensor(None, _lib.MQ_DTYPE_F32, len(shape), shp, None)
        lay = _lib.mq_layout()
        check(_lib.mq_quantized_layout(ctypes.byref(cfg), ctypes.byref(t), ctypes.byref(lay)), "QuantSpec")
        return lay

    @property
    def bits(self):
        return {"int8": 8, "int4": 4, "fp16": 16, "bf16": 16}[self.format]

    def storage_dtype(self):
        """The torch dtype of the stored values (int4: uint8, two per byte)."""
        return self._dtype

    def to_dict(self):
        d = {"format": self.format}
        if self.is_integer:
            d.update(scheme=self.scheme, granularity=self.granularity, qdtype=self.qdtype)
            if self.granularity == "per_channel":
                d["axis"] = self.axis
            if self.granularity == "per_group":
                d["group_size"] = self.group_size
            if self.reduce_range:
                d["reduce_range"] = True
            if self.quant_range is not None:
                d["quant_range"] = list(self.quant_range)
            if self.eps:
                d["eps"] = self.eps
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    def replace(self, **kw):
        d = dict(format=self.format, scheme=self.scheme, granularity=self.granularity, axis=self.axis, group_size=self.group_size,
                 qdtype=self.qdtype, reduce_range=self.reduce_range, quant_range=self.quant_range, eps=self.eps, clamp_nonfinite=self.clamp_nonfinite)
        d.update(kw)
        return QuantSpec(**d)

    def _key(self):
        return (self.format, self.scheme, self.granularity, self.axis, self.group_size, self.qdtype, self.reduce_range, self.quant_range, self.eps, self.clamp_nonfinite)

    def __eq__(self, other):
        return isinstance(other, QuantSpec) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return "QuantSpec(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"

    def c_config(self):
        """A fresh mq_config of this spec (the caller may keep or change it)."""
        cfg = _lib.mq_config()
        ctypes.pointer(cfg)[0] = self._cfg
        return cfg

    def layout(self, shape):
        """(data shape, param shape or None) of a tensor of this shape, from the engine."""
        lay = self._layout_of(self._cfg, tuple(shape))
        data = tuple(lay.data_shape[: lay.data_ndim])
        params = tuple(lay.param_shape[: lay.param_ndim]) if lay.param_ndim else None
        return data, params

    def param_shape(self, shape):
        """The shape of the scale and zero-point tensors for a tensor of this shape (engine's)."""
        return self.layout(shape)[1]

    def data_shape(self, shape):
        """The shape of the stored values (docs/FORMAT.md), as the engine lays them out. It
        depends on the format and the shape only, so it is asked per tensor: a conv weight
        quantized as a [rows, rest] view is stored in its own shape."""
        cfg = self.c_config()
        if self.is_integer:
            cfg.granularity = _lib.MQ_PER_TENSOR
        lay = self._layout_of(cfg, tuple(shape))
        return tuple(lay.data_shape[: lay.data_ndim])


class QTensor:
    """A quantized tensor: stored values, scales, zero points and what they mean.

    Attributes:
        data: int8/uint8 values (int4: packed two per byte, even index in the low nibble), or
            float16/bfloat16 values for the float formats.
        scale: float32 scales (None for float formats), shaped by ``spec.param_shape(shape)``.
        zero_point: int32 zero points (None for float formats).
        shape: the original tensor shape.
        spec: the QuantSpec used.
        orig_dtype: the original dtype.
    """

    __slots__ = ("data", "scale", "zero_point", "shape", "spec", "orig_dtype", "overflow")

    def __init__(self, data, scale, zero_point, shape, spec, orig_dtype=torch.float32, overflow=0):
        self.data, self.scale, self.zero_point = data, scale, zero_point
        self.shape, self.spec, self.orig_dtype, self.overflow = tuple(shape), spec, orig_dtype, overflow

    def dequantize(self):
        """Float32 values (q - zero_point) * scale, computed by the engine."""
        return dequantize_tensor(self)

    @property
    def nbytes(self):
        n = self.data.numel() * self.data.element_size()
        if self.scale is not None:
            n += self.scale.numel() * 4
            if self.spec.stores_zero_point:
                n += self.zero_point.numel() * 4
        return n

    def __repr__(self):
        return f"QTensor(shape={list(self.shape)}, {self.spec!r})"


def _sizes(cfg, ct):
    nbytes = ctypes.c_size_t()
    nparams = ctypes.c_size_t()
    check(_lib.mq_quantized_size(ctypes.byref(cfg), ct.ref, ctypes.byref(nbytes), ctypes.byref(nparams)), "mq_quantized_size")
    return nbytes.value, nparams.value


def quantize_tensor(x, spec=None, out=None, what="input"):
    """Quantizes a float tensor with the engine (zero copy for contiguous CPU float32 input).

    Args:
        x: a real floating-point tensor.
        spec: a QuantSpec (default INT8 symmetric per-channel along axis 0).
        out: optional preallocated tensor for the stored values (must be large enough).
        what: the name used in error messages.

    Returns:
        a QTensor whose data/scale/zero_point were allocated by torch and filled by the engine.
    """
    spec = spec or QuantSpec()
    ct = c_float_input(x, what)
    cfg = spec.c_config()
    nbytes, nparams = _sizes(cfg, ct)
    shape = tuple(ct.tensor.shape)
    if out is None:
        data = torch.empty(spec.data_shape(shape), dtype=spec.storage_dtype())
    else:
        data = out
    if data.numel() * data.element_size() < nbytes or not data.is_contiguous() or data.device.type != "cpu":
        raise ValueError(f"out must be a contiguous CPU tensor of at least {nbytes} bytes")
    if spec.is_integer:
        scale = torch.empty(spec.param_shape(shape), dtype=torch.float32)
        zp = torch.empty(spec.param_shape(shape), dtype=torch.int32)
        if scale.numel() != nparams:
            from ._errors import InternalError

            raise InternalError(f"{what}: the engine sizes {nparams} scales for {spec!r} on shape {list(shape)}, this package {scale.numel()}")
    else:
        scale = zp = None
    stats = _lib.mq_quant_stats()
    st = _lib.mq_quantize_tensor(ctypes.byref(cfg), ct.ref, _ptr(data), nbytes, _ptr(scale), _ptr(zp), nparams, ctypes.byref(stats))
    check(st, f"mq_quantize_tensor({what})")
    return QTensor(data, scale, zp, shape, spec, ct.tensor.dtype, int(stats.overflow))


def quantize_with_params(x, spec, scale, zero_point, what="input"):
    """Quantizes x with given scales/zero points (INT8/INT4 only); returns the stored values."""
    ct = c_float_input(x, what)
    cfg = spec.c_config()
    nbytes, nparams = _sizes(cfg, ct)
    scale = _dense_cpu(scale, "scale").to(torch.float32).contiguous()
    zero_point = _dense_cpu(zero_point, "zero_point").to(torch.int32).contiguous()
    if scale.numel() != nparams or zero_point.numel() != nparams:
        raise ValueError(f"{what}: need {nparams} scales and zero points, got {scale.numel()} and {zero_point.numel()}")
    data = torch.empty(spec.data_shape(tuple(ct.tensor.shape)), dtype=spec.storage_dtype())
    st = _lib.mq_quantize_tensor_with_params(ctypes.byref(cfg), ct.ref, _ptr(data), nbytes, _ptr(scale), _ptr(zero_point), nparams)
    check(st, f"mq_quantize_tensor_with_params({what})")
    return data


def dequantize_tensor(q, out=None):
    """Float32 values of a QTensor, computed by the engine into a torch-allocated tensor."""
    if not isinstance(q, QTensor):
        raise TypeError(f"expected a QTensor, got {type(q).__name__}")
    spec = q.spec
    cfg = spec.c_config()
    data = _dense_cpu(q.data, "quantized data")
    if data.dtype != spec.storage_dtype():
        raise TypeError(f"quantized data has dtype {data.dtype}, {spec.format} stores {spec.storage_dtype()}")
    shape = (ctypes.c_int64 * max(len(q.shape), 1))(*q.shape)
    n = 1
    for d in q.shape:
        n *= d
    if out is None:
        out = torch.empty(q.shape, dtype=torch.float32)
    elif out.dtype != torch.float32 or not out.is_contiguous() or out.numel() < n or out.device.type != "cpu":
        raise ValueError("out must be a contiguous float32 CPU tensor with room for every element")
    if spec.is_integer:
        scale = _dense_cpu(q.scale, "scale")
        zp = _dense_cpu(q.zero_point, "zero_point")
        if scale.dtype != torch.float32 or zp.dtype != torch.int32:
            raise TypeError(f"scale must be float32 and zero_point int32, got {scale.dtype} and {zp.dtype}")
        if scale.numel() != zp.numel():
            raise ValueError(f"{scale.numel()} scales but {zp.numel()} zero points")
        nparams = scale.numel()
    else:
        scale = zp = None
        nparams = 0
    st = _lib.mq_dequantize_tensor(
        ctypes.byref(cfg), _ptr(data), data.numel() * data.element_size(), len(q.shape), shape,
        _ptr(scale), _ptr(zp), nparams, _ptr(out), out.numel(),
    )
    check(st, "mq_dequantize_tensor")
    return out


def sqnr(a, b):
    """torch's compute_sqnr, 20·log10(‖a‖/‖a−b‖) in dB, computed by the engine.

    Both tensors must hold the same number of float elements; they are converted to float32
    (a copy only when they are not float32 already). Identical inputs give inf.
    """
    a = as_float_input(a, "a")
    b = as_float_input(b, "b")
    if a.numel() != b.numel():
        raise ValueError(f"sqnr: a has {a.numel()} elements and b has {b.numel()}")
    if a.dtype != torch.float32:
        a = a.to(torch.float32)
    if b.dtype != torch.float32:
        b = b.to(torch.float32)
    out = ctypes.c_double()
    check(_lib.mq_sqnr(_ptr(a), _ptr(b), a.numel(), ctypes.byref(out)), "mq_sqnr")
    return out.value


def size_report(spec, x):
    """Bytes of x before and after quantization with spec, from the engine (data is not read)."""
    shape = tuple(x.shape)
    ct = _lib.mq_tensor(None, _ALL_DTYPES.get(x.dtype, _lib.MQ_DTYPE_F32), len(shape), (ctypes.c_int64 * max(len(shape), 1))(*shape), None)
    info = _lib.mq_size_info()
    check(_lib.mq_size_report(ctypes.byref(spec.c_config()), ctypes.byref(ct), ctypes.byref(info)), "mq_size_report")
    return {
        "elements": info.elements,
        "original_bytes": info.original_bytes,
        "data_bytes": info.data_bytes,
        "param_bytes": info.param_bytes,
        "quantized_bytes": info.quantized_bytes,
        "bits_per_weight": info.bits_per_weight,
    }


# ------------------------------------------------------------------------------------------------
# Handles

class Handle:
    """Owns one library handle and frees it exactly once: in close(), __exit__ or __del__.

    Subclasses set ``_free_fn`` to the mq_*_free function. Using a closed handle raises
    InvalidHandleError from the library's own check (the pointer value is kept as 0 = NULL).
    """

    _free_fn = None
    _kind = "handle"

    def __init__(self):
        self._h = ctypes.c_void_p()
        self._lock = threading.Lock()

    @property
    def handle(self):
        """The raw handle (a ctypes.c_void_p; NULL after close())."""
        return self._h

    @property
    def closed(self):
        return not self._h.value

    def _require_open(self):
        if self.closed:
            from ._errors import InvalidHandleError

            raise InvalidHandleError(f"this {self._kind} was closed; create a new one")

    def close(self):
        """Frees the native handle. Safe to call more than once."""
        with self._lock:
            h, self._h = self._h, ctypes.c_void_p()
        if h.value and type(self)._free_fn is not None:
            type(self)._free_fn(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be unloaded
            pass


def live_handles():
    """Number of live native handles of every kind (``mq_debug_live_handles``)."""
    return int(_lib.mq_debug_live_handles())

