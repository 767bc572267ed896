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
from .nn import QUANTIZED_TYPES, QuantizedConv2d, QuantizedLinear, QuantizedLSTM

__all__ = ["save", "load", "QuantizedStateDict", "quantize_state_dict", "dequantize_file_or_state_dict", "write_tensors"]

FORMAT_VERSION = 1
METADATA_KEY = "monoquant"
_LAYER_TYPES = {QuantizedLinear: "linear", QuantizedConv2d: "conv2d", QuantizedLSTM: "lstm"}
_FLOAT_TYPES = {"linear": nn.Linear, "conv2d": nn.Conv2d, "lstm": nn.LSTM}


class QuantizedStateDict(OrderedDict):
    """A quantized state dict: name → tensor in the checkpoint format, plus ``config`` (the
    parsed ``monoquant`` JSON: per-tensor formats, shapes and, in static mode, activation
    qparams). ``dict(sd)`` is a plain dict of tensors (what ``torch.save`` should be given)."""

    def __init__(self, *args, config=None, **kw):
        super().__init__(*args, **kw)
        self.config = config or {}

    def __reduce__(self):
        # Pickle as a plain OrderedDict so torch.load(weights_only=True) can read it back.
        return (OrderedDict, (list(self.items()),))


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
        return QuantSpec(tc["format"], tc["scheme"], tc["granularity"], axis=tc.get("axis", 0), group_size=tc.get("group_size") or 128,
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


def _observer_name(spec):
    if not spec.is_integer:
        return "none"
    return {"per_tensor": "minmax", "per_channel": "per_channel_minmax", "per_group": "per_group_minmax"}[spec.granularity]


def module_config(qmodel):
    """The stored tensors (OrderedDict) and the config (dict) of a quantized nn.Module."""
    sd = qmodel.state_dict()
    tensors_cfg, acts = {}, {}
    for name, mod in qmodel.named_modules():
        if not isinstance(mod, QUANTIZED_TYPES):
            continue
        prefix = name + "." if name else ""
        for wname, (spec, shape, qshape) in mod._qweights.items():
            tc = {"bits": spec.bits, "format": spec.format, "axis": spec.axis if spec.granularity == "per_channel" else 0,
                  "observer": _observer_name(spec), "dtype": "F32", "shape": list(shape), "quant_shape": list(qshape),
                  "zero_point": spec.stores_zero_point, "layer": name, "layer_type": _LAYER_TYPES[type(mod)]}
            if spec.is_integer:
                tc.update(scheme=spec.scheme, granularity=spec.granularity, qdtype=spec.qdtype)
                if spec.granularity == "per_group":
                    tc["group_size"] = spec.group_size
                if spec.reduce_range:
                    tc["reduce_range"] = True
                if spec.quant_range is not None:
                    tc["quant_min"], tc["quant_max"] = spec.quant_range
            tensors_cfg[prefix + wname] = tc
        if mod.activation == "static":
            info = getattr(mod, "input_info", {}) or {}
            acts[name] = {"observer": info.get("observer", "minmax"), "qdtype": "quint8", "scheme": "asymmetric",
                          "scale": [float(mod.input_scale.item())], "zero_point": [int(mod.input_zero_point.item())],
                          "min": float(info.get("min", 0.0)), "max": float(info.get("max", 0.0)), "batches": int(info.get("batches", 0))}
            sd.pop(prefix + "input_scale", None)
            sd.pop(prefix + "input_zero_point", None)
    if not tensors_cfg:
        raise ValueError("the model has no quantized layers (QuantizedLinear, QuantizedConv2d, QuantizedLSTM); run monoquant.quantize first")
    from . import __version__

    config = {"format_version": FORMAT_VERSION, "tool": "monoquant-python", "tool_version": __version__,
              "mode": "static" if acts else "weight_only", "tensors": tensors_cfg}
    if acts:
        config["activations"] = acts
    return OrderedDict((k, v.detach().contiguous()) for k, v in sd.items()), config


def _get_module(root, name):
    return root if name == "" else root.get_submodule(name)


def build_quantized(model, tensors, config, strict=True):
    """A runnable quantized copy of the float skeleton ``model`` from stored tensors and config."""
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
        want = _FLOAT_TYPES.get(ltype)
        if want is None:
            raise UnsupportedError(f"load(): layer {layer!r} is quantized as {ltype!r}; monoquant.nn runs linear, conv2d and lstm layers only: load the state dict (model=None) or dequantize the file")
        if not isinstance(mod, want):
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
        if layer in acts:
            a = acts[layer]
            activation, iq = "static", (a["scale"][0], a["zero_point"][0])
        else:
            activation, iq = ("dynamic" if spec0.is_integer else None), None
        if isinstance(mod, nn.LSTM):
            qmod = QuantizedLSTM(mod, qts, activation, iq)
        elif isinstance(mod, nn.Conv2d):
            qmod = QuantizedConv2d(mod, qts["weight"], activation, iq)
        else:
            qmod = QuantizedLinear(mod.in_features, mod.out_features, qts["weight"], mod.bias, activation, iq)
        if layer in acts:
            qmod.input_info = {k: acts[layer].get(k) for k in ("observer", "min", "max", "batches")}
        replaced[layer] = qmod
    memo = {id(_get_module(model, layer)): None for layer in replaced}
    out = copy.deepcopy(model, memo) if "" not in replaced else None
    if out is None:
        out = replaced[""]
    else:
        for layer, qmod in replaced.items():
            parent, _, child = layer.rpartition(".")
            setattr(_get_module(out, parent), child, qmod)
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

def save(obj, path):
    """Writes a quantized model or quantized state dict to ``path``: ``.safetensors``, or a
    torch zip file for ``.pt``/``.pth`` (readable with ``torch.load(weights_only=True)``). The
    write is atomic (a temporary file renamed into place)."""
    path = _check_path(path)
    if isinstance(obj, nn.Module):
        tensors, config = module_config(obj)
    elif isinstance(obj, QuantizedStateDict):
        tensors, config = obj, obj.config
    elif isinstance(obj, Mapping):
        raise TypeError("save() takes a quantized model or the QuantizedStateDict that quantize()/load() return; a plain dict has no quantization config")
    else:
        raise TypeError(f"save() takes a quantized nn.Module or a QuantizedStateDict, got {type(obj).__name__}")
    _model.write_checkpoint(tensors, {METADATA_KEY: json.dumps(config)}, path)


def load(path, model=None, strict=True):
    """Reads a quantized checkpoint (any file monoquant or its CLI wrote).

    With ``model`` (a float model of the same architecture, e.g. freshly constructed), returns a
    runnable quantized copy of it whose quantized layers hold the file's values; the float
    model is left unchanged. Without it, returns a QuantizedStateDict.
    """
    path = _check_path(path)
    tensors, metadata = _model.read_checkpoint(path)
    if METADATA_KEY not in metadata:
        from ._errors import FormatError

        raise FormatError(f"{path} is not a monoquant quantized checkpoint (no {METADATA_KEY!r} metadata)")
    config = json.loads(metadata[METADATA_KEY])
    if model is None:
        return QuantizedStateDict(tensors, config=config)
    if not isinstance(model, nn.Module):
        raise TypeError(f"load(model=...) takes a float nn.Module skeleton, got {type(model).__name__}")
    return build_quantized(model, tensors, config, strict=strict)


def quantize_state_dict(sd, bits=8, dynamic=None, calibration_data=None, scheme="symmetric", group_size=128, skip=(), progress=None, dtype="fp16"):
    """quantize() for a state dict: the engine's planner picks the layers from names and shapes
    (2-D ``.weight`` → linear, 4-D → conv2d, ``weight_ih_l*``/``weight_hh_l*`` → lstm) and
    quantizes them; returns a QuantizedStateDict."""
    if calibration_data is not None or dynamic is False:
        raise ValueError("a state dict has no forward pass to calibrate: quantize the nn.Module for static mode (or use monoquant.record_activations and the CLI)")
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise TypeError(f"a state dict maps names to tensors; got {type(k).__name__} -> {type(v).__name__}")
    return _model.quantize_tensors(sd, bits=bits, scheme=scheme, group_size=group_size, skip=skip, progress=progress, dtype=dtype)


def dequantize_file_or_state_dict(x):
    """Float32 state dict of a quantized checkpoint file or QuantizedStateDict."""
    if isinstance(x, QuantizedStateDict):
        return dequantize_state_dict(x, x.config)
    if isinstance(x, Mapping):
        raise TypeError("dequantize() takes a quantized model, a QuantizedStateDict or a checkpoint path; a plain dict has no quantization config")
    sd = load(x)
    return dequantize_state_dict(sd, sd.config)


def write_tensors(tensors, path):
    """Writes plain named tensors (e.g. recorded activations) to .pt/.safetensors."""
    path = _check_path(path)
    _model.write_checkpoint(tensors, {}, path)

