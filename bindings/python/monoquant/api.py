"""The user-facing functions: quantize, dequantize, report, sqnr, record_activations, save, load.

Python does what needs a live nn.Module — finding layers, forward hooks for calibration, the
quantized module classes — and hands every number to the engine: weights and activations go to
it by pointer, and qparams, quantized values, observers and SQNR come back from it.
"""

import copy
import fnmatch
import inspect
import json
import math
import warnings
from collections.abc import Mapping

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from . import _engine
from ._errors import MonoquantWarning
from ._progress import Progress
from .nn import QUANTIZED_TYPES, QuantizedConv2d, QuantizedLinear, QuantizedLSTM
from .observers import OBSERVERS

__all__ = ["quantize", "dequantize", "report", "sqnr", "record_activations", "Report"]

# Static calibration over fewer samples (rows of the first input) than this draws a warning.
MIN_CALIBRATION_SAMPLES = 32
DEFAULT_LAYERS = (nn.Linear, nn.Conv2d, nn.LSTM)


# ------------------------------------------------------------------------------------------------
# Layer selection

def _matches(name, patterns):
    for p in patterns:
        if name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p):
            return True
    return False


def _select(model, layers, skip):
    """Returns (candidates, selected): [(name, module)] of layers of the given types, in
    module order, and the ones not skipped."""
    cands = []
    for name, mod in model.named_modules():
        if isinstance(mod, QUANTIZED_TYPES):
            continue
        # Subclasses quantize like their base (nn.MultiheadAttention's out_proj is an nn.Linear
        # subclass whose weight the attention reads; quantized modules expose the dequantized
        # weight under that name).
        if isinstance(mod, layers) and _builder_for(mod) is not None:
            cands.append((name, mod))
    sel = [(n, m) for n, m in cands if not _matches(n, skip)]
    return cands, sel


def _builder_for(mod):
    if isinstance(mod, nn.Linear):
        return QuantizedLinear
    if isinstance(mod, nn.Conv2d):
        return QuantizedConv2d
    if isinstance(mod, nn.LSTM):
        return QuantizedLSTM
    return None


def _set_module(root, name, new):
    parent = root
    parts = name.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    setattr(parent, parts[-1], new)


# ------------------------------------------------------------------------------------------------
# Calibration

def _run_batches(model, data, max_batches=None):
    """Feeds calibration data through the model: tensors as model(t), dicts as model(**d),
    tuples/lists as model(*batch[:n]) where n is the number of positional arguments forward
    takes (so a DataLoader's (inputs, labels) pairs feed only the inputs). Returns
    (batches, samples)."""
    try:
        it = iter(data)
    except TypeError:
        raise TypeError(f"calibration_data must be an iterable of tensors, tuples or dicts (a list or a DataLoader), got {type(data).__name__}") from None
    npos = _positional_count(model)
    batches = samples = 0
    with torch.no_grad():
        for batch in it:
            if max_batches is not None and batches >= max_batches:
                break
            if isinstance(batch, torch.Tensor):
                args, kwargs = (batch,), {}
            elif isinstance(batch, Mapping):
                args, kwargs = (), dict(batch)
            elif isinstance(batch, (tuple, list)):
                if not batch:
                    raise ValueError("calibration_data yielded an empty tuple")
                args, kwargs = tuple(batch[: max(1, npos)]), {}
            else:
                raise TypeError(f"calibration_data yielded a {type(batch).__name__}; expected a tensor, a tuple/list of tensors or a dict")
            model(*args, **kwargs)
            first = args[0] if args else next(iter(kwargs.values()), None)
            if isinstance(first, PackedSequence):
                samples += int(first.batch_sizes[0])
            elif isinstance(first, torch.Tensor) and first.dim() > 0:
                samples += first.shape[0]
            else:
                samples += 1
            batches += 1
    return batches, samples


def _positional_count(model):
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return 1
    n = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return 1 << 30
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            n += 1
    return n


def _layer_input(args):
    x = args[0] if args else None
    if isinstance(x, PackedSequence):
        x = x.data
    return x


