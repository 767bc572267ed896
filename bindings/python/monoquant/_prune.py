"""Structured pruning on the live module: the engine (core/prune, ``mq_prune_units``) decides
which hidden units between two coupled layers stay; this module finds coupled layers with
torch.fx and shrinks both layers (the first one's output rows and bias, the second one's input
columns), so the quantized model and its file really are smaller and record the new shapes."""

import ctypes

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _lib
from ._engine import CTensor, as_float_input
from ._lib import check

#: Modules and functions that act element by element: a unit's value flows through them alone,
#: so removing it from the first layer and the second together changes nothing else.
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Hardswish,
                        nn.Hardtanh, nn.Mish, nn.Dropout, nn.Identity)
_ELEMENTWISE_FUNCTIONS = {torch.relu, F.relu, F.gelu, F.silu, torch.tanh, torch.sigmoid, F.leaky_relu, F.elu,
                          F.dropout, F.relu6, F.hardswish, F.mish}


def _pair_ok(a, b):
    if isinstance(a, nn.Linear) and isinstance(b, nn.Linear):
        return a.out_features == b.in_features
    if isinstance(a, nn.Conv2d) and isinstance(b, nn.Conv2d):
        return a.groups == 1 and b.groups == 1 and a.out_channels == b.in_channels
    return False


def coupled_layers(model):
    """The pairs (first, second) of layer names whose hidden units can be removed together:
    the first layer's output reaches only the second layer, through element-wise activations
    (found by tracing the model with torch.fx). A model fx cannot trace has none (returns [])."""
    from ._fold import TRACE_LOCK

    try:
        with TRACE_LOCK:
            gm = torch.fx.symbolic_trace(model)
    except Exception:
        return []
    mods = dict(gm.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), (nn.Linear, nn.Conv2d)):
            continue
        cur = node
        while len(cur.users) == 1:
            (user,) = cur.users
            if user.op == "call_module" and isinstance(mods.get(user.target), _ELEMENTWISE_MODULES):
                cur = user
                continue
            if user.op == "call_function" and user.target in _ELEMENTWISE_FUNCTIONS and user.args and user.args[0] is cur:
                cur = user
                continue
            if user.op == "call_module" and _pair_ok(mods[node.target], mods.get(user.target)) and user.args and user.args[0] is cur:
                pairs.append((str(node.target), str(user.target)))
            break
    return pairs


def keep_units(first, second, fraction):
    """The engine's choice of the hidden units of first → second that stay (increasing indices)."""
    w1 = CTensor(as_float_input(first.weight.detach(), f"{first} weight"))
    w2 = CTensor(as_float_input(second.weight.detach(), f"{second} weight"))
    b1 = CTensor(as_float_input(first.bias.detach(), "bias")) if first.bias is not None else None
    hidden = first.weight.shape[0]
    keep = (ctypes.c_int64 * hidden)()
    n = ctypes.c_size_t()
    check(_lib.mq_prune_units(w1.ref, b1.ref if b1 else None, w2.ref, float(fraction), keep, hidden, ctypes.byref(n)), "prune_units")
    return list(keep[: n.value])


def _set(model, name, module):
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _shrunk(layer, keep, dim):
    idx = torch.tensor(keep, dtype=torch.long)
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            new = nn.Linear(layer.in_features if dim == 0 else len(keep), len(keep) if dim == 0 else layer.out_features,
                            bias=layer.bias is not None, device=layer.weight.device, dtype=layer.weight.dtype)
        else:
            new = nn.Conv2d(layer.in_channels if dim == 0 else len(keep), len(keep) if dim == 0 else layer.out_channels,
                            layer.kernel_size, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                            bias=layer.bias is not None, padding_mode=layer.padding_mode,
                            device=layer.weight.device, dtype=layer.weight.dtype)
        new.weight.copy_(layer.weight.index_select(dim, idx))
        if layer.bias is not None:
            new.bias.copy_(layer.bias.index_select(0, idx) if dim == 0 else layer.bias)
    new.train(layer.training)
    return new


def shrink_units(model, rules):
    """Applies the resolved recipe's ``prune_units`` rules to model (in place): for each, the
    engine picks the units of ``match`` → ``into`` that stay and both layers are rebuilt smaller.
    Returns {first layer: kept unit indices}. Errors name the rule's layers."""
    done = {}
    for rule in rules:
        frac = rule.get("prune_units")
        if not frac:
            continue
        a_name, b_name = rule["match"], rule["into"]
        try:
            a, b = model.get_submodule(a_name), model.get_submodule(b_name)
        except AttributeError as e:
            raise ValueError(f"prune_units: rule {a_name!r} into {b_name!r}: {e}") from None
        if not _pair_ok(a, b):
            raise ValueError(f"prune_units: {a_name!r} ({type(a).__name__}) into {b_name!r} ({type(b).__name__}) are not coupled "
                             "layers: want two Linear (the first's out_features = the second's in_features) or two Conv2d "
                             "(groups 1, out_channels = in_channels)")
        keep = keep_units(a, b, frac)
        _set(model, a_name, _shrunk(a, keep, 0))
        _set(model, b_name, _shrunk(b, keep, 1))
        done[a_name] = keep
    return done


__all__ = ["coupled_layers", "keep_units", "shrink_units", "shrink_to_file"]


def shrink_to_file(model, config, tensors):
    """Rebuilds a float skeleton's layers that a file's recipe shrank (``prune_units``) at the
    sizes the file stores, so ``load(path, model)`` fits them (the values come from the file)."""
    for rule in (config.get("recipe") or {}).get("rules", []):
        if not rule.get("prune_units"):
            continue
        a_name, b_name = rule["match"], rule["into"]
        w = a_name + ".weight"
        meta = (config.get("tensors") or {}).get(w)
        if meta is not None:
            k = meta["shape"][0]
        elif w in tensors:
            k = tensors[w].shape[0]
        else:
            raise ValueError(f"the file's recipe removes units of {a_name!r}, and it holds no {w!r}")
        a, b = model.get_submodule(a_name), model.get_submodule(b_name)
        if not _pair_ok(a, b):
            raise ValueError(f"the file's recipe removes units of {a_name!r} into {b_name!r}, which in this model are "
                             f"{type(a).__name__} and {type(b).__name__}, not a coupled pair")
        _set(model, a_name, _shrunk(a, list(range(k)), 0))
        _set(model, b_name, _shrunk(b, list(range(k)), 1))
