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
from collections.abc import Mapping, MutableMapping

import torch
import torch.nn as nn

from . import _model
from ._engine import QTensor, QuantSpec
from .nn import QUANTIZED_TYPES, QuantizedConv1D, QuantizedConv2d, QuantizedEmbedding, QuantizedLinear, QuantizedLSTM, quantized_class_for

__all__ = ["save", "load", "QuantizedStateDict", "quantize_state_dict", "dequantize_file_or_state_dict", "write_tensors"]

# The metadata key of the config, as the engine names it (docs/FORMAT.md).
METADATA_KEY = _model.defaults()["metadata_key"]
# The engine's names of a quantized tensor's stored parts, after its name (docs/FORMAT.md).
SCALE, ZERO_POINT, OUTLIER_COLUMNS, OUTLIER_WEIGHT = _model.SCALE, _model.ZERO_POINT, _model.OUTLIER_COLUMNS, _model.OUTLIER_WEIGHT
# Every entry a quantized tensor <name> can be stored as: <name> + each of these.
STORED_SUFFIXES = ("", SCALE, ZERO_POINT, OUTLIER_COLUMNS, OUTLIER_WEIGHT)


def stored_names(config):
    """Every stored entry of the quantized tensors a config lists (values, qparams, outliers)."""
    out = set()
    for n, tc in config.get("tensors", {}).items():
        out.update((n, n + SCALE, n + ZERO_POINT))
        if tc.get("outlier_columns", 0) > 0:
            out.update((n + OUTLIER_COLUMNS, n + OUTLIER_WEIGHT))
    return out


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


def _check_path(path, read=False):
    """The path as a str. Writes choose the format by suffix; reads (``read=True``) also take a
    sharded index (``*.index.json``), a torch ``.bin`` and a Hugging Face model folder."""
    import os

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if read and (os.path.isdir(path) or path.endswith((".index.json", ".bin"))):
        return path
    if not path.endswith((".pt", ".pth", ".safetensors")):
        more = ", a sharded *.index.json, a .bin or a model folder" if read else ""
        raise ValueError(f"{path}: the format follows the suffix: use .pt, .pth or .safetensors{more}")
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
        scale = tensors[name + SCALE]
        zp = tensors.get(name + ZERO_POINT)
        if zp is None:
            zp = torch.zeros(scale.shape, dtype=torch.int32)
    return QTensor(data, scale, zp, tuple(tc["quant_shape"]), spec, orig_dtype=torch.float32)


# The engine's layer types each quantized class runs (transformers' Conv1D is a linear layer).
_LAYER_TYPES_RUN = {QuantizedLinear: ("linear",), QuantizedConv1D: ("linear",), QuantizedConv2d: ("conv2d",),
                    QuantizedLSTM: ("lstm",), QuantizedEmbedding: ("embedding",)}
_TYPES_RUN = {t for v in _LAYER_TYPES_RUN.values() for t in v}


def _get_module(root, name):
    return root if name == "" else root.get_submodule(name)


