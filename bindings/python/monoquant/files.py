"""Quantized checkpoints and state dicts (docs/FORMAT.md), read and written by the engine.

A quantized checkpoint holds plain tensors — ``<name>`` (int8 / packed int4 / fp16 / bf16),
``<name>.scale``, ``<name>.zero_point`` — and a JSON config under the metadata key
``monoquant`` (format version 1). The engine's model API (``mq_model_*`` in monoquant.h) reads
and writes the files, validates the config against the tensors, quantizes state dicts and
dequantizes; this module converts between that form and live modules.
"""

import copy
import json
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn as nn

from . import _model
from ._engine import QTensor, QuantSpec
from .nn import QUANTIZED_TYPES, QuantizedConv1D, QuantizedConv2d, QuantizedEmbedding, QuantizedLinear, QuantizedLSTM, quantized_class_for

__all__ = ["save", "load", "QuantizedStateDict", "quantize_state_dict", "dequantize_file_or_state_dict", "write_tensors"]

# The metadata key of the config, as the engine names it (docs/FORMAT.md).
METADATA_KEY = _model.defaults()["metadata_key"]


class QuantizedStateDict(OrderedDict):
    """A quantized state dict: name → tensor in the checkpoint format, plus ``config`` (the
    parsed ``monoquant`` JSON: per-tensor formats, shapes and, in static mode, activation
    qparams). ``dict(sd)`` is a plain dict of tensors (what ``torch.save`` should be given)."""

    def __init__(self, *args, config=None, **kw):
        super().__init__(*args, **kw)
        self.config = config or {}

    handle = None  # the engine's model (what save() writes); set by quantize() and load()
    report = None

    def __reduce__(self):
        # Pickle as a plain OrderedDict so torch.load(weights_only=True) can read it back.
        return (OrderedDict, (list(self.items()),))

    def __deepcopy__(self, memo):
        out = QuantizedStateDict(((k, v.clone()) for k, v in self.items()), config=copy.deepcopy(self.config))
        out.handle, out.report = self.handle, self.report
        return out


def _check_path(path):
    import os

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not path.endswith((".pt", ".pth", ".safetensors")):
        raise ValueError(f"{path}: the format follows the suffix: use .pt, .pth or .safetensors")
    return path


# ------------------------------------------------------------------------------------------------
# Config <-> specs

def spec_from_config(name, tc):
    """The QuantSpec of one tensor's config entry."""
    try:
        if tc["format"] in ("fp16", "bf16"):
            return QuantSpec(tc["format"])
        qr = None
        if tc.get("quant_min") is not None:
            qr = (tc["quant_min"], tc["quant_max"])
        gs = tc["group_size"] if tc["granularity"] == "per_group" else 0
        return QuantSpec(tc["format"], tc["scheme"], tc["granularity"], axis=tc.get("axis", 0), group_size=gs,
                         qdtype=tc["qdtype"], reduce_range=tc.get("reduce_range", False), quant_range=qr)
    except (KeyError, ValueError, TypeError) as e:
        from ._errors import FormatError

        raise FormatError(f"tensor {name!r}: bad config entry {tc!r}: {e}") from None


def qtensor_from(tensors, name, tc):
    """Builds the QTensor of a quantized tensor from its stored tensors and config entry."""
    spec = spec_from_config(name, tc)
    data = tensors[name]
    scale = zp = None
    if spec.is_integer:
        scale = tensors[name + ".scale"]
        zp = tensors.get(name + ".zero_point")
        if zp is None:
            zp = torch.zeros(scale.shape, dtype=torch.int32)
    return QTensor(data, scale, zp, tuple(tc["quant_shape"]), spec, orig_dtype=torch.float32)


# The engine's layer types each quantized class runs (transformers' Conv1D is a linear layer).
_LAYER_TYPES_RUN = {QuantizedLinear: ("linear",), QuantizedConv1D: ("linear",), QuantizedConv2d: ("conv2d",),
                    QuantizedLSTM: ("lstm",), QuantizedEmbedding: ("embedding",)}
_TYPES_RUN = {t for v in _LAYER_TYPES_RUN.values() for t in v}


def _get_module(root, name):
    return root if name == "" else root.get_submodule(name)


