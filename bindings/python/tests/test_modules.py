"""quantize() on live modules: every scheme on Linear, Conv2d, LSTM and TransformerEncoderLayer,
checked against references built from torch's own observers and quantizers."""

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

import monoquant
from monoquant import _kernels

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def ref_weight(w, bits, scheme, group_size=128, dtype="fp16"):
    """The dequantized weight torch itself gives for the scheme (the engine must match it)."""
    sym = scheme == "symmetric"
    if bits == 16:
        return w.to(torch.float16 if dtype == "fp16" else torch.bfloat16).float()
    w2 = w.reshape(w.shape[0], -1)
    k = w2.shape[1]
    divisors = [d for d in range(min(group_size, k), 15, -1) if k % d == 0]
    if bits == 4 and not divisors:
        bits = 8  # the group-size fallback: no group of 16 or more divides the row
    if bits == 8:
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric if sym else torch.per_channel_affine)
        obs(w2)
        s, z = obs.calculate_qparams()
        return torch.quantize_per_channel(w2, s.double(), z.long(), 0, torch.qint8).dequantize().reshape(w.shape)
    gs = divisors[0]
    g = w2.reshape(-1, gs)
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, quant_min=-8, quant_max=7, qscheme=torch.per_channel_symmetric if sym else torch.per_channel_affine)
    obs(g)
    s, z = obs.calculate_qparams()
    q = torch.clamp(torch.round(g * (1.0 / s[:, None])) + z[:, None], -8, 7)
    return ((q - z[:, None]) * s[:, None]).reshape(w.shape)


def ref_act(x, qparams=None, reduce_range=False):
    """Activation fake-quantization as torch does it: quint8 per tensor, affine (reduce_range:
    7-bit, as torch.ao's dynamic Linear asks of fbgemm)."""
    if qparams is None:
        obs = MinMaxObserver(reduce_range=reduce_range)
        obs(x)
        qparams = obs.calculate_qparams()
    s, z = qparams
    return torch.quantize_per_tensor(x, float(s), int(z), torch.quint8).dequantize()


def torch_ao_lstm_with(q):
    """torch.ao.nn.quantized.dynamic.LSTM holding the INT8 weights of the QuantizedLSTM ``q``
    (the same integers, scales and zero points) and its float biases."""
    ref = torch.ao.nn.quantized.dynamic.LSTM(q.input_size, q.hidden_size, q.num_layers, True, q.batch_first, 0.0, q.bidirectional, dtype=torch.qint8)
    wb = {}
    for n in q._flat_names:
        if n in q._qweights:
            qt = q.qtensor(n)
            s, z = qt.scale.reshape(-1), qt.zero_point.reshape(-1)
            if s.numel() > 1:
                wb[n] = torch._make_per_channel_quantized_tensor(qt.data, s.double(), z.long(), 0)
            else:
                wb[n] = torch._make_per_tensor_quantized_tensor(qt.data, float(s[0]), int(z[0]))
        else:
            wb[n] = getattr(q, n)
    ref.set_weight_bias(wb)
    return ref


SCHEMES = [(8, "symmetric"), (8, "asymmetric"), (4, "symmetric"), (4, "asymmetric"), (16, "fp16"), (16, "bf16")]
IDS = ["int8-sym", "int8-asym", "int4-sym", "int4-asym", "fp16", "bf16"]


def qargs(bits, scheme, dynamic=False):
    """quantize() arguments for a scheme of SCHEMES; dynamic asks for dynamic activations where
    the format has any (the float formats run weight-only)."""
    if bits == 16:
        return {"bits": 16, "dtype": scheme}
    a = {"bits": bits, "scheme": scheme}
    if bits == 4:
        a.update(group_size=32, group_fallback=True)
    if dynamic:
        a["activations"] = "dynamic"
    return a


