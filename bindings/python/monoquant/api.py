"""The user-facing functions: quantize, dequantize, report, sqnr, record_activations, save, load.

Python does what needs a live nn.Module — finding layers, forward hooks for calibration, the
quantized module classes — and hands every number to the engine: weights and activations go to
it by pointer, and qparams, quantized values, observers and SQNR come back from it.
"""

import copy
import inspect
import json
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from . import _engine
from ._errors import MonoquantWarning
from ._progress import Progress
from .nn import (QUANTIZED_TYPES, RUNTIME_CLASSES, QuantizedConv1D, QuantizedConv2d, QuantizedEmbedding, QuantizedLinear, QuantizedLSTM,
                 quantized_class_for)
from .observers import OBSERVERS

__all__ = ["quantize", "quantize_file", "plan", "Plan", "defaults", "dequantize", "dequantize_file", "report", "sqnr", "record_activations", "Report"]

# Static calibration over fewer samples (rows of the first input) than this draws a warning.
MIN_CALIBRATION_SAMPLES = 32


# ------------------------------------------------------------------------------------------------
# Options: Python's arguments in the engine's words. Which layers are quantized, how, every
# default and every check of a value are the engine's (core/recipe); this only translates.

# torch.nn classes → the engine's layer type names (subclasses count as their base).
_LAYER_NAMES = ((nn.Linear, "linear"), (nn.Conv1d, "conv1d"), (nn.Conv2d, "conv2d"), (nn.Conv3d, "conv3d"),
                (nn.LSTM, "lstm"), (nn.GRU, "gru"), (nn.RNN, "rnn"), (nn.Embedding, "embedding"))
_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def _layer_name(t):
    if isinstance(t, str):
        return t
    if isinstance(t, type):
        for cls, name in _LAYER_NAMES:
            if issubclass(t, cls):
                return name
    raise TypeError(f"layers takes torch.nn layer classes (nn.Linear, nn.Conv2d, nn.LSTM, ...) or their names ('linear', ...), got {t!r}")


def _check_options(fn, options):
    """TypeError for keyword arguments that are not options (the names _options takes)."""
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"{fn}() got unexpected keyword arguments {sorted(unknown)}")


def _options(bits=None, dtype=None, scheme=None, group_size=None, group_fallback=None, activations=None,
             dynamic=None, observer=None, method=None, layers=None, skip=None, nonfinite=None,
             outliers=None, outlier_threshold=None, fold=None):
    """(options dict for the engine, observer config or None): only what the caller gave."""
    o = {}
    if fold:
        o["fold"] = [_fold_entry(p) for p in fold]
    if dynamic is not None:
        if activations is not None:
            raise ValueError(f"give activations= (or its alias dynamic=), not both: activations={activations!r}, dynamic={dynamic!r}")
        activations = "dynamic" if dynamic else "static"
    for key, val in (("bits", bits), ("scheme", scheme), ("group_size", group_size), ("group_fallback", group_fallback),
                     ("activations", activations), ("method", method), ("nonfinite", nonfinite),
                     ("outliers", outliers), ("outlier_threshold", outlier_threshold)):
        if val is not None:
            o[key] = val
    if dtype is not None:
        o["dtype"] = _DTYPE_NAMES.get(dtype, dtype if isinstance(dtype, str) else str(dtype))
    obs_config = None
    if observer is not None:
        if isinstance(observer, str):
            o["observer"] = observer
        else:
            obs_config = _activation_observer_config(observer)
    if layers is not None:
        if isinstance(layers, (type, str)):
            layers = (layers,)
        o["layers"] = [_layer_name(t) for t in layers]
    if skip is not None:
        if isinstance(skip, str):
            skip = (skip,)
        skip = list(skip)
        for p in skip:
            if not isinstance(p, str):
                raise TypeError(f"skip takes module names or patterns (strings), got {p!r}")
        if skip:
            o["skip"] = skip
    return o, obs_config


_OPTION_NAMES = frozenset(inspect.signature(_options).parameters)


def _fold_option(model, fold):
    """The engine's "fold" option for quantize()/plan()'s ``fold`` argument: True finds the
    pairs in a live module (monoquant/_fold.py), False none, a list names them."""
    from . import _fold

    if fold is True:
        triples = _fold.find_pairs(model) if isinstance(model, nn.Module) else []
    elif fold is False or fold is None:
        triples = []
    elif isinstance(fold, (list, tuple)):
        triples = []
        for p in fold:
            e = _fold_entry(p)
            if isinstance(e, dict):
                triples.append((e.get("layer"), e.get("norm"), e.get("relu")))
            elif len(e) in (2, 3):
                triples.append((e[0], e[1], e[2] if len(e) == 3 else None))
            else:
                raise ValueError(f"a fold entry names 2 or 3 modules (layer, norm[, relu]), got {p!r}")
    else:
        raise TypeError(f"fold takes True, False or a list of [layer, norm(, relu)] pairs, got {fold!r}")
    if isinstance(model, nn.Module):
        return _fold.pairs_option(model, triples)
    return [[x for x in t if x] for t in triples]


def _fold_entry(p):
    """A pair to fold as the engine takes it: [layer, norm(, relu)] or a dict with eps."""
    if isinstance(p, Mapping):
        return dict(p)
    if isinstance(p, (list, tuple)) and all(isinstance(n, str) or n is None for n in p):
        return [n for n in p if n is not None]
    raise TypeError(f"fold takes pairs of module names [layer, norm] or [layer, norm, relu], got {p!r}")


def _recipe_args(recipe):
    """(recipe_json, recipe_file) of a recipe= argument: a dict, a list of rules, JSON text or
    the path of a JSON file (read by the engine)."""
    if recipe is None:
        return None, None
    if isinstance(recipe, (Mapping, list, tuple)):
        return json.dumps(recipe if isinstance(recipe, Mapping) else list(recipe)), None
    if isinstance(recipe, (str, os.PathLike)):
        text = os.fspath(recipe)
        if isinstance(text, str) and text.lstrip().startswith(("{", "[")):
            return text, None
        return None, text
    raise TypeError(f"recipe takes a dict, a list of rules, JSON text or a path, got {type(recipe).__name__}")


def _config(recipe=None, runtime=False, log=True, tied=None, **kw):
    from . import _model

    opts, obs = _options(**kw)
    if tied:
        # found by identity (files.tied_groups): each later name → the group's first name
        opts["tied"] = {n: g[0] for g in tied for n in g[1:]}
    if runtime:
        # what this package can run once quantized: its modules stand in for these classes
        opts["runtime_classes"] = list(RUNTIME_CLASSES)
    rj, rf = _recipe_args(recipe)
    return _model.ModelConfig(opts, recipe_json=rj, recipe_file=rf, observer_config=obs, log=log)


def defaults():
    """The engine's defaults, as a dict: bits, group_size, scheme, observer, method, the
    activation mode per format, the layer types selected by default, the methods and observers
    it knows. Every caller reads these from the engine; none repeats them."""
    from . import _model

    return _model.defaults()


