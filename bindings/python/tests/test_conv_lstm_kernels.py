"""QuantizedConv2d (static INT8 on oneDNN's int8 conv) and QuantizedLSTM (dynamic INT8 on torch's
quantized LSTM): parity with torch.ao, autograd, torch.compile / torch.export, copies, state
dicts, device and dtype moves, and the packed form as the only resident copy."""

import copy
import io
import pickle

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import monoquant
from monoquant import QuantSpec, _kernels
from monoquant.nn import QuantizedConv2d, QuantizedLSTM

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

INT8 = QuantSpec("int8")
CONVS = [dict(), dict(stride=2, padding=1), dict(groups=4, dilation=2, padding=2), dict(padding=1, padding_mode="reflect"), dict(padding="same")]
CONV_IDS = ["plain", "strided", "groups-dilation", "reflect", "same"]
# oneDNN's int8 conv where it sums exactly (CPUs with VNNI); the dequantizing path elsewhere
# (test_inexact_onednn_is_not_used covers that choice on every x86 CPU).
CONV_KERNEL = "onednn_static" if _kernels._probe_onednn_conv() else "dequant"


def static_conv(seed=0, relu=False, **kw):
    torch.manual_seed(seed)
    conv = nn.Conv2d(8, 16, 3, **kw)
    x = torch.randn(2, 8, 10, 10)
    s = float(x.abs().max() / 127.5)
    return conv, QuantizedConv2d.from_float(conv, INT8, activation="static", input_qparams=(s, 128), relu=relu), x


def qdq_conv_reference(q, x):
    """quantize the input with q's calibrated qparams → F.conv2d with the dequantized weight."""
    xd = torch.quantize_per_tensor(x, float(q.input_scale), int(q.input_zero_point), torch.quint8).dequantize()
    if q.padding_mode != "zeros":
        xd = F.pad(xd, q._reversed_padding_repeated_twice, mode=q.padding_mode)
        y = F.conv2d(xd, q.weight, q.bias, q.stride, 0, q.dilation, q.groups)
    else:
        y = F.conv2d(xd, q.weight, q.bias, q.stride, q.padding, q.dilation, q.groups)
    return F.relu(y) if q.relu else y


@pytest.mark.parametrize("kw", CONVS, ids=CONV_IDS)
@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv-relu"])
def test_static_conv_runs_onednn_and_equals_the_qdq_reference(kw, relu):
    _conv, q, x = static_conv(relu=relu, **kw)
    assert q.kernel == CONV_KERNEL, q.kernel_reason
    with torch.no_grad():
        got = q(x)
    want = qdq_conv_reference(q, x)
    # int32 sums of the same integers, one float rescale: float rounding apart.
    assert got.shape == want.shape and got.is_contiguous()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()
    assert q(x[0]).shape == want.shape[1:]  # unbatched input


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv-relu"])
def test_static_conv_matches_torch_ao_static(relu):
    """torch.ao static (same observers) requantizes its output; ours stays float32. Fed the same
    input qparams and weights, the two agree to within torch's output step."""
    if CONV_KERNEL != "onednn_static":
        pytest.skip("torch's int8 conv saturates without VNNI on the full-range activations used here")
    from torch.ao.quantization import DeQuantStub, QConfig, QuantStub, convert, fuse_modules, prepare
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    torch.manual_seed(2)
    body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()) if relu else nn.Sequential(nn.Conv2d(3, 16, 3, padding=1))

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.body, self.dequant = QuantStub(), copy.deepcopy(body), DeQuantStub()

        def forward(self, x):
            return self.dequant(self.body(self.quant(x)))

    calib = [torch.randn(8, 3, 12, 12) for _ in range(4)]
    m = M().eval()
    if relu:
        fuse_modules(m, [["body.0", "body.1"]], inplace=True)
    m.qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8),
                        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    prepare(m, inplace=True)
    for c in calib:
        m(c)
    convert(m, inplace=True)
    ours = monoquant.quantize(body, bits=8, calibration_data=calib, observer="minmax", progress=False)
    if relu:
        ours[0].relu, ours[1] = True, nn.Identity()  # what Conv-BN-ReLU folding does
    assert ours[0].kernel == CONV_KERNEL
    assert float(ours[0].input_scale) == pytest.approx(float(m.quant.scale)) and int(ours[0].input_zero_point) == int(m.quant.zero_point)
    x = torch.randn(5, 3, 12, 12)
    with torch.no_grad():
        want, got = m(x), ours(x)
    # torch.ao's output saturates at the calibrated output range; compare inside it.
    os_, oz = float(m.body[0].scale), int(m.body[0].zero_point)
    inside = (want >= (0 - oz) * os_) & (want < (255 - oz) * os_)
    assert inside.float().mean() > 0.9
    assert (got - want)[inside].abs().max() <= os_ * 0.5 + 1e-5