@pytest.mark.parametrize("bits,scheme", SCHEMES, ids=IDS)
def test_linear_dynamic_equals_torch_reference(bits, scheme):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    x = torch.randn(5, 64)
    q = monoquant.quantize(m, **qargs(bits, scheme, dynamic=True))
    assert isinstance(q[0], monoquant.QuantizedLinear) and isinstance(q[2], monoquant.QuantizedLinear)
    assert isinstance(m[0], nn.Linear) and not isinstance(m[0], monoquant.QuantizedLinear), "inplace=False must leave the model alone"
    h = x
    for lin in (m[0], m[2]):
        w = ref_weight(lin.weight.detach(), bits, scheme, 32, scheme)
        # INT8 runs fbgemm's dynamic kernel (7-bit activations, as quantize_dynamic), INT4
        # the int4pack kernel on the quint8-rounded input in bfloat16.
        a = h if bits == 16 else ref_act(h, reduce_range=bits == 8)
        h = F.linear(a, w, lin.bias.detach())
        if lin is m[0]:
            h = F.relu(h)
    with torch.no_grad():
        got = q(x)
    assert q[0].kernel == {8: "fbgemm_dynamic", 4: "int4pack", 16: "dequant"}[bits]
    if bits == 16:
        assert torch.equal(got, h), f"{bits}-bit {scheme}: max diff {(got - h).abs().max()}"
    else:
        tol = 1e-5 if bits == 8 else 1e-2  # int32 accumulation vs float sums; bfloat16 activations
        assert torch.allclose(got, h, rtol=tol, atol=tol), f"{bits}-bit {scheme}: max diff {(got - h).abs().max()}"


@pytest.mark.parametrize("bits,scheme", SCHEMES, ids=IDS)
@pytest.mark.parametrize("conv", [dict(groups=1), dict(groups=4, dilation=2, padding=2), dict(groups=2, stride=2, padding=1, padding_mode="reflect"), dict(padding="same", dilation=(1, 2))],
                         ids=["plain", "groups-dilation", "strided-reflect", "same"])
def test_conv2d_variants_equal_torch_reference(bits, scheme, conv):
    torch.manual_seed(1)
    c = nn.Conv2d(8, 16, 3, **conv)
    x = torch.randn(2, 8, 9, 9)
    q = monoquant.quantize(c, **qargs(bits, scheme, dynamic=True))
    assert isinstance(q, monoquant.QuantizedConv2d)
    w = ref_weight(c.weight.detach(), bits, scheme, 32, scheme)
    ref = c._conv_forward(x if bits == 16 else ref_act(x), w, c.bias.detach())
    with torch.no_grad():
        got = q(x)
    assert got.shape == ref.shape
    assert torch.equal(got, ref), f"{conv} {bits}-bit {scheme}: max diff {(got - ref).abs().max()}"


@pytest.mark.parametrize("bits,scheme", SCHEMES, ids=IDS)
@pytest.mark.parametrize("cfg", [dict(num_layers=1), dict(num_layers=2, bidirectional=True), dict(num_layers=2, batch_first=True, proj_size=8)],
                         ids=["single", "2-layer-bidirectional", "batch-first-proj"])
def test_lstm_equals_float_lstm_with_reference_weights(bits, scheme, cfg):
    torch.manual_seed(2)
    lstm = nn.LSTM(16, 32, **cfg)
    x = torch.randn(6, 3, 16)
    q = monoquant.quantize(lstm, **qargs(bits, scheme, dynamic=True))
    assert isinstance(q, monoquant.QuantizedLSTM)
    ref = copy.deepcopy(lstm)
    with torch.no_grad():
        for n in ref._flat_weights_names:
            if n.startswith("weight"):
                getattr(ref, n).copy_(ref_weight(getattr(lstm, n).detach(), bits, scheme, 32, scheme))
        want, (wh, wc) = ref(x if bits == 16 else ref_act(x))
        got, (gh, gc) = q(x)
    if bits == 8 and not cfg.get("proj_size"):
        # torch's dynamic quantized LSTM (fbgemm): compare with torch.ao's module holding the
        # same integers and scales (each step's input and hidden state quantized per call).
        assert q.kernel == "fbgemm_dynamic"
        with torch.no_grad():
            want, (wh, wc) = torch_ao_lstm_with(q)(x)
        assert torch.allclose(got, want, atol=1e-5), f"{cfg} {scheme}: max diff {(got - want).abs().max()}"
        assert torch.allclose(gh, wh, atol=1e-5) and torch.allclose(gc, wc, atol=1e-5)
        return
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-5), f"{cfg} {bits}-bit {scheme}: max diff {(got - want).abs().max()}"
    assert torch.allclose(gh, wh, atol=1e-6) and torch.allclose(gc, wc, atol=1e-6)


