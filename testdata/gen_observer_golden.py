#!/usr/bin/env python3
"""Golden vectors for core/observer: torch.ao.quantization observers run on fixed inputs.

Run from the repository root with the project virtualenv:

    .venv/bin/python testdata/gen_observer_golden.py

It writes testdata/golden/observer/<kind>.json.gz (one file per observer kind) and sum.json.gz
(torch.sum of float32 vectors, whose cascade order HistogramObserver depends on). Every float32 is
stored as its IEEE bit pattern (an integer) so nothing is lost to decimal printing; input tensors are
the raw little-endian bytes of the tensor, base64-encoded, in the dtype the Go side receives.

Each case records torch's min_val / max_val (and, for HistogramObserver, the histogram) after every
batch, and calculate_qparams() at the end. The Go tests replay the same batches and compare bit for
bit.

HistogramObserver.forward, unlike the MinMax observers, does not cast its input to float32: a float64
tensor would be histogrammed in float64. The engine's contract is torch's x.to(float32) for every
observer, so half/bfloat16/float64 batches are handed to torch's HistogramObserver as x.float().
"""
import base64
import gzip
import json
import math
import os
import sys
import warnings

import numpy as np
import torch
import torch.ao.quantization.observer as O

warnings.filterwarnings("ignore")
torch.manual_seed(20260601)
np.random.seed(20260601)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "observer")

DTYPES = {"quint8": torch.quint8, "qint8": torch.qint8, "qint32": torch.qint32}
TDT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def bits(t):
    """float32 tensor -> list of uint32 bit patterns."""
    t = t.detach().to(torch.float32).reshape(-1).contiguous()
    return [int(v) for v in t.numpy().view(np.uint32)]