def _mro(mod):
    """A module's class and its bases, most derived first, for the engine to type it by the
    first class it knows (a subclass quantizes as its base)."""
    return ",".join(f"{c.__module__}.{c.__qualname__}" for c in type(mod).__mro__ if c is not object)


def _describe(model, m):
    """Hands the model to the engine: every tensor of its state dict by pointer, every module's
    classes."""
    sd = model.state_dict(keep_vars=False)
    for k, v in sd.items():
        m.add_tensor(k, v)
    for name, mod in model.named_modules(remove_duplicate=False):
        if any(True for _ in mod.parameters(recurse=False)) or name == "":
            m.set_module_type(name, _mro(mod))
    return sd


def _check_runnable(model, plan_dict):
    """Every layer the engine chose must be one this package can run (it has quantized module
    classes for torch's Linear, Conv2d, LSTM and Embedding, and transformers' Conv1D)."""
    mods = dict(model.named_modules(remove_duplicate=False))
    for ld in plan_dict["layers"]:
        mod = mods.get(ld["name"])
        if mod is None or quantized_class_for(mod) is None:
            kind = type(mod).__name__ if mod is not None else "no module"
            raise ValueError(f"the plan quantizes {ld['name']!r} ({kind}, a {ld['type']} layer), and monoquant.nn runs quantized "
                             f"Linear, Conv2d, LSTM, Embedding and transformers' Conv1D layers only: skip it (skip=[{ld['name']!r}]) "
                             f"or leave its type out of layers=; quantize_file() stores any layer type")


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
            args, kwargs = _batch_args(batch, npos)
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


def _batch_args(batch, npos, what="calibration_data"):
    """(args, kwargs) of one batch: a tensor is model(t), a dict model(**d), a tuple/list
    model(*batch[:npos]) (npos: the positional arguments forward requires)."""
    if isinstance(batch, torch.Tensor):
        return (batch,), {}
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError(f"{what} yielded an empty tuple")
        return tuple(batch[: max(1, npos)]), {}
    raise TypeError(f"{what} yielded a {type(batch).__name__}; expected a tensor, a tuple/list of tensors or a dict")


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


def _calibrate(model, selected, data, feed, max_batches, hessians=None):
    """Runs the data through the float model with a forward pre-hook on every selected layer
    that hands the layer's input to ``feed(layer, tensor)`` (the engine's observer), and on
    every layer of ``hessians`` (a dict layer → _Hessian) that adds the input's XᵀX to it. Layers
    whose input has heavy outliers are flagged by the engine: an ``activation_outliers`` warning
    in the report."""
    hessians = hessians or {}
    static = {name for name, _ in selected}
    seen = {name: 0 for name, _ in selected}
    mods = dict(selected)
    for name, h in hessians.items():
        mods.setdefault(name, h.module)

    def on_input(name, x):
        if name in static:
            feed(name, x)
            seen[name] += 1
        h = hessians.get(name)
        if h is not None:
            h.add(x)

    batches, samples = _run_with_input_hooks(model, list(mods.items()), on_input, data, max_batches)
    if batches == 0:
        raise ValueError("calibration_data yielded no batches; static quantization and method gptq need at least one")
    if samples < MIN_CALIBRATION_SAMPLES:
        what = "static quantization" if static else "gptq's input Hessians"
        of = "activation ranges" if static else "the Hessians"
        warnings.warn(f"{what} calibrated on only {samples} samples (fewer than {MIN_CALIBRATION_SAMPLES}); {of} may not be representative", MonoquantWarning, stacklevel=3)
    return seen


class _Hessian:
    """Accumulates a layer's input Hessian H = Σ xᵀx (float32 [K, K]) for method gptq, from the
    inputs a forward pre-hook sees: the rows of a Linear's input, the unfolded patches of a
    Conv2d's (torch.nn.functional.unfold: the columns of its weight viewed as [out, C·kh·kw])."""

    def __init__(self, name, module, k):
        self.name, self.module, self.k = name, module, k
        self.h = torch.zeros(k, k, dtype=torch.float32)
        self.rows = 0

    def add(self, x):
        m = self.module
        x = x.detach().to("cpu", torch.float32)
        if isinstance(m, nn.Conv2d):
            if x.dim() == 3:
                x = x.unsqueeze(0)
            x = torch.nn.functional.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
            x = x.transpose(1, 2)
        x = x.reshape(-1, x.shape[-1])
        if x.shape[1] != self.k:
            raise ValueError(f"method gptq: the input of layer {self.name!r} has {x.shape[1]} features per row, but the engine expects a [{self.k}, {self.k}] Hessian")
        self.h.addmm_(x.t(), x)
        self.rows += x.shape[0]

    def reset(self):
        self.h.zero_()
        self.rows = 0


def _hessians(model, plan_dict, calibration_data):
    """The layers the plan quantizes with a method that needs the input Hessian (gptq), each with
    an empty _Hessian; a ValueError when there is no calibration data for them, or a layer whose
    Hessian this package cannot compute."""
    need = [ld for ld in plan_dict["layers"] if ld.get("hessian_inputs")]
    if not need:
        return {}
    methods = sorted({t["config"]["method"] for t in plan_dict["tensors"] if t.get("config") and t["layer"] in {ld["name"] for ld in need}})
    names = ", ".join(repr(ld["name"]) for ld in need[:3]) + (", ..." if len(need) > 3 else "")
    if calibration_data is None:
        raise ValueError(f"method {'/'.join(methods)} needs each layer's input Hessian XᵀX, accumulated over calibration inputs: "
                         f"pass calibration_data= (a list of input batches, or a DataLoader; a few hundred rows or tokens of "
                         f"typical input) to quantize() (layers {names}), or choose method 'rtn', 'mse' or 'hqq', which need no data")
    mods = dict(model.named_modules(remove_duplicate=False))
    out = {}
    for ld in need:
        mod = mods.get(ld["name"])
        ok = isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1 and mod.padding_mode == "zeros" and not isinstance(mod.padding, str))
        if not ok:
            raise ValueError(f"method {'/'.join(methods)}: monoquant computes input Hessians for nn.Linear and nn.Conv2d (groups=1, zero padding) "
                             f"layers; {ld['name']!r} is a {type(mod).__name__}: give it another method with a recipe rule "
                             f"{{'match': {ld['name']!r}, 'method': 'hqq'}}")
        out[ld["name"]] = _Hessian(ld["name"], mod, ld["hessian_inputs"])
    return out


class _StopForward(Exception):
    """Raised by a calibration hook to end a forward pass once the layers it waits for have had
    their input (GPTQ's sequential passes need nothing after them)."""


