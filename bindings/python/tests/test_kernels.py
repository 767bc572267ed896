"""QuantizedLinear on torch's own quantized kernels: parity with torch.ao, kernel choice,
autograd, torch.compile / torch.export, copies, state dicts, device and dtype moves."""

import copy
import io
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import monoquant
from monoquant import QuantSpec, _kernels
from monoquant.nn import QuantizedLinear

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

INT8 = QuantSpec("int8")
INT8_ASYM = QuantSpec("int8", scheme="asymmetric")
INT4 = QuantSpec("int4", group_size=128)
INT4_ASYM = QuantSpec("int4", scheme="asymmetric", group_size=32)

# (spec, activation, kernel, in, out)
CASES = [
    (INT8, "dynamic", "fbgemm_dynamic", 256, 96),
    (INT8_ASYM, "dynamic", "fbgemm_dynamic", 256, 96),
    (INT8, "none", "int8pack", 256, 96),
    (INT8_ASYM, "none", "dequant", 256, 96),
    (INT4, "none", "int4pack", 256, 96),
    (INT4_ASYM, "none", "int4pack", 256, 80),
    (INT4_ASYM, "dynamic", "int4pack", 256, 80),
    (QuantSpec("int4", group_size=16), "none", "dequant", 256, 96),
    (INT4, "none", "dequant", 256, 40),  # out_features not a multiple of 16
    (QuantSpec("fp16"), "none", "dequant", 256, 96),
]
IDS = [f"{c[0].format}-{c[0].scheme[:4]}-g{c[0].group_size}-{c[1]}-{c[2]}-{c[4]}" for c in CASES]


def make(spec, activation, k, n, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(k, n)
    return lin, QuantizedLinear.from_float(lin, spec, activation=activation)


def reference(q, x):
    """F.linear on the engine's dequantized weight, activations as the kernel rounds them."""
    return F.linear(x, q.dequantized(), q.bias)


@pytest.mark.parametrize("spec,act,kernel,k,n", CASES, ids=IDS)
def test_kernel_choice_and_numbers(spec, act, kernel, k, n):
    _lin, q = make(spec, act, k, n)
    assert q.kernel == kernel, q.kernel_reason
    assert f"kernel={kernel}" in repr(q)
    x = torch.randn(7, k)
    with torch.no_grad():
        got = q(x)
        if act == "none":
            want = reference(q, x)
            # bfloat16 activations on the int8pack/int4pack kernels; exact float32 otherwise.
            tol = 3e-2 if kernel.endswith("pack") else 1e-5
            assert torch.allclose(got, want, rtol=tol, atol=tol), (got - want).abs().max()
    assert got.shape == (7, n) and got.dtype == torch.float32
    # The stored integers come back from the kernel's form exactly; the engine's weight agrees.
    assert torch.equal(q.float_weight(), q.dequantized())


def test_float_weight_never_resident():
    for spec, act, _k, k, n in CASES:
        _lin, q = make(spec, act, k, n)
        q(torch.randn(2, k))
        _ = q.weight
        for name, b in q.named_buffers():
            if b is None or b.numel() < n * k:
                continue  # scales, zero points, bias
            if spec.format in ("fp16", "bf16"):
                assert b.dtype == spec.storage_dtype(), (name, b.dtype)  # the stored values themselves
            else:
                assert not b.is_floating_point(), (name, b.dtype, b.shape)
        assert not any(isinstance(v, torch.Tensor) and v.numel() >= n * k for v in q.__dict__.values())


def test_torch_deprecation_warnings_stay_inside_the_kernels_module():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for spec, act, _kern, k, n in CASES:
            _lin, q = make(spec, act, k, n)
            q(torch.randn(2, k))
            q.state_dict()
            copy.deepcopy(q)


def test_int4_unpack_inverts_the_cpu_packing():
    for n, k in [(16, 64), (48, 128), (64, 256), (80, 128), (208, 384)]:
        u = torch.randint(0, 16, (n, k), dtype=torch.int32)
        assert torch.equal(_kernels.unpack_int4(_kernels.pack_int4(u), n, k), u), (n, k)


@pytest.mark.parametrize("n,signed", [(336, True), (256, False), (400, True)])  # the op takes n % 16 == 0
def test_int4_packing_by_row_blocks_equals_the_whole(n, signed):
    # pack_stored_int4 packs 128 rows at a time here: the same bytes as one pack of the weight.
    k = 256
    data = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8)
    whole = _kernels.pack_int4(_kernels.nibbles_to_uint(data, n, k, signed))
    blocked = _kernels.pack_stored_int4(data, n, k, signed, rows=128)
    assert blocked.shape == whole.shape and torch.equal(blocked, whole)


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_dynamic_int8_matches_torch_ao_quantize_dynamic_per_channel(scheme):
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(384, 1536), nn.GELU(), nn.Linear(1536, 384))
    x = torch.randn(32, 24, 384)
    ref = quantize_dynamic(copy.deepcopy(model), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    spec = QuantSpec("int8", scheme=scheme)
    ours = nn.Sequential(QuantizedLinear.from_float(model[0], spec, "dynamic"), nn.GELU(), QuantizedLinear.from_float(model[2], spec, "dynamic"))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    if scheme == "symmetric":
        # Same weights (torch's per-channel symmetric observer), same fbgemm op: float tolerance.
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()
    else:
        # Asymmetric weights are a different (finer) quantization: as close to float as torch's.
        f = model(x)
        assert F.cosine_similarity(got.flatten(), f.flatten(), 0) >= F.cosine_similarity(want.flatten(), f.flatten(), 0) - 1e-4


def test_static_int8_matches_torch_ao_static():
    """torch.ao static (fbgemm qconfig with the same observers) quantizes the output too; ours
    stays float32. Fed the same input qparams, the two agree to within torch's output step."""
    if not _kernels._probe("fbgemm_static"):
        pytest.skip("fbgemm's static int8 sums saturate on this CPU (no VNNI): the torch.ao reference is inexact")
    from torch.ao.quantization import DeQuantStub, QConfig, QuantStub, convert, prepare
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    torch.manual_seed(2)
    lin = nn.Linear(64, 32)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.fc, self.dequant = QuantStub(), copy.deepcopy(lin), DeQuantStub()

        def forward(self, x):
            return self.dequant(self.fc(self.quant(x)))

    calib = [torch.randn(16, 64) for _ in range(4)]
    m = M().eval()
    m.qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8),
                        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    prepare(m, inplace=True)
    for c in calib:
        m(c)
    convert(m, inplace=True)
    ours = monoquant.quantize(nn.Sequential(lin), bits=8, calibration_data=calib, observer="minmax")[0]
    assert ours.kernel == "fbgemm_static"
    assert float(ours.input_scale) == pytest.approx(float(m.quant.scale)) and int(ours.input_zero_point) == int(m.quant.zero_point)
    x = torch.randn(5, 64)
    with torch.no_grad():
        want, got = m(x), ours(x)
    assert (got - want).abs().max() <= float(m.fc.scale) * 0.5 + 1e-6