def test_dynamic_lstm_matches_torch_ao_quantize_dynamic_per_channel():
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.manual_seed(1)
    lstm = nn.LSTM(32, 48, num_layers=2, bidirectional=True, batch_first=True)
    # (quantize_dynamic swaps children only: wrap the LSTM.)
    ref = quantize_dynamic(nn.Sequential(copy.deepcopy(lstm)), {nn.LSTM: per_channel_dynamic_qconfig}, dtype=torch.qint8)[0]
    assert isinstance(ref, torch.ao.nn.quantized.dynamic.LSTM)
    q = monoquant.quantize(lstm, bits=8, dynamic=True, progress=False)
    assert q.kernel == "fbgemm_dynamic"
    x = torch.randn(4, 7, 32)
    with torch.no_grad():
        (want, (wh, wc)), (got, (gh, gc)) = ref(x), q(x)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()
        assert torch.allclose(gh, wh, atol=1e-5) and torch.allclose(gc, wc, atol=1e-5)
        seqs = [torch.randn(5, 32), torch.randn(3, 32), torch.randn(6, 32)]
        packed = nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
        (wp, (wph, _)), (gp, (gph, _)) = ref(packed), q(packed)
        assert torch.allclose(gp.data, wp.data, atol=1e-5) and torch.allclose(gph, wph, atol=1e-5)
        # An unbatched sequence and a given initial state.
        h0 = (torch.randn(4, 48), torch.randn(4, 48))
        h0b = (h0[0].unsqueeze(1), h0[1].unsqueeze(1))  # torch.ao takes batches only
        assert torch.allclose(q(x[0], h0)[0], ref(x[:1], h0b)[0][0], atol=1e-5)


@pytest.mark.parametrize("cfg,kernel", [(dict(activation="dynamic"), "fbgemm_dynamic"), (dict(activation="none"), "dequant"),
                                        (dict(activation="dynamic", proj_size=8), "dequant"), (dict(activation="dynamic", bias=False), "dequant")],
                         ids=["dynamic", "weight-only", "proj", "no-bias"])
def test_lstm_kernel_choice(cfg, kernel):
    cfg = dict(cfg)
    act = cfg.pop("activation")
    q = QuantizedLSTM.from_float(nn.LSTM(8, 16, **cfg), INT8, activation=act)
    assert q.kernel == kernel and f"kernel={kernel}" in repr(q)


def test_lstm_with_a_weight_left_in_float_runs_dequant():
    lstm = nn.LSTM(8, 16, num_layers=2)
    qw = {n: monoquant.quantize_tensor(getattr(lstm, n).detach(), INT8) for n in lstm._flat_weights_names if n.startswith("weight") and n != "weight_ih_l0"}
    q = QuantizedLSTM(lstm, qw, "dynamic")
    assert q.kernel == "dequant" and q.kernel_reason == "weights left in float"
    with torch.no_grad():
        assert q(torch.randn(4, 2, 8))[0].shape == (4, 2, 16)


