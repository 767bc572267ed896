"""Observers with torch.ao.quantization's interface, computed by the engine.

Each class takes the constructor arguments of its torch namesake, returns its input from
``obs(x)`` after folding it into the statistics, and ``calculate_qparams()`` returns
``(scale, zero_point)`` tensors equal to torch's (same values, shapes and dtypes). The state
lives in a native observer handle; ``close()`` frees it early (``with`` works too), otherwise the
garbage collector does.

Differences from torch, on purpose:
  * NaN in a batch raises NonFiniteError and leaves the state unchanged (torch would silently
    poison its min/max).
  * ``per_channel_affine_float_qparams``, ``is_dynamic=True`` and the 16-bit dtypes are not
    supported (NotImplementedError).
  * ``min_val``/``max_val`` are read-only properties computed from the native state.

Example:
    >>> obs = monoquant.HistogramObserver(bins=2048)
    >>> for x in batches:
    ...     obs(x)
    >>> scale, zero_point = obs.calculate_qparams()
"""

import ctypes
import functools

import torch
import torch.nn as nn

from . import _lib
from ._engine import Handle, c_float_input
from ._lib import check

__all__ = [
    "ObserverBase",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "HistogramObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
]

_FLOAT32_EPS = torch.finfo(torch.float32).eps

_QDTYPES = {
    torch.quint8: _lib.MQ_QUINT8,
    torch.uint8: _lib.MQ_QUINT8,
    torch.qint8: _lib.MQ_QINT8,
    torch.int8: _lib.MQ_QINT8,
    torch.qint32: _lib.MQ_QINT32,
    torch.int32: _lib.MQ_QINT32,
    torch.quint4x2: _lib.MQ_QUINT4,
}

_PER_TENSOR = {torch.per_tensor_affine: _lib.MQ_ASYMMETRIC, torch.per_tensor_symmetric: _lib.MQ_SYMMETRIC}
_PER_CHANNEL = {torch.per_channel_affine: _lib.MQ_ASYMMETRIC, torch.per_channel_symmetric: _lib.MQ_SYMMETRIC}


class _NativeObserver(Handle):
    _free_fn = staticmethod(lambda h: _lib.mq_observer_free(h))
    _kind = "observer"

    def __init__(self, cfg):
        super().__init__()
        check(_lib.mq_observer_new(ctypes.byref(self._h), ctypes.byref(cfg)), "mq_observer_new")