def build_quantized(model, tensors, config, strict=True, inplace=False, consume=False):
    """A runnable quantized copy of the float skeleton ``model`` (or, with ``inplace``, the model
    itself) from stored tensors and config. With ``consume``, ``tensors`` (the caller's mapping,
    e.g. a _FileTensors reading on demand) is emptied as the layers take their tensors, so a
    loaded file is held once."""
    from ._errors import FormatError, UnsupportedError

    if not consume:
        tensors = OrderedDict(tensors)
    tcs = dict(config.get("tensors", {}))
    aliases = dict(config.get("aliases") or {})
    # Names the model ties (one Parameter) that the file stores under one of them only, as
    # Hugging Face's save_pretrained does for a tied head: they read that one.
    for group in tied_groups(model):
        present = [n for n in group if n in tensors]
        if present:
            for n in group:
                if n not in tensors and n not in aliases:
                    aliases[n] = present[0]
    _resolve_aliases(model, tensors, tcs, aliases)
    tied_with = {}  # stored name <-> its aliases, both ways
    for a, t in aliases.items():
        tied_with.setdefault(a, []).append(t)
        tied_with.setdefault(t, []).append(a)
    # Layers in config order, each tied layer right after the first of its group: the stored
    # tensor they share is freed once both are built, not held until the last layer.
    by_layer, placed = OrderedDict(), set()
    for tname in tcs:
        for n in [tname] + tied_with.get(tname, []):
            if n in tcs and n not in placed:
                placed.add(n)
                by_layer.setdefault(tcs[n].get("layer", ""), []).append((n, tcs[n]))
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
            for needed in [tname] + ([tname + SCALE] if tc.get("format") in ("int8", "int4") else []):
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
            tc = dict(items)[(layer + "." if layer else "") + "weight"]
            thr = tc.get("outlier_threshold") if activation != "none" else None
            outl = None
            if thr and activation == "static" and tc.get("outlier_columns", 0) > 0:
                wn = (layer + "." if layer else "") + "weight"
                for suffix in (OUTLIER_COLUMNS, OUTLIER_WEIGHT):
                    if wn + suffix not in tensors:
                        raise FormatError(f"load(): the checkpoint has no tensor {wn + suffix!r}")
                outl = (tensors[wn + OUTLIER_COLUMNS], tensors[wn + OUTLIER_WEIGHT])
            # the weight is also a tied embedding's table: told before the kernel packs it
            tied = any(isinstance(_module_or_none(model, tcs.get(o, {}).get("layer")), nn.Embedding)
                       for tname, _tc in items for o in tied_with.get(tname, ()))
            qmod = QuantizedLinear(mod.in_features, mod.out_features, qts["weight"], mod.bias, activation, iq,
                                   outlier_threshold=thr, outliers=outl, tied_table=tied)
        qmod._float_class = type(mod)
        # What save() writes for this layer, as the config said it (docs/FORMAT.md)
        qmod._mq_tc = {(tname[len(layer) + 1:] if layer else tname): {k: v for k, v in tc.items() if k != "layer"} for tname, tc in items}
        qmod._mq_act = acts.get(layer)
        replaced[layer] = qmod
        for tname, _tc in items:
            # a tied table whose other layer is built already: held once where the kernels allow
            for other in tied_with.get(tname, ()):
                olayer = tcs.get(other, {}).get("layer")
                if olayer in replaced and olayer != layer:
                    _share_tied_table(qmod, replaced[olayer])
        if consume:
            # the layer holds its own form of these now (the kernel's packing): let go of the file's
            for tname, _tc in items:
                for x in STORED_SUFFIXES:
                    tensors.pop(tname + x, None)
            del qts
            _return_freed_memory()
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
    folded = (config.get("recipe") or {}).get("fold") or []
    if folded:
        from . import _fold

        _fold.apply(out, folded, tensors)
    full = tensors
    for layer in acts:
        if layer in replaced:
            p = layer + "." if layer else ""
            full[p + "input_scale"] = replaced[layer].input_scale
            full[p + "input_zero_point"] = replaced[layer].input_zero_point
    if not consume:
        out.load_state_dict(full, strict=strict, assign=_has_meta(out))
    else:
        # The quantized layers were built from the file's tensors: load the rest, then check as
        # strict loading would, counting the layers' stored tensors as loaded.
        res = out.load_state_dict(full, strict=False, assign=_has_meta(out))
        taken = set()
        for tname, tc in tcs.items():
            taken.update(tname + x for x in STORED_SUFFIXES)
        missing = [k for k in res.missing_keys if k not in taken]
        if strict and (missing or res.unexpected_keys):
            msg = []
            if missing:
                msg.append(f"missing keys {missing[:5]}")
            if res.unexpected_keys:
                msg.append(f"unexpected keys {res.unexpected_keys[:5]}")
            raise RuntimeError(f"load(): the checkpoint does not fit the model: {'; '.join(msg)}")
    for alias, target in aliases.items():
        if alias in tcs:
            continue  # a quantized layer shares the stored tensors
        amod, _, aname = alias.rpartition(".")
        tmod, _, tname = target.rpartition(".")
        try:
            a, t = _get_module(out, amod), _get_module(out, tmod)
        except AttributeError:
            continue
        if isinstance(t._parameters.get(tname), nn.Parameter) and aname in a._parameters:
            a._parameters[aname] = t._parameters[tname]  # one Parameter again, as before saving
    if not consume:
        # (a load shares as it builds; here the state dict loaded above gave each its values)
        for alias, target in aliases.items():
            la, lt = tcs.get(alias, {}).get("layer"), tcs.get(target, {}).get("layer")
            if la in replaced and lt in replaced and la != lt:
                _share_tied_table(replaced[la], replaced[lt])
    return out