def _gptq_sequential(model, cfg, plan_dict, hessians, data, max_batches):
    """GPTQ's sequential calibration (Frantar et al. 2022, section 4, as AutoGPTQ and GPTQModel do
    it): every layer's Hessian is accumulated from the inputs the model produces once the layers
    that run before it are quantized, so each layer's error feedback also corrects what the
    earlier layers' quantization did to its inputs.

    1. One pass over the calibration data on the float model, with a hook on every layer of
       ``hessians``, records the order the layers run in (first batch) and which layers read the
       very same input tensor (q/k/v, gate/up: one group, as GPTQModel's true-sequential groups),
       and accumulates the first group's Hessians.
    2. Per group, in that order: the engine quantizes the group's layers alone with their
       Hessians (a model of just their tensors, the call's options, no run-log entry: the same
       decisions it takes for them in the whole model), and their dequantized weights stand in
       for the float ones; the next group's Hessians are then accumulated over the data again,
       each forward stopped once the group has had its inputs (unless one of its layers runs
       more than once per forward).

    The float weights are put back before returning (also on error or Ctrl-C); the caller hands
    the Hessians to the engine, which quantizes the whole model with them. Costs one partial
    forward pass of the calibration data per group, and each gptq layer quantized twice.
    ``data`` must give the same batches every time it is iterated (see _replayable). Returns
    (batches, samples) of the first pass."""
    from . import _model

    mods = {name: h.module for name, h in hessians.items()}
    static = {ld["name"] for ld in plan_dict["layers"] if ld["activations"] == "static"}
    first, calls, source = {}, {}, {}
    state = {"batch": 0}

    def record(name, x):
        if state["batch"] == 0:
            first.setdefault(name, len(first))
            calls[name] = calls.get(name, 0) + 1
            source.setdefault(name, x)
        hessians[name].add(x)

    def run(names, on_input):
        """One pass with hooks on ``names``; each batch stops once all of them have had their
        input, unless one of them runs more than once per forward."""
        wait = set(names)
        stop = all(calls.get(n) == 1 for n in names)
        seen = set()

        def make_hook(name):
            def hook(_mod, args):
                x = _layer_input(args)
                if isinstance(x, torch.Tensor) and x.is_floating_point():
                    on_input(name, x)
                seen.add(name)
                if stop and seen >= wait:
                    raise _StopForward

            return hook

        npos = _positional_count(model)
        hooks = [mods[n].register_forward_pre_hook(make_hook(n)) for n in names]
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                for i, batch in enumerate(data):
                    if max_batches is not None and i >= max_batches:
                        break
                    seen.clear()
                    args, kwargs = _batch_args(batch, npos)
                    try:
                        model(*args, **kwargs)
                    except _StopForward:
                        pass
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)

    def next_batch(*_):
        state["batch"] += 1

    # pass 1: order, groups, the first group's Hessians (the others are accumulated again below)
    h = model.register_forward_hook(next_batch)
    try:
        batches, samples = _run_with_input_hooks(model, list(mods.items()), record, data, max_batches)
    finally:
        h.remove()
    order = sorted(mods, key=lambda n: first.get(n, len(first)))
    groups = []
    for n in order:
        if groups and n in first and source.get(n) is not None and any(source.get(p) is source[n] for p in groups[-1]):
            groups[-1].append(n)
        else:
            groups.append([n])
    source.clear()
    for g in groups[1:]:
        for n in g:
            hessians[n].reset()
    if batches == 0:
        raise ValueError("calibration_data yielded no batches; method gptq needs at least one")
    if samples < MIN_CALIBRATION_SAMPLES:
        warnings.warn(f"gptq's input Hessians calibrated on only {samples} samples (fewer than {MIN_CALIBRATION_SAMPLES}); "
                      "the Hessians may not be representative", MonoquantWarning, stacklevel=4)
    if len(groups) < 2:
        return batches, samples
    solo = cfg.replace(log=False)
    originals = {}
    try:
        for gi, group in enumerate(groups):
            if gi > 0:
                run(group, lambda name, x: hessians[name].add(x))
            if gi == len(groups) - 1:
                break
            with _model.ModelHandle.new() as t:
                # the group's layers alone, as the whole model describes them
                kept = []
                for n in group:
                    for pn, p in mods[n].named_parameters(recurse=False):
                        kept.append(p.detach())
                        t.add_tensor(f"{n}.{pn}", kept[-1])
                    t.set_module_type(n, _mro(mods[n]))
                t.set_module_type("", _mro(model))
                if static & set(group):
                    # static layers need activation ranges to be quantized at all; their own
                    # ranges come from the whole model's calibration afterwards
                    t.calibrate_begin(solo)
                    run([n for n in group if n in static], t.calibrate)
                for n in group:
                    t.set_hessian(n, hessians[n].h)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MonoquantWarning)
                    q = t.quantize(solo)
                try:
                    d = q.dequantize()
                    try:
                        deq = d.tensors([f"{n}.weight" for n in group])
                    finally:
                        d.close()
                finally:
                    q.close()
            for n in group:
                w = mods[n].weight
                new = deq.get(f"{n}.weight")
                if new is not None:
                    originals.setdefault(n, w.data)
                    w.data = new.reshape(w.shape).to(w.dtype)
    finally:
        for n, w in originals.items():
            mods[n].weight.data = w
    return batches, samples


def _replayable(data, max_batches):
    """``data`` as something that gives the same batches each time it is iterated: a one-shot
    iterator (a generator) is read once into a list (at most ``max_batches`` batches)."""
    try:
        it = iter(data)
    except TypeError:
        raise TypeError(f"calibration_data must be an iterable of tensors, tuples or dicts (a list or a DataLoader), got {type(data).__name__}") from None
    if it is not data:
        return data
    out = []
    for batch in it:
        if max_batches is not None and len(out) >= max_batches:
            break
        out.append(batch)
    return out


# ------------------------------------------------------------------------------------------------
# quantize

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


