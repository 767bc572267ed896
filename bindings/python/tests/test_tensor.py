"""Tensor-level quantization through the engine, checked against torch's own quantizers."""

import pytest
import torch
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

import monoquant
from monoquant import QuantSpec


def torch_int8_per_channel(w, symmetric=True, axis=0):
    obs = PerChannelMinMaxObserver(ch_axis=axis, dtype=torch.qint8, qscheme=torch.per_channel_symmetric if symmetric else torch.per_channel_affine)
    obs(w)
    s, z = obs.calculate_qparams()
    q = torch.quantize_per_channel(w, s.double(), z.long(), axis, torch.qint8)
    return q.int_repr(), s, z


def torch_int4_groups(w, gs, symmetric=True):
    g = w.reshape(-1, gs)
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, quant_min=-8, quant_max=7,
                                   qscheme=torch.per_channel_symmetric if symmetric else torch.per_channel_affine)
    obs(g)
    s, z = obs.calculate_qparams()
    q = torch.clamp(torch.round(g * (1.0 / s[:, None])) + z[:, None], -8, 7)
    return q.reshape(w.shape).to(torch.int8), s.reshape(w.shape[0], -1), z


CASES = [(16, 32), (7, 64), (128, 256), (3, 2048)]


@pytest.mark.parametrize("shape", CASES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_int8_per_channel_equals_torch(shape, symmetric):
    torch.manual_seed(shape[0] * 31 + shape[1])
    w = torch.randn(shape) * torch.rand(shape[0], 1) * 3
    q = monoquant.quantize_tensor(w, QuantSpec("int8", "symmetric" if symmetric else "asymmetric"))
    ref, s, z = torch_int8_per_channel(w, symmetric)
    assert torch.equal(q.scale, s), f"scales differ for {shape}: max diff {(q.scale - s).abs().max()}"
    assert torch.equal(q.zero_point, z.to(torch.int32)), f"zero points differ for {shape}"
    assert torch.equal(q.data, ref), f"values differ for {shape} at {(q.data != ref).nonzero()[:3].tolist()}"
    deq = q.dequantize()
    assert torch.equal(deq, (ref.float() - z[:, None].float()) * s[:, None])


@pytest.mark.parametrize("gs", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_groupwise_equals_torch_decomposed(gs, symmetric):
    torch.manual_seed(gs)
    w = torch.randn(24, 256)
    q = monoquant.quantize_tensor(w, QuantSpec("int4", "symmetric" if symmetric else "asymmetric", group_size=gs))
    ref, s, z = torch_int4_groups(w, gs, symmetric)
    assert torch.equal(q.scale, s)
    assert q.data.shape == (24, 128) and q.data.dtype == torch.uint8
    # Unpack: even flat index in the low nibble, signed two's-complement nibbles.
    lo = (q.data & 0xF).to(torch.int8)
    hi = (q.data >> 4).to(torch.int8)
    vals = torch.stack([lo, hi], -1).reshape(24, 256)
    vals = torch.where(vals > 7, vals - 16, vals)
    assert torch.equal(vals, ref), f"int4 values differ at {(vals != ref).nonzero()[:3].tolist()}"


def test_int8_per_tensor_asymmetric_equals_torch():
    torch.manual_seed(3)
    x = torch.randn(1000) * 5 + 1
    q = monoquant.quantize_tensor(x, QuantSpec("int8", "asymmetric", "per_tensor", qdtype="quint8"))
    obs = MinMaxObserver()
    obs(x)
    s, z = obs.calculate_qparams()
    ref = torch.quantize_per_tensor(x, float(s), int(z), torch.quint8).int_repr()
    assert float(q.scale) == float(s) and int(q.zero_point) == int(z)
    assert torch.equal(q.data, ref)


@pytest.mark.parametrize("fmt,dt", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_float_casts_equal_torch(fmt, dt):
    x = torch.randn(300) * 1000
    x[0] = 1e6  # overflows fp16 to inf, as torch's cast
    q = monoquant.quantize_tensor(x, QuantSpec(fmt))
    assert q.data.dtype == dt and q.scale is None
    assert torch.equal(q.data, x.to(dt))
    assert torch.equal(q.dequantize(), x.to(dt).float())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_quantize_like_their_float32_value(dtype):
    x = torch.randn(8, 64).to(dtype)
    a = monoquant.quantize_tensor(x)
    b = monoquant.quantize_tensor(x.float())
    assert torch.equal(a.data, b.data) and torch.equal(a.scale, b.scale)


def test_non_contiguous_input_is_copied_once_and_gives_the_same_result():
    x = torch.randn(64, 32)
    t = x.t()  # a transposed view: not contiguous
    assert not t.is_contiguous()
    assert torch.equal(monoquant.quantize_tensor(t).data, monoquant.quantize_tensor(t.contiguous()).data)
    sl = torch.randn(10, 40)[:, ::2]
    assert torch.equal(monoquant.quantize_tensor(sl).data, monoquant.quantize_tensor(sl.contiguous()).data)


def test_contiguous_cpu_floats_are_passed_by_pointer_others_copied_once():
    from monoquant._engine import c_float_input

    for dt in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        x = torch.randn(4, 8).to(dt)
        assert c_float_input(x).struct.data == x.data_ptr(), f"{dt}: contiguous input was copied"
    t = torch.randn(8, 4).t()
    ct = c_float_input(t)
    assert ct.struct.data != t.data_ptr() and ct.tensor.is_contiguous() and torch.equal(ct.tensor, t)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_inputs_are_type_errors(dtype):
    with pytest.raises(TypeError, match=str(dtype).replace("torch.", "")):
        monoquant.quantize_tensor(torch.zeros(4, 4, dtype=dtype))


def test_complex_input_is_a_type_error():
    with pytest.raises(TypeError, match="complex"):
        monoquant.quantize_tensor(torch.zeros(4, 4, dtype=torch.complex64))


@pytest.mark.parametrize("bad", [None, 3.0, [1.0, 2.0], "x"])
def test_non_tensor_input_is_a_type_error(bad):
    with pytest.raises(TypeError, match="torch.Tensor"):
        monoquant.quantize_tensor(bad)


def test_nan_and_inf_name_the_problem():
    with pytest.raises(monoquant.NonFiniteError, match="index 5"):
        x = torch.zeros(10)
        x[5] = float("inf")
        monoquant.quantize_tensor(x, what="layer.weight")


def test_group_size_not_dividing_is_a_clear_error():
    with pytest.raises(monoquant.InvalidArgumentError, match="group size"):
        monoquant.quantize_tensor(torch.ones(4, 100), QuantSpec("int4", group_size=64))


def test_bad_spec_values_are_value_errors():
    for kw in ({"format": "int3"}, {"scheme": "diagonal"}, {"granularity": "per_row"}, {"qdtype": "qint16"}):
        with pytest.raises(ValueError):
            QuantSpec(**kw)


def test_sqnr_matches_torch_formula():
    torch.manual_seed(0)
    a = torch.randn(10000)
    b = a + 0.01 * torch.randn(10000)
    want = float(20 * torch.log10(torch.norm(a) / torch.norm(a - b)))
    assert monoquant.sqnr(a, b) == pytest.approx(want, abs=1e-3)
    assert monoquant.sqnr(a, a) == float("inf")
    with pytest.raises(ValueError, match="elements"):
        monoquant.sqnr(a, a[:10])


def test_sparse_and_expanded_inputs_are_densified_once():
    dense = torch.randn(16, 32)
    dense[dense.abs() < 1] = 0
    a = monoquant.quantize_tensor(dense.to_sparse())
    b = monoquant.quantize_tensor(dense)
    assert torch.equal(a.data, b.data) and torch.equal(a.scale, b.scale)
    row = torch.randn(1, 32).expand(8, 32)  # stride 0 along dim 0
    assert torch.equal(monoquant.quantize_tensor(row).data, monoquant.quantize_tensor(row.contiguous()).data)