def _module_or_none(model, name):
    if name is None:
        return None
    try:
        return _get_module(model, name)
    except AttributeError:
        return None


def _share_tied_table(a, b):
    """Two quantized layers built from one stored tensor (a tied embedding and head): when the
    head runs int4pack and the embedding would keep the nibbles only to look rows up, the
    embedding reads its rows from the head's packed tensor instead; when the head is dynamic
    or static INT8, it runs intmm_dynamic/intmm_static on the stored int8 matrix and the
    embedding looks its rows up in that same tensor (docs/kernels.md)."""
    emb, head = (a, b) if isinstance(a, QuantizedEmbedding) else (b, a)
    if not isinstance(emb, QuantizedEmbedding) or type(head) is not QuantizedLinear:
        return
    es, hs = emb._qweights["weight"][0], head._qweights["weight"][0]
    if es != hs or (emb.num_embeddings, emb.embedding_dim) != (head.out_features, head.in_features):
        return
    if emb.kernel == "rows" and head.activation in ("dynamic", "static") and hs.format == "int8":
        head._tie_table()
        if head.kernel in ("intmm_dynamic", "intmm_static"):
            emb._share_rows_with(head)
    elif head.kernel == "int4pack" and emb.kernel == "dequant":
        emb._share_rows_with(head)


def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, or no C library to ask)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None


_TRIM = _malloc_trim()


def _return_freed_memory():
    """Hands the memory a layer's build freed (the file's copy, the packing's temporaries) back
    to the OS. glibc's malloc raises its mmap threshold to the largest block freed so far, so
    after the first large tensor is freed every smaller temporary comes from the heap, and the
    heap keeps the freed pages resident between the packed weights that outlive them: a loaded
    GPT-2 held 1.6x what its layers hold. malloc_trim(0) releases the free pages inside the
    heap (not only at its top), so the process holds what the layers hold plus one layer's
    temporaries. A no-op where the C library has no malloc_trim."""
    if _TRIM is not None:
        _TRIM(0)


def _meta_tensors(model):
    """Names of the parameters and buffers of ``model`` still on the meta device (without
    building a state dict: that would unpack every packed quantized weight at once)."""
    out = [n for n, p in model.named_parameters(remove_duplicate=False) if p.device.type == "meta"]
    return out + [n for n, b in model.named_buffers(remove_duplicate=False) if b is not None and b.device.type == "meta"]


def _has_meta(model):
    return bool(_meta_tensors(model))


_LAYER_TYPE_OF = {QuantizedLinear: "linear", QuantizedConv1D: "linear", QuantizedConv2d: "conv2d", QuantizedLSTM: "lstm",
                  QuantizedEmbedding: "embedding"}