def _run_with_input_hooks(model, selected, on_input, data, max_batches):
    """Runs the data through the model in eval mode with a forward pre-hook on every selected
    layer calling ``on_input(layer, tensor)`` for its floating-point input; the hooks are removed
    and the training mode restored afterwards. Returns (batches, samples)."""

    def make_hook(name):
        def hook(_mod, args):
            x = _layer_input(args)
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                on_input(name, x)

        return hook

    hooks = []
    was_training = model.training
    try:
        for name, mod in selected:
            hooks.append(mod.register_forward_pre_hook(make_hook(name)))
        model.eval()
        return _run_batches(model, data, max_batches)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)


def _calibrate(model, selected, data, feed, max_batches):
    """Runs the data through the float model with a forward pre-hook on every selected layer
    that hands the layer's input to ``feed(layer, tensor)`` (the engine's observer). Layers
    whose input has heavy outliers are flagged by the engine: an ``activation_outliers`` warning
    in the report."""
    seen = {name: 0 for name, _ in selected}

    def on_input(name, x):
        feed(name, x)
        seen[name] += 1

    batches, samples = _run_with_input_hooks(model, selected, on_input, data, max_batches)
    if batches == 0:
        raise ValueError("calibration_data yielded no batches; static quantization needs at least one")
    if samples < MIN_CALIBRATION_SAMPLES:
        warnings.warn(f"static quantization calibrated on only {samples} samples (fewer than {MIN_CALIBRATION_SAMPLES}); activation ranges may not be representative", MonoquantWarning, stacklevel=3)
    return seen


# ------------------------------------------------------------------------------------------------
# quantize

_ENGINE_CLASS = ((nn.Linear, "torch.nn.modules.linear.Linear"), (nn.Conv2d, "torch.nn.modules.conv.Conv2d"), (nn.LSTM, "torch.nn.modules.rnn.LSTM"))


def _engine_class(mod):
    # Subclasses (nn.MultiheadAttention's NonDynamicallyQuantizableLinear, user classes) are
    # quantized as their base: tell the engine the base class it knows.
    for base, name in _ENGINE_CLASS:
        if isinstance(mod, base):
            return name
    raise AssertionError(type(mod))


def _check_args(bits, dtype, scheme, observer, group_size, layers, skip):
    if bits not in (4, 8, 16):
        raise ValueError(f"bits must be 8 (INT8 per-channel), 4 (INT4 group-wise) or 16 (FP16/BF16), got {bits!r}")
    if dtype is not None and bits != 16:
        raise ValueError(f"dtype={dtype!r} applies to bits=16 only; pass bits=16")
    names = {None: "fp16", "fp16": "fp16", "float16": "fp16", torch.float16: "fp16", "bf16": "bf16", "bfloat16": "bf16", torch.bfloat16: "bf16"}
    if dtype not in names:
        raise ValueError(f"dtype must be 'fp16' or 'bf16' (or torch.float16/torch.bfloat16), got {dtype!r}")
    if scheme not in ("symmetric", "asymmetric", "sym", "asym", "affine"):
        raise ValueError(f"scheme must be 'symmetric' or 'asymmetric', got {scheme!r}")
    if not isinstance(observer, str):
        _activation_observer_config(observer)  # raises on anything but a per-tensor observer
    elif observer not in OBSERVERS:
        raise ValueError(f"observer must be one of {sorted(OBSERVERS)} or an observer instance/factory, got {observer!r}")
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    if isinstance(layers, type):
        layers = (layers,)
    layers = tuple(layers)
    for t in layers:
        if not (isinstance(t, type) and issubclass(t, (nn.Linear, nn.Conv2d, nn.LSTM))):
            raise TypeError(f"layers must be nn.Linear, nn.Conv2d, nn.LSTM (or subclasses), got {t!r}")
    if isinstance(skip, str):
        skip = (skip,)
    skip = tuple(skip)
    for s in skip:
        if not isinstance(s, str):
            raise TypeError(f"skip takes module names or glob patterns (strings), got {s!r}")
    return names[dtype], {"sym": "symmetric", "asym": "asymmetric", "affine": "asymmetric"}.get(scheme, scheme), layers, skip