def test_lstm_unbatched_and_packed_inputs():
    torch.manual_seed(3)
    lstm = nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)
    q = monoquant.quantize(lstm, bits=16)
    ref = copy.deepcopy(lstm)
    with torch.no_grad():
        for n in ref._flat_weights_names:
            if n.startswith("weight"):
                getattr(ref, n).copy_(getattr(lstm, n).half().float())
        x = torch.randn(5, 4)
        assert torch.allclose(q(x)[0], ref(x)[0], atol=1e-6)
        seqs = [torch.randn(5, 4), torch.randn(3, 4), torch.randn(4, 4)]
        packed = nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
        go, (gh, _) = q(packed)
        wo, (wh, _) = ref(packed)
        assert torch.allclose(go.data, wo.data, atol=1e-6) and torch.allclose(gh, wh, atol=1e-6)


@pytest.mark.parametrize("bits,scheme", SCHEMES, ids=IDS)
def test_transformer_encoder_layer(bits, scheme):
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 10, 64)
    q = monoquant.quantize(layer, **qargs(bits, scheme, dynamic=True))
    assert isinstance(q.linear1, monoquant.QuantizedLinear) and isinstance(q.self_attn.out_proj, monoquant.QuantizedLinear)
    with torch.no_grad():
        want = layer(x)
        got = q(x)
    floor = {8: 25, 4: 12, 16: 35}[bits]
    s = monoquant.sqnr(want, got)
    assert s > floor, f"{bits}-bit {scheme}: output SQNR {s:.1f} dB, want > {floor}"