@pytest.mark.parametrize("spec,act,kernel,k,n", CASES, ids=IDS)
def test_gradients_flow_to_inputs_and_float_params(spec, act, kernel, k, n):
    _lin, q = make(spec, act, k, n)
    pre = nn.Linear(k, k)
    x = torch.randn(3, k, requires_grad=True)
    q(pre(x)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert pre.weight.grad is not None and pre.weight.grad.abs().sum() > 0
    # The input gradient is grad_out @ W with the dequantized weight (straight-through rounding).
    h = pre(x.detach()).detach().requires_grad_(True)
    y = q(h)
    g = torch.randn_like(y)
    y.backward(g)
    want = g @ q.float_weight()
    assert torch.allclose(h.grad, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec,act,kernel", [(INT8, "dynamic", "fbgemm_dynamic"), (INT8, "none", "int8pack"), (INT4, "none", "int4pack")])
def test_compile_and_export(spec, act, kernel):
    _lin, q = make(spec, act, 256, 96)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), q)
    x = torch.randn(4, 64)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, backend="eager", fullgraph=True)(x)
    assert torch.equal(got, want)
    ep = torch.export.export(model, (x,))
    assert any("monoquant.linear" in str(nd.target) for nd in ep.graph.nodes)
    with torch.no_grad():
        assert torch.equal(ep.module()(x), want)