def _activation_observer_config(observer):
    """The engine config of an activation observer given as an instance of one of monoquant's
    per-tensor observer classes, or as a factory making one (a class, or ``Cls.with_args(...)``
    as in torch's QConfig)."""
    from .observers import ObserverBase

    obs = observer
    if not isinstance(obs, ObserverBase) and callable(obs):
        obs = obs()
    if not isinstance(obs, ObserverBase):
        raise TypeError(f"observer must be a name, a monoquant observer or a factory of one (e.g. monoquant.HistogramObserver.with_args(reduce_range=True)), got {observer!r}")
    if obs._per_channel:
        raise ValueError(f"{type(obs).__name__} keeps one range per channel; activations need a per-tensor observer (MinMaxObserver, MovingAverageMinMaxObserver or HistogramObserver)")
    return obs._config


def quantize(model, bits=8, dynamic=None, calibration_data=None, scheme="symmetric", observer="minmax",
             group_size=128, layers=DEFAULT_LAYERS, skip=(), inplace=False, progress=None, dtype=None,
             max_calibration_batches=None):
    """Quantizes a model (or a state dict) with the engine.

    Args:
        model: an ``nn.Module`` (its selected layers are replaced by QuantizedLinear /
            QuantizedConv2d / QuantizedLSTM) or a state dict (a mapping of names to tensors;
            returns a ``QuantizedStateDict``, layers found by the engine from names and shapes).
        bits: 8 → INT8 per-channel weights; 4 → INT4 group-wise weights (``group_size`` values
            per scale along each row; when it does not divide a row, the engine uses the largest
            divisor ≥ 16, else INT8 per-channel, with a warning); 16 → FP16 (or ``dtype="bf16"``).
        dynamic: for bits 8 and 4, how activations are quantized. True: per batch at run time
            (no data needed). False: static, with qparams calibrated by running
            ``calibration_data`` through the model. None (default): static when
            ``calibration_data`` is given, dynamic otherwise. bits=16 is weight-only.
        calibration_data: a list of tensors or any iterable / DataLoader yielding tensors,
            tuples (the leading positional arguments of ``forward``) or dicts (keyword arguments).
        scheme: "symmetric" or "asymmetric" (weights; activations are quint8 affine).
        observer: activation observer for static mode: "minmax", "moving_average" or
            "histogram" (quint8 affine, torch's defaults for the other arguments), or, for
            torch's constructor arguments, an instance or factory of monoquant's per-tensor
            observers: ``monoquant.HistogramObserver.with_args(reduce_range=True, bins=1024)``.
        group_size: INT4 values per scale.
        layers: the layer types to quantize (subclasses count as their base).
        skip: module names, prefixes or glob patterns (``"classifier.*"``) to leave in float.
        inplace: replace the layers of ``model`` itself instead of returning a quantized copy.
        progress: None (a bar on stderr when it is a terminal), True/False, or a callable
            ``progress(done, total, name)``.
        max_calibration_batches: stop calibrating after this many batches.

    Returns:
        the quantized model (or QuantizedStateDict). The engine's report is in
        ``qmodel.monoquant_report`` (a dict); ``monoquant.save`` writes the model.

    Warns:
        MonoquantWarning for every warning of the engine's report (first/last layer quantized,
        low SQNR, INT4 on small layers, group-size fallbacks, FP16 overflow, layers without
        calibration data) and for thin or outlier-heavy calibration data.

    Raises:
        ValueError: static mode without calibration data, bad options, nothing to quantize.
        TypeError: a model that is neither an nn.Module nor a state dict, bad layer types.
        NonFiniteError: a weight holding NaN or Inf (the message names it).
    """
    fmt16, scheme, layers, skip = _check_args(bits, dtype, scheme, observer, group_size, layers, skip)
    if isinstance(model, Mapping):
        from .files import quantize_state_dict

        return quantize_state_dict(model, bits=bits, dynamic=dynamic, calibration_data=calibration_data, scheme=scheme,
                                   group_size=group_size, skip=skip, progress=progress, dtype=fmt16)
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize() takes an nn.Module or a state dict (a mapping of names to tensors), got {type(model).__name__}")
    if dynamic is None:
        dynamic = calibration_data is None
    static = bits != 16 and not dynamic
    if static and calibration_data is None:
        raise ValueError("static quantization (dynamic=False) needs calibration_data: a list of input tensors or a DataLoader; pass dynamic=True to quantize activations per batch at run time instead")
    if isinstance(calibration_data, torch.Tensor):
        calibration_data = [calibration_data]

    cands, selected = _select(model, layers, skip)
    if not selected:
        raise ValueError(f"nothing to quantize: the model has no {', '.join(t.__name__ for t in layers)} layers" + (" outside skip" if cands else ""))

    from . import _model
    from .files import build_quantized

    sd = model.state_dict(keep_vars=False)
    mine = set()
    for name, mod in selected:
        prefix = name + "." if name else ""
        mine.update(prefix + k for k in mod.state_dict().keys())
    # The engine quantizes exactly the layers chosen here: every other tensor is skipped by name.
    engine_skip = [k for k in sd if k not in mine]
    cfg = _model.ModelConfig(bits, fmt16, scheme, group_size, skip=engine_skip, static=static,
                             observer=observer if isinstance(observer, str) else _activation_observer_config(observer))
    with _model.ModelHandle.new() as m:
        for k, v in sd.items():
            m.add_tensor(k, v)
        for name, mod in selected:
            m.set_module_type(name, _engine_class(mod))
        if static:
            m.calibrate_begin(cfg)
            _calibrate(model, selected, calibration_data, m.calibrate, max_calibration_batches)
        with Progress(progress, len(sd)) as bar:
            names = list(sd)
            q = m.quantize(cfg, lambda done, total: bar.update(done, total, names[done - 1] if 0 < done <= len(names) else ""))
    try:
        config = json.loads(q.metadata()["monoquant"])
        stored = set()
        for n in config["tensors"]:
            stored.update((n, n + ".scale", n + ".zero_point"))
        tensors = q.tensors(stored)
        rep = q.report()
        out = build_quantized(model, tensors, config, strict=False, inplace=inplace)
    except BaseException:
        q.close()
        raise
    for w in rep.get("warnings") or []:
        warnings.warn(f"{w.get('code')}: {w.get('message')}", MonoquantWarning, stacklevel=2)
    out.__dict__["monoquant_report"] = rep
    out.__dict__["_monoquant_handle"] = q  # what save() writes
    return out