def quantize(model, bits=None, dynamic=None, calibration_data=None, scheme=None, observer=None,
             group_size=None, layers=None, skip=None, inplace=False, progress=None, dtype=None,
             max_calibration_batches=None, recipe=None, activations=None, group_fallback=None,
             method=None, log=True, nonfinite=None, outliers=None, outlier_threshold=None, fold=True,
             validate=None):
    """Quantizes a model (or a state dict) with the engine.

    Every option left as None takes the engine's default (``monoquant.defaults()``); what is
    quantized and how is decided by the engine, the same as for ``quantize_file``, the CLI and
    the C ABI. ``monoquant.plan(model, ...)`` shows the decisions without quantizing.

    Args:
        model: an ``nn.Module`` (its selected layers are replaced by QuantizedLinear /
            QuantizedConv1D (transformers' Conv1D) / QuantizedConv2d / QuantizedLSTM /
            QuantizedEmbedding; layers the options select that none of these runs stay float,
            with a ``left_in_float`` warning) or a state dict (a mapping of names to tensors;
            returns a ``QuantizedStateDict``, layers found by the engine from names and shapes).
        bits: 8 → INT8 per-channel weights (the default); 4 → INT4 group-wise (``group_size``
            values per scale along each row); 16 → FP16 (or ``dtype="bf16"``).
        dtype: the format by name: "int8", "int4", "fp16", "bf16" (or torch.float16/bfloat16).
        group_size: INT4 values per scale (even, >= 2). The default group size falls back per
            tensor (largest divisor >= 16, else INT8) with a warning; a group size you give must
            divide every row it meets, unless ``group_fallback=True``.
        scheme: "symmetric" or "asymmetric" (weights; activations are quint8 affine).
        activations: "none" (weight-only), "dynamic" (quantized per batch at run time, as
            torch's quantize_dynamic) or "static" (calibrated on ``calibration_data``). Default:
            static when calibration data is given, else dynamic for INT8 and none otherwise.
        dynamic: the older spelling: True is activations="dynamic", False is "static".
        calibration_data: a list of tensors or any iterable / DataLoader yielding tensors,
            tuples (the leading positional arguments of ``forward``) or dicts (keyword arguments).
        observer: static activation observer: "minmax", "moving_average" or "histogram", or,
            for torch's constructor arguments, an instance or factory of monoquant's per-tensor
            observers: ``monoquant.HistogramObserver.with_args(reduce_range=True, bins=1024)``.
        method: how weights become integers: "rtn" (round to nearest, the default), "mse"
            (clip search), "hqq" (half-quadratic) or "gptq" (error feedback through each
            layer's input Hessian XᵀX, accumulated here with forward hooks over
            ``calibration_data``, which gptq needs; pass ``activations="none"`` for weight-only
            GPTQ, since calibration data otherwise makes activations static). docs/methods.md.
        outliers: LLM.int8() outlier handling for INT8 Linear layers with dynamic or static
            activations (docs/methods.md): input features whose magnitude reaches
            ``outlier_threshold`` (default 6.0, as in the paper; giving it turns outliers on)
            go through the matmul in float, the rest in INT8. Static layers find them in the
            calibration data and store them; dynamic layers find them in each batch.
        recipe: per-layer rules, first match wins: a dict ``{"rules": [...]}``, a list of rules,
            JSON text or a path. A rule takes the option names above plus ``match`` and
            ``skip``; the arguments of this call are the base the rules start from.
        layers: the layer types to consider (torch.nn classes or names; subclasses count as
            their base).
        skip: module names or patterns to leave in float, in the engine's one match syntax: a
            name selects that module and everything below it; "*", "?" and "[...]" match whole
            dotted names ("classifier.*", "*.lm_head").
        inplace: replace the layers of ``model`` itself instead of returning a quantized copy.
            The layers are replaced one by one during the run and each float weight is freed
            as soon as the engine is done with it, so the run adds about one layer's quantized
            form to the model's memory (docs/STREAMING.md). Runs with calibration data, folding
            or tied weights build every layer at the end instead. If such a run fails part way,
            the layers written so far stay quantized.
        progress: None (a bar on stderr when it is a terminal), True/False, or a callable
            ``progress(done, total, name)``.
        max_calibration_batches: stop calibrating after this many batches.
        log: record the run in the run log (entry point "python.quantize", the input identified
            by the state-dict fingerprint; docs/RUNLOG.md). ``MONOQUANT_LOG=0`` turns it off
            everywhere.
        nonfinite: NaN/Inf in a weight: "reject" (the default: NonFiniteError naming the
            tensor) or "clamp" (left out of the ranges, with a warning).
        fold: fold BatchNorm into the Conv2d/Linear before it (docs/folding.md). True (the
            default) finds the pairs itself: neighbours in an nn.Sequential, and, where
            torch.fx can trace the model, a norm whose only input is such a layer; a ReLU right
            after the norm is fused into a static INT8 QuantizedConv2d. False folds only what
            the recipe's "fold" list names; a list of [layer, norm] or [layer, norm, relu]
            names folds those (with the recipe's). Folding uses the norm's running statistics,
            as torch.ao.quantization.fuse_modules does in eval mode; the norms become
            nn.Identity in the result.
        validate: example inputs (a tensor, a tuple of positional arguments, a dict of keyword
            arguments, or a list of those as batches): the float and the quantized model both
            run on them and their outputs are compared; ``qmodel.monoquant_report
            ["model_validation"]`` then holds ``cos`` (cosine similarity of all outputs as one
            vector), ``sqnr_db`` (the outputs' SQNR, float model as reference), ``batches`` and
            ``validated: True``. Only then does the model count as validated; the per-layer
            weight SQNR of the report says nothing about the model's outputs.

    Tied tensors (the same Parameter or memory under several names, e.g. a tied embedding
    and LM head) are found by identity and handed to the engine as one group (option
    ``tied``): quantized once, held once, saved once (config ``aliases``).

    Returns:
        the quantized model (or QuantizedStateDict). The engine's report is in
        ``qmodel.monoquant_report`` (a dict); ``monoquant.save`` writes the model. The run's id
        in the run log is ``qmodel.monoquant_run_id`` (0 when not recorded; for a state dict
        ``result.report["run_id"]``), for ``monoquant.log_metric``.

    Warns:
        MonoquantWarning for every warning of the engine's report (first/last layer quantized,
        low SQNR, INT4 on small layers, group-size fallbacks, FP16 overflow, rules that select
        nothing, layers without calibration data, outlier-heavy activations) and for thin
        calibration data.

    Raises:
        ValueError: bad options or recipe (the message names the option or the rule), static
            activations without calibration data, nothing to quantize, a layer the package
            cannot run.
        TypeError: a model that is neither an nn.Module nor a state dict, bad layer types.
        NonFiniteError: a weight holding NaN or Inf (the message names it).
    """
    from . import _fold
    from .files import tied_groups

    fold_opt = _fold_option(model, fold)
    tied = tied_groups(model) if isinstance(model, nn.Module) else []
    cfg = _config(recipe=recipe, runtime=isinstance(model, nn.Module), tied=tied, bits=bits, dtype=dtype, scheme=scheme,
                  group_size=group_size, group_fallback=group_fallback, activations=activations, dynamic=dynamic, observer=observer,
                  method=method, layers=layers, skip=skip, log=log, nonfinite=nonfinite, outliers=outliers,
                  outlier_threshold=outlier_threshold, fold=fold_opt or None)
    cfg.struct.entry_point = b"python.quantize"  # the run log's entry point (docs/RUNLOG.md)
    if isinstance(model, Mapping):
        from .files import quantize_state_dict

        return quantize_state_dict(model, cfg, calibration_data=calibration_data, progress=progress)
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize() takes an nn.Module or a state dict (a mapping of names to tensors), got {type(model).__name__}")
    done = [name for name, mod in model.named_modules() if isinstance(mod, QUANTIZED_TYPES)]
    if done:
        raise ValueError(f"the model already has quantized layers ({', '.join(done[:3])}{', ...' if len(done) > 3 else ''}): monoquant does "
                         "not quantize quantized weights again; quantize the float model, or monoquant.dequantize(qmodel) (each "
                         "tensor back in its original dtype) and quantize that")
    if isinstance(calibration_data, torch.Tensor):
        calibration_data = [calibration_data]
    return _quantize_module(model, cfg, calibration_data, inplace, progress, max_calibration_batches, tied=tied, validate=validate)