def test_static_mode_uses_calibrated_qparams():
    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    calib = [torch.randn(8, 32) for _ in range(6)]
    q = monoquant.quantize(m, bits=8, dynamic=False, calibration_data=calib, observer="minmax")
    # The reference: torch MinMaxObservers on each layer's inputs over the same batches.
    o0, o2 = MinMaxObserver(), MinMaxObserver()
    with torch.no_grad():
        for c in calib:
            o0(c)
            o2(F.relu(m[0](c)))
    qp0, qp2 = o0.calculate_qparams(), o2.calculate_qparams()
    assert float(q[0].input_scale) == float(qp0[0]) and int(q[0].input_zero_point) == int(qp0[1])
    assert float(q[2].input_scale) == float(qp2[0]) and int(q[2].input_zero_point) == int(qp2[1])
    x = torch.randn(3, 32) * 2  # wider than calibration: clamps to the calibrated range
    h = F.relu(F.linear(ref_act(x, qp0), ref_weight(m[0].weight.detach(), 8, "symmetric"), m[0].bias.detach()))
    want = F.linear(ref_act(h, qp2), ref_weight(m[2].weight.detach(), 8, "symmetric"), m[2].bias.detach())
    with torch.no_grad():
        got = q(x)
    # fbgemm where its int8 sums are exact (CPUs with VNNI), the dequantizing path elsewhere
    assert q[0].kernel == q[2].kernel == ("fbgemm_static" if _kernels._probe("fbgemm_static") else "dequant")
    # quantize -> int8 GEMM (int32 sums) -> float32: float rounding apart, the reference.
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), f"max diff {(got - want).abs().max()}"


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "histogram"])
def test_static_observers_and_data_forms(observer):
    torch.manual_seed(6)

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = nn.Linear(8, 8)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    m = TwoInputs()
    data = [(torch.randn(16, 8), torch.randn(16, 8)) for _ in range(3)]
    q1 = monoquant.quantize(m, calibration_data=data, observer=observer)
    q2 = monoquant.quantize(m, calibration_data=[{"x": x, "y": y} for x, y in data], observer=observer)
    assert q1.a.activation == "static"
    assert torch.equal(q1.a.input_scale, q2.a.input_scale) and torch.equal(q1.b.input_zero_point, q2.b.input_zero_point)

    class Labelled(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            return torch.randn(8), i % 3

    seq = nn.Sequential(nn.Linear(8, 4))
    loader = torch.utils.data.DataLoader(Labelled(), batch_size=16)
    q3 = monoquant.quantize(seq, calibration_data=loader, observer=observer)  # (inputs, labels) pairs
    assert q3[0].activation == "static"


def test_skip_names_and_patterns_and_layer_types():
    m = nn.Sequential()
    m.add_module("features", nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()))
    m.add_module("flat", nn.Flatten())
    m.add_module("classifier", nn.Sequential(nn.Linear(4 * 6 * 6, 16), nn.Linear(16, 3)))
    q = monoquant.quantize(m, skip=["classifier.1"])
    assert isinstance(q.features[0], monoquant.QuantizedConv2d) and isinstance(q.classifier[0], monoquant.QuantizedLinear)
    assert type(q.classifier[1]) is nn.Linear
    q = monoquant.quantize(m, skip=["classifier.*"])
    assert type(q.classifier[0]) is nn.Linear and type(q.classifier[1]) is nn.Linear
    q = monoquant.quantize(m, skip="features")
    assert type(q.features[0]) is nn.Conv2d
    q = monoquant.quantize(m, layers=(nn.Linear,))
    assert type(q.features[0]) is nn.Conv2d and isinstance(q.classifier[1], monoquant.QuantizedLinear)
    x = torch.randn(2, 1, 8, 8)
    assert q(x).shape == (2, 3)


def test_inplace_replaces_layers_of_the_given_model():
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    out = monoquant.quantize(m, inplace=True, skip=["1"])
    assert out is m and isinstance(m[0], monoquant.QuantizedLinear)


def test_copy_leaves_original_weights_untouched():
    m = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 2))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    monoquant.quantize(m, bits=4, group_size=16)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_state_dict_names_follow_the_checkpoint_format_and_round_trip():
    torch.manual_seed(7)
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    q = monoquant.quantize(m, bits=4, scheme="asymmetric", group_size=32, calibration_data=[torch.randn(4, 64)])
    sd = q.state_dict()
    assert set(sd) == {"0.weight", "0.weight.scale", "0.weight.zero_point", "0.bias", "0.input_scale", "0.input_zero_point",
                       "2.weight", "2.weight.scale", "2.weight.zero_point", "2.bias", "2.input_scale", "2.input_zero_point"}
    assert sd["0.weight"].dtype == torch.uint8 and sd["0.weight"].shape == (32, 32)
    assert sd["0.weight.scale"].shape == (32, 2) and sd["0.weight.zero_point"].dtype == torch.int32
    # Load into a freshly quantized skeleton (different weights) and get identical outputs.
    other = monoquant.quantize(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8)), bits=4, scheme="asymmetric",
                               group_size=32, calibration_data=[torch.randn(4, 64)])
    other.load_state_dict(sd)
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(other(x), q(x))
    bad = dict(sd)
    bad["0.weight"] = bad["0.weight"].to(torch.int8)
    with pytest.raises(RuntimeError, match="0.weight"):
        other.load_state_dict(bad)
    extra = dict(sd)
    extra["0.weight.bogus"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="bogus"):
        other.load_state_dict(extra)


def test_symmetric_int8_stores_no_zero_points():
    q = monoquant.quantize(nn.Linear(8, 8), bits=8)
    assert set(q.state_dict()) == {"weight", "weight.scale", "bias"}


