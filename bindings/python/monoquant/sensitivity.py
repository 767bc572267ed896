"""Layer sensitivity (ADV-03) and mixed-precision recipes from it: ``sensitivity`` and
``recipe_for``.

Python runs the model; the engine (core/sensitivity, ``mq_sensitivity_*`` in monoquant.h) plans
the candidates (layer × format), quantizes each layer alone, sums the output errors, scores and
ranks, and chooses the recipe (a greedy knapsack, ``mq_recipe_for_json``). A C or Go caller
gets the same table and the same recipe from the same measurements.
"""

import ctypes
import json
import os
from collections.abc import Mapping

import torch
import torch.nn as nn

from . import _lib
from ._engine import CTensor, _dense_cpu
from ._lib import check
from ._progress import Progress

__all__ = ["sensitivity", "recipe_for", "SensitivityTable", "Recipe"]


def _json_call(fn, args, what):
    from ._model import _json_call as jc

    return jc(fn, args, what)


class _Session:
    """One mq_sensitivity handle."""

    def __init__(self, m, cfg, formats):
        self._h = _lib.mq_sensitivity_p()
        fj = None if formats is None else json.dumps(list(formats) if not isinstance(formats, (str, Mapping)) else [formats]).encode()
        check(_lib.mq_sensitivity_new(ctypes.byref(self._h), m._h, cfg.ref, fj), "sensitivity")

    def close(self):
        h, self._h = self._h, _lib.mq_sensitivity_p()
        if h.value:
            _lib.mq_sensitivity_free(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def candidates(self):
        return _json_call(_lib.mq_sensitivity_candidates_json, (self._h,), "sensitivity candidates")

    def quantize(self, m, layer, fmt):
        from ._model import ModelHandle

        out = ModelHandle()
        check(_lib.mq_sensitivity_quantize(self._h, m._h, layer.encode(), fmt.encode(), ctypes.byref(out._h)), f"sensitivity: {layer} as {fmt}")
        return out

    def add_output(self, layer, fmt, ref, out):
        r, o = CTensor(ref), CTensor(out)
        check(_lib.mq_sensitivity_add_output(self._h, layer.encode(), fmt.encode(), r.ref, o.ref), f"sensitivity: outputs of {layer} as {fmt}")

    def set_metric(self, layer, fmt, value):
        check(_lib.mq_sensitivity_set_metric(self._h, None if layer is None else layer.encode(), None if fmt is None else fmt.encode(), float(value)),
              "sensitivity metric")

    def table(self):
        return _json_call(_lib.mq_sensitivity_table_json, (self._h,), "sensitivity table")


def _float_outputs(out):
    """The floating-point tensors of a model's output (a tensor, or tuples, lists, dicts and
    ModelOutputs of them), in order, as dense CPU tensors."""
    if isinstance(out, torch.Tensor):
        return [_dense_cpu(out, "output")] if out.is_floating_point() else []
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _float_outputs(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _float_outputs(v)]
    return []


def _run(model, batch, npos):
    from .api import _batch_args

    args, kwargs = _batch_args(batch, npos, "data")
    return model(*args, **kwargs)


def _quantized_module(fmod, layer, q):
    """The runnable quantized module of ``layer`` from the engine's result ``q`` (that layer's
    stored tensors and config), built by files.build_quantized on the float module alone."""
    from .files import METADATA_KEY, build_quantized, stored_names

    config = json.loads(q.metadata()[METADATA_KEY])
    p = layer + "."
    tensors = {k[len(p):]: v for k, v in q.tensors(stored_names(config)).items()}
    local = dict(config)
    local["tensors"] = {}
    for n, tc in config["tensors"].items():
        tc = dict(tc)
        tc["layer"] = ""
        local["tensors"][n[len(p):]] = tc
    local["activations"] = {"": a for k, a in (config.get("activations") or {}).items() if k == layer}
    return build_quantized(fmod, tensors, local, strict=False)


class _Memo:
    """Replays the float model's outputs of the modules a candidate cannot change.

    For the layer L being measured, the modules beside the path from the root to L (children of
    L's ancestors that are not on the path, with children of their own) compute exactly what they
    computed in the float run as long as their inputs are the same, and the model's modules are
    pure in eval mode. The float run records each such module's calls (inputs and output); a
    candidate's run gets the recorded output back when the call's inputs are equal (tensors
    compared by value), and computes it otherwise. Blocks before L are then not recomputed;
    memory: one recorded output per such module and batch."""

    def __init__(self, model, layers):
        self.named = dict(model.named_modules(remove_duplicate=False))
        self.mods = {}
        for layer in layers:
            for name in self._siblings(layer):
                self.mods[name] = self.named[name]
        self.calls = {}  # (batch, name) -> [(args, kwargs, output)]
        self.batch = 0

    def _siblings(self, layer):
        """The modules beside layer's path that have children of their own."""
        out = []
        for anc in self._ancestors(layer):
            parent = self.named.get(anc)
            if parent is None:
                continue
            for cname, child in parent._modules.items():
                full = f"{anc}.{cname}" if anc else cname
                if child is not None and next(child.children(), None) is not None and not self._on_path(full, layer):
                    out.append(full)
        return out

    @staticmethod
    def _ancestors(layer):
        parts = layer.split(".")
        return [""] + [".".join(parts[:i]) for i in range(1, len(parts))]

    @staticmethod
    def _on_path(name, layer):
        return layer == name or layer.startswith(name + ".")

    def record(self, run):
        """Runs ``run()`` (the float model on one batch) recording the calls."""
        hooks = []
        for name, m in self.mods.items():
            def hook(_m, args, kwargs, out, name=name):
                # a copy: a later in-place op of the float run must not change what is replayed
                self.calls.setdefault((self.batch, name), []).append((args, dict(kwargs), _clone(out)))
            hooks.append(m.register_forward_hook(hook, with_kwargs=True))
        try:
            return run()
        finally:
            for h in hooks:
                h.remove()

    def replay(self, layer, run):
        """Runs ``run()`` with the modules beside ``layer``'s path replaying recorded calls."""
        seen = {}
        patched = []

        def make(name, m, orig):
            def forward(*args, **kwargs):
                k = seen.get(name, 0)
                seen[name] = k + 1
                rec = self.calls.get((self.batch, name))
                if rec is not None and k < len(rec) and rec[k][2] is not _UNCOPIED and _same(rec[k][0], args) and _same(rec[k][1], kwargs):
                    return _clone(rec[k][2])  # a copy again: the candidate's run may change it in place
                return orig(*args, **kwargs)
            return forward

        for name in self._siblings(layer):
            m = self.mods[name]
            if "forward" in m.__dict__:
                continue  # patched already (a module under two names), or the user's own
            m.forward = make(name, m, m.forward)
            patched.append(m)
        try:
            return run()
        finally:
            for m in patched:
                del m.forward


_UNCOPIED = object()


def _clone(o):
    """A copy of a module's output (tensors cloned; tuples, lists, dicts and transformers'
    ModelOutputs rebuilt), or _UNCOPIED for anything else, which is then never replayed."""
    if isinstance(o, torch.Tensor):
        return o.clone()
    if o is None or isinstance(o, (int, float, bool, str)):
        return o
    if isinstance(o, (tuple, list)):
        items = [_clone(x) for x in o]
        if any(x is _UNCOPIED for x in items):
            return _UNCOPIED
        return type(o)(items) if not hasattr(o, "_fields") else type(o)(*items)
    if isinstance(o, Mapping):
        items = {k: _clone(v) for k, v in o.items()}
        if any(v is _UNCOPIED for v in items.values()):
            return _UNCOPIED
        try:
            return type(o)(**items)
        except Exception:
            return _UNCOPIED
    return _UNCOPIED


def _same(a, b):
    """Equal inputs: tensors by value (shape, dtype, elements), containers item by item, the rest
    by ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
                and a.device == b.device and (a is b or torch.equal(a, b)))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a is b or a == b)
    except Exception:
        return False


class _Swap:
    """Puts ``new`` in place of every reference to the module ``old`` in ``model`` for the length
    of a with block."""

    def __init__(self, model, old, new):
        self.sites = [(m, k) for m in model.modules() for k, c in m._modules.items() if c is old]
        self.old, self.new = old, new

    def __enter__(self):
        for m, k in self.sites:
            m._modules[k] = self.new

    def __exit__(self, *exc):
        for m, k in self.sites:
            m._modules[k] = self.old


class SensitivityTable:
    """What ``sensitivity`` measured: for each layer (most sensitive first) and format, the
    bytes, the weight SQNR, the output SQNR (or your metric) and a score.

    Attributes:
        metric: "output_sqnr", "user" (``metric=fn``) or "weight_sqnr" (the CLI's).
        baseline: your metric on the float model (``metric=fn`` only).
        formats: [{"name", "rule"}]: the formats measured, as recipe rule options.
        layers: one dict per layer, ranked: name, type, params, bytes, index (model order),
            rank (1: most sensitive), sensitivity (its score in its smallest format) and
            results, one dict per format: format, bytes_after, bits_per_weight,
            weight_sqnr_db, output_sqnr_db, metric, score (larger is worse: 10^(-SQNR/10), or
            baseline - metric).
        other_bytes: the bytes of the tensors no table layer holds.

    ``to_dict()`` is the engine's JSON form (what ``recipe_for``, ``mq_recipe_for_json`` and
    ``monoquant recipe --table`` read); ``save(path)`` writes it. ``sensitivity()`` gives
    ``{layer: sensitivity}``, what ``monoquant.search(sensitivity=...)`` takes.
    """

    def __init__(self, d):
        self._d = d
        self.metric = d["metric"]
        self.baseline = d.get("baseline")
        self.formats = d["formats"]
        self.layers = d["layers"]
        self.other_bytes = d["other_bytes"]

    def to_dict(self):
        return self._d

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self._d, f, indent=1)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    def sensitivity(self, format=None):
        """``{layer: score}``, higher is more sensitive: the layer's sensitivity (its score in
        its smallest format), or its score in ``format``."""
        out = {}
        for l in self.layers:
            if format is None:
                out[l["name"]] = l["sensitivity"]
            else:
                r = [r for r in l["results"] if r["format"] == format]
                if not r:
                    raise ValueError(f"sensitivity(): no format {format!r} in the table ({[f['name'] for f in self.formats]})")
                out[l["name"]] = r[0]["score"]
        return out

    def __str__(self):
        key = {"output_sqnr": "output_sqnr_db", "weight_sqnr": "weight_sqnr_db", "user": "metric"}[self.metric]
        unit = " dB" if self.metric != "user" else ""
        names = [f["name"] for f in self.formats]
        rows = [("rank", "layer", "type", "params") + tuple(f"{n}{unit}" for n in names)]
        for l in self.layers:
            vals = []
            for r in l["results"]:
                v = r.get(key)
                vals.append("-" if v is None else (v if isinstance(v, str) else f"{v:.2f}" if self.metric != "user" else f"{v:.4g}"))
            rows.append((str(l["rank"]), l["name"], l["type"], f"{l['params']:,}") + tuple(vals))
        w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w[i]) if 0 < i < 3 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
        lines.insert(1, "  ".join("-" * x for x in w))
        what = {"output_sqnr": "output SQNR with only that layer quantized", "weight_sqnr": "weight SQNR",
                "user": f"your metric with only that layer quantized (float model: {self.baseline})"}[self.metric]
        lines.append(f"\n{what}; most sensitive first")
        return "\n".join(lines)

    def __repr__(self):
        return f"SensitivityTable({len(self.layers)} layers x {len(self.formats)} formats, metric {self.metric})"


class Recipe(dict):
    """A recipe (``{"rules": [...]}``, pass it as ``recipe=`` anywhere, or ``save`` it for
    ``monoquant quantize --recipe``) with what ``recipe_for`` chose: ``choices`` (per layer:
    layer, format, bytes_after, score), ``bytes`` (the whole checkpoint's tensors),
    ``bits_per_weight`` (over the table's layers), ``score`` (summed)."""

    def __init__(self, choice):
        super().__init__(choice["recipe"])
        self.choices = choice["layers"]
        self.bytes = choice["bytes"]
        self.bits_per_weight = choice["bits_per_weight"]
        self.score = choice["score"]

    def save(self, path):
        with open(path, "w") as f:
            json.dump(dict(self), f, indent=1)


def sensitivity(model, data=None, formats=None, metric=None, max_batches=None, progress=None, reuse=True, **options):
    """Quantizes one layer at a time and measures what it does to the model's output.

    For every layer the engine would quantize (``layers=``, ``skip=`` and the other options of
    ``quantize`` choose them) and every format, the layer alone is quantized by the engine and
    put in place of the float one, the model runs on ``data``, and the output SQNR against the
    float model's output (all floating outputs of every batch seen as one vector) goes into the
    table; or, with ``metric``, your own measure.

    Args:
        model: a float ``nn.Module`` (run in eval mode, under ``torch.no_grad``).
        data: the inputs, as for ``quantize``'s calibration_data: a list of tensors, tuples of
            positional arguments or dicts of keyword arguments, or any iterable (read once and
            kept). Needed unless ``metric`` is given.
        formats: the formats to try (default ``["int8", "int4"]``): names ("int8", "int4",
            "fp16", "bf16") or dicts of recipe rule options, with an optional "name"
            (``{"bits": 4, "group_size": 32, "method": "hqq", "name": "int4-hqq"}``).
        metric: ``metric(model) -> float``, higher is better (accuracy, minus a loss), called
            once on the float model and once per candidate with the layer swapped in; the score
            is then the drop from the float model's value.
        max_batches: use only the first batches of ``data``.
        progress: None (a bar on stderr when it is a terminal), True/False or a callable
            ``progress(done, total, name)``.
        reuse: replay the float run's outputs of the modules a candidate cannot change (the
            blocks before and beside the layer, whose inputs are unchanged: compared by value),
            instead of recomputing them; needs modules that are pure functions of their inputs
            in eval mode (as torch's and transformers' are). Costs one recorded output per such
            module and batch. ``reuse=False`` runs the whole model for every candidate.
        **options: the options of ``quantize`` that choose the layers and the base of each
            format (layers, skip, activations, scheme, group_size, ...).

    Returns:
        a SensitivityTable (print it for a ranked table).
    """
    from . import _model
    from .api import _check_options, _config, _describe, _positional_count

    if not isinstance(model, nn.Module):
        raise TypeError(f"sensitivity() takes an nn.Module, got {type(model).__name__}")
    _check_options("sensitivity", options)
    if metric is None and data is None:
        raise ValueError("sensitivity() needs data= (inputs for the model, to compare its outputs) or metric= (a function of the model, higher is better)")
    if metric is not None and not callable(metric):
        raise TypeError("sensitivity(): metric must be a callable metric(model) -> float")
    if data is not None:
        if isinstance(data, torch.Tensor):
            data = [data]
        batches = []
        for i, b in enumerate(data):
            if max_batches is not None and i >= max_batches:
                break
            batches.append(b)
        if not batches and metric is None:
            raise ValueError("sensitivity(): data yielded no batches")
    cfg = _config(runtime=True, log=False, **options)
    npos = _positional_count(model)
    mods = dict(model.named_modules(remove_duplicate=False))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _model.ModelHandle.new() as m:
            _describe(model, m)
            with _Session(m, cfg, formats) as s:
                cands = s.candidates()["candidates"]
                refs = memo = None
                if metric is not None:
                    s.set_metric(None, None, _check_metric(metric(model), "the float model"))
                else:
                    memo = _Memo(model, sorted({c["layer"] for c in cands})) if reuse else None
                    refs = []
                    for i, b in enumerate(batches):
                        if memo is None:
                            refs.append(_float_outputs(_run(model, b, npos)))
                        else:
                            memo.batch = i
                            refs.append(_float_outputs(memo.record(lambda: _run(model, b, npos))))
                    if not any(refs):
                        raise ValueError("sensitivity(): the model's output holds no floating-point tensor to compare; pass metric=")
                with Progress(progress, len(cands), label="sensitivity") as bar:
                    for i, c in enumerate(cands):
                        layer, fmt = c["layer"], c["format"]
                        with s.quantize(m, layer, fmt) as q:
                            qmod = _quantized_module(mods[layer], layer, q)
                        with _Swap(model, mods[layer], qmod):
                            if metric is not None:
                                s.set_metric(layer, fmt, _check_metric(metric(model), f"{layer} as {fmt}"))
                            else:
                                for bi, (b, ref) in enumerate(zip(batches, refs)):
                                    if memo is None:
                                        outs = _float_outputs(_run(model, b, npos))
                                    else:
                                        memo.batch = bi
                                        outs = _float_outputs(memo.replay(layer, lambda: _run(model, b, npos)))
                                    if len(outs) != len(ref):
                                        raise ValueError(f"sensitivity(): the model returned {len(outs)} float outputs with {layer} quantized, {len(ref)} without")
                                    for r, o in zip(ref, outs):
                                        s.add_output(layer, fmt, r, o)
                        bar.update(i + 1, len(cands), f"{layer} {fmt}")
                return SensitivityTable(s.table())
    finally:
        model.train(was_training)


def _check_metric(v, what):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"sensitivity(): metric returned {type(v).__name__} for {what}; it must return a number") from None
    return f


def recipe_for(model_or_table, data=None, max_bits_per_weight=None, max_size=None, **kwargs):
    """A mixed-precision recipe from a sensitivity table, under a size budget.

    Every layer of the table takes one of its formats. The engine's greedy (a multiple-choice
    knapsack; docs/methods.md) starts with every layer in its smallest format and then takes,
    while they fit the budget, the steps to bigger formats that remove the most score per byte
    (formats that cost more for less are never chosen).

    Args:
        model_or_table: a SensitivityTable (or its dict, or the path of a saved one), or a model,
            which is then measured first: ``sensitivity(model, data, **kwargs)``.
        data: the model's inputs, as for ``sensitivity``.
        max_bits_per_weight: the bound on 8 · stored bytes / weights over the table's layers
            (scales and zero points count: INT4 g128 asymmetric is 4.5, INT8 per-channel a bit
            over 8).
        max_size: the bound on the whole checkpoint's tensor bytes (the table's layers as
            chosen plus everything else as it is). Give exactly one of the two.
        **kwargs: the arguments of ``sensitivity`` (formats, metric, layers, skip, ...).

    Returns:
        a Recipe: a dict ``{"rules": [one rule per layer, then {"match": "*", "skip": True}]}``
        to pass as ``recipe=`` to ``quantize`` / ``quantize_file`` / ``plan`` (or ``save`` for
        the CLI's ``--recipe``), with ``.choices``, ``.bytes``, ``.bits_per_weight``, ``.score``.
        Use it with the same base options (``layers``, ``group_size``, ...) as the table.
    """
    from ._model import _json_call as jc

    if max_bits_per_weight is None and max_size is None:
        raise ValueError("recipe_for() needs a budget: max_bits_per_weight= or max_size=")
    if isinstance(model_or_table, nn.Module):
        table = sensitivity(model_or_table, data, **kwargs)
    else:
        if data is not None or kwargs:
            raise TypeError("recipe_for(table, ...) takes only a budget; data and sensitivity options go with a model")
        table = model_or_table
        if isinstance(table, (str, os.PathLike)):
            table = SensitivityTable.load(table)
    d = table.to_dict() if isinstance(table, SensitivityTable) else table
    if not isinstance(d, Mapping):
        raise TypeError(f"recipe_for() takes an nn.Module, a SensitivityTable, its dict or a path, got {type(model_or_table).__name__}")
    budget = {k: v for k, v in (("max_bits_per_weight", max_bits_per_weight), ("max_size", max_size)) if v is not None}
    choice = jc(lambda *a: _lib.mq_recipe_for_json(json.dumps(d).encode(), json.dumps(budget).encode(), *a), (), "recipe_for")
    return Recipe(choice)