def _quantize_module(model, cfg, calibration_data, inplace, progress, max_calibration_batches, units_done=False, tied=(), validate=None):
    from . import _fold, _model
    from .files import build_quantized, stored_names

    with _model.ModelHandle.new() as m:
        sd = _describe(model, m)
        if calibration_data is not None:
            m.calibrate_begin(cfg)
        plan_dict = m.plan(cfg)
        units = [r for r in (plan_dict.get("recipe") or {}).get("rules", []) if r.get("prune_units")]
        if units and not units_done:
            # Structured pruning (prune_units): the engine picks the hidden units that stay, the
            # layers are rebuilt smaller here, and the smaller model is what gets quantized.
            from ._prune import shrink_units

            target = model if inplace else copy.deepcopy(model)
            kept = shrink_units(target, units)
            m.close()
            out = _quantize_module(target, cfg, calibration_data, True, progress, max_calibration_batches, units_done=True,
                                   tied=tied, validate=validate)
            out.__dict__["monoquant_pruned_units"] = kept
            return out
        _check_runnable(model, plan_dict)
        folded = (plan_dict.get("recipe") or {}).get("fold") or []
        _fold.check_pairs(model, folded)
        hessians = _hessians(model, plan_dict, calibration_data)
        if calibration_data is not None:
            mods = dict(model.named_modules(remove_duplicate=False))
            static = [(ld["name"], mods[ld["name"]]) for ld in plan_dict["layers"] if ld["activations"] == "static"]
            if hessians:
                calibration_data = _replayable(calibration_data, max_calibration_batches)
                _gptq_sequential(model, cfg, plan_dict, hessians, calibration_data, max_calibration_batches)
            if static or not hessians:
                _calibrate(model, static, calibration_data, m.calibrate, max_calibration_batches)
            for name, h in hessians.items():
                m.set_hessian(name, h.h)
        with Progress(progress, len(sd)) as bar:
            names = list(sd)
            tick = lambda done, total: bar.update(done, total, names[done - 1] if 0 < done <= len(names) else "")  # noqa: E731
            # The engine writes the results into tensors torch allocated (no copy on the way out).
            root = any(ld["name"] == "" for ld in plan_dict["layers"])  # the model is the layer: nothing to swap into
            if inplace and calibration_data is None and not folded and not tied and not hessians and not root:
                # Layer by layer: each quantized layer is swapped in as soon as its tensors are
                # written, and its float weight let go of as soon as the engine gives it back.
                q, outputs, built = _quantize_streaming(model, m, cfg, plan_dict, sd, tick)
            else:
                q, outputs = m.quantize_into(cfg, tick)
                built = set()
        del sd
    from .files import attach_file_state

    try:
        metadata = q.metadata()
        config = json.loads(metadata["monoquant"])
        order = [n for n, *_ in q.infos()]
        # the stored tensors of the layers not built yet (the streamed ones hold theirs)
        rest = dict(config, tensors={k: v for k, v in config.get("tensors", {}).items() if v.get("layer", "") not in built})
        stored = stored_names(rest)
        tensors = OrderedDict((k, v) for k, v in outputs.items() if k in stored)
        # the folded weight and bias of each folded layer (kept in float when the layer is
        # skipped; a new bias when it had none), from the engine's result if not written out
        extra = {f"{p['layer']}.{w}" for p in folded for w in ("weight", "bias")} - set(tensors)
        if extra:
            tensors.update(q.tensors(extra))
        rep = q.report()
    finally:
        q.close()  # the layers hold what they need; save() writes the model as it is then
    if tied:
        # the engine stored each group once (config "aliases", its decision); name the groups too
        rep["tied"] = [list(g) for g in tied]
    del outputs  # the layers take their tensors from `tensors` (consume): nothing else holds them
    out = build_quantized(model, tensors, rest, strict=False, inplace=inplace, consume=True)
    attach_file_state(out, config, metadata, order)
    _warn(rep, stacklevel=3)
    if rep.get("log_warning"):
        warnings.warn(rep["log_warning"], MonoquantWarning, stacklevel=2)
    out.__dict__["monoquant_run_id"] = rep.get("run_id", 0)
    out.__dict__["monoquant_report"] = rep
    if validate is not None:
        rep["model_validation"] = validate_model(model, out, validate)
    return out


def _quantize_streaming(model, m, cfg, plan_dict, sd, progress):
    """quantize(inplace=True) without holding the whole model twice: the engine
    (mq_model_quantize_stream) tells when a tensor's outputs are written and when it gives a
    float tensor back; each layer is built and swapped into ``model`` once its quantized
    tensors are written, and each float weight is let go of (here and by the engine's handle)
    once the engine gave it back and its layer is replaced, so it is freed then. The layers
    are built from the plan's config entries (without calibration the run stores the same).
    Returns (the engine's quantized handle, its outputs, the layers built)."""
    import gc

    from .files import build_quantized, stored_names

    # Cyclic garbage can hold layers of the model (a torch.fx trace of it, as fold=True makes,
    # keeps them in a cycle with its tracer): collect it, or their float weights outlive them.
    gc.collect(1)  # young objects only: what this call made (a full collection can take 0.3 s)
    tcs = (plan_dict.get("config") or {}).get("tensors", {})
    layers = {}
    for name, tc in tcs.items():
        layers.setdefault(tc.get("layer", ""), set()).add(name)
    waiting = {layer: set(names) for layer, names in layers.items()}
    built, given_back = set(), set()
    state = {}

    def let_go(name):
        sd.pop(name, None)
        m.forget(name)

    def written(name):
        layer = tcs.get(name, {}).get("layer", "")
        if name not in tcs or layer not in waiting:
            return
        waiting[layer].discard(name)
        if waiting[layer]:
            return
        del waiting[layer]
        part = {n: tcs[n] for n in layers[layer]}
        outs = state["outputs"]
        build_quantized(model, {k: outs[k] for k in stored_names({"tensors": part}) if k in outs}, {"tensors": part},
                        strict=False, inplace=True, consume=True)
        built.add(layer)
        for n in layers[layer] & given_back:
            let_go(n)

    def released(name):
        given_back.add(name)
        if name in tcs and tcs[name].get("layer", "") in built:
            let_go(name)

    def layout_ready(outputs):
        state["outputs"] = outputs

    # The tensors kept as they are go out as themselves: the engine copies none of them.
    kept = [t["name"] for t in plan_dict.get("tensors", []) if t.get("action") == "keep"]
    q, outputs = m.quantize_stream(cfg, progress, written, released, on_outputs=layout_ready, in_place=kept)
    return q, outputs, built


def _float_outputs(y):
    """The floating-point tensors of a model's output (a tensor, tuples/lists, dicts and
    Hugging Face ModelOutputs), in order; other values (caches, ints) are passed over."""
    if isinstance(y, torch.Tensor):
        return [y] if y.is_floating_point() else []
    if isinstance(y, Mapping):
        return [t for v in y.values() for t in _float_outputs(v)]
    if isinstance(y, (tuple, list)):
        return [t for v in y for t in _float_outputs(v)]
    return []