def test_weight_attribute_is_the_dequantized_weight():
    lin = nn.Linear(16, 4)
    q = monoquant.quantize(lin, bits=8)
    assert q.weight.dtype == torch.float32 and torch.equal(q.weight, ref_weight(lin.weight.detach(), 8, "symmetric"))


def test_warnings_for_risky_choices():
    torch.manual_seed(8)
    m = nn.Sequential(nn.Linear(40, 40), nn.Linear(40, 40), nn.Linear(40, 4))
    with pytest.warns(monoquant.MonoquantWarning) as rec:
        monoquant.quantize(m)
    codes = {str(w.message).split(":")[0] for w in rec}
    assert {"first_layer_quantized", "last_layer_quantized"} <= codes, codes
    with warnings.catch_warnings():
        warnings.simplefilter("error", monoquant.MonoquantWarning)
        monoquant.quantize(m, skip=["0", "2"])  # first and last left in float: no warning
    with pytest.warns(monoquant.MonoquantWarning, match="int4_small_layer"):
        monoquant.quantize(m, bits=4, group_size=40, skip=["0", "2"])
    with pytest.warns(monoquant.MonoquantWarning, match="group_size_fallback"):
        monoquant.quantize(m, bits=4, group_size=64, group_fallback=True, skip=["0", "2"])
    with pytest.raises(ValueError, match='"1.weight": group_size 64 does not divide the row length 40'):
        monoquant.quantize(m, bits=4, group_size=64, skip=["0", "2"])
    with pytest.warns(monoquant.MonoquantWarning, match="only 4 samples"):
        monoquant.quantize(m, calibration_data=[torch.randn(4, 40)], skip=["0", "2"])
    spiky = [torch.randn(64, 40) for _ in range(2)]
    spiky[0][3, 7] = 500.0
    with pytest.warns(monoquant.MonoquantWarning, match="heavy outliers"):
        monoquant.quantize(m, calibration_data=spiky, skip=["1", "2"])
    tiny = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 4))
    with torch.no_grad():
        tiny[1].weight.normal_(std=1e-8)  # below FP16's smallest subnormal: the cast flushes to zero
    with pytest.warns(monoquant.MonoquantWarning, match="low_sqnr"):
        monoquant.quantize(tiny, bits=16, skip=["0", "2"])