def _resolve_aliases(model, tensors, tcs, aliases):
    """Gives every alias of a config's ``aliases`` (name → stored name: tied tensors stored
    once) the stored tensors, and, when the stored one is quantized, its config entry for the
    alias's own module (its layer type is the module's)."""
    from ._errors import FormatError

    for alias, stored in aliases.items():
        if not isinstance(alias, str) or not isinstance(stored, str) or (stored not in tensors and stored in tcs):
            raise FormatError(f"load(): alias {alias!r} names {stored!r}, which the checkpoint does not store")
        if stored not in tensors:
            continue  # a float tensor handed over with the model (quantize()): the model ties it
        tensors[alias] = tensors[stored]
        tc = tcs.get(stored)
        if tc is None:
            continue
        for suffix in (SCALE, ZERO_POINT):
            if stored + suffix in tensors:
                tensors[alias + suffix] = tensors[stored + suffix]
        layer = alias.rsplit(".", 1)[0] if "." in alias else ""
        try:
            mod = _get_module(model, layer)
        except AttributeError:
            raise ValueError(f"load(): the checkpoint ties {alias!r} to {stored!r} but the model has no module {layer!r}") from None
        want = quantized_class_for(mod)
        if want is None:
            # a layer that cannot run quantized reads the stored tensor dequantized
            tensors[alias] = qtensor_from(tensors, stored, tc).dequantize().reshape(tc["shape"])
            for suffix in (SCALE, ZERO_POINT):
                tensors.pop(alias + suffix, None)
            continue
        tcs[alias] = dict(tc, layer=layer, layer_type=_LAYER_TYPE_OF[want])