def test_conv_kernel_choice():
    conv = nn.Conv2d(4, 8, 3)
    assert QuantizedConv2d.from_float(conv, INT8, "static", (0.1, 128)).kernel == CONV_KERNEL
    assert QuantizedConv2d.from_float(conv, INT8, "dynamic").kernel == "dequant"
    assert QuantizedConv2d.from_float(conv, QuantSpec("int8", scheme="asymmetric"), "static", (0.1, 128)).kernel == "dequant"
    assert QuantizedConv2d.from_float(conv, QuantSpec("int4", group_size=36), "static", (0.1, 128)).kernel == "dequant"
    even = nn.Conv2d(4, 8, 2, padding="same")  # asymmetric 'same' padding
    assert QuantizedConv2d.from_float(even, INT8, "static", (0.1, 128)).kernel == "dequant"


def test_packed_form_is_the_only_resident_copy():
    _c, q, _x = static_conv()
    if q.kernel == "onednn_static":  # (the dequantizing path holds the stored integers as a buffer)
        assert "weight_q" not in q._buffers and not any(b.numel() >= 16 * 8 * 9 for b in q.buffers())
    assert torch.equal(q.weight_q, q.state_dict()["weight"]) and q.weight_q.dtype == torch.int8
    ql = QuantizedLSTM.from_float(nn.LSTM(32, 64), INT8, "dynamic")
    assert not any(b.numel() >= 32 * 64 for b in ql.buffers())  # only biases and scales are buffers


def lstm_grad_reference(q, x, h0, g):
    ref = nn.LSTM(q.input_size, q.hidden_size, q.num_layers, bidirectional=q.bidirectional, batch_first=q.batch_first)
    with torch.no_grad():
        for n in q._flat_names:
            getattr(ref, n).copy_(getattr(q, n))
    xr = x.detach().requires_grad_(True)
    ref(xr, h0)[0].backward(g)
    return xr.grad


def test_gradients_flow_to_inputs_and_float_params():
    for kw, relu in ((dict(padding=1), False), (dict(padding=1, padding_mode="reflect"), True), (dict(stride=2, groups=2), False)):
        _c, q, x = static_conv(relu=relu, **kw)
        pre = nn.Conv2d(8, 8, 1)
        xr = x.clone().requires_grad_(True)
        q(pre(xr)).square().sum().backward()
        assert xr.grad.abs().sum() > 0 and pre.weight.grad.abs().sum() > 0
        # The input gradient of the float conv with the dequantized weight (straight-through
        # input rounding), masked by the fused ReLU's output.
        h = x.clone().requires_grad_(True)
        y = q(h)
        g = torch.randn_like(y)
        y.backward(g)
        hr = x.clone().requires_grad_(True)
        w = q.weight  # straight-through: the float conv on the unrounded input
        if q.padding_mode != "zeros":
            yf = F.conv2d(F.pad(hr, q._reversed_padding_repeated_twice, mode=q.padding_mode), w, q.bias, q.stride, 0, q.dilation, q.groups)
        else:
            yf = F.conv2d(hr, w, q.bias, q.stride, q.padding, q.dilation, q.groups)
        yf.backward(g * (y > 0) if relu else g)
        assert torch.allclose(h.grad, hr.grad, rtol=1e-4, atol=1e-4), (h.grad - hr.grad).abs().max()
    torch.manual_seed(4)
    q = QuantizedLSTM.from_float(nn.LSTM(8, 12, num_layers=2, bidirectional=True), INT8, "dynamic")
    pre = nn.Linear(8, 8)
    x = torch.randn(5, 3, 8, requires_grad=True)
    q(pre(x))[0].sum().backward()
    assert x.grad.abs().sum() > 0 and pre.weight.grad.abs().sum() > 0
    h0 = (torch.zeros(4, 3, 12), torch.zeros(4, 3, 12))
    xi = torch.randn(5, 3, 8, requires_grad=True)
    y = q(xi, h0)[0]
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.allclose(xi.grad, lstm_grad_reference(q, xi, h0, g), rtol=1e-4, atol=1e-5)