class ObserverBase(nn.Module):
    """Common machinery of the engine-backed observers (not used directly)."""

    _kind = None
    _per_channel = False

    def __init__(self, dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False, quant_min=None,
                 quant_max=None, factory_kwargs=None, eps=_FLOAT32_EPS, is_dynamic=False, averaging_constant=0.01,
                 ch_axis=0, bins=2048, **kwargs):
        super().__init__()
        name = type(self).__name__
        if kwargs:
            raise TypeError(f"{name}() got unexpected keyword arguments {sorted(kwargs)}")
        if is_dynamic:
            raise NotImplementedError(f"{name}: is_dynamic=True is not supported by monoquant")
        if dtype not in _QDTYPES:
            raise NotImplementedError(f"{name}: dtype {dtype} is not supported; use torch.quint8, torch.qint8, torch.qint32 or torch.quint4x2")
        schemes = _PER_CHANNEL if self._per_channel else _PER_TENSOR
        if qscheme not in schemes:
            if qscheme == torch.per_channel_affine_float_qparams:
                raise NotImplementedError(f"{name}: per_channel_affine_float_qparams is not supported by monoquant")
            raise ValueError(f"{name}: qscheme {qscheme} is not allowed; use one of {list(schemes)}")
        if (quant_min is None) != (quant_max is None):
            raise ValueError(f"{name}: give both quant_min and quant_max, or neither")
        self.dtype = dtype
        self.qscheme = qscheme
        self.reduce_range = bool(reduce_range)
        self.quant_min = quant_min
        self.quant_max = quant_max
        self.eps = torch.tensor([eps], dtype=torch.float32)
        self.is_dynamic = False
        self.ch_axis = int(ch_axis)
        self.averaging_constant = averaging_constant
        self.bins = int(bins)
        _ = factory_kwargs  # torch uses it for the device of its buffers; ours live natively

        cfg = _lib.mq_observer_config()
        check(_lib.mq_observer_config_init(ctypes.byref(cfg)), "mq_observer_config_init")
        cfg.kind = self._kind
        cfg.qdtype = _QDTYPES[dtype]
        cfg.scheme = schemes[qscheme]
        cfg.reduce_range = int(self.reduce_range)
        if quant_min is not None:
            cfg.has_quant_range = 1
            cfg.quant_min, cfg.quant_max = int(quant_min), int(quant_max)
        cfg.eps = float(self.eps.item())
        # The engine refuses options that do not belong to the kind, so set only the kind's own.
        if self._kind in (_lib.MQ_OBSERVER_MOVING_AVERAGE, _lib.MQ_OBSERVER_PER_CHANNEL_MOVING_AVERAGE):
            cfg.averaging_constant = float(averaging_constant)
        if self._per_channel:
            cfg.ch_axis = self.ch_axis
        if self._kind == _lib.MQ_OBSERVER_HISTOGRAM:
            cfg.bins = self.bins
        self._native = _NativeObserver(cfg)
        self._config = cfg  # also what quantize(observer=<this observer>) hands the engine
        # Zero points come back as int32 from torch's affine branch and int64 otherwise.
        self._zp_dtype = torch.int32 if schemes[qscheme] == _lib.MQ_ASYMMETRIC else torch.int64

    @classmethod
    def with_args(cls, **kwargs):
        """Like torch's ``Observer.with_args``: a factory with the arguments bound."""
        return functools.partial(cls, **kwargs)

    def forward(self, x):
        """Folds x into the statistics and returns x unchanged."""
        # x.is_cpu rather than x.device.type == "cpu": the same test without building a device
        # object (57 ns against 445 per call).
        if (type(x) is torch.Tensor and x.dtype == torch.float32 and x.is_cpu and x.layout == torch.strided
                and x.is_contiguous() and not x.is_neg() and 0 < x.dim() <= _lib.MQ_MAX_DIMS and x.numel()):
            # The common case (a dense float32 CPU batch) reuses one mq_tensor and shape array per
            # observer: nothing is allocated or copied on the way to the engine.
            ref = self._input_ref(x)
            check(_lib.mq_observer_update(self._native.handle, ref), "mq_observer_update")
            return x
        ct = c_float_input(x, "observer input")
        check(_lib.mq_observer_update(self._native.handle, ct.ref), "mq_observer_update")
        return x

    def _input_ref(self, x):
        slot = self.__dict__.get("_input_slot")
        if slot is None:
            shape = (ctypes.c_int64 * _lib.MQ_MAX_DIMS)()
            st = _lib.mq_tensor(None, _lib.MQ_DTYPE_F32, 0, shape, None)
            slot = self.__dict__["_input_slot"] = (st, shape, ctypes.byref(st))
        st, shape, ref = slot
        st.data = x.data_ptr()
        st.ndim = x.dim()
        for i, d in enumerate(x.shape):
            shape[i] = d
        return ref

    def _pairs(self, fn, what, out_a, out_b):
        # One call into the engine when the buffers are big enough (sized for the most values seen
        # so far, 1 at first); only a call answered MQ_EBUFFER is repeated, with the size it asked
        # for. A size query first would double the work: mq_observer_qparams runs the histogram's
        # search on every call.
        cap = self.__dict__.get("_pairs_cap", 1)
        n = ctypes.c_size_t()
        while True:
            a = torch.empty(cap, dtype=out_a)
            b = torch.empty(cap, dtype=out_b)
            st = fn(self._native.handle, ctypes.c_void_p(a.data_ptr()), ctypes.c_void_p(b.data_ptr()), cap, ctypes.byref(n))
            if st == _lib.MQ_EBUFFER and n.value > cap:
                cap = self.__dict__["_pairs_cap"] = n.value
                continue
            check(st, what)
            break
        if n.value < cap:
            return a[: n.value].clone(), b[: n.value].clone()
        return a, b

    def calculate_qparams(self):
        """torch's calculate_qparams: (scale float32 [1] or [C], zero_point int [1] or [C])."""
        self._native._require_open()
        if self._uninitialized():
            # torch warns and returns its defaults before the first batch.
            import warnings

            warnings.warn("must run observer before calling calculate_qparams. Returning default values.", stacklevel=2)
            return torch.tensor([1.0]), torch.tensor([0])
        scale, zp = self._pairs(_lib.mq_observer_qparams, "mq_observer_qparams", torch.float32, torch.int32)
        return scale, zp.to(self._zp_dtype)

    def _minmax(self):
        self._native._require_open()
        return self._pairs(_lib.mq_observer_minmax, "mq_observer_minmax", torch.float32, torch.float32)

    def _uninitialized(self):
        mn, mx = self._minmax()
        if mn.numel() == 0:
            return True
        return not self._per_channel and bool(mn[0] == float("inf")) and bool(mx[0] == float("-inf"))

    @property
    def min_val(self):
        """The running minimum (0-dim for per-tensor kinds, [C] for per-channel ones)."""
        mn, _ = self._minmax()
        return mn if self._per_channel else mn.reshape(())

    @property
    def max_val(self):
        """The running maximum (0-dim for per-tensor kinds, [C] for per-channel ones)."""
        _, mx = self._minmax()
        return mx if self._per_channel else mx.reshape(())

    def reset_min_max_vals(self):
        """Forgets everything observed."""
        self._native._require_open()
        check(_lib.mq_observer_reset(self._native.handle), "mq_observer_reset")

    def close(self):
        """Frees the native observer now; later calls raise InvalidHandleError. Safe twice."""
        self._native.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __deepcopy__(self, memo):
        raise TypeError(f"{type(self).__name__} holds native state and cannot be copied; create a new observer")

    def extra_repr(self):
        s = f"dtype={self.dtype}, qscheme={self.qscheme}, reduce_range={self.reduce_range}"
        if self.quant_min is not None:
            s += f", quant_min={self.quant_min}, quant_max={self.quant_max}"
        if self._native.closed:
            return s + ", closed"
        return s + f", min_val={self.min_val}, max_val={self.max_val}"