def build_quantized(model, tensors, config, strict=True, inplace=False):
    """A runnable quantized copy of the float skeleton ``model`` (or, with ``inplace``, the model
    itself) from stored tensors and config."""
    from ._errors import FormatError, UnsupportedError

    by_layer = OrderedDict()
    for tname, tc in config.get("tensors", {}).items():
        by_layer.setdefault(tc.get("layer", ""), []).append((tname, tc))
    acts = config.get("activations", {}) or {}
    replaced = {}
    for layer, items in by_layer.items():
        try:
            mod = _get_module(model, layer)
        except AttributeError:
            raise ValueError(f"load(): the checkpoint quantizes layer {layer!r} but the model has no such module") from None
        ltype = items[0][1].get("layer_type")
        want = quantized_class_for(mod)
        if ltype not in _TYPES_RUN:
            raise UnsupportedError(f"load(): layer {layer!r} is quantized as {ltype!r}; monoquant.nn runs linear, conv2d, lstm and embedding layers only: load the state dict (model=None) or dequantize the file")
        if want is None or ltype not in _LAYER_TYPES_RUN[want]:
            raise ValueError(f"load(): layer {layer!r} is a {type(mod).__name__} in the model but {ltype} in the checkpoint")
        qts = {}
        for tname, tc in items:
            wname = tname[len(layer) + 1:] if layer else tname
            for needed in [tname] + ([tname + ".scale"] if tc.get("format") in ("int8", "int4") else []):
                if needed not in tensors:
                    raise FormatError(f"load(): the checkpoint has no tensor {needed!r}")
            expect = tuple(getattr(mod, wname).shape) if hasattr(mod, wname) else None
            if expect != tuple(tc["shape"]):
                raise ValueError(f"load(): {tname} has shape {tc['shape']} in the checkpoint but {list(expect) if expect else None} in the model")
            qts[wname] = qtensor_from(tensors, tname, tc)
        spec0 = next(iter(qts.values())).spec
        mode = items[0][1].get("activations")
        if mode is None:  # files of version 0.1: static where calibrated, else as 0.1 ran them
            mode = "static" if layer in acts else ("dynamic" if spec0.is_integer else "none")
        iq = None
        if mode == "static":
            if layer not in acts:
                # a static layer that saw no calibration data runs with float activations
                mode = "none"
            else:
                a = acts[layer]
                iq = (a["scale"][0], a["zero_point"][0])
        activation = mode
        if want is QuantizedLSTM:
            qmod = QuantizedLSTM(mod, qts, activation, iq)
        elif want is QuantizedConv2d:
            qmod = QuantizedConv2d(mod, qts["weight"], activation, iq)
        elif want is QuantizedConv1D:
            qmod = QuantizedConv1D(mod.weight.shape[0], mod.nf, qts["weight"], mod.bias, activation, iq)
        elif want is QuantizedEmbedding:
            qmod = QuantizedEmbedding(mod, qts["weight"])
        else:
            qmod = QuantizedLinear(mod.in_features, mod.out_features, qts["weight"], mod.bias, activation, iq)
        qmod._float_class = type(mod)
        replaced[layer] = qmod
    if "" in replaced:
        out = replaced[""]
    else:
        swap = {id(_get_module(model, layer)): qmod for layer, qmod in replaced.items()}
        if inplace:
            out = model
            # Every reference to a replaced layer, including a layer registered under two names.
            for mod in list(model.modules()):
                for child_name, child in list(mod._modules.items()):
                    if child is not None and id(child) in swap:
                        mod._modules[child_name] = swap[id(child)]
        else:
            # The copy takes the quantized layers in place of the float ones instead of copying
            # float weights only to drop them (a large model's weights would briefly double).
            out = copy.deepcopy(model, dict(swap))
    full = OrderedDict(tensors)
    for layer in acts:
        if layer in replaced:
            p = layer + "." if layer else ""
            full[p + "input_scale"] = replaced[layer].input_scale
            full[p + "input_zero_point"] = replaced[layer].input_zero_point
    out.load_state_dict(full, strict=strict)
    return out


def dequantize_state_dict(sd, config):
    """Float32 state dict of a quantized one, every value dequantized by the engine."""
    tcs = config.get("tensors", {})
    out = OrderedDict()
    for name, t in sd.items():
        if name in tcs:
            tc = tcs[name]
            out[name] = qtensor_from(sd, name, tc).dequantize().reshape(tc["shape"])
        elif (name.endswith(".scale") and name[:-6] in tcs) or (name.endswith(".zero_point") and name[:-11] in tcs):
            continue
        else:
            out[name] = t
    return out


# ------------------------------------------------------------------------------------------------
# Public functions

def _handle_of(obj):
    h = obj.__dict__.get("_monoquant_handle") if isinstance(obj, nn.Module) else getattr(obj, "handle", None)
    if h is None or h.closed:
        raise ValueError(
            "save() writes the engine's snapshot of a quantized model, and this object has none: save the model "
            "returned by monoquant.quantize() or monoquant.load() (a copy made with copy.deepcopy keeps it; one "
            "rebuilt from torch.save/torch.load does not)"
        )
    return h