class LSTMOut(nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x):
        return self.lstm(x)[0]


def test_compile_and_export():
    _c, q, x = static_conv(padding=1, relu=True)
    model = nn.Sequential(nn.Conv2d(8, 8, 1), q, nn.Flatten())
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, backend="eager", fullgraph=True)(x)
    assert torch.equal(got, want)
    ep = torch.export.export(model, (x,))
    assert any("monoquant.conv2d" in str(nd.target) for nd in ep.graph.nodes)
    with torch.no_grad():
        assert torch.equal(ep.module()(x), want)
    torch.manual_seed(5)
    lm = LSTMOut(QuantizedLSTM.from_float(nn.LSTM(8, 12, num_layers=2), INT8, "dynamic"))
    xs = torch.randn(5, 3, 8)
    with torch.no_grad():
        want = lm(xs)
        got = torch.compile(lm, backend="eager", fullgraph=True)(xs)
    assert torch.equal(got, want)
    ep = torch.export.export(lm, (xs,))
    assert any("monoquant.lstm" in str(nd.target) for nd in ep.graph.nodes)
    with torch.no_grad():
        assert torch.equal(ep.module()(xs), want)


def modules():
    _c, qc, x = static_conv(padding=1)
    torch.manual_seed(6)
    ql = QuantizedLSTM.from_float(nn.LSTM(8, 12, num_layers=2, bidirectional=True), INT8, "dynamic")
    return [(qc, x, CONV_KERNEL), (ql, torch.randn(5, 3, 8), "fbgemm_dynamic")]


def out(m, x):
    with torch.no_grad():
        y = m(x)
    return y[0] if isinstance(y, tuple) else y


def fresh_float_twin(q):
    """(a float module of q's shape with other weights, spec, activation, input qparams)."""
    torch.manual_seed(11)
    if isinstance(q, QuantizedConv2d):
        return nn.Conv2d(q.in_channels, q.out_channels, q.kernel_size, q.stride, q.padding, q.dilation, q.groups), INT8, "static", (0.5, 3)
    return nn.LSTM(q.input_size, q.hidden_size, q.num_layers, bidirectional=q.bidirectional), INT8, "dynamic"


def test_state_dict_deepcopy_and_pickle_round_trip():
    for q, x, kernel in modules():
        want = out(q, x)
        sd = q.state_dict()
        assert all(not k.endswith("_q") for k in sd)  # docs/FORMAT.md names
        fresh = type(q).from_float(*fresh_float_twin(q))
        fresh.load_state_dict({k: v.clone() for k, v in sd.items()})
        buf = io.BytesIO()
        torch.save(q, buf)
        buf.seek(0)
        for other in (fresh, copy.deepcopy(q), pickle.loads(pickle.dumps(q)), torch.load(buf, weights_only=False)):
            assert other.kernel == kernel
            assert torch.equal(out(other, x), want)
            for k, v in other.state_dict().items():
                assert torch.equal(v, sd[k]), k


def test_load_state_dict_repacks_with_new_input_qparams():
    _c, q, x = static_conv(padding=1)
    _c2, q2, _ = static_conv(seed=3, padding=1)
    sd = q.state_dict()
    q2.load_state_dict(sd)
    assert float(q2.input_scale) == float(q.input_scale)
    assert q2.kernel == CONV_KERNEL and torch.equal(out(q2, x), out(q, x))
    bad = dict(sd)
    bad["weight"] = sd["weight"][:8]
    with pytest.raises(RuntimeError, match="weight"):
        q2.load_state_dict(bad)
    assert q2.kernel == CONV_KERNEL and torch.equal(out(q2, x), out(q, x))  # still runs


