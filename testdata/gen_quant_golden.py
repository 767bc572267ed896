#!/usr/bin/env python3
"""Golden vectors for core/quant, produced by real torch.

Run from the repository root with the project virtualenv:

    .venv/bin/python testdata/gen_quant_golden.py

It writes testdata/golden/quant/manifest.json (every case's spec and where its arrays live) and
testdata/golden/quant/data.bin.gz (all arrays, little-endian, gzip'd). The Go test
core/quant/golden_test.go reads both and demands bit-exact scales, identical zero points and
quantized integers, and identical dequantized values.

The torch recipes follow the project brief (docs: core/quant/doc.go):
  INT8 per-tensor   MinMaxObserver -> calculate_qparams -> torch.quantize_per_tensor
  INT8 per-channel  PerChannelMinMaxObserver(ch_axis) -> torch.quantize_per_channel
  INT4              observers on qint8 [-8, 7] / quint8 [0, 15] (a custom range, as torch has no
                    4-bit dtype), then the decomposed quantize op in float32 torch ops:
                    clamp(round(x * (1.0 / scale)) + zp, lo, hi); groups are [-1, group_size] rows
  FP16 / BF16       x.to(torch.float16 / torch.bfloat16)
  SQNR              torch.ao.ns.fx.utils.compute_sqnr(x, dequantized)
"""
import gzip
import json
import os

import numpy as np
import torch
from torch.ao.ns.fx.utils import compute_sqnr
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "quant")

blob = bytearray()


def put(arr):
    """Appends a numpy array's little-endian bytes to the blob and returns its location."""
    b = np.ascontiguousarray(arr).tobytes()
    off = len(blob)
    blob.extend(b)
    return {"offset": off, "nbytes": len(b)}


DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def raw_bytes(t):
    """A tensor's raw little-endian element bytes (bf16 has no numpy type, so go through int16)."""
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    return t.numpy()


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
g = torch.Generator().manual_seed(20261130)


def gaussian(*shape):
    return torch.randn(*shape, generator=g)


def uniform(*shape):
    return torch.rand(*shape, generator=g) * 6 - 2  # lopsided: [-2, 4)


def student_t(*shape, df=2.0):
    # t = z / sqrt(chi2/df); chi2 with df degrees = 2 * Gamma(df/2)
    z = torch.randn(*shape, generator=g)
    u = torch.rand(*shape, generator=g).clamp_min(1e-12)
    chi2 = -2.0 * torch.log(u)  # df = 2: chi2(2) is an exponential with mean 2
    return (z / torch.sqrt(chi2 / df)).float()


def outliers(*shape):
    x = gaussian(*shape) * 0.05
    flat = x.view(-1)
    idx = torch.randperm(flat.numel(), generator=g)[:4]
    flat[idx] = torch.tensor([80.0, -120.0, 300.5, -7.25])[: len(idx)]
    return x


def zero_channels(*shape):
    x = gaussian(*shape)
    x[1] = 0
    x[-1] = 0
    if x.dim() > 1:
        x[:, 2] = 0  # also an all-zero channel along axis 1
    return x


def ties(*shape):
    # Multiples of 1/64 in a small range: many values land exactly on .5 after scaling, which
    # exercises round-half-to-even.
    return (torch.randint(-256, 257, shape, generator=g).float() / 64.0)


tensors = {}


def add_tensor(name, t):
    assert t.dtype in DTYPE_NAMES, t.dtype
    tensors[name] = t
    return name


