"""Conv-BN(-ReLU) folding on live modules (docs/folding.md).

The arithmetic is the engine's (core/fold: W' = W·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β, as
torch.ao.quantization.fuse_modules computes it): Python hands the pairs to the engine with the
other options, and the engine quantizes the folded weights. What needs the live module is here:

* finding the pairs: neighbours in an ``nn.Sequential`` (a Conv2d or Linear, then a BatchNorm2d
  or BatchNorm1d of its width, then optionally an ``nn.ReLU``), and, where ``torch.fx`` can trace
  the model, a norm whose only input is a layer used nowhere else;
* checking the pairs a recipe names: a norm that is not directly after its layer is refused,
  naming both modules;
* rebuilding the module tree afterwards: each norm becomes ``nn.Identity``, each folded ReLU
  too when the layer is a QuantizedConv2d (it then runs the ReLU inside its int8 convolution).
"""

import threading

import torch
import torch.nn as nn

__all__ = ["find_pairs", "pairs_option", "check_pairs", "apply"]

_NORM_OF = ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))


def _foldable(layer, norm):
    for lt, nt in _NORM_OF:
        if isinstance(layer, lt) and type(norm) is nt:
            width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
            return norm.num_features == width and norm.affine and norm.track_running_stats and norm.running_mean is not None
    return False


def _uses(model):
    """id(module) → number of names it is registered under (a shared module is not folded)."""
    n = {}
    for _name, mod in model.named_modules(remove_duplicate=False):
        n[id(mod)] = n.get(id(mod), 0) + 1
    return n


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _sequential_pairs(model, uses):
    out = []
    for prefix, mod in model.named_modules():
        if type(mod) is not nn.Sequential:  # a subclass may run its children in another order
            continue
        kids = [(k, m) for k, m in mod._modules.items() if m is not None]
        for i in range(len(kids) - 1):
            (a, ma), (b, mb) = kids[i], kids[i + 1]
            if not _foldable(ma, mb) or uses[id(ma)] > 1 or uses[id(mb)] > 1:
                continue
            relu = None
            if i + 2 < len(kids) and type(kids[i + 2][1]) is nn.ReLU and uses[id(kids[i + 2][1])] == 1:
                relu = _join(prefix, kids[i + 2][0])
            out.append((_join(prefix, a), _join(prefix, b), relu))
    return out


# torch.fx patches nn.Module.__call__ and __getattr__ class-wide while it traces, so two traces
# at once in one process (quantize() called from several threads) break each other: monoquant
# traces one model at a time.
TRACE_LOCK = threading.Lock()


def _trace(model):
    try:
        with TRACE_LOCK:
            return torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - models fx cannot trace are folded by nn.Sequential only
        return None


def _fx_edges(gm):
    """(calls per module target, [(producer target, norm target, relu target or None)]) of a
    traced graph: a call_module whose only argument is the output of another call_module that
    feeds nothing else."""
    calls = {}
    for nd in gm.graph.nodes:
        if nd.op == "call_module":
            calls[nd.target] = calls.get(nd.target, 0) + 1
    edges = []
    for nd in gm.graph.nodes:
        if nd.op != "call_module" or len(nd.args) != 1 or nd.kwargs:
            continue
        src = nd.args[0]
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        relu = None
        if len(nd.users) == 1:
            u = next(iter(nd.users))
            if u.op == "call_module" and len(u.args) == 1:
                relu = u.target
        edges.append((src.target, nd.target, relu))
    return calls, edges


def find_pairs(model):
    """The Conv-BN(-ReLU) triples of ``model`` found automatically: [(layer, norm, relu or
    None)], module names as in ``named_modules()``."""
    norms = tuple(n for _, n in _NORM_OF)
    if not any(isinstance(m, norms) for m in model.modules()):
        return []  # nothing to fold: no need to trace the model
    uses = _uses(model)
    found = {(l, n): r for l, n, r in _sequential_pairs(model, uses)}
    gm = _trace(model)
    if gm is not None:
        mods = dict(model.named_modules())
        calls, edges = _fx_edges(gm)
        for l, n, r in edges:
            lm, nm = mods.get(l), mods.get(n)
            if lm is None or nm is None or (l, n) in found or not _foldable(lm, nm):
                continue
            if calls.get(l) != 1 or calls.get(n) != 1 or uses[id(lm)] > 1 or uses[id(nm)] > 1:
                continue
            if r is not None and not (type(mods.get(r)) is nn.ReLU and calls.get(r) == 1 and uses[id(mods[r])] == 1):
                r = None
            found[(l, n)] = r
    taken, out = set(), []
    for (l, n), r in found.items():
        if l in taken or n in taken:
            continue
        if r in taken:
            r = None
        taken.update(x for x in (l, n, r) if x)
        out.append((l, n, r))
    return out


def pairs_option(model, triples):
    """The engine's "fold" option for (layer, norm, relu) triples, with each norm's own ε."""
    mods = dict(model.named_modules())
    out = []
    for l, n, r in triples:
        p = {"layer": l, "norm": n}
        if r:
            p["relu"] = r
        nm = mods.get(n)
        if isinstance(nm, nn.modules.batchnorm._BatchNorm):
            p["eps"] = float(nm.eps)
        out.append(p)
    return out