def test_device_and_dtype_moves_keep_the_integers():
    for q, x, kernel in modules():
        sd = {k: v.clone() for k, v in q.state_dict().items()}
        want = out(q, x)
        m = copy.deepcopy(q).to("meta")
        assert m.kernel == "dequant"
        assert all(v.device.type == "meta" and v.dtype == sd[k].dtype for k, v in m.state_dict().items())
        assert out(m, x.to("meta")).device.type == "meta"
        back = m.to_empty(device="cpu")
        back.load_state_dict(sd)
        assert back.kernel == kernel and torch.equal(out(back, x), want)
        h = copy.deepcopy(q).half()
        hsd = h.state_dict()
        assert h.kernel == kernel
        for k, v in sd.items():
            if k.endswith(("scale", "zero_point")) or not v.is_floating_point():
                assert hsd[k].dtype == v.dtype and torch.equal(hsd[k], v), k
        y = out(h, x.half())
        assert y.dtype == torch.float16 and torch.allclose(y.float(), want, rtol=5e-2, atol=5e-2)


def test_fallback_without_torch_quantized_kernels(monkeypatch):
    monkeypatch.setattr(_kernels, "ENABLED", False)
    _c, q, x = static_conv(padding=1, relu=True)
    assert q.kernel == "dequant"
    with torch.no_grad():
        assert torch.allclose(q(x), qdq_conv_reference(q, x), rtol=1e-5, atol=1e-5)
    ql = QuantizedLSTM.from_float(nn.LSTM(8, 12), INT8, "dynamic")
    assert ql.kernel == "dequant"


def test_report_and_repr_show_the_conv_and_lstm_kernels():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    calib = [torch.randn(8, 3, 10, 10) for _ in range(4)]
    q = monoquant.quantize(model, bits=8, calibration_data=calib, progress=False)
    r = monoquant.report(model, q)
    assert {row["name"]: row["kernel"] for row in r.layers} == {"0": CONV_KERNEL, "2": CONV_KERNEL}
    assert f"kernel={CONV_KERNEL}" in repr(q) and CONV_KERNEL in str(r)
    lstm = nn.LSTM(8, 16)
    ql = monoquant.quantize(lstm, bits=8, dynamic=True, progress=False)
    assert monoquant.report(lstm, ql).layers[0]["kernel"] == "fbgemm_dynamic"


@pytest.mark.parametrize("make", [
    lambda: QuantizedConv2d.from_float(nn.Conv2d(8, 16, 3, padding=1), QuantSpec("int4", group_size=24), "none"),
    lambda: QuantizedConv2d.from_float(nn.Conv2d(8, 16, 2, padding="same"), INT8, "dynamic"),
    lambda: LSTMOut(QuantizedLSTM.from_float(nn.LSTM(8, 16, proj_size=4), INT8, "dynamic")),
    lambda: LSTMOut(QuantizedLSTM.from_float(nn.LSTM(8, 16), QuantSpec("fp16"), "none")),
], ids=["conv-int4", "conv-int8-dynamic-same", "lstm-proj", "lstm-fp16"])
def test_dequant_paths_compile_export_and_grad(make):
    """Layers on the dequant path run through the same custom ops: compile, export and
    gradients work for every format, not only the packed kernels."""
    torch.manual_seed(8)
    m = make()
    x = torch.randn(2, 8, 9, 9) if isinstance(m, QuantizedConv2d) else torch.randn(5, 3, 8)
    assert (m.kernel if isinstance(m, QuantizedConv2d) else m.lstm.kernel) == "dequant"
    with torch.no_grad():
        want = m(x)
        assert torch.equal(torch.compile(m, backend="eager", fullgraph=True)(x), want)
        assert torch.equal(torch.export.export(m, (x,)).module()(x), want)
    xr = x.clone().requires_grad_(True)
    m(xr).sum().backward()
    assert xr.grad is not None and xr.grad.abs().sum() > 0


