"""torch's own CPU kernels for quantized Linear layers, in one place.

Every use of torch's quantized-tensor API (``torch._make_per_channel_quantized_tensor``,
``qint8`` tensors, ``torch.ops.quantized.*``) lives in this module: torch 2.15 prints
deprecation warnings for it, and when torch drops it only this file changes. Everything else
in monoquant sees plain tensors and the names of the kernels below.

Kernels (``KERNELS``), one per layer, chosen by :func:`choose` from the layer's activation
mode, weight format and shape (the table is docs/kernels.md, with the measurements behind it):

``fbgemm_dynamic``
    INT8 weights (qint8, per channel or per tensor, any zero point), ``activation="dynamic"``:
    ``quantized::linear_prepack`` once, then ``quantized::linear_dynamic`` per call. The input
    is quantized per batch to quint8 with ``reduce_range=True``, exactly as
    ``torch.ao.quantization.quantize_dynamic``'s Linear does on x86 (fbgemm's AVX2/AVX-512
    u8×s8 pairwise products are summed in int16, which 7-bit activations keep from
    saturating); qnnpack ignores the flag.
``intmm_dynamic``
    INT8 weights (qint8, any granularity or zero point), ``activation="dynamic"``, when the
    weight is also a tied embedding's table (GPT-2's wte and lm_head): ``torch._int_mm`` on the
    stored int8 matrix as it is, so the embedding looks its rows up in the same tensor and the
    table is held once (fbgemm's packed layout can only be unpacked whole). The input is
    quantized per batch exactly as ``fbgemm_dynamic`` does it (``torch._choose_qparams_per_tensor``
    with reduce_range, then ``torch.quantize_per_tensor``, both fbgemm's own rule and rounding);
    the int8 × int8 products are summed in int32 and rescaled in float32, so the output equals
    fbgemm's up to float rounding.
``fbgemm_static``
    INT8 weights, ``activation="static"``: the same packed weight, and
    ``quantized::linear_with_input_q_dq_qweight_dq_output_fp32`` with the calibrated input
    scale and zero point: quantize → int8 GEMM → float32 output, so no stubs are needed.
    Only where fbgemm sums full-range quint8 inputs exactly (CPUs with VNNI); ``dequant``
    elsewhere (see :func:`_fbgemm_static_exact`).
``intmm_static``
    INT8 weights (qint8, any granularity or zero point), ``activation="static"``, when the
    weight is also a tied embedding's table: what ``fbgemm_static`` computes, on the stored
    int8 matrix shared with the embedding. The input is quantized to quint8 with the calibrated
    scale and zero point (``torch.quantize_per_tensor``, fbgemm's own rounding), shifted by 128
    into int8 for ``torch._int_mm``; the shift and the zero points are taken off the int32 sums
    exactly (with the table's row sums, [N] int32, computed once), and the result is rescaled
    in float32 by input scale × weight scale as fbgemm's float output pass does (no output
    requantization: the fbgemm op returns float32 too).
``int8pack``
    INT8 symmetric per-channel weights (no zero points), ``activation="none"``:
    ``torch._weight_int8pack_mm`` on bfloat16 activations (the stored int8 matrix is the
    kernel's operand as it is; only the scales get a bfloat16 copy).
``int4pack``
    INT4 group-wise weights (group 32/64/128/256 dividing the row, out_features a multiple of
    16), ``activation="none"`` or ``"dynamic"``: ``torch._convert_weight_to_int4pack_for_cpu``
    once, then ``torch._weight_int4pack_mm_for_cpu`` on bfloat16 activations. The packed
    layout depends on the CPU (AVX-512, AVX2, scalar) and is never saved: the stored nibbles
    are recovered from it by :func:`unpack_int4`.
``dequant``
    Anything else (other devices, unsupported shapes or schemes, a torch without the ops):
    the weight is dequantized with plain torch ops inside the call — never cached — and
    ``F.linear`` runs in the input's dtype. This is also the non-deprecated fallback.

No kernel keeps a float copy of the weight: the packed form (or the stored integers) is the
only resident copy, and the float weight is built on demand when someone asks for it.
"""

import functools
import warnings

import torch

__all__ = ["KERNELS", "available", "choose", "choose_conv2d", "choose_lstm", "intmm_dynamic", "intmm_static", "PackedInt8", "PackedConv2d", "PackedLSTM", "pack_int4", "pack_stored_int4", "unpack_int4", "nibbles_to_uint", "uint_to_nibbles"]