add_tensor("gauss_1x1", gaussian(1, 1))
add_tensor("neg_1x1", torch.tensor([[-0.37]]))
add_tensor("gauss_3x7", gaussian(3, 7))
add_tensor("uniform_3x7", uniform(3, 7))
add_tensor("const_pos_3x7", torch.full((3, 7), 0.731))
add_tensor("const_neg_3x7", torch.full((3, 7), -2.5))
add_tensor("zero_3x7", torch.zeros(3, 7))
add_tensor("ties_3x7", ties(3, 7))
add_tensor("tiny_3x7", gaussian(3, 7) * 1e-30)
add_tensor("huge_3x7", gaussian(3, 7) * 1e30)
add_tensor("gauss_64x256", gaussian(64, 256))
add_tensor("uniform_64x256", uniform(64, 256))
add_tensor("studentt_64x256", student_t(64, 256))
add_tensor("outliers_64x256", outliers(64, 256))
add_tensor("zerochan_64x256", zero_channels(64, 256))
add_tensor("ties_64x256", ties(64, 256))
add_tensor("gauss_4096x11", gaussian(4096, 11))
add_tensor("conv_16x8x3x3", gaussian(16, 8, 3, 3) * 0.2)
add_tensor("zerochan_conv_8x4x3x3", zero_channels(8, 4, 3, 3))
add_tensor("ties_8x48", ties(8, 48))
add_tensor("f16_64x256", (gaussian(64, 256) * 0.3).to(torch.float16))
add_tensor("bf16_64x256", student_t(64, 256).to(torch.bfloat16))
add_tensor("f64_64x256", gaussian(64, 256).double() * 0.7 + torch.rand(64, 256, generator=g).double() * 1e-9)
add_tensor("f64_3x7", gaussian(3, 7).double() / 3.0)

# Float-cast edges: f16 overflow (65520 rounds to inf, 65519 does not), f16 subnormals and
# underflow, bf16 overflow near FLT_MAX, ties at both precisions, signed zeros.
edge = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.0, 65520.0, -65520.0, 1e5, -3e38, 3.4e38,
        3.3895313892515355e38, 3.3961e38, 6.0e-8, 2.9e-8, 3.0e-8, 1e-10, 1e-40, -1e-45,
        1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,
        0.1, 0.2, 0.3, 1.0 / 3.0, 2.0 / 3.0, 1234.5678, -98765.4321, 7.0e-5, 6.1e-5,
        2.0 ** -14, 2.0 ** -24, 1.5 * 2.0 ** -24, 2.0 ** -25, 2.0 ** -133, 1e38, -1e38, 3.0e-39]
add_tensor("fedge_f32", torch.tensor(edge, dtype=torch.float32).reshape(4, 10))
# f64 values that straddle a tie after rounding to f32: the direct f64 -> f16 rounding and the
# two-step f64 -> f32 -> f16 rounding disagree on them.
edge64 = [1.0 + 2.0 ** -11 + 2.0 ** -40, 1.0 + 2.0 ** -11 - 2.0 ** -40, 1.0 + 2.0 ** -8 + 2.0 ** -40,
          1.0 + 2.0 ** -8 - 2.0 ** -40, 65519.999999, 65520.0000001, 0.1, -0.3, 1e-300, -1e-310]
add_tensor("fedge_f64", torch.tensor(edge64, dtype=torch.float64).reshape(2, 5))
add_tensor("fedge_f16", torch.tensor([65504.0, -65504.0, 6e-8, 1.0, 0.333], dtype=torch.float16))
add_tensor("gauss_f64_4d", gaussian(4, 3, 2, 5).double())


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------
QS = {
    ("per_tensor", "symmetric"): torch.per_tensor_symmetric,
    ("per_tensor", "asymmetric"): torch.per_tensor_affine,
    ("per_channel", "symmetric"): torch.per_channel_symmetric,
    ("per_channel", "asymmetric"): torch.per_channel_affine,
    ("per_group", "symmetric"): torch.per_channel_symmetric,
    ("per_group", "asymmetric"): torch.per_channel_affine,
}


def observer(gran, scheme, tdtype, reduce_range, qrange, eps, axis):
    kw = dict(dtype=tdtype, qscheme=QS[(gran, scheme)], reduce_range=reduce_range)
    if qrange is not None:
        kw["quant_min"], kw["quant_max"] = qrange
    if eps is not None:
        kw["eps"] = eps
    if gran == "per_tensor":
        return MinMaxObserver(**kw)
    return PerChannelMinMaxObserver(ch_axis=axis, **kw)