INEXACT_ONEDNN = r"""
import json, torch, torch.nn as nn, monoquant
from monoquant import _kernels
from monoquant.nn import QuantizedConv2d
torch.manual_seed(0)
conv = nn.Conv2d(8, 16, 3, padding=1)
x = torch.randn(2, 8, 10, 10) * 4
s = float(x.abs().max() / 127.5)
q = QuantizedConv2d.from_float(conv, monoquant.QuantSpec("int8"), activation="static", input_qparams=(s, 128))
xd = torch.quantize_per_tensor(x, s, 128, torch.quint8).dequantize()
with torch.no_grad():
    err = (q(x) - torch.nn.functional.conv2d(xd, q.weight, q.bias, 1, 1)).abs().max().item()
print(json.dumps({"conv": _kernels._probe_onednn_conv(), "intmm": _kernels._probe("intmm"), "kernel": q.kernel,
                  "reason": q.kernel_reason, "err": err}))
"""


def test_inexact_onednn_is_not_used():
    """oneDNN without VNNI (capped here to AVX2 by ONEDNN_MAX_CPU_ISA, as on an AVX2-only CPU)
    adds pairs of u8 × s8 products in int16 and saturates on full-range uint8 inputs: the probes
    must say so, and a static INT8 conv then runs the dequantizing path, still equal to the
    q/dq reference."""
    import json
    import platform

    from conftest import run_python

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("ONEDNN_MAX_CPU_ISA=AVX2 caps x86 CPUs only")
    r = run_python(INEXACT_ONEDNN, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["conv"] is False and got["intmm"] is False, got
    assert got["kernel"] == "dequant" and "VNNI" in got["reason"], got
    assert got["err"] < 1e-4, got


INEXACT_FBGEMM = r"""
import json, torch, torch.nn as nn, monoquant
from monoquant import _kernels
torch.manual_seed(0)
m = nn.Sequential(nn.Linear(64, 32))
calib = [torch.randn(16, 64) * 3 for _ in range(4)]
q = monoquant.quantize(m, bits=8, calibration_data=calib, observer="minmax", progress=False)
x = torch.randn(5, 64) * 3
s, z = float(q[0].input_scale), int(q[0].input_zero_point)
xd = torch.quantize_per_tensor(x, s, z, torch.quint8).dequantize()
with torch.no_grad():
    err = (q(x) - torch.nn.functional.linear(xd, q[0].weight, q[0].bias)).abs().max().item()
print(json.dumps({"static": _kernels._probe("fbgemm_static"), "kernel": q[0].kernel, "reason": q[0].kernel_reason, "err": err}))
"""


def test_inexact_fbgemm_static_is_not_used():
    """fbgemm without VNNI (FBGEMM_ENABLE_INSTRUCTIONS=AVX2 here, as on an AVX2-only CPU) adds
    pairs of u8 × s8 products in int16 and saturates on full-range static inputs: the probe
    must say so, and a static INT8 Linear then runs the dequantizing path, equal to the q/dq
    reference."""
    import json
    import platform

    from conftest import run_python

    if platform.machine() not in ("x86_64", "AMD64") or not _kernels.available()["fbgemm"]:
        pytest.skip("FBGEMM_ENABLE_INSTRUCTIONS=AVX2 caps fbgemm on x86 CPUs only")
    r = run_python(INEXACT_FBGEMM, env={"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["static"] is False and got["kernel"] == "dequant" and "VNNI" in got["reason"], got
    assert got["err"] < 1e-4, got


def test_exact_kernels_are_used_where_the_cpu_has_avx512_vnni():
    """The tests above take the kernel the probes allow; this keeps a probe that wrongly says
    "inexact" from sending every CPU down the dequantizing path unnoticed: with AVX-512 VNNI
    (vpdpbusd sums u8 × s8 in int32), fbgemm's static Linear, torch._int_mm and oneDNN's int8
    conv are exact, and the probes must say so."""
    import os

    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "avx512_vnni" not in flags:
        pytest.skip("no AVX-512 VNNI on this CPU")
    if any(os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA")):
        pytest.skip("the CPU's instruction set is capped by the environment")
    assert _kernels._probe_onednn_conv() and _kernels._probe("intmm")
    if _kernels.available()["fbgemm"]:
        assert _kernels._probe("fbgemm_static")