KERNELS = ("fbgemm_dynamic", "intmm_dynamic", "fbgemm_static", "intmm_static", "int8pack", "int4pack", "dequant")

INT4_GROUPS = (32, 64, 128, 256)

# Set to False to force the plain-torch path everywhere (tests use it to check the fallback).
ENABLED = True


class _quiet(warnings.catch_warnings):
    """Silences torch's deprecation warning for quantized-tensor creation, here only."""

    def __enter__(self):
        r = super().__enter__()
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.*")
        return r


@functools.lru_cache(maxsize=None)
def _probe(name):
    """Whether one kernel family works in this torch on this CPU (tried once on a tiny case)."""
    try:
        if name == "fbgemm":
            if torch.backends.quantized.engine not in ("fbgemm", "x86"):
                return False
            with _quiet():
                w = torch._make_per_channel_quantized_tensor(torch.ones(16, 32, dtype=torch.int8), torch.ones(16, dtype=torch.float64), torch.zeros(16, dtype=torch.int64), 0)
                p = torch.ops.quantized.linear_prepack(w, None)
                torch.ops.quantized.linear_dynamic(torch.ones(1, 32), p, True)
                torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(torch.ones(1, 32), 0.1, 0, p)
            return True
        if name == "fbgemm_static":
            return _probe("fbgemm") and _fbgemm_static_exact()
        if name == "int8pack":
            torch._weight_int8pack_mm(torch.ones(1, 32, dtype=torch.bfloat16), torch.ones(16, 32, dtype=torch.int8), torch.ones(16, dtype=torch.bfloat16))
            return True
        if name == "intmm":
            torch._choose_qparams_per_tensor(torch.ones(1, 32), True)
            return _intmm_exact()
        if name == "int4pack":
            p = torch._convert_weight_to_int4pack_for_cpu(torch.zeros(16, 64, dtype=torch.int32), 1)
            torch._weight_int4pack_mm_for_cpu(torch.ones(1, 64, dtype=torch.bfloat16), p, 32, torch.zeros(2, 16, 2, dtype=torch.bfloat16))
            return True
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    raise ValueError(name)


def _fbgemm_static_exact():
    """Whether fbgemm's static Linear sums full-range quint8 × qint8 exactly on this CPU. Without
    VNNI (AVX2, AVX-512 before VNNI) fbgemm adds each pair of u8 × s8 products in int16
    (``vpmaddubsw``), which saturates for inputs near 255 against weights near ±127 (torch.ao's
    x86 configs use 7-bit activations for that; the dynamic kernel's reduce_range does the same,
    and stays exact). A static layer's calibrated qparams use all 8 bits, so it then runs
    ``dequant``."""
    with _quiet():
        for v in (127, -128):
            w = torch._make_per_channel_quantized_tensor(torch.full((16, 64), v, dtype=torch.int8), torch.ones(16, dtype=torch.float64), torch.zeros(16, dtype=torch.int64), 0)
            p = torch.ops.quantized.linear_prepack(w, None)
            y = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(torch.full((2, 64), 255.0), 1.0, 0, p)
            if not torch.equal(y, torch.full((2, 16), 255.0 * v * 64)):
                return False
    return True


def _intmm_exact():
    """Whether ``torch._int_mm`` sums int8 × int8 exactly in int32 on this CPU. oneDNN, which
    runs it, adds each pair of u8 × s8 products in int16 (``vpmaddubsw``) on CPUs without VNNI
    (AVX2, AVX-512 before VNNI): rows of ±127/−128 saturate there, and the kernel is not used."""
    a = torch.tensor([[127] * 64, [-128] * 64, [127, -128] * 32, [-128, 127] * 32], dtype=torch.int8)
    b = torch.tensor([[127] * 16, [-128] * 16] * 32, dtype=torch.int8)
    return all(torch.equal(torch._int_mm(a, w).to(torch.float64), a.to(torch.float64) @ w.to(torch.float64))
               for w in (b, torch.full((64, 16), 127, dtype=torch.int8), torch.full((64, 16), -128, dtype=torch.int8)))


def available():
    """The kernel families usable here: {"fbgemm": bool, "int8pack": bool, "int4pack": bool}."""
    return {k: ENABLED and _probe(k) for k in ("fbgemm", "int8pack", "int4pack")}