def int_case(x, fmt, scheme, gran, qdtype, axis=0, group_size=0, reduce_range=False, qrange=None, eps=None):
    """Returns (scale f32[np], zp i32[np], q int values in flat order, dequantized f32)."""
    xf = x.to(torch.float32)
    if fmt == "int8":
        tdtype = torch.qint8 if qdtype == "qint8" else torch.quint8
        obs = observer(gran, scheme, tdtype, reduce_range, qrange, eps, axis)
        obs(x)
        scale, zp = obs.calculate_qparams()
        if gran == "per_tensor":
            qt = torch.quantize_per_tensor(xf, float(scale), int(zp), tdtype)
        else:
            qt = torch.quantize_per_channel(xf, scale.double(), zp.long(), axis, tdtype)
        return scale.reshape(-1), zp.reshape(-1), qt.int_repr().reshape(-1).to(torch.int32), qt.dequantize()
    # int4: torch has no 4-bit dtype; the observer runs on qint8/quint8 with the 4-bit range
    if qdtype == "qint4":
        tdtype, lo, hi = torch.qint8, -8, 7
    else:
        tdtype, lo, hi = torch.quint8, 0, 15
    rng = qrange if qrange is not None else (lo, hi)
    if gran == "per_group":
        src = xf.reshape(-1, group_size)
        obs = observer(gran, scheme, tdtype, reduce_range, rng, eps, 0)
        obs(src)
        bshape = (-1, 1)
    elif gran == "per_channel":
        src = xf
        obs = observer(gran, scheme, tdtype, reduce_range, rng, eps, axis)
        obs(src)
        bshape = [1] * x.dim()
        bshape[axis] = -1
    else:
        src = xf
        obs = observer(gran, scheme, tdtype, reduce_range, rng, eps, 0)
        obs(src)
        bshape = [1] * max(x.dim(), 1)
    scale, zp = obs.calculate_qparams()
    s = scale.to(torch.float32).reshape(bshape)
    z = zp.reshape(bshape)
    q = torch.clamp(torch.round(src * (1.0 / s)) + z, lo, hi).to(torch.int32)
    deq = (q.to(torch.float32) - z) * s
    return scale.reshape(-1), zp.reshape(-1), q.reshape(-1), deq.reshape(x.shape)


def pack_int(fmt, qdtype, q):
    q = q.numpy().astype(np.int32)
    if fmt == "int8":
        return q.astype(np.int8 if qdtype == "qint8" else np.uint8)
    nib = (q & 0xF).astype(np.uint8)
    if len(nib) % 2:
        nib = np.concatenate([nib, np.zeros(1, np.uint8)])
    return nib[0::2] | (nib[1::2] << 4)  # even flat index in the low nibble


cases = []


def sqnr_json(v):
    """JSON has no inf/nan: those go as strings ("inf", "nan"), finite values as numbers."""
    v = float(v)
    return v if np.isfinite(v) else repr(v)


def add_int(tname, fmt, scheme, gran, qdtype, axis=0, group_size=0, reduce_range=False, qrange=None,
            eps=None, keep_deq=None):
    x = tensors[tname]
    scale, zp, q, deq = int_case(x, fmt, scheme, gran, qdtype, axis, group_size, reduce_range, qrange, eps)
    name = f"{tname}/{fmt}_{qdtype}_{scheme}_{gran}"
    if gran == "per_channel":
        name += f"_axis{axis}"
    if gran == "per_group":
        name += f"_g{group_size}"
    if reduce_range:
        name += "_rr"
    if qrange is not None:
        name += f"_q{qrange[0]}..{qrange[1]}"
    if eps is not None:
        name += f"_eps{eps:g}"
    assert torch.isfinite(scale).all() and (scale > 0).all(), name
    sq = compute_sqnr(x.to(torch.float32), deq.to(torch.float32))
    if keep_deq is None:
        keep_deq = x.numel() <= 4096
    c = {
        "name": name, "tensor": tname, "format": fmt, "scheme": scheme, "granularity": gran,
        "qdtype": qdtype, "axis": axis, "group_size": group_size, "reduce_range": reduce_range,
        "quant_range": list(qrange) if qrange is not None else None, "eps": eps,
        "scale": put(scale.to(torch.float32).numpy()),
        "zero_point": put(zp.to(torch.int32).numpy()),
        "q": put(pack_int(fmt, qdtype, q)),
        "sqnr": sqnr_json(sq),
    }
    if keep_deq:
        c["dequantized"] = put(deq.to(torch.float32).contiguous().numpy())
    cases.append(c)


