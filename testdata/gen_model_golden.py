"""Golden values for core/model, from real torch (run with .venv/bin/python; outputs committed).

    .venv/bin/python testdata/gen_model_golden.py

For each model it writes what core/model must reproduce:
* the layer type of every weight, from isinstance checks on the live nn.Module (the plan must
  find the same types from a bare state_dict and from a pickled module);
* per quantized weight, torch's own quantize → dequantize for INT8 per-channel symmetric
  (PerChannelMinMaxObserver(qint8, per_channel_symmetric) + torch.quantize_per_channel), INT4
  group-wise symmetric g32 (PerChannelMinMaxObserver over [-1, 32] with quant range -8..7, then
  the decomposed quantize formula in float32 torch ops) and FP16 (.to(float16)): SQNR by
  torch.ao.ns.fx.utils.compute_sqnr, the signal and noise energies in float64, and the stored
  byte counts;
* the overall SQNR 10*log10(sum signal / sum noise) and totals.

Models: the repo's examples (digits_cnn, tiny_transformer; read from examples/*.safetensors) and a
small recurrent model made here (Conv1d + LSTM + GRU + Embedding + Linear), saved as safetensors
and as a whole pickled module with a custom class.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torch.ao.ns.fx.utils import compute_sqnr
from torch.ao.quantization.observer import PerChannelMinMaxObserver

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "golden", "model")
sys.path.insert(0, os.path.join(ROOT, "examples"))
from example_models import DigitsCNN, TinyTransformerLM  # noqa: E402


class RecurrentMix(nn.Module):
    """A custom class, so the pickled module has a class monoquant cannot know."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(40, 24)
        self.tcn = nn.Conv1d(24, 24, 3, padding=1)
        self.lstm = nn.LSTM(24, 32, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(64, 16, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 40)


def layer_types(model):
    """tensor name -> layer type, from the modules' classes."""
    kinds = [(nn.Linear, "linear"), (nn.Conv1d, "conv1d"), (nn.Conv2d, "conv2d"), (nn.LSTM, "lstm"),
             (nn.GRU, "gru"), (nn.Embedding, "embedding"), (nn.LayerNorm, "norm"), (nn.BatchNorm2d, "norm")]
    out = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            t = "other"
            for cls, k in kinds:
                if isinstance(mod, cls):
                    t = k
                    break
            if isinstance(mod, nn.MultiheadAttention) and pname == "in_proj_weight":
                t = "linear"
            out[full] = t
    return out


def is_weight(name, kind):
    leaf = name.rsplit(".", 1)[-1]
    if kind in ("lstm", "gru"):
        return leaf.startswith("weight_")
    if kind == "linear":
        return leaf in ("weight", "in_proj_weight")
    return leaf == "weight"


def int8_channel(w):
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(w)
    s, z = obs.calculate_qparams()
    q = torch.quantize_per_channel(w, s, z, 0, torch.qint8)
    return q.dequantize(), w.numel() + 4 * s.numel()


def int4_group(w, gs):
    """The documented fallback (docs/FORMAT.md, core/model): when gs does not divide a row of
    K = prod(shape[1:]) values, the largest divisor of K in [16, gs]; if there is none, INT8
    per-channel."""
    rows = w.shape[0]
    flat = w.reshape(rows, -1)
    k = flat.shape[1]
    if k % gs:
        fb = [d for d in range(min(gs, k), 15, -1) if k % d == 0]
        if not fb:
            return int8_channel(w)
        gs = fb[0]
    g = flat.reshape(-1, gs)
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                   quant_min=-8, quant_max=7)
    obs(g)
    s, z = obs.calculate_qparams()
    s = s.to(torch.float32)
    inv = (1.0 / s)[:, None]
    q = torch.clamp(torch.round(g * inv) + z[:, None], -8, 7)
    d = ((q - z[:, None]) * s[:, None]).reshape(w.shape)
    return d, (w.numel() + 1) // 2 + 4 * s.numel()


def fp16(w):
    return w.to(torch.float16).to(torch.float32), 2 * w.numel()


def energies(w, d):
    w64, d64 = w.double(), d.double()
    return float((w64 * w64).sum()), float(((w64 - d64) ** 2).sum())


def golden(name, model, sd, selected, group):
    types = layer_types(model)
    doc = {"types": types, "schemes": {}}
    for scheme, fn in [("int8", int8_channel), ("int4", lambda w: int4_group(w, group)), ("fp16", fp16)]:
        tensors, sig_all, noise_all, before, after = {}, 0.0, 0.0, 0, 0
        for tname, w in sd.items():
            kind = types.get(tname, "other")
            if kind not in selected or not is_weight(tname, kind) or w.dim() < 2:
                continue
            d, nbytes = fn(w)
            sig, noise = energies(w, d)
            sqnr = float(compute_sqnr(w, d))
            tensors[tname] = {"sqnr": sqnr if math.isfinite(sqnr) else None, "signal": sig, "noise": noise,
                              "bytes_before": 4 * w.numel(), "bytes_after": nbytes, "layer_type": kind}
            sig_all += sig
            noise_all += noise
            before += 4 * w.numel()
            after += nbytes
        doc["schemes"][scheme] = {"tensors": tensors, "overall_sqnr": 10 * math.log10(sig_all / noise_all),
                                  "quantized_bytes_before": before, "quantized_bytes_after": after}
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    sel = ["linear", "conv1d", "conv2d", "lstm", "gru", "embedding"]

    cnn = DigitsCNN()
    sd = load_file(os.path.join(ROOT, "examples", "digits_cnn.safetensors"))
    cnn.load_state_dict(sd)
    # Rows of 9 (conv1: INT8 fallback) and 144 (conv2: group 24) exercise the fallback.
    golden("digits_cnn", cnn, sd, sel, 32)

    tr = TinyTransformerLM()
    sd = load_file(os.path.join(ROOT, "examples", "tiny_transformer.safetensors"))
    tr.load_state_dict(sd)
    golden("tiny_transformer", tr, sd, sel, 32)

    torch.manual_seed(0)
    mix = RecurrentMix()
    sd = {k: v.detach().contiguous() for k, v in mix.state_dict().items()}
    save_file(sd, os.path.join(OUT, "recurrent_mix.safetensors"))
    torch.save(mix, os.path.join(OUT, "recurrent_mix_module.pt"))
    golden("recurrent_mix", mix, sd, sel, 32)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