def choose(spec, activation, out_features, in_features, device, tied_table=False):
    """The kernel for one Linear layer, and why (a short phrase for the docs and repr).

    Args:
        spec: the weight's QuantSpec; activation: "none", "dynamic" or "static";
        out_features, in_features: the weight shape; device: where the weight lives;
        tied_table: the weight is also a tied embedding's table (dynamic/static INT8 then runs
            ``intmm_dynamic``/``intmm_static`` on the stored integers, so the table is held once).
    """
    if not ENABLED:
        return "dequant", "torch kernels disabled"
    if torch.device(device).type != "cpu":
        return "dequant", f"no quantized kernel on {torch.device(device).type}"
    if spec.format == "int8":
        if spec.qdtype != "qint8":
            return "dequant", "quint8 weights (fbgemm takes qint8)"
        if activation in ("dynamic", "static") and tied_table and _probe("intmm"):
            return "intmm_" + activation, ""
        if activation == "static" and _probe("fbgemm") and not _probe("fbgemm_static"):
            return "dequant", "fbgemm's static int8 sums saturate on this CPU (no VNNI)"
        if activation in ("dynamic", "static"):
            return ("fbgemm_" + activation, "") if _probe("fbgemm") else ("dequant", "fbgemm unavailable")
        if spec.granularity == "per_channel" and spec.scheme == "symmetric" and _probe("int8pack"):
            return "int8pack", ""
        return "dequant", "asymmetric or per-tensor INT8 weight-only"
    if spec.format == "int4":
        if spec.granularity != "per_group":
            return "dequant", "INT4 not group-wise"
        if spec.group_size not in INT4_GROUPS or in_features % spec.group_size:
            return "dequant", f"group size {spec.group_size} on rows of {in_features}"
        if out_features % 16:
            return "dequant", f"out_features {out_features} not a multiple of 16"
        return ("int4pack", "") if _probe("int4pack") else ("dequant", "int4pack unavailable")
    return "dequant", f"{spec.format} weights"


# ------------------------------------------------------------------------------------------------
# fbgemm: INT8 weights packed once; the packed object is the only copy of the integers.

class PackedInt8:
    """An fbgemm-packed INT8 weight [N, K] with per-channel or per-tensor scales/zero points,
    and the float32 bias fbgemm adds in its output pass (None for none).

    ``unpack()`` gives the stored integers back exactly (int8 [N, K]).
    """

    __slots__ = ("packed", "per_channel")

    def __init__(self, data, scale, zero_point, per_channel, bias=None):
        with _quiet():
            if per_channel:
                qw = torch._make_per_channel_quantized_tensor(data.contiguous(), scale.reshape(-1).double(), zero_point.reshape(-1).long(), 0)
            else:
                qw = torch._make_per_tensor_quantized_tensor(data.contiguous(), float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0]))
            self.packed = torch.ops.quantized.linear_prepack(qw, bias)
        self.per_channel = per_channel

    def unpack(self):
        with _quiet():
            qw, _ = torch.ops.quantized.linear_unpack(self.packed)
            return qw.int_repr()

    def dynamic(self, x):
        """x (float32, [..., K]) @ W.t(), activations quantized per batch (reduce_range=True)."""
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)

    def columns(self, cols, k, bias=None):
        """W[:, cols] as float32 [N, len(cols)], read through the kernel itself (the packed form
        is the only copy of the integers): one-hot rows quantize exactly (1.0 → 127 with scale
        1/127 under reduce_range), so ``linear_dynamic`` of row e_j is W[:, j] (+ the packed
        bias, taken off again)."""
        e = torch.zeros(cols.numel(), k)
        e[torch.arange(cols.numel()), cols] = 1.0
        y = torch.ops.quantized.linear_dynamic(e, self.packed, True)
        if bias is not None:
            y = y - bias.to(torch.float32)
        return y.t()

    def static(self, x, scale, zero_point):
        """x quantized with the calibrated (scale, zero_point), int8 GEMM, float32 out."""
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(x, float(scale), int(zero_point), self.packed)