# ------------------------------------------------------------------------------------------------
# dequantize

def _float_module(qmod):
    if isinstance(qmod, QuantizedLinear):
        m = nn.Linear(qmod.in_features, qmod.out_features, bias=qmod.bias is not None, device="meta")
        m.weight = nn.Parameter(qmod.dequantized("weight"))
        if qmod.bias is not None:
            m.bias = nn.Parameter(qmod.bias.clone())
        return m
    if isinstance(qmod, QuantizedConv2d):
        m = nn.Conv2d(qmod.in_channels, qmod.out_channels, qmod.kernel_size, qmod.stride, qmod.padding, qmod.dilation,
                      qmod.groups, bias=qmod.bias is not None, padding_mode=qmod.padding_mode, device="meta")
        m.weight = nn.Parameter(qmod.dequantized("weight"))
        if qmod.bias is not None:
            m.bias = nn.Parameter(qmod.bias.clone())
        return m
    m = nn.LSTM(qmod.input_size, qmod.hidden_size, qmod.num_layers, bias=qmod.bias, batch_first=qmod.batch_first,
                dropout=qmod.dropout, bidirectional=qmod.bidirectional, proj_size=qmod.proj_size, device="meta")
    for n in m._flat_weights_names:
        setattr(m, n, nn.Parameter(qmod.dequantized(n) if n in qmod._qweights else getattr(qmod, n).clone()))
    return m