def test_progress_callback_and_bar(capsys):
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    calls = []
    monoquant.quantize(m, progress=lambda d, t, n: calls.append((d, t, n)))
    # One step per tensor of the state dict, as the engine works through them.
    assert calls == [(1, 6, "0.weight"), (2, 6, "0.bias"), (3, 6, "1.weight"), (4, 6, "1.bias"), (5, 6, "2.weight"), (6, 6, "2.bias")]
    monoquant.quantize(m, progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err and "#" in err
    monoquant.quantize(m)  # stderr is not a terminal here: no bar
    assert capsys.readouterr().err == ""


def test_dequantize_gives_float_modules_with_the_dequantized_weights():
    torch.manual_seed(9)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, groups=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    lstm = nn.LSTM(4, 6, num_layers=2, bidirectional=True)
    q = monoquant.quantize(m, bits=4, group_size=16, group_fallback=True)
    d = monoquant.dequantize(q)
    assert type(d[0]) is nn.Conv2d and type(d[2]) is nn.Linear
    assert torch.equal(d[2].weight, q[2].weight) and torch.equal(d[0].weight, q[0].weight)
    ql = monoquant.quantize(lstm, bits=8)
    dl = monoquant.dequantize(ql)
    assert type(dl) is nn.LSTM and torch.equal(dl.weight_hh_l1_reverse, ql.weight_hh_l1_reverse)
    x = torch.randn(7, 2, 4)
    with torch.no_grad():
        assert dl(x)[0].shape == (7, 2, 12)


def test_report_numbers():
    torch.manual_seed(10)
    m = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    q = monoquant.quantize(m, bits=8)
    r = monoquant.report(m, q, verbose=False)
    assert [row["name"] for row in sorted(r.layers, key=lambda x: x["name"])] == ["0", "2"]
    for row in r.layers:
        lin = m[int(row["name"])]
        want = monoquant.sqnr(lin.weight.detach(), q[int(row["name"])].weight)
        assert row["sqnr_db"] == pytest.approx(want, abs=1e-6)
        assert row["bytes_before"] == lin.weight.numel() * 4
        assert row["bytes_after"] == lin.weight.numel() + 4 * lin.out_features  # int8 + float32 scales
    sig = sum(float(m[i].weight.double().pow(2).sum()) for i in (0, 2))
    noi = sum(float((m[i].weight.double() - q[i].weight.double()).pow(2).sum()) for i in (0, 2))
    import math

    assert r.sqnr_db == pytest.approx(10 * math.log10(sig / noi), abs=1e-3)
    assert r.size_before == sum(v.numel() * v.element_size() for v in m.state_dict().values())
    assert r.size_after == sum(v.numel() * v.element_size() for v in q.state_dict().values())
    text = str(r)
    assert "SQNR" in text and "smaller" in text
    assert r.to_dict()["layers"][0]["name"] in ("0", "2")


def test_bad_arguments():
    m = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="activations static needs calibration data"):
        monoquant.quantize(m, dynamic=False)
    with pytest.raises(ValueError, match="activations static needs calibration data"):
        monoquant.quantize(m, activations="static")
    with pytest.raises(ValueError, match="not both"):
        monoquant.quantize(m, activations="none", dynamic=True)
    with pytest.raises(ValueError, match="bits"):
        monoquant.quantize(m, bits=3)
    with pytest.raises(ValueError, match='bits 8 and dtype "bf16" disagree'):
        monoquant.quantize(m, bits=8, dtype="bf16")
    with pytest.raises(ValueError, match="group_size 32 applies to INT4"):
        monoquant.quantize(m, group_size=32)
    with pytest.raises(ValueError, match="scheme"):
        monoquant.quantize(m, scheme="diagonal")
    with pytest.raises(ValueError, match="observer"):
        monoquant.quantize(m, observer="best")
    with pytest.raises(ValueError, match="group_size"):
        monoquant.quantize(m, bits=4, group_size=0)
    with pytest.raises(TypeError, match="layers"):
        monoquant.quantize(m, layers=(nn.ReLU,))
    with pytest.raises(TypeError, match="skip"):
        monoquant.quantize(m, skip=[3])
    with pytest.raises(TypeError, match="nn.Module or a state dict"):
        monoquant.quantize("model.pt")
    with pytest.raises(ValueError, match="nothing to quantize"):
        monoquant.quantize(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="calibration_data"):
        monoquant.quantize(m, calibration_data=42)
    with pytest.raises(ValueError, match="no batches"):
        monoquant.quantize(m, calibration_data=[])
    nan = nn.Linear(4, 4)
    with torch.no_grad():
        nan.weight[1, 2] = float("nan")
    with pytest.raises(monoquant.NonFiniteError, match="weight"):
        monoquant.quantize(nn.Sequential(nan))
    with pytest.raises(TypeError, match="float nn.Module"):
        monoquant.report(m, "q")
    with pytest.raises(ValueError, match="swapped"):
        monoquant.report(monoquant.quantize(m), m)


def test_a_layer_registered_twice_is_quantized_once_and_shared():
    for inplace in (False, True):
        shared = nn.Linear(8, 8)
        m = nn.Sequential(shared, nn.ReLU(), shared)
        q = monoquant.quantize(m, inplace=inplace)
        assert isinstance(q[0], monoquant.QuantizedLinear) and q[0] is q[2]
        assert (q is m) == inplace and (m[0] is shared) != inplace
        with torch.no_grad():
            assert q(torch.randn(2, 8)).shape == (2, 8)