def validate_model(model, qmodel, inputs):
    """Runs ``model`` and ``qmodel`` on the same inputs (see ``quantize(validate=...)``) and
    compares every floating-point output: {"validated", "cos", "sqnr_db", "batches",
    "outputs"}."""
    if isinstance(inputs, (torch.Tensor, tuple, Mapping)):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise TypeError(f"validate takes example inputs: a tensor, a tuple of positional arguments, a dict of keyword arguments or a non-empty list of those, got {type(inputs).__name__}")
    ref, got = [], []
    modes = (model.training, qmodel.training)
    try:
        model.eval()
        qmodel.eval()
        with torch.no_grad():
            for batch in inputs:
                if isinstance(batch, torch.Tensor):
                    args, kwargs = (batch,), {}
                elif isinstance(batch, Mapping):
                    args, kwargs = (), dict(batch)
                elif isinstance(batch, tuple):
                    args, kwargs = batch, {}
                else:
                    raise TypeError(f"validate: a batch is a tensor, a tuple or a dict, got {type(batch).__name__}")
                a, b = _float_outputs(model(*args, **kwargs)), _float_outputs(qmodel(*args, **kwargs))
                if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
                    raise ValueError("validate: the quantized model's outputs differ in number or shape from the float model's")
                ref += [x.detach().reshape(-1).to("cpu", torch.float32) for x in a]
                got += [y.detach().reshape(-1).to("cpu", torch.float32) for y in b]
    finally:
        model.train(modes[0])
        qmodel.train(modes[1])
    if not ref:
        raise ValueError("validate: the model returned no floating-point outputs to compare")
    r, g = torch.cat(ref), torch.cat(got)
    if not (torch.isfinite(r).all() and torch.isfinite(g).all()):
        raise ValueError("validate: the outputs hold NaN or Inf; the comparison cannot be made")
    rd, gd = r.double(), g.double()
    den = float(rd.norm() * gd.norm())
    cos = float(rd @ gd) / den if den > 0 else (1.0 if float((rd - gd).abs().max()) == 0 else 0.0)
    return {"validated": True, "cos": cos, "sqnr_db": _engine.sqnr(r, g), "batches": len(inputs), "outputs": int(r.numel())}


def _warn(rep, stacklevel=2):
    for w in rep.get("warnings") or []:
        warnings.warn(f"{w.get('code')}: {w.get('message')}", MonoquantWarning, stacklevel=stacklevel + 1)


def quantize_file(src, dst, recipe=None, calibration=None, progress=None, log=True, validate=False, executor=None, **options):
    """Quantizes the checkpoint file ``src`` into a new file ``dst`` through the engine's one
    file pipeline — the same as ``monoquant quantize`` and the C ABI's mq_quantize_file, with
    byte-identical output for the same input and options — streaming tensor by tensor.

    Args:
        src: .safetensors, a sharded *.safetensors.index.json, or a torch file (.pt/.pth/.bin:
            a state dict or a pickled module, never executed).
        dst: .safetensors or .pt/.pth (by suffix); written atomically, never over ``src``.
        recipe: per-layer rules, as for ``quantize``.
        calibration: a file of recorded activations (``record_activations``) for static
            activations.
        progress: None (a bar on stderr when it is a terminal), True/False, or a callable
            ``progress(done, total, name)``.
        log: record the run in the run log (docs/RUNLOG.md; ``MONOQUANT_LOG=0`` turns it off
            everywhere). The report's ``run_id`` is its id there.
        validate: reopen ``dst`` once written and check it, as ``monoquant quantize`` does
            (every tensor's dtype and shape, kept tensors' bytes, each quantized tensor's SQNR
            recomputed from the file, Linear/Conv2d outputs compared); the report then holds
            ``validation``. An output that fails is removed and the call raises. Costs a second
            read of ``dst``.
        executor: None, or any ``concurrent.futures.Executor`` (Dask's
            ``client.get_executor()``, a ProcessPoolExecutor...) whose workers share the
            filesystem: a sharded model folder (``src`` a folder whose weights are behind a
            ``*.safetensors.index.json``, ``dst`` a folder) is then converted one output shard per
            task, the same bytes as without it. The engine says which shards there are and which
            tensors go in each; the workers need ``monoquant`` importable. Any other input is
            converted here as without an executor. No progress bar for the shards.
        **options: the options of ``quantize``: bits, dtype, group_size, group_fallback, scheme,
            activations (or dynamic), observer (a name), method, outliers, outlier_threshold, layers,
            skip, and fold: a list of [layer, norm(, relu)] BatchNorms to fold into the layer
            before them (a file holds no module order, so nothing is found automatically;
            docs/folding.md).

    Returns:
        the engine's report, a dict (sizes, per-tensor SQNR and format, warnings).

    Ctrl-C (KeyboardInterrupt), or any exception a signal handler raises meanwhile (e.g. a
    SIGTERM handler calling ``sys.exit``), stops the engine at its next block of about 8 MiB
    and is re-raised once it has stopped: ``dst`` is not created. The engine runs on a worker
    thread for this when called from the main thread; ``progress`` is called from that thread.
    """
    from . import _model

    _check_options("quantize_file", options)
    if options.get("observer") is not None and not isinstance(options["observer"], str):
        raise TypeError("quantize_file() takes the observer by name ('minmax', 'moving_average', 'histogram')")
    cfg = _config(recipe=recipe, log=log, **options)
    cfg.struct.validate = 1 if validate else 0
    if executor is not None:
        _check_executor(executor, "quantize_file")
        rep = _quantize_shards(src, dst, cfg, executor, recipe, calibration, options)
        if rep is not None:
            _warn(rep)
            if rep.get("log_warning"):
                warnings.warn(rep["log_warning"], MonoquantWarning, stacklevel=2)
            return rep
    with Progress(progress, 0) as bar:
        rep = _model.quantize_file(src, dst, cfg, calibration=calibration, progress=lambda d, t: bar.update(d, t, ""))
    _warn(rep)
    if rep.get("log_warning"):
        warnings.warn(rep["log_warning"], MonoquantWarning, stacklevel=2)
    return rep


def _check_executor(executor, what):
    """Refuses a process pool that forks: the engine's Go runtime does not survive fork (the
    children hang on their first call into the library), so workers must start fresh."""
    from concurrent.futures import Executor, ProcessPoolExecutor

    if not isinstance(executor, Executor):
        raise TypeError(f"{what}: executor must be a concurrent.futures.Executor (e.g. distributed's client.get_executor()), "
                        f"got {type(executor).__name__}")
    if isinstance(executor, ProcessPoolExecutor):
        ctx = getattr(executor, "_mp_context", None)
        if ctx is not None and ctx.get_start_method() == "fork":
            raise ValueError(f"{what}: a ProcessPoolExecutor that forks its workers cannot run the engine (its Go runtime "
                             "does not survive fork: the workers would hang); give it "
                             "mp_context=multiprocessing.get_context('spawn') or 'forkserver'")