def dequantize(qmodel_or_path):
    """Returns a float32 copy of a quantized model (quantized modules → nn.Linear / nn.Conv2d /
    nn.LSTM with the dequantized weights), or the float32 state dict of a quantized state dict
    or quantized checkpoint file."""
    if isinstance(qmodel_or_path, nn.Module):
        out = copy.deepcopy(qmodel_or_path)
        if isinstance(out, QUANTIZED_TYPES):
            return _float_module(out)
        for name, mod in list(out.named_modules()):
            if isinstance(mod, QUANTIZED_TYPES):
                _set_module(out, name, _float_module(mod))
        out.__dict__.pop("_monoquant_handle", None)  # a float model has no quantized snapshot
        out.__dict__.pop("monoquant_report", None)
        return out
    from .files import dequantize_file_or_state_dict

    return dequantize_file_or_state_dict(qmodel_or_path)


# ------------------------------------------------------------------------------------------------
# report and sqnr

def sqnr(a, b):
    """torch's compute_sqnr: 20·log10(‖a‖ / ‖a − b‖) in dB (float), computed by the engine.

    ``a`` is the reference. Identical tensors give inf. Float tensors only.
    """
    return _engine.sqnr(a, b)


def _nbytes(tensors):
    seen, total = set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.dtype) if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


class Report:
    """The outcome of ``report()``: sizes and SQNR, as data and as a printable table.

    Attributes:
        layers: one dict per quantized layer (worst SQNR first) with name, type, format,
            activation, kernel (the torch kernel it runs, docs/kernels.md), params,
            bytes_before, bytes_after, sqnr_db.
        size_before, size_after: bytes of the whole model's state before and after.
        quantized_bytes_before, quantized_bytes_after: the quantized weights only.
        sqnr_db: overall SQNR, 10·log10(Σ signal energy / Σ noise energy) over all quantized
            weights (the SQNR of all of them seen as one vector).
    """

    def __init__(self, layers, size_before, size_after, qbefore, qafter, signal, noise):
        self.layers = sorted(layers, key=lambda r: r["sqnr_db"])
        self.size_before, self.size_after = size_before, size_after
        self.quantized_bytes_before, self.quantized_bytes_after = qbefore, qafter
        if noise == 0:
            self.sqnr_db = math.inf if signal > 0 else math.nan
        else:
            self.sqnr_db = 10 * math.log10(signal / noise) if signal > 0 else -math.inf

    @property
    def compression(self):
        return self.size_before / self.size_after if self.size_after else math.inf

    def to_dict(self):
        return {
            "size_before": self.size_before, "size_after": self.size_after, "compression": self.compression,
            "quantized_bytes_before": self.quantized_bytes_before, "quantized_bytes_after": self.quantized_bytes_after,
            "sqnr_db": self.sqnr_db, "layers": [dict(r) for r in self.layers],
        }

    def __str__(self):
        rows = [("layer", "type", "format", "kernel", "params", "before", "after", "SQNR dB")]
        for r in self.layers:
            rows.append((r["name"], r["type"], r["format"], r["kernel"], f"{r['params']:,}", _human(r["bytes_before"]), _human(r["bytes_after"]), f"{r['sqnr_db']:.2f}"))
        w = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w[i]) if i < 4 else c.rjust(w[i]) for i, c in enumerate(row)) for row in rows]
        lines.insert(1, "  ".join("-" * x for x in w))
        lines.append("")
        lines.append(f"model size {_human(self.size_before)} -> {_human(self.size_after)} ({self.compression:.2f}x smaller); "
                     f"quantized weights {_human(self.quantized_bytes_before)} -> {_human(self.quantized_bytes_after)}; overall SQNR {self.sqnr_db:.2f} dB")
        return "\n".join(lines)

    def __repr__(self):
        return f"Report(layers={len(self.layers)}, size {self.size_before} -> {self.size_after} bytes, sqnr {self.sqnr_db:.2f} dB)"


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def report(model, qmodel, verbose=True):
    """Compares a float model with its quantized version: size before/after, per-layer weight
    SQNR and overall SQNR. Prints a table when ``verbose`` and returns a ``Report``.

    ``model`` must be the float model ``qmodel`` was made from (layers are matched by name).
    """
    if not isinstance(model, nn.Module) or not isinstance(qmodel, nn.Module):
        raise TypeError(f"report() takes the float nn.Module and its quantized version, got {type(model).__name__} and {type(qmodel).__name__}")
    if any(isinstance(m, QUANTIZED_TYPES) for m in model.modules()) and not any(isinstance(m, QUANTIZED_TYPES) for m in qmodel.modules()):
        raise ValueError("report(model, qmodel): the arguments are swapped; pass the float model first, then the quantized one")
    fmods = dict(model.named_modules())
    rows, signal, noise, qb, qa = [], 0.0, 0.0, 0, 0
    for name, qmod in qmodel.named_modules():
        if not isinstance(qmod, QUANTIZED_TYPES):
            continue
        fmod = fmods.get(name)
        if fmod is None or isinstance(fmod, QUANTIZED_TYPES):
            raise ValueError(f"report(): the float model has no float layer {name!r}; pass the model qmodel was quantized from")
        before = after = params = 0
        ls, ln = 0.0, 0.0
        for wname, (spec, shape, _q) in qmod._qweights.items():
            w = getattr(fmod, wname).detach()
            if tuple(w.shape) != shape:
                raise ValueError(f"report(): {name}.{wname} has shape {list(w.shape)} in the float model but {list(shape)} in the quantized one")
            s = _engine.sqnr(w.reshape(-1), qmod.dequantized(wname).reshape(-1))
            e = float(w.double().pow(2).sum())
            ls += e
            ln += e / 10 ** (s / 10) if math.isfinite(s) else 0.0
            params += w.numel()
            before += w.numel() * w.element_size()
            after += qmod.qtensor(wname).nbytes
        signal += ls
        noise += ln
        qb += before
        qa += after
        fmt = ",".join(sorted({sp.format for sp, _, _ in qmod._qweights.values()}))
        layer_sqnr = (math.inf if ls > 0 else math.nan) if ln == 0 else 10 * math.log10(ls / ln)
        rows.append({"name": name, "type": type(fmod).__name__, "format": fmt, "activation": qmod.activation, "kernel": qmod.kernel, "params": params,
                     "bytes_before": before, "bytes_after": after, "sqnr_db": layer_sqnr})
    if not rows:
        raise ValueError("report(): qmodel has no quantized layers")
    r = Report(rows, _nbytes(model.state_dict().values()), _nbytes(qmodel.state_dict().values()), qb, qa, signal, noise)
    if verbose:
        print(r)
    return r