def _direct(model, layer, norm, gm_cache):
    """Whether ``norm`` runs directly on ``layer``'s output (and only there): neighbours in an
    nn.Sequential, or an edge of the fx graph. None when it cannot be told (fx cannot trace the
    model and they are not nn.Sequential neighbours)."""
    for lp, ln, _r in _sequential_pairs(model, _uses(model)):
        if (lp, ln) == (layer, norm):
            return True
    if "gm" not in gm_cache:
        gm_cache["gm"] = _trace(model)
    gm = gm_cache["gm"]
    if gm is None:
        return None
    _calls, edges = _fx_edges(gm)
    return any((l, n) == (layer, norm) for l, n, _ in edges)


def check_pairs(model, pairs):
    """Checks the pairs the engine will fold (its resolved recipe's "fold" list) against the
    live module: types and widths, the order, and ε. Raises ValueError naming both modules."""
    mods = dict(model.named_modules())
    cache = {}
    for p in pairs:
        layer, norm, relu = p["layer"], p["norm"], p.get("relu") or None
        lm, nm = mods.get(layer), mods.get(norm)
        if lm is None or nm is None:
            missing = layer if lm is None else norm
            raise ValueError(f"cannot fold {norm!r} into {layer!r}: the model has no module {missing!r}")
        if not _foldable(lm, nm):
            raise ValueError(f"cannot fold {norm!r} ({type(nm).__name__}) into {layer!r} ({type(lm).__name__}): folding takes a Conv2d "
                             f"followed by a BatchNorm2d, or a Linear followed by a BatchNorm1d, of the same width, with affine "
                             f"parameters and running statistics")
        if _direct(model, layer, norm, cache) is False:
            raise ValueError(f"cannot fold {norm!r} into {layer!r}: {norm!r} is not directly after {layer!r} "
                             f"(its input is not {layer!r}'s output alone)")
        eps = p.get("eps") or 1e-5
        if abs(eps - nm.eps) > 1e-12 * max(1.0, nm.eps):
            raise ValueError(f"cannot fold {norm!r} into {layer!r}: the recipe folds with eps {eps:g}, the module's eps is {nm.eps:g}; "
                             f"write the pair as {{\"layer\": {layer!r}, \"norm\": {norm!r}, \"eps\": {nm.eps!r}}}")
        if relu is not None:
            rm = mods.get(relu)
            if type(rm) is not nn.ReLU:
                raise ValueError(f"cannot fuse {relu!r} after {norm!r}: it is a {type(rm).__name__ if rm is not None else 'missing module'}, not nn.ReLU")
            if _direct_relu(model, norm, relu, cache) is False:
                raise ValueError(f"cannot fuse {relu!r} into {layer!r}: {relu!r} is not directly after {norm!r}")


def _direct_relu(model, norm, relu, cache):
    for prefix, mod in model.named_modules():
        if type(mod) is nn.Sequential:
            names = [_join(prefix, k) for k, m in mod._modules.items() if m is not None]
            if norm in names and relu in names:
                return names.index(relu) == names.index(norm) + 1
    if "gm" not in cache:
        cache["gm"] = _trace(model)
    gm = cache["gm"]
    if gm is None:
        return None
    for nd in gm.graph.nodes:
        if nd.op == "call_module" and nd.target == norm:
            return len(nd.users) == 1 and next(iter(nd.users)).op == "call_module" and next(iter(nd.users)).target == relu
    return False


def apply(model, pairs, tensors):
    """Rebuilds ``model`` (the quantized copy, or the model itself with ``inplace``) for folded
    pairs: a layer without a bias gets one (its folded values are in ``tensors`` and are loaded
    with the rest of the state dict), each norm becomes nn.Identity, and a ReLU after it does
    too when the layer is a QuantizedConv2d (which then runs it inside its convolution)."""
    from .nn import QuantizedConv2d, QuantizedLinear

    for p in pairs:
        layer, norm, relu = p["layer"], p["norm"], p.get("relu") or None
        lm = model.get_submodule(layer)
        bias = tensors.get(f"{layer}.bias")
        if bias is not None and getattr(lm, "bias", None) is None:
            if isinstance(lm, (QuantizedConv2d, QuantizedLinear)):
                lm._buffers["bias"] = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
            else:
                lm.bias = nn.Parameter(torch.zeros(bias.shape, dtype=lm.weight.dtype, device=lm.weight.device))
        if isinstance(lm, (QuantizedConv2d, QuantizedLinear)):
            lm.folded_norm = norm  # report() measures it against the folded float weight
        _set(model, norm, nn.Identity())
        if relu is not None and isinstance(lm, QuantizedConv2d):
            lm.relu, lm.folded_relu = True, relu  # dequantize() puts an nn.ReLU back there
            _set(model, relu, nn.Identity())


def _set(root, name, new):
    parent, _, last = name.rpartition(".")
    (root.get_submodule(parent) if parent else root)._modules[last] = new