def test_progress_bar_appears_on_a_terminal_by_default():
    import os
    import pty
    import subprocess
    import sys

    from conftest import PKG_ROOT

    code = ("import warnings, torch.nn as nn, monoquant\nwarnings.simplefilter('ignore')\n"
            "monoquant.quantize(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))\n")
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    p = subprocess.Popen([sys.executable, "-c", code], stderr=slave, stdout=subprocess.DEVNULL, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.wait(timeout=300) == 0, out.decode(errors="replace")
    text = out.decode(errors="replace")
    assert "quantizing [" in text and "4/4" in text, text


@pytest.mark.parametrize("make", [
    lambda: monoquant.HistogramObserver.with_args(reduce_range=True, bins=512),
    lambda: monoquant.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
    lambda: monoquant.MovingAverageMinMaxObserver.with_args(averaging_constant=0.25, quant_min=0, quant_max=127),
])
def test_static_observer_with_torch_arguments(make):
    """observer= takes a monoquant observer (or factory) with torch's constructor arguments; the
    calibrated input qparams equal those of the torch observer built with the same arguments."""
    torch.manual_seed(11)
    m = nn.Sequential(nn.Linear(8, 8))
    data = [torch.randn(16, 8) * (1 + i) for i in range(4)]
    spec = make()
    q = monoquant.quantize(m, calibration_data=data, observer=spec)
    mine = spec() if not isinstance(spec, monoquant.observers.ObserverBase) else spec
    ref = getattr(torch.ao.quantization, type(mine).__name__)(
        dtype=mine.dtype, qscheme=mine.qscheme, reduce_range=mine.reduce_range, quant_min=mine.quant_min,
        quant_max=mine.quant_max, **({"bins": mine.bins} if isinstance(mine, monoquant.HistogramObserver) else {}),
        **({"averaging_constant": mine.averaging_constant} if isinstance(mine, monoquant.MovingAverageMinMaxObserver) else {}))
    for x in data:
        ref(x)
    scale, zp = ref.calculate_qparams()
    assert q[0].activation == "static"
    assert torch.equal(q[0].input_scale.reshape(-1), scale.reshape(-1)), (q[0].input_scale, scale)
    assert torch.equal(q[0].input_zero_point.reshape(-1).to(torch.int64), zp.reshape(-1).to(torch.int64)), (q[0].input_zero_point, zp)


def test_static_observer_per_channel_refused():
    m = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ValueError, match="per-tensor"):
        monoquant.quantize(m, calibration_data=[torch.randn(4, 8)], observer=monoquant.PerChannelMinMaxObserver())
    with pytest.raises(TypeError, match="observer must be"):
        monoquant.quantize(m, calibration_data=[torch.randn(4, 8)], observer=42)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_run_in_their_dtype(dtype):
    """A BF16/FP16 model stays a BF16/FP16 model: the quantized layers take its inputs and return
    its dtype (dequantized weights and biases cast to it), for every scheme and both activation
    modes, with the error of the scheme, not of a dtype mix-up."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 16)).to(dtype).eval()
    x = torch.randn(4, 3, 8, 8, dtype=dtype)
    with torch.no_grad():
        want = m(x).float()
    cases = [dict(bits=8), dict(bits=4, group_size=32, group_fallback=True), dict(bits=16), dict(bits=8, calibration_data=[torch.randn(32, 3, 8, 8, dtype=dtype)])]
    for kw in cases:
        q = monoquant.quantize(m, **kw)
        with torch.no_grad():
            y = q(x)
        assert y.dtype == dtype, (kw, y.dtype)
        err = ((y.float() - want).norm() / want.norm()).item()
        assert err < (0.15 if kw["bits"] == 4 else 0.03), (kw, err)
    lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True).to(dtype).eval()
    seq = torch.randn(5, 2, 8, dtype=dtype)
    with torch.no_grad():
        want, _ = lstm(seq)
        out, (h, c) = monoquant.quantize(lstm, bits=8)(seq)
    assert out.dtype == h.dtype == c.dtype == dtype
    assert ((out.float() - want.float()).norm() / want.float().norm()).item() < 0.05