def save(obj, path):
    """Writes a quantized model (as ``monoquant.quantize``/``load`` returned it) or a
    QuantizedStateDict to ``path``: ``.safetensors``, or a torch zip file for ``.pt``/``.pth``
    (readable with ``torch.load(weights_only=True)``), in the format of docs/FORMAT.md. The
    engine writes a temporary file in the same folder (unnamed until then where the file system
    supports O_TMPFILE, so a killed process leaves nothing) and renames it into place.

    What is written is the engine's snapshot of the quantization result: the stored weights and
    qparams and every other tensor the model had when it was quantized or loaded.
    """
    path = _check_path(path)
    if isinstance(obj, nn.Module):
        if not any(isinstance(m, QUANTIZED_TYPES) for m in obj.modules()):
            raise ValueError("the model has no quantized layers (QuantizedLinear, QuantizedConv2d, QuantizedLSTM); run monoquant.quantize first")
    elif isinstance(obj, QuantizedStateDict):
        pass
    elif isinstance(obj, Mapping):
        raise TypeError("save() takes a quantized model or the QuantizedStateDict that quantize()/load() return; a plain dict has no quantization config")
    else:
        raise TypeError(f"save() takes a quantized nn.Module or a QuantizedStateDict, got {type(obj).__name__}")
    _handle_of(obj).save(path)


def load(path, model=None, strict=True):
    """Reads a quantized checkpoint (any file monoquant or its CLI wrote).

    With ``model`` (a float model of the same architecture, e.g. freshly constructed), returns a
    runnable quantized copy of it whose quantized layers hold the file's values; the float
    model is left unchanged. Without it, returns a QuantizedStateDict.
    """
    path = _check_path(path)
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"load(model=...) takes a float nn.Module skeleton, got {type(model).__name__}")
    h = _model.ModelHandle.load(path)
    try:
        metadata = h.metadata()
        if METADATA_KEY not in metadata:
            from ._errors import FormatError

            raise FormatError(f"{path} is not a monoquant quantized checkpoint (no {METADATA_KEY!r} metadata): quantize it first")
        config = json.loads(metadata[METADATA_KEY])
        tensors = h.tensors()
        if model is None:
            sd = QuantizedStateDict(tensors, config=config)
            sd.handle = h
            return sd
        out = build_quantized(model, tensors, config, strict=strict)
    except BaseException:
        h.close()
        raise
    out.__dict__["_monoquant_handle"] = h
    return out


def quantize_state_dict(sd, cfg, calibration_data=None, progress=None):
    """quantize() for a state dict: the engine's planner picks the layers from names and shapes
    (2-D ``.weight`` → linear, 4-D → conv2d, ``weight_ih_l*``/``weight_hh_l*`` → lstm) under the
    config ``cfg`` (an _model.ModelConfig) and quantizes them; returns a QuantizedStateDict
    (a state dict has no forward pass to calibrate)."""
    from ._progress import Progress

    if calibration_data is not None:
        raise ValueError("a state dict has no forward pass to calibrate: quantize the nn.Module for static activations (or use monoquant.record_activations and quantize_file(..., calibration=...))")
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise TypeError(f"a state dict maps names to tensors; got {type(k).__name__} -> {type(v).__name__}")
    names = list(sd)
    with _model.ModelHandle.new() as m:
        for k, v in sd.items():
            m.add_tensor(k, v)
        with Progress(progress, len(sd)) as bar:
            q = m.quantize(cfg, lambda done, total: bar.update(done, total, names[done - 1] if 0 < done <= len(names) else ""))
    try:
        config = json.loads(q.metadata()[METADATA_KEY])
        out = QuantizedStateDict(q.tensors(), config=config)
        rep = q.report()
    except BaseException:
        q.close()
        raise
    import warnings

    from ._errors import MonoquantWarning

    for w in rep.get("warnings") or []:
        warnings.warn(f"{w.get('code')}: {w.get('message')}", MonoquantWarning, stacklevel=3)
    out.handle = q
    out.report = rep
    return out


def dequantize_file_or_state_dict(x):
    """Float32 state dict (OrderedDict) of a quantized checkpoint file or QuantizedStateDict,
    dequantized by the engine."""
    if isinstance(x, QuantizedStateDict):
        h = getattr(x, "handle", None)
        if h is None or h.closed:
            return dequantize_state_dict(x, x.config)
        with h.dequantize() as f:
            return f.tensors()
    if isinstance(x, Mapping):
        raise TypeError("dequantize() takes a quantized model, a QuantizedStateDict or a checkpoint path; a plain dict has no quantization config")
    path = _check_path(x)
    with _model.ModelHandle.load(path) as h:
        if METADATA_KEY not in h.metadata():
            from ._errors import FormatError

            raise FormatError(f"{path} is not a monoquant quantized checkpoint (no {METADATA_KEY!r} metadata)")
        with h.dequantize() as f:
            return f.tensors()


def write_tensors(tensors, path):
    """Writes plain named tensors (e.g. recorded activations) to .pt/.safetensors."""
    path = _check_path(path)
    _model.write_checkpoint(tensors, {}, path)