@pytest.mark.parametrize("spec,act,kernel,k,n", CASES, ids=IDS)
def test_state_dict_deepcopy_and_pickle_round_trip(spec, act, kernel, k, n):
    _lin, q = make(spec, act, k, n)
    x = torch.randn(2, k)
    with torch.no_grad():
        want = q(x)
    sd = q.state_dict()
    assert set(sd) <= {"weight", "weight.scale", "weight.zero_point", "bias"}
    # The stored integers of docs/FORMAT.md, never a packed layout.
    assert sd["weight"].dtype == spec.storage_dtype() and tuple(sd["weight"].shape) == spec.data_shape((n, k))
    _l2, q2 = make(spec, act, k, n, seed=9)
    q2.load_state_dict(sd)
    buf = io.BytesIO()
    torch.save(q, buf)
    buf.seek(0)
    for other in (q2, copy.deepcopy(q), pickle.loads(pickle.dumps(q)), torch.load(buf, weights_only=False)):
        assert other.kernel == kernel
        with torch.no_grad():
            assert torch.equal(other(x), want)
        assert torch.equal(other.state_dict()["weight"], sd["weight"])


def test_copies_are_independent_layers():
    _lin, q = make(INT8, "dynamic", 64, 32)
    c = copy.deepcopy(q)
    assert c._handle != q._handle
    del q
    with torch.no_grad():
        assert c(torch.randn(2, 64)).shape == (2, 32)


@pytest.mark.parametrize("spec,act,kernel", [(INT8, "dynamic", "fbgemm_dynamic"), (INT8, "none", "int8pack"), (INT4, "none", "int4pack")])
def test_device_and_dtype_moves_keep_the_integers(spec, act, kernel):
    _lin, q = make(spec, act, 256, 96)
    w = q.state_dict()["weight"].clone()
    x = torch.randn(3, 256)
    with torch.no_grad():
        want = q(x)
    m = copy.deepcopy(q).to("meta")
    assert m.kernel == "dequant" and m.weight_q.device.type == "meta" and m.weight_q.dtype == w.dtype
    assert m(torch.empty(3, 256, device="meta")).shape == (3, 96)
    for cast in (lambda t: t.half(), lambda t: t.bfloat16(), lambda t: t.to(torch.float16)):
        h = cast(copy.deepcopy(q))
        assert h.kernel == kernel and torch.equal(h.state_dict()["weight"], w)
        assert h.bias.dtype != torch.float32 and h.weight_scale.dtype == torch.float32
        xh = x.to(h.bias.dtype)
        with torch.no_grad():
            y = h(xh)
        assert y.dtype == xh.dtype and torch.allclose(y.float(), want, rtol=5e-2, atol=5e-2)
    back = copy.deepcopy(q).to("meta").to_empty(device="cpu")
    back.load_state_dict(q.state_dict())
    with torch.no_grad():
        assert back.kernel == kernel and torch.equal(back(x), want)


def test_fallback_without_torch_quantized_kernels(monkeypatch):
    """With the quantized-tensor API gone (ENABLED=False), every layer runs the plain-torch path
    with the same numbers as the reference."""
    monkeypatch.setattr(_kernels, "ENABLED", False)
    for spec, act in [(INT8, "dynamic"), (INT8, "none"), (INT4, "none")]:
        _lin, q = make(spec, act, 256, 96)
        assert q.kernel == "dequant"
        x = torch.randn(4, 256)
        with torch.no_grad():
            got = q(x)
            xin = q._quant_input(x)
            assert torch.allclose(got, F.linear(xin, q.dequantized(), q.bias), rtol=1e-5, atol=1e-5)


def test_activation_modes_and_errors():
    lin = nn.Linear(32, 16)
    assert QuantizedLinear.from_float(lin, INT8, activation=None).activation == "none"
    with pytest.raises(ValueError, match="activation must be"):
        QuantizedLinear.from_float(lin, INT8, activation="weights")
    with pytest.raises(ValueError, match="static activation quantization needs"):
        QuantizedLinear.from_float(lin, INT8, activation="static")
    q = QuantizedLinear.from_float(lin, INT8, activation="dynamic")
    with pytest.raises(ValueError, match="input has 31 features, expected 32"):
        q(torch.randn(2, 31))


def test_report_and_repr_show_the_kernel():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 24))
    q = monoquant.quantize(model, bits=8, dynamic=True, progress=False)
    r = monoquant.report(model, q)
    assert {row["name"]: row["kernel"] for row in r.layers} == {"0": "fbgemm_dynamic", "2": "fbgemm_dynamic"}
    text = str(r)
    assert "kernel" in text.splitlines()[0] and "fbgemm_dynamic" in text
    assert "kernel=fbgemm_dynamic" in repr(q)
    conv = monoquant.quantize(nn.Sequential(nn.Conv2d(3, 8, 3)), bits=8, dynamic=True, progress=False)
    assert conv[0].kernel == "dequant" and monoquant.report(nn.Sequential(nn.Conv2d(3, 8, 3)), conv).layers[0]["kernel"] == "dequant"