def intmm_dynamic(x, q, scale, zero_point):
    """x (float32, [M, K]) @ ((q − zero_point)·scale).t() with x quantized per batch as
    ``quantized::linear_dynamic(x, w, reduce_range=True)`` quantizes it: fbgemm's qparams rule
    (``torch._choose_qparams_per_tensor``; qnnpack drops reduce_range there as it does in the
    op) and rounding (``torch.quantize_per_tensor``). q is the stored int8 [N, K] matrix, read
    in place (no copy is kept); scale/zero_point are per channel [N] or per tensor. The
    products are summed exactly in int32 (``torch._int_mm``), then rescaled in float32."""
    if x.shape[0] == 0:
        return x.new_zeros(0, q.shape[0])
    xs, xz = torch._choose_qparams_per_tensor(x, True)
    # 7-bit quint8 (0..127) minus a zero point in 0..127: the int8 range, exactly
    xi = (quantize_u8(x, xs, xz).to(torch.int16) - xz).to(torch.int8)
    acc = torch._int_mm(xi, q.t())
    s = scale.reshape(-1).to(torch.float32) * xs
    if bool((zero_point != 0).any()):
        acc = acc - zero_point.reshape(-1).to(torch.int32) * xi.sum(dim=1, dtype=torch.int32, keepdim=True)
    return acc.to(torch.float32).mul_(s)


def intmm_static(x, q, scale, zero_point, x_scale, x_zero_point, row_sums):
    """x (float32, [M, K]) @ ((q − zero_point)·scale).t() with x quantized with the calibrated
    (x_scale, x_zero_point) as ``quantized::linear_with_input_q_dq_qweight_dq_output_fp32``
    quantizes it (quint8, 0..255, fbgemm's rounding through ``torch.quantize_per_tensor``), and
    the float32 output it returns: Σ_k (x_q − x_zp)(q − w_zp) summed exactly in int32, times
    x_scale·scale in float32. q is the stored int8 [N, K] matrix, read in place; row_sums is
    ``q.sum(1)`` in int32 ([N], see :func:`row_sums`). x_q − 128 is the int8 operand of
    ``torch._int_mm``, so Σ(x_q − x_zp)(q − w_zp) = acc + d·Σq − w_zp·(Σ(x_q − 128) + d·K)
    with d = 128 − x_zp."""
    n, k = q.shape
    if x.shape[0] == 0:
        return x.new_zeros(0, n)
    xz = int(x_zero_point)
    xi = quantize_u8(x, float(x_scale), xz).view(torch.int8).bitwise_xor_(-128)  # x_q − 128
    acc = torch._int_mm(xi, q.t())
    d = 128 - xz
    if d:
        acc += d * row_sums.reshape(1, n)
    if bool((zero_point != 0).any()):
        acc -= zero_point.reshape(-1).to(torch.int32) * (xi.sum(dim=1, dtype=torch.int32, keepdim=True) + d * k)
    s = scale.reshape(-1).to(torch.float32) * torch.tensor(float(x_scale), dtype=torch.float32)
    return acc.to(torch.float32).mul_(s)


def row_sums(q):
    """Σ_k q[n, k] of a stored int8 [N, K] matrix, int32 [N] (intmm_static's zero-point term),
    as ``torch._int_mm`` against a block of ones: ``q.sum(1, dtype=int32)`` widens the whole
    matrix to int32 first (4× the table, 98 MB at once for a 32000×768 head while loading)."""
    return torch._int_mm(q, q.new_ones(q.shape[1], 8))[:, 0].contiguous()


# ------------------------------------------------------------------------------------------------
# INT4: stored nibbles (docs/FORMAT.md) <-> torch's CPU int4pack layout.

def nibbles_to_uint(data, n, k, signed):
    """Stored INT4 bytes (row-major nibbles, even index in the low nibble) → int32 [n, k] in
    0..15 as the int4pack kernel reads them: a qint4 value v is v + 8 (the sign bit flipped)."""
    d = data.reshape(-1)
    u = torch.stack((d & 15, d >> 4), dim=-1).reshape(-1)[: n * k].reshape(n, k).to(torch.int32)
    return u.bitwise_xor_(8) if signed else u


def uint_to_nibbles(u, signed, shape):
    """The inverse of nibbles_to_uint: int [n, k] in 0..15 → stored bytes shaped `shape`."""
    u = (u ^ 8 if signed else u).to(torch.uint8).reshape(-1)
    if u.numel() % 2:
        u = torch.cat((u, u.new_zeros(1)))
    return (u[0::2] | (u[1::2] << 4)).reshape(shape)