class MinMaxObserver(ObserverBase):
    """torch.ao.quantization.MinMaxObserver: running min and max of every batch."""

    _kind = _lib.MQ_OBSERVER_MINMAX

    def __init__(self, dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False, quant_min=None,
                 quant_max=None, factory_kwargs=None, eps=_FLOAT32_EPS, is_dynamic=False, **kwargs):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, factory_kwargs, eps, is_dynamic, **kwargs)


class MovingAverageMinMaxObserver(ObserverBase):
    """torch.ao.quantization.MovingAverageMinMaxObserver: min/max averaged with a constant."""

    _kind = _lib.MQ_OBSERVER_MOVING_AVERAGE

    def __init__(self, averaging_constant=0.01, dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                 reduce_range=False, quant_min=None, quant_max=None, eps=_FLOAT32_EPS, is_dynamic=False, **kwargs):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, None, eps, is_dynamic,
                         averaging_constant=averaging_constant, **kwargs)


class HistogramObserver(ObserverBase):
    """torch.ao.quantization.HistogramObserver: a histogram of the values and the range that
    minimises the quantization error (torch's _non_linear_param_search)."""

    _kind = _lib.MQ_OBSERVER_HISTOGRAM

    def __init__(self, bins=2048, dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False,
                 quant_min=None, quant_max=None, factory_kwargs=None, eps=_FLOAT32_EPS, is_dynamic=False, **kwargs):
        kwargs.pop("upsample_rate", None)  # accepted by older torch; it no longer changes anything
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, factory_kwargs, eps, is_dynamic,
                         bins=bins, **kwargs)


class PerChannelMinMaxObserver(ObserverBase):
    """torch.ao.quantization.PerChannelMinMaxObserver: min and max per index along ch_axis."""

    _kind = _lib.MQ_OBSERVER_PER_CHANNEL_MINMAX
    _per_channel = True

    def __init__(self, ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine, reduce_range=False,
                 quant_min=None, quant_max=None, factory_kwargs=None, eps=_FLOAT32_EPS, is_dynamic=False, **kwargs):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, factory_kwargs, eps, is_dynamic,
                         ch_axis=ch_axis, **kwargs)


class MovingAveragePerChannelMinMaxObserver(ObserverBase):
    """torch.ao.quantization.MovingAveragePerChannelMinMaxObserver."""

    _kind = _lib.MQ_OBSERVER_PER_CHANNEL_MOVING_AVERAGE
    _per_channel = True

    def __init__(self, averaging_constant=0.01, ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine,
                 reduce_range=False, quant_min=None, quant_max=None, eps=_FLOAT32_EPS, is_dynamic=False, **kwargs):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, None, eps, is_dynamic,
                         averaging_constant=averaging_constant, ch_axis=ch_axis, **kwargs)


# Name → class, for quantize(observer=...).
OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "histogram": HistogramObserver,
}
