"""quantize() layer by layer (issue #13): the engine tells when each tensor's outputs are written
and when it gives a float tensor back (mq_model_quantize_stream); with ``inplace=True`` each
quantized layer is swapped in as soon as it is written and its float weight freed as soon as the
engine is done with it. The result must be the same model and the same file as the whole-model
path."""

import copy
import gc
import weakref

import pytest
import torch
import torch.nn as nn

import monoquant
from monoquant import _model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Block(nn.Module):
    def __init__(self, d=64, ff=128):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, ff)
        self.down = nn.Linear(ff, d)
        self.emb = nn.Embedding(50, d)

    def forward(self, x):
        return self.down(torch.relu(self.up(self.norm(x))))


def model():
    torch.manual_seed(0)
    return nn.Sequential(Block(), Block(), nn.Linear(64, 10))


OPTIONS = [dict(bits=8), dict(bits=8, activations="none"), dict(bits=4, group_size=32, scheme="asymmetric"),
           dict(bits=16), dict(dtype="bf16"), dict(bits=8, layers=["linear", "embedding"], outliers=True)]
IDS = ["int8-dynamic", "int8-weight-only", "int4-g32-asym", "fp16", "bf16", "int8-outliers-embedding"]


@pytest.mark.parametrize("opts", OPTIONS, ids=IDS)
def test_streamed_inplace_is_the_same_model_and_file(tmp_path, opts, no_leaks):
    ref = monoquant.quantize(model(), progress=False, **opts)
    streamed_calls = []
    orig = _model.ModelHandle.quantize_stream

    def spy(self, *a, **kw):
        streamed_calls.append(1)
        return orig(self, *a, **kw)

    _model.ModelHandle.quantize_stream = spy
    try:
        m = model()
        q = monoquant.quantize(m, progress=False, inplace=True, **opts)
    finally:
        _model.ModelHandle.quantize_stream = orig
    assert streamed_calls, "quantize(inplace=True) did not take the layer-by-layer path"
    assert q is m
    assert repr(q) == repr(ref)
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(q(x), ref(x))
    a, b = tmp_path / "whole.safetensors", tmp_path / "streamed.safetensors"
    monoquant.save(ref, a)
    monoquant.save(q, b)
    assert a.read_bytes() == b.read_bytes()
    assert q.monoquant_report["tensors_quantized"] == ref.monoquant_report["tensors_quantized"]
    assert [t["name"] for t in q.monoquant_report["tensors"]] == [t["name"] for t in ref.monoquant_report["tensors"]]


def test_float_weights_are_freed_during_the_run():
    """Without the run log's fingerprint the engine gives a tensor back right after reading it:
    by the time the third weight is done, the first layer is quantized in the model and its
    float weight is gone, while the last layer is still the float one."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(32, 32, bias=False), nn.Linear(32, 32, bias=False), nn.Linear(32, 32, bias=False),
                      nn.Linear(32, 32, bias=False))
    weights = [weakref.ref(layer.weight) for layer in m]
    seen = {}

    def progress(done, total, name):
        if done == 3:
            gc.disable()  # only reference counting may free it
            seen["first"] = weights[0]()
            seen["first_type"] = type(m[0]).__name__
            seen["last_type"] = type(m[3]).__name__
            seen["last"] = weights[3]() is not None
            gc.enable()

    q = monoquant.quantize(m, bits=16, inplace=True, progress=progress, log=False)
    assert seen["first_type"] == "QuantizedLinear" and seen["first"] is None
    assert seen["last_type"] == "Linear" and seen["last"]
    assert all(w() is None for w in weights)
    assert all(type(layer).__name__ == "QuantizedLinear" for layer in q)


def test_float_weights_are_freed_by_the_end_with_the_run_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MONOQUANT_HOME", str(tmp_path))
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8))
    weights = [weakref.ref(m[0].weight), weakref.ref(m[2].weight)]
    q = monoquant.quantize(m, bits=8, inplace=True, progress=False)
    assert q.monoquant_run_id > 0
    assert [w() for w in weights] == [None, None]


def test_an_error_mid_run_leaves_the_layers_replaced_so_far():
    """A weight holding NaN stops the run at that tensor (NonFiniteError naming it); with
    inplace=True the layers before it are already quantized, the rest still float: the model
    runs either way."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 4))
    with torch.no_grad():
        m[2].weight[1, 3] = float("nan")
    with pytest.raises(monoquant.NonFiniteError, match="2.weight"):
        monoquant.quantize(m, bits=8, inplace=True, progress=False, log=False)
    assert type(m[0]).__name__ == "QuantizedLinear" and type(m[2]) is nn.Linear
    m[2].weight.data.nan_to_num_(0.0)
    assert m(torch.randn(2, 16)).shape == (2, 4)


def test_an_exception_in_progress_cancels_the_streamed_run():
    m = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 4))

    def progress(done, total, name):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        monoquant.quantize(m, bits=8, inplace=True, progress=progress, log=False)


@pytest.mark.parametrize("case", ["tied", "static", "not-inplace", "root"])
def test_the_whole_model_path_still_serves_what_streaming_leaves_out(case, tmp_path):
    """Tied weights, calibration and copies take the whole-model path; the result is the same
    as before (and the float model of a copy is untouched)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    kw = dict(bits=8, progress=False)
    if case == "root":  # the model is the one layer: quantize() returns the new layer
        lin = nn.Linear(16, 16)
        q = monoquant.quantize(lin, inplace=True, **kw)
        assert type(q).__name__ == "QuantizedLinear"
        x = torch.randn(2, 16)
        assert torch.allclose(q(x), lin(x), atol=0.05)
        return
    if case == "tied":
        m[2].weight = m[0].weight
    if case == "static":
        kw["calibration_data"] = [torch.randn(4, 16) for _ in range(2)]
    before = copy.deepcopy(m.state_dict())
    orig = _model.ModelHandle.quantize_stream
    _model.ModelHandle.quantize_stream = lambda *a, **k: pytest.fail("streamed")
    try:
        q = monoquant.quantize(m, inplace=case != "not-inplace", **kw)
    finally:
        _model.ModelHandle.quantize_stream = orig
    monoquant.save(q, tmp_path / "q.safetensors")
    back = monoquant.load(tmp_path / "q.safetensors", model=nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16)))
    x = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(back(x), q(x))
    if case == "not-inplace":
        assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_kept_tensors_are_not_copied():
    """A tensor the run keeps as it is (an embedding outside layers=, a norm, a bias) is handed
    to the engine as its own output: the layer-by-layer run copies none of them."""
    torch.manual_seed(0)
    m = model()
    ptrs = {k: v.data_ptr() for k, v in m.state_dict().items()}
    seen = {}
    orig = _model.ModelHandle.quantize_stream

    def spy(self, *a, **kw):
        q, outs = orig(self, *a, **kw)
        seen.update(outs)
        return q, outs

    _model.ModelHandle.quantize_stream = spy
    try:
        q = monoquant.quantize(m, bits=8, inplace=True, progress=False)
    finally:
        _model.ModelHandle.quantize_stream = orig
    kept = [k for k in ("0.emb.weight", "0.norm.weight", "1.up.bias")]
    assert all(seen[k].data_ptr() == ptrs[k] for k in kept), {k: (seen[k].data_ptr(), ptrs[k]) for k in kept}
    assert seen["0.up.weight"].data_ptr() != ptrs["0.up.weight"]
    assert q[0].emb.weight.data_ptr() == ptrs["0.emb.weight"]