def int4_scales_and_zeros(scale, zero_point, signed, dtype=torch.bfloat16):
    """torch's [groups, n, 2] (scale, zero) for w = (u − 8)·scale + zero, from the stored
    [n, groups] scales and zero points of w = (v − z)·scale (v = u − 8 signed, u unsigned)."""
    off = 8 if signed else 0
    s = scale.to(torch.float32)
    zero = (8 - off - zero_point.to(torch.float32)) * s
    return torch.stack((s.t(), zero.t()), dim=-1).contiguous().to(dtype)


def pack_int4(u):
    """int32 [n, k] values 0..15 → torch's CPU int4pack tensor."""
    return torch._convert_weight_to_int4pack_for_cpu(u.contiguous(), 1)


# The int32 values pack_stored_int4 widens at once (4 bytes per value, 8x the stored bytes).
PACK_BLOCK_BYTES = 2 << 20


def pack_stored_int4(data, n, k, signed, rows=None):
    """Stored INT4 bytes of an [n, k] weight → torch's CPU int4pack tensor, a block of ``rows``
    rows at a time (by default as many multiples of 64 rows as widen to PACK_BLOCK_BYTES of
    int32). The packed layout is per block of 64 rows (_BLOCK), so blocks of a multiple of 64
    rows pack to slices of the whole, and the int32 values the packing op takes are never held
    for more than one block (4 bytes per value: 8× the stored INT4 bytes)."""
    if rows is None:
        rows = max(_BLOCK, PACK_BLOCK_BYTES // (4 * max(k, 1)) // _BLOCK * _BLOCK)
    if k % 2 or n <= rows:
        return pack_int4(nibbles_to_uint(data, n, k, signed))
    assert rows % _BLOCK == 0
    d = data.reshape(n, k // 2)
    out = None
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        part = pack_int4(nibbles_to_uint(d[r0:r1], r1 - r0, k, signed))
        if out is None:
            out = torch.empty((n,) + tuple(part.shape[1:]), dtype=part.dtype)
        out[r0:r1] = part
    return out


_BLOCK = 64  # a multiple of every CPU int4pack block (64 AVX-512, 32 AVX2/scalar)


@functools.lru_cache(maxsize=8)
def _int4_source(rows, k):
    """For a block of `rows` ≤ 64 rows of k values: the flat source index of every nibble of
    the packed block (nibble j = byte j//2, low then high). Learned from the packing op itself
    (pack the base-16 digits of each element's index), so it follows whatever layout this
    torch and CPU use."""
    ids = torch.arange(rows * k, dtype=torch.int64).reshape(rows, k)
    src = torch.zeros(rows * k, dtype=torch.int64)
    shift = 0
    while (1 << shift) < rows * k:
        p = pack_int4(((ids >> shift) & 15).to(torch.int32))
        src |= torch.stack((p & 15, p >> 4), dim=-1).reshape(-1).to(torch.int64) << shift
        shift += 4
    return src


def unpack_int4(packed, n, k):
    """torch's CPU int4pack tensor of an [n, k] weight → int32 [n, k] values 0..15."""
    nib = torch.stack((packed & 15, packed >> 4), dim=-1).reshape(n, k)
    out = torch.empty(n, k, dtype=torch.int32)
    full = n // _BLOCK * _BLOCK
    for lo, hi in ((0, full), (full, n)):
        if hi == lo:
            continue
        rows = min(_BLOCK, hi - lo)
        src = _int4_source(rows, k)
        blk = nib[lo:hi].reshape(-1, rows * k)
        o = torch.empty_like(blk)
        o[:, src] = blk
        out[lo:hi] = o.reshape(hi - lo, k)
    return out


# ------------------------------------------------------------------------------------------------
# Conv2d, static INT8: oneDNN's quantized convolution with a float32 output.
#
# ``quantized::conv2d`` (fbgemm) returns a quint8 tensor, so it needs the *output's* scale and
# zero point, which a monoquant file does not hold (it calibrates each layer's input only), and
# around a float model it costs a quantize, an NCHW→NHWC reorder and a dequantize per call: 3.6×
# float's time on a 32→64 3×3 conv (docs/kernels.md). ``onednn::qconv2d_pointwise`` is the op
# torch's own x86 lowering of a static q/dq conv runs (torch.ao.quantization.quantizer
# .x86_inductor_quantizer): uint8 input with the calibrated (scale, zero point), int8 weights
# with per-channel scales, the bias and an optional fused ReLU, float32 out. 0.33× float there.

CONV_KERNELS = ("onednn_static", "dequant")


def _conv_padding(padding, kernel_size, dilation):
    """Numeric (ph, pw) for a Conv2d padding, or None when it is asymmetric ('same' with an
    even effective kernel)."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        out = []
        for k, d in zip(kernel_size, dilation):
            total = d * (k - 1)
            if total % 2:
                return None
            out.append(total // 2)
        return tuple(out)
    return tuple(padding)


@functools.lru_cache(maxsize=None)
def _probe_onednn_conv():
    """Whether oneDNN's int8 convolution works here and sums exactly: on CPUs without VNNI it
    adds pairs of u8 × s8 products in int16 (``vpmaddubsw``), which saturates for the full 0..255
    inputs the calibrated qparams give (torch.ao's x86 configs use 7-bit activations there), so
    a uint8 input of 255 against weights of 127 and −128 must give the exact sums."""
    try:
        w = torch.full((4, 8, 3, 3), 127, dtype=torch.int8)
        w[1] = -128
        s = torch.ones(4)
        p = torch.ops.onednn.qconv_prepack(w, s, 1.0, 0, [1, 1], [0, 0], [1, 1], 1, None)
        x = torch.full((1, 8, 3, 3), 255, dtype=torch.uint8)
        y = torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, p, s, torch.zeros(4, dtype=torch.int32), None,
                                               [1, 1], [0, 0], [1, 1], 1, 1.0, 0, torch.float32, "none", [], "")
        return torch.equal(y.to(torch.float64), torch.nn.functional.conv2d(x.to(torch.float64), w.to(torch.float64)))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def choose_conv2d(spec, activation, padding, kernel_size, dilation, device):
    """The kernel for one Conv2d layer, and why: ``onednn_static`` for INT8 symmetric weights
    (qint8, per channel or per tensor) with static activations on the CPU; ``dequant`` else."""
    if not ENABLED:
        return "dequant", "torch kernels disabled"
    if torch.device(device).type != "cpu":
        return "dequant", f"no quantized kernel on {torch.device(device).type}"
    if activation != "static":
        return "dequant", f"activation {activation} (the int8 conv needs calibrated input qparams)"
    if spec.format != "int8" or spec.qdtype != "qint8" or spec.scheme != "symmetric":
        return "dequant", f"{spec.format} {spec.scheme} weights (the int8 conv takes symmetric qint8)"
    if _conv_padding(padding, kernel_size, dilation) is None:
        return "dequant", "asymmetric 'same' padding"
    return ("onednn_static", "") if _probe_onednn_conv() else ("dequant", "onednn int8 conv unavailable or inexact on this CPU (no VNNI)")


def quantize_u8(x, scale, zero_point, inv=None):
    """x (float) → uint8 with per-tensor (scale, zero_point), as torch.quantize_per_tensor
    rounds: times the float32 reciprocal of the scale, half to even, plus the zero point,
    clamped to 0..255. torch's one fused kernel when it is there (2.2× faster than the
    plain-op chain on this CPU), else the same arithmetic in plain ops."""
    x = x.to(torch.float32)
    try:
        with _quiet():
            return torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr()
    except (RuntimeError, AttributeError):
        if inv is None:
            inv = torch.reciprocal(torch.tensor(scale, dtype=torch.float32))
        return (x * inv).round_().add_(zero_point).clamp_(0, 255).to(torch.uint8)


class PackedConv2d:
    """An INT8 Conv2d weight packed for oneDNN with the layer's calibrated input qparams.

    ``unpack()`` gives the stored integers back exactly (int8 [O, I/groups, kh, kw]); the
    packed tensor is the only resident copy.
    """

    __slots__ = ("packed", "w_scale", "w_zp", "bias", "stride", "padding", "dilation", "groups", "x_scale", "x_zp", "_inv")

    def __init__(self, data, scale, bias, stride, padding, dilation, groups, x_scale, x_zero_point):
        o = data.shape[0]
        self.w_scale = scale.reshape(-1).to(torch.float32).expand(o).contiguous()
        self.w_zp = torch.zeros(o, dtype=torch.int32)
        self.bias = None if bias is None else bias.detach().to(torch.float32).contiguous()
        self.stride, self.padding, self.dilation, self.groups = list(stride), list(padding), list(dilation), groups
        self.x_scale, self.x_zp = float(x_scale), int(x_zero_point)
        self._inv = torch.reciprocal(torch.tensor(self.x_scale, dtype=torch.float32))
        self.packed = torch.ops.onednn.qconv_prepack(data.contiguous(), self.w_scale, self.x_scale, self.x_zp, self.stride,
                                                     self.padding, self.dilation, groups, None)

    def unpack(self):
        return self.packed.to_dense()

    def run(self, x, relu=False):
        """x (float, NCHW) → float32 conv output (+ ReLU): x quantized with the calibrated
        qparams as torch.quantize_per_tensor rounds (times the float32 reciprocal of the scale,
        half to even, plus the zero point, clamped to 0..255), the int8 convolution, the output in float32, NCHW contiguous unless x was
        channels-last."""
        xq = quantize_u8(x, self.x_scale, self.x_zp, self._inv)
        y = torch.ops.onednn.qconv2d_pointwise(xq, self.x_scale, self.x_zp, self.packed, self.w_scale, self.w_zp, self.bias, self.stride,
                                               self.padding, self.dilation, self.groups, 1.0, 0, torch.float32,
                                               "relu" if relu else "none", [None] if relu else [], "")
        if not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
            y = y.contiguous()
        return y


# ------------------------------------------------------------------------------------------------
# LSTM, dynamic INT8: torch's dynamic quantized LSTM (what torch.ao.nn.quantized.dynamic.LSTM
# runs): each gate matmul is quantized::linear_dynamic on fbgemm-packed weights, activations
# (the input and the hidden state of each step) quantized per call with reduce_range.

LSTM_KERNELS = ("fbgemm_dynamic", "dequant")


def choose_lstm(specs, activation, proj_size, bias, device):
    """The kernel for one LSTM, and why: ``fbgemm_dynamic`` when every weight is INT8 qint8,
    activations are dynamic, and the LSTM has biases and no projection; ``dequant`` else."""
    if not ENABLED:
        return "dequant", "torch kernels disabled"
    if torch.device(device).type != "cpu":
        return "dequant", f"no quantized kernel on {torch.device(device).type}"
    if activation != "dynamic":
        return "dequant", f"activation {activation} (torch's quantized LSTM is dynamic only)"
    for s in specs:
        if s.format != "int8" or s.qdtype != "qint8":
            return "dequant", f"{s.format} weights"
    if proj_size:
        return "dequant", "proj_size (torch's quantized LSTM has no projection)"
    if not bias:
        return "dequant", "bias=False (torch's quantized LSTM needs biases)"
    return ("fbgemm_dynamic", "") if _probe("fbgemm") else ("dequant", "fbgemm unavailable")


class PackedLSTM:
    """The packed weights of a whole LSTM for ``torch.quantized_lstm``: one cell-params object
    per layer and direction over two fbgemm-packed INT8 matrices (the only resident copy)."""

    __slots__ = ("mats", "cells")

    def __init__(self, layers):
        """layers: [(ih, hh, b_ih, b_hh)] per layer and direction, in nn.LSTM's order, where
        ih/hh are (data, scale, zero_point, per_channel)."""
        self.mats, self.cells = [], []
        for ih, hh, b_ih, b_hh in layers:
            p_ih, p_hh = PackedInt8(*ih, bias=b_ih), PackedInt8(*hh, bias=b_hh)
            self.mats += [p_ih, p_hh]
            self.cells.append(torch.ops.quantized.make_quantized_cell_params_dynamic(p_ih.packed, p_hh.packed, b_ih, b_hh, True))

    def run(self, input, hx, num_layers, dropout, training, bidirectional, batch_first, batch_sizes=None):
        with _quiet():
            if batch_sizes is None:
                return torch.quantized_lstm(input, hx, self.cells, True, num_layers, float(dropout), training, bidirectional, batch_first,
                                            dtype=torch.qint8, use_dynamic=True)
            return torch.quantized_lstm(input, batch_sizes, hx, self.cells, True, num_layers, float(dropout), training, bidirectional,
                                        dtype=torch.qint8, use_dynamic=True)