# ------------------------------------------------------------------------------------------------
# record_activations

def record_activations(model, calibration_data, path, layers=DEFAULT_LAYERS, skip=(), max_batches=None):
    """Runs calibration data through the model and writes each selected layer's inputs to
    ``path`` (.pt or .safetensors by suffix) as tensors ``<layer>.<batch>``, the layout the
    CLI's ``--calibration`` reads, so static qparams can be made later without Python.

    Returns the list of layer names recorded.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"record_activations() takes an nn.Module, got {type(model).__name__}")
    _, layers, skip = _check_args(8, None, "symmetric", "minmax", 128, layers, skip)[1:]
    _, selected = _select(model, layers, skip)
    if not selected:
        raise ValueError("record_activations(): the model has no layers of the selected types")
    if isinstance(calibration_data, torch.Tensor):
        calibration_data = [calibration_data]
    recorded = {name: [] for name, _ in selected}

    def on_input(name, x):
        recorded[name].append(x.detach().to("cpu", torch.float32).contiguous().clone())

    batches, _ = _run_with_input_hooks(model, selected, on_input, calibration_data, max_batches)
    if batches == 0:
        raise ValueError("record_activations(): calibration_data yielded no batches")
    tensors = {}
    for name, xs in recorded.items():
        for i, x in enumerate(xs):
            tensors[f"{name}.{i}"] = x
    from .files import write_tensors

    write_tensors(tensors, path)
    return [n for n, xs in recorded.items() if xs]