def _quantize_shards(src, dst, cfg, executor, recipe, calibration, options):
    """Fans the shards of a sharded model folder out on executor (None: not one, convert here)."""
    from . import _model

    shards = _model.quantize_shards_begin(src, dst, cfg, calibration)
    if not shards:
        return None
    src, dst = os.fspath(src), os.fspath(dst)
    cal = None if calibration is None else os.fspath(calibration)
    try:
        futures = [executor.submit(_quantize_one_shard, src, dst, recipe, cal, options, k) for k in range(len(shards))]
        reports = []
        for k, f in enumerate(futures):
            try:
                reports.append(f.result())
            except Exception as e:
                raise RuntimeError(f"quantize_file: shard {k} ({shards[k]}) failed on the executor: {type(e).__name__}: {e}") from e
        return _model.quantize_shards_finish(src, dst, cfg, reports, cal)
    except BaseException:
        for f in futures if "futures" in locals() else ():
            f.cancel()
        _model.quantize_shards_abort(dst)
        raise


def _quantize_one_shard(src, dst, recipe, calibration, options, k):
    """One shard, on a worker: the same config as the caller's (no run log: finish records the run)."""
    import warnings as _w

    from . import _model

    with _w.catch_warnings():
        _w.simplefilter("ignore", MonoquantWarning)
        cfg = _config(recipe=recipe, log=False, **options)
    return _model.quantize_shard(src, dst, cfg, k, calibration)


class Plan:
    """What the engine would do with a model or file, as ``monoquant.plan`` returns it.

    Attributes:
        tensors: one dict per input tensor: name, dtype, shape, layer, layer_type, action
            ("quantize" or "keep"), reason, rule (index into ``recipe["rules"]``, -1 for none),
            config (format, scheme, granularity, group_size, activations, method, ...), stored
            (the output tensors: name, dtype, shape), bytes, bytes_after.
        layers: one dict per quantized layer: name, type, activations, observer.
        recipe: the resolved recipe (every default filled in): pass it as ``recipe=`` to make
            the same decisions again.
        warnings: what the engine warns about.
        bytes_before, bytes_after: the projected size.
    """

    def __init__(self, d):
        self._d = d
        self.tensors, self.layers, self.recipe = d["tensors"], d["layers"], d["recipe"]
        self.warnings = d.get("warnings") or []
        self.bytes_before, self.bytes_after = d["bytes_before"], d["bytes_after"]

    def to_dict(self):
        return self._d

    def __str__(self):
        rows = [("tensor", "decision", "activations", "rule", "bytes")]
        for t in self.tensors:
            c = t.get("config")
            if c:
                dec = c["format"] + (f" g{c['group_size']}" if c.get("group_size") else "") + (" asym" if c.get("scheme") == "asymmetric" else "")
                act = c.get("activations", "")
            else:
                dec, act = "keep" + (f": {t['reason']}" if t.get("reason") else ""), "-"
            rows.append((t["name"], dec, act, str(t["rule"] + 1) if t["rule"] >= 0 else "-", f"{_human(t['bytes'])} -> {_human(t['bytes_after'])}"))
        w = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w[i]) if i < 4 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
        lines.insert(1, "  ".join("-" * x for x in w))
        lines.append("")
        for i, r in enumerate(self.recipe["rules"]):
            opts = "skip" if r.get("skip") else ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("match", "skip"))
            lines.append(f"rule {i + 1}: {r['match']}: {opts}")
        lines.append(f"projected size {_human(self.bytes_before)} -> {_human(self.bytes_after)}")
        return "\n".join(lines)

    def __repr__(self):
        q = sum(1 for t in self.tensors if t["action"] == "quantize")
        return f"Plan({q} of {len(self.tensors)} tensors quantized, {self.bytes_before} -> {self.bytes_after} bytes)"


def plan(model_or_file, recipe=None, calibration_data=None, **options):
    """What ``quantize`` (for a module or state dict) or ``quantize_file`` (for a path) would do,
    layer by layer, and the projected size — decided by the engine, nothing quantized, no
    weight read. Takes the same options as ``quantize``; ``calibration_data`` only says that
    there will be some (static activations become the default). Returns a ``Plan``; print it
    for a table."""
    from . import _model

    _check_options("plan", options)
    options["fold"] = _fold_option(model_or_file, options.get("fold", True)) or None
    cfg = _config(recipe=recipe, runtime=isinstance(model_or_file, nn.Module), **options)
    if isinstance(model_or_file, (str, os.PathLike)):
        return Plan(_model.plan_file(model_or_file, cfg))
    with _model.ModelHandle.new() as m:
        if isinstance(model_or_file, nn.Module):
            _describe(model_or_file, m)
        elif isinstance(model_or_file, Mapping):
            for k, v in model_or_file.items():
                m.add_tensor(k, v)
        else:
            raise TypeError(f"plan() takes an nn.Module, a state dict or a checkpoint path, got {type(model_or_file).__name__}")
        if calibration_data is not None:
            m.calibrate_begin(cfg)
        d = m.plan(cfg)
    if isinstance(model_or_file, nn.Module):
        _check_runnable(model_or_file, d)
    return Plan(d)


# ------------------------------------------------------------------------------------------------
# dequantize

def _orig_dtype(qmod, name="weight"):
    """The dtype the float weight had before quantization (its config entry's ``dtype``)."""
    tc = (getattr(qmod, "_mq_tc", None) or {}).get(name) or {}
    return {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}.get(tc.get("dtype"), torch.float32)


def _float_module(qmod):
    m = _float_module_f32(qmod)
    # every tensor back in its original dtype (a BF16 model's weights come back BF16)
    for name, p in list(m.named_parameters(recurse=False)):
        dt = _orig_dtype(qmod, name) if name in qmod._qweights else p.dtype
        if p.dtype != dt:
            setattr(m, name, nn.Parameter(p.detach().to(dt), requires_grad=p.requires_grad))
    return m


def _float_module_f32(qmod):
    cls = getattr(qmod, "_float_class", None)
    if isinstance(qmod, QuantizedConv1D):
        with torch.device("meta"):
            m = cls(qmod.nf, qmod.nx) if cls is not None else None
        if m is None:
            raise ValueError("dequantize(): this QuantizedConv1D does not know its float class (transformers' Conv1D)")
        m.weight = nn.Parameter(qmod.dequantized("weight"))
        m.bias = nn.Parameter(qmod.bias.clone()) if qmod.bias is not None else None
        return m
    if isinstance(qmod, QuantizedEmbedding):
        m = nn.Embedding(qmod.num_embeddings, qmod.embedding_dim, qmod.padding_idx, qmod.max_norm, qmod.norm_type,
                         qmod.scale_grad_by_freq, qmod.sparse, device="meta")
        m.weight = nn.Parameter(qmod.dequantized("weight"))
        return m
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
    """Returns a float copy of a quantized model (quantized modules → nn.Linear / nn.Conv2d /
    nn.LSTM / nn.Embedding / transformers' Conv1D with the dequantized weights, each in the dtype
    it had before quantization; tied weights tied again), or the float32 state dict of a quantized state dict
    or quantized checkpoint file."""
    if isinstance(qmodel_or_path, nn.Module):
        out = copy.deepcopy(qmodel_or_path)
        if isinstance(out, QUANTIZED_TYPES):
            f = _float_module(out)
            return nn.Sequential(f, nn.ReLU()) if getattr(out, "relu", False) else f
        for name, mod in list(out.named_modules()):
            if isinstance(mod, QUANTIZED_TYPES):
                _set_module(out, name, _float_module(mod))
                if getattr(mod, "relu", False) and getattr(mod, "folded_relu", None):
                    _set_module(out, mod.folded_relu, nn.ReLU())  # the ReLU folding fused, back in its place
        # tied tensors (the config's aliases) share one Parameter again
        params = dict(out.named_parameters(remove_duplicate=False))
        for a, s in (out.__dict__.get("_monoquant_file") or {}).get("aliases", {}).items():
            if a in params and s in params and params[a] is not params[s] and params[a].shape == params[s].shape:
                mod_name, _, pname = a.rpartition(".")
                setattr(out.get_submodule(mod_name) if mod_name else out, pname, params[s])
        out.__dict__.pop("_monoquant_file", None)  # a float model has no quantization config
        out.__dict__.pop("monoquant_report", None)
        return out
    from .files import dequantize_file_or_state_dict

    return dequantize_file_or_state_dict(qmodel_or_path)