def dequantize_state_dict(sd, config):
    """Float state dict of a quantized one (its tensors and config), dequantized by the engine:
    which entries are a quantized tensor's stored parts, the original dtypes and the outlier
    columns put back are the engine's rules (mq_model_dequantize), as for a file."""
    from ._errors import FormatError

    try:
        text = json.dumps(config, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FormatError(f"dequantize(): the state dict's config is not JSON: {e}") from None
    with _model.ModelHandle.new() as h:
        for name, t in sd.items():
            h.add_tensor(name, t)
        h.set_config(text)
        return _dequantized_tensors(h)


# ------------------------------------------------------------------------------------------------
# Public functions

def _handle_of(obj):
    h = getattr(obj, "handle", None)
    if h is None or h.closed:
        raise ValueError("save() writes the engine's result of a QuantizedStateDict, and this one has none: save the one "
                         "returned by monoquant.quantize() or monoquant.load()")
    return h


_DTYPE_NAMES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


class _FileTensors(MutableMapping):
    """The tensors of an open quantized file (mq_model_open), read into torch's memory on first
    access, in file order. Layers pop theirs once built; so only the float tensors kept and one
    layer's stored tensors are ever held at once, besides what the layers hold."""

    def __init__(self, h):
        self._h = h
        self.infos = h.infos()
        self._where = {name: (dt, shape, nbytes) for name, dt, shape, nbytes in self.infos}
        self._names = [name for name, *_ in self.infos]
        self._got = {}
        self._gone = set()

    def __getitem__(self, name):
        t = self._got.get(name)
        if t is None:
            if name in self._gone or name not in self._where:
                raise KeyError(name)
            t = self._got[name] = self._h.read(name, *self._where[name])
        return t

    def __setitem__(self, name, t):
        if name not in self._where and name not in self._got:
            self._names.append(name)
        self._gone.discard(name)
        self._got[name] = t

    def __delitem__(self, name):
        if name not in self:
            raise KeyError(name)
        self._got.pop(name, None)
        self._gone.add(name)

    def __contains__(self, name):
        return name not in self._gone and (name in self._got or name in self._where)

    def __iter__(self):
        return (n for n in self._names if n not in self._gone)

    def __len__(self):
        return sum(1 for _ in self)


def _check_quantized(path, metadata):
    if METADATA_KEY not in metadata:
        from ._errors import FormatError

        raise FormatError(f"{path} is not a monoquant quantized checkpoint (no {METADATA_KEY!r} metadata): quantize it first")


def tied_groups(model):
    """Groups of state-dict names of ``model`` that share one storage (the same Parameter or
    the same memory: same data pointer, offset, shape, strides and dtype), each in state-dict
    order; found by identity, never by value."""
    seen = OrderedDict()
    for name, t in model.state_dict(keep_vars=True).items():
        if not isinstance(t, torch.Tensor) or t.numel() == 0:
            continue
        if t.device.type == "meta":
            key = ("meta", id(t))  # no memory to compare: the same Parameter object
        else:
            key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        seen.setdefault(key, []).append(name)
    return [names for names in seen.values() if len(names) > 1]


def attach_file_state(out, config, metadata, order):
    """Keeps what save() needs to write ``out`` as it is at save time: the config's fields
    other than the per-layer ones, the other metadata entries, the tensor order, the tied
    names."""
    metadata = dict(metadata)
    if METADATA_KEY in metadata and json.loads(metadata[METADATA_KEY]) != config:
        del metadata[METADATA_KEY]  # the config was changed here (tied tensors): written anew
    out.__dict__["_monoquant_file"] = {"config": config, "metadata": metadata, "order": list(order),
                                       "aliases": dict(config.get("aliases") or {})}


def _same(a, b):
    return a is b or (a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and torch.equal(a, b))


def _still_tied(sd, a, s):
    if a not in sd or s not in sd:
        return False
    for x in ("", SCALE, ZERO_POINT):
        if (a + x in sd) != (s + x in sd) or (a + x in sd and not _same(sd[a + x], sd[s + x])):
            return False
    return True


def live_checkpoint(model):
    """(tensors, metadata) of a quantized model as it is now: every quantized layer's stored
    values and qparams with its config entry, every other tensor of its state dict, tied
    tensors stored once (config ``aliases``)."""
    from ._errors import FormatError

    st = model.__dict__.get("_monoquant_file")
    if st is None:
        raise ValueError("save() needs a model that monoquant.quantize() or monoquant.load() returned (or a copy of one); "
                         "this one has quantized layers but no monoquant config")
    sd = model.state_dict()
    tcs, acts, modes = {}, {}, set()
    for name, mod in model.named_modules():
        if not isinstance(mod, QUANTIZED_TYPES):
            continue
        tc_of = getattr(mod, "_mq_tc", None)
        if tc_of is None:
            raise ValueError(f"save(): quantized layer {name!r} was not made by monoquant.quantize() or load(), so its config is unknown")
        p = name + "." if name else ""
        for wname, tc in tc_of.items():
            tcs[p + wname] = dict(tc, layer=name)
            if tc.get("activations"):
                modes.add(tc["activations"])
        if mod.activation == "static":
            a = dict(mod._mq_act or {})
            s, z = mod.input_scale.reshape(-1), mod.input_zero_point.reshape(-1)
            if not a.get("scale") or torch.tensor(a["scale"], dtype=torch.float32).reshape(-1).tolist() != s.tolist():
                a["scale"] = [float(v) for v in s]
            if a.get("zero_point") != [int(v) for v in z]:
                a["zero_point"] = [int(v) for v in z]
            acts[name] = a
            sd.pop(p + "input_scale", None)
            sd.pop(p + "input_zero_point", None)
    if not tcs:
        raise ValueError("the model has no quantized layers; run monoquant.quantize first")
    # Tied tensors: the ones quantize()/load() tied that are still equal, and float tensors
    # that share storage now; each stored once, under its first name.
    aliases = {}
    for a, s in st["aliases"].items():
        if _still_tied(sd, a, s):
            aliases[a] = s
    def qparts(n):  # a quantized tensor or one of its qparams
        base = n[: -len(SCALE)] if n.endswith(SCALE) else n[: -len(ZERO_POINT)] if n.endswith(ZERO_POINT) else n
        return base in tcs or base in aliases

    for group in tied_groups(model):
        for a in group[1:]:
            if a in sd and group[0] in sd and not qparts(a) and not qparts(group[0]):
                aliases.setdefault(a, group[0])
    for a in aliases:
        for x in ("", SCALE, ZERO_POINT):
            sd.pop(a + x, None)
        tcs.pop(a, None)
    order = {n: i for i, n in enumerate(st["order"])}
    names = sorted(sd, key=lambda n: (order.get(n, len(order)), 0))
    old = st["config"]
    config = {k: v for k, v in old.items() if k not in ("tensors", "activations", "aliases")}
    if "mode" in old and modes:
        config["mode"] = modes.pop() if len(modes) == 1 else "mixed"
    config["tensors"] = {n: tcs[n] for n in names if n in tcs}
    if acts or "activations" in old:
        config["activations"] = acts
    if aliases:
        config["aliases"] = aliases
    config = {k: config[k] for k in list(old) + [k for k in config if k not in old] if k in config}
    meta = dict(st["metadata"])
    if config != old or METADATA_KEY not in meta:
        meta[METADATA_KEY] = json.dumps(config, separators=(",", ":"), ensure_ascii=False)
    missing = [n for n in config["tensors"] if n not in sd]
    if missing:
        raise FormatError(f"save(): quantized tensors {missing[:3]} are not in the model's state dict")
    return OrderedDict((n, sd[n]) for n in names), meta


def save(obj, path):
    """Writes a quantized model or a QuantizedStateDict to ``path``: ``.safetensors``, or a
    torch zip file for ``.pt``/``.pth`` (readable with ``torch.load(weights_only=True)``), in
    the format of docs/FORMAT.md. The engine writes a temporary file in the same folder
    (unnamed until then where the file system supports O_TMPFILE, so a killed process leaves
    nothing) and renames it into place.

    A model is written as it is at the time of the call: its quantized layers' stored values,
    qparams and config, and every other tensor of its state dict, after any change made since
    quantize()/load() (a layer replaced, a parameter edited, ``.to(dtype)``). Tensors that share
    storage (tied embeddings and heads) are stored once and named in the config's ``aliases``;
    ``load`` ties them again. A model quantized by ``monoquant.quantize`` and saved unchanged
    gives the same bytes as ``quantize_file``/the CLI for the same input and options.
    """
    path = _check_path(path)
    if isinstance(obj, nn.Module):
        if not any(isinstance(m, QUANTIZED_TYPES) for m in obj.modules()):
            raise ValueError("the model has no quantized layers (QuantizedLinear, QuantizedConv1D, QuantizedConv2d, QuantizedLSTM, QuantizedEmbedding); run monoquant.quantize first")
        tensors, metadata = live_checkpoint(obj)
        with _model.ModelHandle.new() as h:
            for name, t in tensors.items():
                h.add_tensor(name, t)
            for k, v in metadata.items():
                if k != METADATA_KEY:
                    h.set_metadata(k, v)
            h.set_config(metadata[METADATA_KEY])
            h.save(path)
        return
    if isinstance(obj, QuantizedStateDict):
        pass
    elif isinstance(obj, Mapping):
        raise TypeError("save() takes a quantized model or the QuantizedStateDict that quantize()/load() return; a plain dict has no quantization config")
    else:
        raise TypeError(f"save() takes a quantized nn.Module or a QuantizedStateDict, got {type(obj).__name__}")
    _handle_of(obj).save(path)


class _ParamsOnMeta:
    """Within it, new modules register their parameters on the meta device (no memory) and
    their buffers where they are made, as accelerate's init_empty_weights does."""

    def __enter__(self):
        self._orig = nn.Module.register_parameter

        def register(mod, name, param):
            if param is not None and param.device.type != "meta":
                param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            self._orig(mod, name, param)

        nn.Module.register_parameter = register
        return self

    def __exit__(self, *exc):
        nn.Module.register_parameter = self._orig
        return False


def load(path, model=None, strict=True):
    """Reads a quantized checkpoint (any file monoquant or its CLI wrote: a file, the index of
    a sharded one, or a Hugging Face model folder quantized from a folder).

    Args:
        path: the .safetensors / .pt file.
        model: the model to load into, as one of
            * a float model of the same architecture: it is left unchanged, and a runnable
              quantized copy holding the file's values is returned;
            * a skeleton on the ``meta`` device (``with torch.device("meta"): model = Net()``,
              or accelerate's ``init_empty_weights()``): only the file's tensors are
              materialised — the quantized layers and the float tensors left — and no float
              weight is ever allocated; buffers that are not in files (non-persistent ones)
              must be real, as init_empty_weights leaves them;
            * a module factory (a class or a function taking no arguments): it is called with
              its parameters created on the meta device and its buffers real, then loaded as a
              skeleton.
            Without it, a QuantizedStateDict is returned.
        strict: every tensor of the model must be in the file and the other way round.

    Tensors the file stores once for several names (``aliases``: tied embeddings and heads)
    are tied again: the names share the one loaded tensor.
    """
    path = _check_path(path, read=True)
    if model is not None and not isinstance(model, nn.Module):
        if callable(model):
            with _ParamsOnMeta():
                model = model()
            if not isinstance(model, nn.Module):
                raise TypeError(f"load(model=...): the factory returned a {type(model).__name__}, not an nn.Module")
        else:
            raise TypeError(f"load(model=...) takes a float nn.Module skeleton or a factory of one, got {type(model).__name__}")
    if model is None:
        h = _model.ModelHandle.load(path)
        try:
            metadata = h.metadata()
            _check_quantized(path, metadata)
            sd = QuantizedStateDict(h.tensors(), config=json.loads(metadata[METADATA_KEY]))
        except BaseException:
            h.close()
            raise
        sd.handle = h
        return sd
    # The engine checks the file and hands each tensor straight from it into torch's memory:
    # the tensors are held once, and each quantized layer's go once it has taken them.
    from ._errors import FormatError

    try:
        h = _model.ModelHandle.open(path)
    except FormatError as e:
        if "not a monoquant checkpoint" in str(e):
            raise FormatError(f"{path} is not a monoquant quantized checkpoint (no {METADATA_KEY!r} metadata): quantize it first") from None
        raise
    with h:
        metadata = h.metadata()
        config = json.loads(metadata[METADATA_KEY])
        tensors = _FileTensors(h)
        if any(r.get("prune_units") for r in (config.get("recipe") or {}).get("rules", [])):
            from ._prune import shrink_to_file

            model = copy.deepcopy(model)  # the skeleton's pruned layers are rebuilt at the file's sizes
            shrink_to_file(model, config, tensors)
        out = build_quantized(model, tensors, config, strict=strict, consume=True)
        infos = tensors.infos
    left = _meta_tensors(out)
    if left:
        raise ValueError(f"load(): {len(left)} tensors of the skeleton are still on the meta device after loading ({', '.join(left[:3])}"
                         f"{', ...' if len(left) > 3 else ''}): the file does not hold them; build the skeleton with its buffers real "
                         f"(accelerate's init_empty_weights, or pass a module factory: load(path, MyModel))")
    attach_file_state(out, config, metadata, [n for n, *_ in infos])
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
            # The engine writes the results into tensors torch allocated (no copy on the way out).
            q, outputs = m.quantize_into(cfg, lambda done, total: bar.update(done, total, names[done - 1] if 0 < done <= len(names) else ""))
    try:
        config = json.loads(q.metadata()[METADATA_KEY])
        out = QuantizedStateDict(outputs, config=config)
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
        return _dequantized_tensors(h)
    if isinstance(x, Mapping):
        raise TypeError("dequantize() takes a quantized model, a QuantizedStateDict or a checkpoint path; a plain dict has no quantization config")
    path = _check_path(x, read=True)
    with _model.ModelHandle.load(path) as h:
        if METADATA_KEY not in h.metadata():
            from ._errors import FormatError

            raise FormatError(f"{path} is not a monoquant quantized checkpoint (no {METADATA_KEY!r} metadata)")
        return _dequantized_tensors(h)


def _dequantized_tensors(h):
    """The float tensors of quantized handle h, written by the engine into tensors torch
    allocated (no copy on the way out)."""
    f, tensors = h.dequantize_into()
    f.close()  # the tensors are torch's: they outlive the engine's model that borrowed them
    return tensors


def write_tensors(tensors, path):
    """Writes plain named tensors (e.g. recorded activations) to .pt/.safetensors."""
    path = _check_path(path)
    _model.write_checkpoint(tensors, {}, path)