def add_float(tname, fmt):
    x = tensors[tname]
    y = x.to(torch.float16 if fmt == "fp16" else torch.bfloat16)
    xf = x.to(torch.float32)
    overflow = int((torch.isinf(y) & torch.isfinite(x)).sum())
    c = {
        "name": f"{tname}/{fmt}", "tensor": tname, "format": fmt,
        "q": put(y.contiguous().view(torch.int16).numpy()),
        "overflow": overflow,
        "sqnr": sqnr_json(compute_sqnr(xf, y.to(torch.float32))) if overflow == 0 else None,
    }
    cases.append(c)


INT8 = [("qint8", "symmetric"), ("qint8", "asymmetric"), ("quint8", "symmetric"), ("quint8", "asymmetric")]
INT4 = [("qint4", "symmetric"), ("qint4", "asymmetric"), ("quint4", "symmetric"), ("quint4", "asymmetric")]

small = ["gauss_1x1", "neg_1x1", "gauss_3x7", "uniform_3x7", "const_pos_3x7", "const_neg_3x7", "zero_3x7",
         "ties_3x7", "tiny_3x7", "huge_3x7", "f64_3x7"]
for t in small:
    for qd, sc in INT8:
        add_int(t, "int8", sc, "per_tensor", qd)
        add_int(t, "int8", sc, "per_channel", qd, axis=0)
        add_int(t, "int8", sc, "per_channel", qd, axis=1)
    for qd, sc in INT4:
        add_int(t, "int4", sc, "per_tensor", qd)
        add_int(t, "int4", sc, "per_channel", qd, axis=-1)
        add_int(t, "int4", sc, "per_group", qd, group_size=tensors[t].shape[-1])
    # reduce_range and custom ranges (unsigned symmetric + reduce_range is refused by torch)
    for qd, sc in INT8:
        if not (qd == "quint8" and sc == "symmetric"):
            add_int(t, "int8", sc, "per_tensor", qd, reduce_range=True)
            add_int(t, "int8", sc, "per_channel", qd, axis=0, reduce_range=True)
    add_int(t, "int8", "symmetric", "per_tensor", "qint8", qrange=(-127, 127), eps=2.0 ** -12)
    add_int(t, "int8", "symmetric", "per_channel", "qint8", axis=1, qrange=(-127, 127), eps=2.0 ** -12)
    add_int(t, "int8", "asymmetric", "per_tensor", "quint8", qrange=(0, 127))
    add_int(t, "int8", "symmetric", "per_channel", "quint8", axis=0, qrange=(0, 100))
    add_int(t, "int8", "asymmetric", "per_channel", "qint8", axis=1, qrange=(-100, 27), reduce_range=True)
    add_int(t, "int4", "symmetric", "per_group", "qint4", group_size=tensors[t].shape[-1], qrange=(-7, 7))
    add_int(t, "int4", "asymmetric", "per_group", "qint4", group_size=tensors[t].shape[-1], reduce_range=True)
    add_int(t, "int4", "asymmetric", "per_tensor", "quint4", qrange=(0, 9), eps=1e-3)
    for f in ("fp16", "bf16"):
        add_float(t, f)

add_int("gauss_3x7", "int4", "asymmetric", "per_group", "qint4", group_size=1)

mid = ["gauss_64x256", "uniform_64x256", "studentt_64x256", "outliers_64x256", "zerochan_64x256",
       "ties_64x256", "f16_64x256", "bf16_64x256", "f64_64x256"]