def dequantize_file(src, dst, progress=None):
    """Writes the float form of the quantized checkpoint ``src`` to ``dst`` through the engine's
    one pipeline — the same bytes as ``monoquant dequantize`` and the C ABI's
    mq_dequantize_file — streaming tensor by tensor.

    Every quantized tensor comes back in its original shape and dtype under its own name (its
    ``.scale``/``.zero_point`` entries go), tensors a file stores once for several tied names are
    written under each name again, the other tensors are copied, and the ``monoquant`` metadata
    is dropped: the result loads like the original checkpoint (``safetensors``,
    ``torch.load``, transformers' ``from_pretrained`` for a folder).

    Args:
        src: a quantized file (.safetensors, .pt/.pth/.bin), a sharded ``*.safetensors.index.json``,
            or a model folder that ``quantize_file`` (or the CLI) wrote from a Hugging Face folder.
        dst: for a file, the output file (.safetensors or .pt/.pth/.bin by suffix; written
            atomically). For a folder, a new or empty folder, laid out as ``src``: the same
            weight file names (the same shard files and index, each tensor in its shard) and
            every other file (config.json, tokenizer files, ...) copied. Never ``src`` itself.
        progress: None (a bar on stderr when it is a terminal), True/False, or a callable
            ``progress(done, total, name)``.

    Example::

        monoquant.quantize_file("my-model", "my-model.int8")
        monoquant.dequantize_file("my-model.int8", "my-model.restored")
        model = transformers.AutoModelForCausalLM.from_pretrained("my-model.restored")
    """
    from . import _model

    with Progress(progress, 0) as bar:
        _model.dequantize_file(src, dst, progress=lambda d, t: bar.update(d, t, ""))


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
            bytes_before, bytes_after, sqnr_db, and outliers: None without LLM.int8() outliers,
            the number of input features stored in float (static), or "per batch" (dynamic;
            docs/outliers.md).
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
        outl = any(r.get("outliers") is not None for r in self.layers)
        if outl:
            rows[0] += ("outliers",)
        for r in self.layers:
            rows.append((r["name"], r["type"], r["format"], r["kernel"], f"{r['params']:,}", _human(r["bytes_before"]), _human(r["bytes_after"]), f"{r['sqnr_db']:.2f}")
                        + ((("-" if r.get("outliers") is None else str(r["outliers"])),) if outl else ()))
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
        folded = getattr(qmod, "folded_norm", None)
        engine_rows = {t["name"]: t for t in (getattr(qmodel, "monoquant_report", None) or {}).get("tensors") or []}
        for wname, (spec, shape, _q) in qmod._qweights.items():
            w = getattr(fmod, wname).detach()
            if isinstance(qmod, QuantizedConv1D) and w.dim() == 2 and tuple(w.shape)[::-1] == tuple(shape):
                shape = tuple(w.shape)  # held [out, in] for the kernels; dequantized() gives Conv1D's [in, out]
            if tuple(w.shape) != shape:
                raise ValueError(f"report(): {name}.{wname} has shape {list(w.shape)} in the float model but {list(shape)} in the quantized one")
            if folded:
                # A folded layer's float weight is the folded one (core/fold): the engine measured
                # its SQNR when quantizing; a loaded model has no such record (NaN).
                t = engine_rows.get(f"{name}.{wname}" if name else wname)
                e = float(t["signal_energy"]) if t else math.nan
                ls += e
                ln += float(t["noise_energy"]) if t else math.nan
                params += w.numel()
                before += w.numel() * w.element_size()
                after += qmod.qtensor(wname).nbytes
                continue
            s = _engine.sqnr(w.reshape(-1), qmod.dequantized(wname).reshape(-1))
            e = float(w.double().pow(2).sum())
            ls += e
            ln += e / 10 ** (s / 10) if math.isfinite(s) else 0.0
            params += w.numel()
            before += w.numel() * w.element_size()
            after += qmod.qtensor(wname).nbytes
        outliers = None
        if getattr(qmod, "outlier_threshold", None) is not None:
            cols = qmod._buffers.get("weight_outlier_columns")
            outliers = "per batch" if qmod.activation == "dynamic" else (0 if cols is None else cols.numel())
            if cols is not None:
                after += cols.numel() * cols.element_size() + qmod.weight_outlier_weight.numel() * qmod.weight_outlier_weight.element_size()
        signal += ls
        noise += ln
        qb += before
        qa += after
        fmt = ",".join(sorted({sp.format for sp, _, _ in qmod._qweights.values()}))
        layer_sqnr = (math.inf if ls > 0 else math.nan) if ln == 0 else 10 * math.log10(ls / ln)
        rows.append({"name": name, "type": type(fmod).__name__, "format": fmt, "activation": qmod.activation, "kernel": qmod.kernel, "params": params,
                     "bytes_before": before, "bytes_after": after, "sqnr_db": layer_sqnr, "outliers": outliers})
    if not rows:
        raise ValueError("report(): qmodel has no quantized layers")
    r = Report(rows, _nbytes(model.state_dict().values()), _nbytes(qmodel.state_dict().values()), qb, qa, signal, noise)
    if verbose:
        print(r)
    return r


# ------------------------------------------------------------------------------------------------
# record_activations

def record_activations(model, calibration_data, path, layers=None, skip=None, max_batches=None):
    """Runs calibration data through the model and writes each selected layer's inputs to
    ``path`` (.pt or .safetensors by suffix) as tensors ``<layer>.<batch>``, the layout the
    CLI's ``--calibration`` reads, so static qparams can be made later without Python. The
    layers are the ones the engine selects for ``layers``/``skip`` (as ``quantize`` would).

    Returns the list of layer names recorded.
    """
    from . import _model

    if not isinstance(model, nn.Module):
        raise TypeError(f"record_activations() takes an nn.Module, got {type(model).__name__}")
    cfg = _config(layers=layers, skip=skip, activations="none", runtime=True)
    with _model.ModelHandle.new() as m:
        _describe(model, m)
        d = m.plan(cfg)
    mods = dict(model.named_modules(remove_duplicate=False))
    selected = [(ld["name"], mods[ld["name"]]) for ld in d["layers"] if ld["name"] in mods]
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