def enc(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        raw = t.view(torch.int16).numpy().tobytes()
    else:
        raw = t.numpy().tobytes()
    return {"dtype": TDT[t.dtype], "shape": list(t.shape), "data": base64.b64encode(raw).decode()}


def make(kind, o):
    dt = DTYPES[o.get("dtype", "quint8")]
    sym = o.get("scheme", "affine") == "symmetric"
    kw = dict(dtype=dt, reduce_range=o.get("reduce_range", False))
    if "quant_range" in o:
        kw["quant_min"], kw["quant_max"] = o["quant_range"]
    if "eps" in o:
        kw["eps"] = o["eps"]
    if kind in ("minmax", "moving_average", "histogram"):
        kw["qscheme"] = torch.per_tensor_symmetric if sym else torch.per_tensor_affine
    else:
        kw["qscheme"] = torch.per_channel_symmetric if sym else torch.per_channel_affine
        kw["ch_axis"] = o.get("ch_axis", 0)
    if kind in ("moving_average", "per_channel_moving_average"):
        kw["averaging_constant"] = o.get("averaging_constant", 0.01)
    if kind == "histogram":
        kw["bins"] = o.get("bins", 2048)
    cls = {
        "minmax": O.MinMaxObserver,
        "moving_average": O.MovingAverageMinMaxObserver,
        "histogram": O.HistogramObserver,
        "per_channel_minmax": O.PerChannelMinMaxObserver,
        "per_channel_moving_average": O.MovingAveragePerChannelMinMaxObserver,
    }[kind]
    return cls(**kw)


INPUTS = {}


def register(batches):
    """Stores a batch sequence once per file; cases refer to it by key."""
    for k, v in INPUTS.items():
        if v[0] is batches:
            return k
    k = "in%d" % len(INPUTS)
    INPUTS[k] = (batches, [enc(x) for x in batches])
    return k


def run_case(kind, name, opts, batches):
    obs = make(kind, opts)
    after = []
    for x in batches:
        obs(x.float() if kind == "histogram" else x)
        rec = {"min": bits(obs.min_val), "max": bits(obs.max_val)}
        if kind == "histogram":
            rec["hist"] = base64.b64encode(obs.histogram.detach().numpy().astype(np.float32).tobytes()).decode()
        after.append(rec)
    scale, zp = obs.calculate_qparams()
    return {
        "name": name,
        "options": opts,
        "input": register(batches),
        "after": after,
        "scale": bits(scale),
        "zero_point": [int(v) for v in zp.reshape(-1).tolist()],
    }


# ---- inputs -------------------------------------------------------------------------------
def gauss(*s, scale=1.0, shift=0.0):
    return torch.randn(*s) * scale + shift


def uniform(*s, lo=-1.0, hi=1.0):
    return torch.rand(*s) * (hi - lo) + lo


def student(*s, df=2.0):
    return torch.distributions.StudentT(df).sample(s)


def outliers(*s):
    x = torch.randn(*s)
    flat = x.view(-1)
    idx = torch.randperm(flat.numel())[:3]
    flat[idx] = torch.tensor([250.0, -90.0, 1e4])[: len(idx)]
    return x


def zero_channels(*s, axis=0):
    x = torch.randn(*s)
    x.select(axis, 0).zero_()
    if x.shape[axis] > 2:
        x.select(axis, 2).zero_()
    return x


def seq_running():
    """Batches that stay inside the running range, and batches far outside it."""
    return [
        gauss(32, 16),
        gauss(32, 16, scale=0.5),          # inside
        gauss(32, 16, scale=3.0, shift=1),  # wider
        uniform(32, 16, lo=-0.2, hi=0.2),   # inside
        gauss(32, 16, scale=0.1, shift=40),  # far outside (right)
        gauss(16, 8, scale=2.0, shift=-25),  # far outside (left)
    ]


CONFIGS = []
for dt in ("quint8", "qint8"):
    for scheme in ("affine", "symmetric"):
        for rr in (False, True):
            if dt == "quint8" and scheme == "symmetric" and rr:
                continue  # torch refuses it; the Go test checks the error
            CONFIGS.append({"dtype": dt, "scheme": scheme, "reduce_range": rr})
CONFIGS += [
    {"dtype": "quint8", "quant_range": [0, 127]},
    {"dtype": "quint8", "quant_range": [0, 127], "scheme": "symmetric"},
    {"dtype": "qint8", "quant_range": [-127, 127], "scheme": "symmetric", "eps": 2.0 ** -12},
    {"dtype": "qint8", "quant_range": [-127, 127], "reduce_range": True},
    {"dtype": "quint8", "quant_range": [0, 15]},
    {"dtype": "quint8", "quant_range": [0, 15], "scheme": "symmetric"},
]


def cfg_name(c):
    s = c["dtype"] + "_" + c.get("scheme", "affine")
    if "quant_range" in c:
        s += "_q%d_%d" % tuple(c["quant_range"])
    if c.get("reduce_range"):
        s += "_rr"
    if "eps" in c:
        s += "_eps"
    return s


def per_tensor_cases(kind):
    cases = []
    for c in CONFIGS:
        cases.append(run_case(kind, "cfg/" + cfg_name(c), c, seq_running()))
    cases.append(run_case(kind, "cfg/qint32_affine", {"dtype": "qint32"}, seq_running()[:3]))
    cases.append(run_case(kind, "cfg/qint32_symmetric", {"dtype": "qint32", "scheme": "symmetric"}, seq_running()[:3]))
    cases.append(run_case(kind, "cfg/qint32_negative_only", {"dtype": "qint32"}, [uniform(8, 8, lo=-6, hi=-0.5)]))
    cases.append(run_case(kind, "cfg/qint32_positive_only", {"dtype": "qint32"}, [uniform(8, 8, lo=0.5, hi=6)]))
    d = {}
    inputs = {
        "gaussian": [gauss(64, 64) for _ in range(3)],
        "uniform": [uniform(64, 32, lo=-3, hi=5) for _ in range(3)],
        "student_t": [student(64, 64) for _ in range(4)],
        "outliers": [outliers(64, 32), gauss(64, 32)],
        "all_zero": [torch.zeros(8, 8), torch.zeros(3)],
        "constant_pos": [torch.full((5, 5), 3.25), torch.full((7,), 3.25)],
        "constant_neg": [torch.full((5, 5), -0.7)],
        "constant_then_wider": [torch.full((5, 5), 1.5), gauss(8, 8)],
        "tiny": [gauss(32, 32, scale=1e-30) for _ in range(2)],
        "huge": [gauss(32, 32, scale=1e30) for _ in range(2)],
        "shape_1x1": [torch.tensor([[0.37]]), torch.tensor([[-1.5]])],
        "shape_3x7": [gauss(3, 7), gauss(3, 7)],
        "shape_4096x11": [gauss(4096, 11)],
        "conv4d": [gauss(4, 3, 5, 5), gauss(4, 3, 5, 5, scale=2)],
        "long_sequence": [gauss(16, 16, scale=1 + i / 4, shift=(i % 3) - 1) for i in range(20)],
        "positive_only": [uniform(32, 8, lo=0.5, hi=6) for _ in range(3)],
        "negative_only": [uniform(32, 8, lo=-6, hi=-0.5) for _ in range(3)],
        "f16": [gauss(32, 16).half(), gauss(32, 16, scale=4).half()],
        "bf16": [gauss(32, 16).bfloat16(), gauss(32, 16, scale=4).bfloat16()],
        "f64": [torch.randn(32, 16, dtype=torch.float64) * 1.7, torch.randn(32, 16, dtype=torch.float64)],
    }
    if kind == "histogram":
        inputs["constant_huge"] = [torch.full((4, 4), 1e30), torch.full((3,), 1e30)]
        inputs["constant_tiny"] = [torch.full((4, 4), -1e-30), torch.full((3,), -1e-30)]
        inputs["constant_zero_then_data"] = [torch.zeros(6), gauss(8, 8), torch.zeros(5)]
        # more than one worker's share (2^15 values): the parallel histc and its merge
        inputs["large_batches"] = [gauss(40000, scale=2.0), student(40000), uniform(40000, lo=-30, hi=-20)]
        inputs["with_inf"] = [gauss(32, 16), torch.tensor([1.0, float("inf"), -2.0, float("-inf"), 7.5]), gauss(32, 16)]
        inputs["all_inf_batch"] = [gauss(16, 16), torch.tensor([float("inf"), float("-inf")])]
    for name, bs in inputs.items():
        if bs is None:
            continue
        d[name] = bs
    for name, bs in d.items():
        cases.append(run_case(kind, "input/" + name, {}, bs))
        if kind != "moving_average":
            cases.append(run_case(kind, "input_sym/" + name, {"dtype": "qint8", "scheme": "symmetric"}, bs))
    if kind == "moving_average":
        for c in (0.5, 1.0, 0.3):
            cases.append(run_case(kind, "avg_%g" % c, {"averaging_constant": c}, seq_running()))
    if kind == "histogram":
        for b in (100, 7, 9, 256):
            cases.append(run_case(kind, "bins_%d" % b, {"bins": b}, seq_running()))
    return cases


def per_channel_cases(kind):
    cases = []
    for c in CONFIGS:
        c = dict(c)
        cases.append(run_case(kind, "cfg/" + cfg_name(c), c, [gauss(6, 20), gauss(6, 20, scale=3), gauss(6, 20, scale=0.2)]))
    cases.append(run_case(kind, "cfg/qint32_affine", {"dtype": "qint32"}, [gauss(4, 10), gauss(4, 10)]))
    cases.append(run_case(kind, "cfg/qint32_negative_only", {"dtype": "qint32"}, [uniform(4, 10, lo=-6, hi=-0.5)]))
    inputs = {
        "axis0_2d": (0, [gauss(8, 33), gauss(8, 33, scale=2, shift=1)]),
        "axis1_2d": (1, [gauss(33, 8), gauss(33, 8, scale=2, shift=1)]),
        "axis_neg1_3d": (-1, [gauss(4, 5, 6), gauss(4, 5, 6, scale=0.3)]),
        "conv4d_axis0": (0, [gauss(8, 3, 5, 5), student(8, 3, 5, 5)]),
        "conv4d_axis1": (1, [gauss(2, 6, 4, 4), gauss(2, 6, 4, 4, scale=5)]),
        "conv4d_axis_neg1": (-1, [gauss(2, 3, 4, 5), gauss(2, 3, 4, 5)]),
        "conv4d_axis2": (2, [gauss(2, 3, 4, 5), gauss(2, 3, 4, 5)]),
        "zero_channels": (0, [zero_channels(5, 12), zero_channels(5, 12)]),
        "constant": (0, [torch.full((3, 4), 2.5), torch.full((3, 4), 2.5)]),
        "shape_1x1": (0, [torch.tensor([[0.37]]), torch.tensor([[-1.5]])]),
        "shape_3x7": (1, [gauss(3, 7), gauss(3, 7)]),
        "shape_4096x11": (1, [gauss(4096, 11)]),
        "tiny": (0, [gauss(4, 16, scale=1e-30)]),
        "huge": (0, [gauss(4, 16, scale=1e30)]),
        "outliers": (1, [outliers(16, 6), gauss(16, 6)]),
        "long_sequence": (0, [gauss(3, 10, scale=1 + i / 3) for i in range(12)]),
        "f16": (0, [gauss(4, 16).half(), gauss(4, 16).half()]),
        "bf16": (1, [gauss(16, 4).bfloat16(), gauss(16, 4).bfloat16()]),
        "f64": (0, [torch.randn(4, 16, dtype=torch.float64)]),
    }
    for name, (axis, bs) in inputs.items():
        cases.append(run_case(kind, "input/" + name, {"ch_axis": axis}, bs))
        cases.append(run_case(kind, "input_sym/" + name, {"ch_axis": axis, "dtype": "qint8", "scheme": "symmetric"}, bs))
    if kind == "per_channel_moving_average":
        for c in (0.5, 1.0):
            cases.append(run_case(kind, "avg_%g" % c, {"averaging_constant": c}, [gauss(4, 10) for _ in range(5)]))
    return cases


def sum_cases():
    out = []
    for n in list(range(1, 40)) + [63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 2047, 2048, 2049, 4096, 8191]:
        v = (torch.randn(n) * torch.rand(n) ** 6 * 1e3).float()
        out.append({"data": bits(v), "sum": bits(v.sum())})
    return out


def write(name, obj):
    path = os.path.join(OUT, name + ".json.gz")
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(json.dumps(obj, separators=(",", ":")).encode())
    print(path, os.path.getsize(path), "bytes", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    write("sum", {"meta": meta, "cases": sum_cases()})
    for kind in ("minmax", "moving_average", "per_channel_minmax", "per_channel_moving_average", "histogram"):
        INPUTS.clear()
        cases = per_channel_cases(kind) if kind.startswith("per_channel") else per_tensor_cases(kind)
        inputs = {k: v[1] for k, v in INPUTS.items()}
        write(kind, {"meta": meta, "kind": kind, "inputs": inputs, "cases": cases})


if __name__ == "__main__":
    main()