for t in mid:
    full = t == "gauss_64x256"  # the full matrix of schemes on one tensor; the rest get a cross-section
    for qd, sc in INT8:
        if full or (qd, sc) in (("qint8", "symmetric"), ("quint8", "asymmetric")):
            add_int(t, "int8", sc, "per_tensor", qd, keep_deq=full and qd == "quint8")
            add_int(t, "int8", sc, "per_channel", qd, axis=1)
        if full or (qd, sc) in (("qint8", "symmetric"), ("quint8", "asymmetric"), ("qint8", "asymmetric")):
            add_int(t, "int8", sc, "per_channel", qd, axis=0, keep_deq=full and qd == "qint8" and sc == "symmetric")
    for qd, sc in INT4:
        add_int(t, "int4", sc, "per_group", qd, group_size=128,
                keep_deq=full and qd == "qint4" and sc == "asymmetric")
        for gs in (32, 64, 256):
            if full or (qd, sc, gs) == ("qint4", "symmetric", 32):
                add_int(t, "int4", sc, "per_group", qd, group_size=gs)
        if full:
            add_int(t, "int4", sc, "per_channel", qd, axis=0)
    if full:
        add_int(t, "int8", "asymmetric", "per_channel", "quint8", axis=0, reduce_range=True)
        add_int(t, "int8", "symmetric", "per_channel", "qint8", axis=0, qrange=(-127, 127), eps=2.0 ** -12)
        add_int(t, "int4", "symmetric", "per_tensor", "qint4")
    for f in ("fp16", "bf16"):
        if full or t.startswith(("f16", "bf16", "f64", "outliers")):
            add_float(t, f)

add_int("gauss_4096x11", "int8", "symmetric", "per_channel", "qint8", axis=0)
add_int("gauss_4096x11", "int8", "asymmetric", "per_channel", "quint8", axis=0)
add_int("gauss_4096x11", "int8", "asymmetric", "per_channel", "qint8", axis=1)
add_int("gauss_4096x11", "int4", "symmetric", "per_group", "qint4", group_size=11)
add_int("gauss_4096x11", "int4", "asymmetric", "per_group", "quint4", group_size=11)
add_int("gauss_4096x11", "int8", "asymmetric", "per_tensor", "quint8", keep_deq=True)

for t in ("conv_16x8x3x3", "zerochan_conv_8x4x3x3", "gauss_f64_4d"):
    for qd, sc in INT8:
        for ax in (0, 1, 3):
            add_int(t, "int8", sc, "per_channel", qd, axis=ax)
        add_int(t, "int8", sc, "per_tensor", qd)
    for qd, sc in INT4:
        add_int(t, "int4", sc, "per_group", qd, group_size=tensors[t].shape[-1])
        add_int(t, "int4", sc, "per_channel", qd, axis=1)
    for f in ("fp16", "bf16"):
        add_float(t, f)

for qd, sc in INT4:
    add_int("ties_8x48", "int4", sc, "per_group", qd, group_size=3)
    add_int("ties_8x48", "int4", sc, "per_group", qd, group_size=16)
for qd, sc in INT8:
    add_int("ties_8x48", "int8", sc, "per_channel", qd, axis=1)

for t in ("fedge_f32", "fedge_f64", "fedge_f16"):
    for f in ("fp16", "bf16"):
        add_float(t, f)

# ---------------------------------------------------------------------------------------------
os.makedirs(OUT, exist_ok=True)
manifest = {
    "generator": "testdata/gen_quant_golden.py",
    "torch_version": torch.__version__,
    "tensors": {},
    "cases": cases,
}
# Inputs go last in the blob so case offsets above stay valid.
for name, t in tensors.items():
    loc = put(raw_bytes(t))
    manifest["tensors"][name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), **loc}

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    # one case per line: small, and diffs of a regenerated file stay readable
    f.write("{\n")
    for k in ("generator", "torch_version", "tensors"):
        f.write(f" {json.dumps(k)}: {json.dumps(manifest[k], sort_keys=True)},\n")
    f.write(' "cases": [\n')
    f.write(",\n".join("  " + json.dumps(c, sort_keys=True) for c in cases))
    f.write("\n ]\n}\n")
with gzip.GzipFile(os.path.join(OUT, "data.bin.gz"), "wb", compresslevel=9, mtime=0) as f:
    f.write(bytes(blob))
print(f"{len(cases)} cases, {len(tensors)} tensors, {len(blob)} bytes raw -> {OUT}")
