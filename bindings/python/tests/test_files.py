"""Files: save → torch.load(weights_only=True) and safetensors read them; load → the model runs
and matches the in-memory quantized model exactly; state dicts in and out; bad files."""

import json
import os
import warnings

import pytest
import torch
import torch.nn as nn

import monoquant

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, groups=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.lstm = nn.LSTM(8 * 4, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        h = self.dw(torch.relu(self.conv(x)))  # [B, 8, 4, 4]
        seq = h.permute(0, 2, 1, 3).reshape(x.shape[0], 4, 32)
        out, _ = self.lstm(seq)
        return self.fc(out[:, -1])


def fresh(seed=0):
    torch.manual_seed(seed)
    return Net().eval()


VARIANTS = [
    dict(bits=8, dynamic=True),
    dict(bits=8, scheme="asymmetric", calibration=True, observer="histogram"),
    dict(bits=4, group_size=32, group_fallback=True, dynamic=True),
    dict(bits=4, group_size=16, group_fallback=True, scheme="asymmetric", calibration=True),
    dict(bits=16),
    dict(bits=16, dtype="bf16"),
]
IDS = ["int8-dynamic", "int8-asym-static-hist", "int4-g32", "int4-g16-asym-static", "fp16", "bf16"]


def quantized(kw, model=None):
    model = model or fresh()
    kw = dict(kw)
    if kw.pop("calibration", False):
        kw["calibration_data"] = [torch.randn(16, 3, 4, 4) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        return model, monoquant.quantize(model, **kw)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_save_then_load_runs_and_matches_exactly(tmp_path, kw, suffix, no_leaks):
    model, q = quantized(kw)
    path = tmp_path / ("model" + suffix)
    monoquant.save(q, path)
    loaded = monoquant.load(path, model=fresh(seed=123))  # a skeleton with other weights
    x = torch.randn(4, 3, 4, 4)
    with torch.no_grad():
        want = q(x)
        got = loaded(x)
    assert torch.equal(got, want), f"{kw} {suffix}: loaded model differs by {(got - want).abs().max()}"
    for name, mod in q.named_modules():
        if isinstance(mod, (monoquant.QuantizedLinear, monoquant.QuantizedConv2d, monoquant.QuantizedLSTM)):
            lm = loaded.get_submodule(name)
            assert type(lm) is type(mod) and lm.activation == mod.activation, name


@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_pt_files_load_with_torch_weights_only(tmp_path, kw):
    _, q = quantized(kw)
    path = tmp_path / "model.pt"
    monoquant.save(q, path)
    sd = torch.load(path, weights_only=True)
    want = q.state_dict()
    for k in [k for k in want if k.endswith(("input_scale", "input_zero_point"))]:
        del want[k]  # static qparams live in the config, not as tensors
    assert list(sd) == list(want) or set(sd) == set(want)
    for k, v in want.items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k].reshape(v.shape), v), k
    cfg = json.loads(sd._monoquant_metadata["monoquant"])
    assert cfg["format_version"] == 1
    assert cfg["tensors"]["fc.weight"]["layer"] == "fc" and cfg["tensors"]["fc.weight"]["layer_type"] == "linear"
    if kw.get("calibration"):
        assert cfg["mode"] == "static" and set(cfg["activations"]) == {"conv", "dw", "lstm", "fc"}


@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_safetensors_files_open_with_the_official_library(tmp_path, kw):
    safetensors = pytest.importorskip("safetensors")
    _, q = quantized(kw)
    path = tmp_path / "model.safetensors"
    monoquant.save(q, path)
    with safetensors.safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
        w = f.get_tensor("fc.weight")
    assert "fc.weight.scale" in keys or kw["bits"] == 16
    cfg = json.loads(meta["monoquant"])
    assert cfg["tensors"]["fc.weight"]["format"] == {8: "int8", 4: "int4", 16: kw.get("dtype", "fp16")}[kw["bits"]]
    assert torch.equal(w, q.fc.weight_q)


def test_load_without_model_gives_the_quantized_state_dict(tmp_path):
    _, q = quantized(dict(bits=4, group_size=32, group_fallback=True))
    path = tmp_path / "m.safetensors"
    monoquant.save(q, path)
    sd = monoquant.load(path)
    assert isinstance(sd, monoquant.QuantizedStateDict)
    assert sd["fc.weight"].dtype == torch.uint8 and sd.config["tensors"]["fc.weight"]["group_size"] == 32
    # Saving the state dict again gives a file that loads into the same model.
    path2 = tmp_path / "m2.pt"
    monoquant.save(sd, path2)
    a = monoquant.load(path, model=fresh())
    b = monoquant.load(path2, model=fresh())
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_dequantize_file_and_state_dict(tmp_path):
    model, q = quantized(dict(bits=8))
    path = tmp_path / "m.pt"
    monoquant.save(q, path)
    from_file = monoquant.dequantize(str(path))
    from_sd = monoquant.dequantize(monoquant.load(path))
    from_model = monoquant.dequantize(q).state_dict()
    assert set(from_file) == set(model.state_dict())
    for k, v in from_model.items():
        assert from_file[k].dtype == torch.float32 and torch.equal(from_file[k], v), k
        assert torch.equal(from_sd[k], v), k


def test_state_dict_in_state_dict_out():
    model = fresh()
    sd = model.state_dict()
    qsd = monoquant.quantize(sd, bits=8)
    assert isinstance(qsd, monoquant.QuantizedStateDict)
    assert qsd["fc.weight"].dtype == torch.int8 and "fc.weight.scale" in qsd
    assert qsd["conv.weight"].dtype == torch.int8 and qsd["lstm.weight_ih_l0"].dtype == torch.int8
    assert qsd["fc.bias"].dtype == torch.float32 and torch.equal(qsd["fc.bias"], sd["fc.bias"])
    # The same numbers as quantizing the live module.
    q = monoquant.quantize(model, bits=8)
    assert torch.equal(qsd["fc.weight"], q.fc.weight_q) and torch.equal(qsd["fc.weight.scale"], q.fc.weight_scale)
    # And it loads into a runnable model through save/load.
    deq = monoquant.dequantize(qsd)
    assert set(deq) == set(sd) and deq["fc.weight"].dtype == torch.float32
    qsd4 = monoquant.quantize(sd, bits=4, group_size=16, group_fallback=True, skip=["fc"])
    assert qsd4["fc.weight"].dtype == torch.float32 and qsd4["lstm.weight_hh_l1"].dtype == torch.uint8


def test_record_activations_writes_layer_batches(tmp_path):
    model = fresh()
    data = [torch.randn(8, 3, 4, 4) for _ in range(3)]
    path = tmp_path / "calib.safetensors"
    names = monoquant.record_activations(model, data, path)
    assert names == ["conv", "dw", "lstm", "fc"]
    safetensors = pytest.importorskip("safetensors")
    with safetensors.safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        conv0 = f.get_tensor("conv.0")
    assert keys == {f"{n}.{i}" for n in names for i in range(3)}
    assert torch.equal(conv0, data[0])


def test_bad_files_and_paths(tmp_path):
    _, q = quantized(dict(bits=8))
    with pytest.raises(ValueError, match="suffix"):
        monoquant.save(q, tmp_path / "model.bin")
    with pytest.raises(TypeError):
        monoquant.save(q, 42)
    with pytest.raises(TypeError, match="quantization config"):
        monoquant.save({"w": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="no quantized layers"):
        monoquant.save(nn.Linear(2, 2), tmp_path / "x.pt")
    with pytest.raises(monoquant.MonoquantIOError):
        monoquant.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(monoquant.FormatError):
        monoquant.load(bad)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(3)}, plain)
    with pytest.raises(monoquant.FormatError, match="not a monoquant"):
        monoquant.load(plain)
    good = tmp_path / "good.pt"
    monoquant.save(q, good)
    with pytest.raises(ValueError, match="no such module"):
        monoquant.load(good, model=nn.Sequential())
    other = fresh()
    other.fc = nn.Linear(32, 7)
    with pytest.raises(ValueError, match=r"fc.weight has shape \[5, 32\] in the checkpoint but \[7, 32\]"):
        monoquant.load(good, model=other)
    other = fresh()
    other.fc = nn.Conv2d(32, 5, 1)
    with pytest.raises(ValueError, match="Conv2d in the model but linear"):
        monoquant.load(good, model=other)
    with pytest.raises(TypeError):
        monoquant.load(good, model="net")
    with pytest.raises(monoquant.MonoquantIOError):
        monoquant.save(q, tmp_path / "no" / "such" / "dir" / "m.pt")
    assert not os.path.exists(tmp_path / "no")


def test_save_needs_no_engine_snapshot_and_freed_handles_give_clear_errors(tmp_path, no_leaks):
    from monoquant._model import ModelHandle

    _, q = quantized(dict(bits=8))
    assert "_monoquant_handle" not in q.__dict__  # the engine's result is freed once the layers hold it
    monoquant.save(q, tmp_path / "m.pt")  # written from the model as it is
    plain = fresh()
    plain.fc = nn.Linear(32, 5)
    with pytest.raises(ValueError, match="no quantized layers"):
        monoquant.save(plain, tmp_path / "p.pt")
    h = ModelHandle.new()
    h.close()
    with pytest.raises(monoquant.InvalidHandleError):
        h.add_tensor("w", torch.zeros(2))
    with pytest.raises(monoquant.InvalidHandleError):
        h.save(tmp_path / "x.pt")
    with ModelHandle.new() as h2:
        h2.add_tensor("w", torch.zeros(2))
        with pytest.raises(monoquant.InvalidArgumentError, match="w"):
            h2.add_tensor("w", torch.zeros(2))  # duplicate name
    assert h2.closed


def test_progress_callback_exception_cancels_and_propagates():
    m = fresh()

    class Stop(Exception):
        pass

    def progress(done, total, name):
        if done == 2:
            raise Stop("stop here")

    with pytest.raises(Stop, match="stop here"):
        monoquant.quantize(m, progress=progress)


def test_two_threads_quantizing_models_at_once_get_the_same_results():
    import threading

    models = [fresh(seed=s) for s in (1, 2)]
    want = [monoquant.quantize(mm, bits=4, group_size=16, group_fallback=True).state_dict() for mm in models]
    got = [None, None]
    errors = []

    def work(i):
        try:
            for _ in range(3):
                got[i] = monoquant.quantize(models[i], bits=4, group_size=16, group_fallback=True).state_dict()
        except Exception as e:  # surfaced below with the thread's index
            errors.append((i, e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(2):
        assert set(got[i]) == set(want[i])
        for k in want[i]:
            assert torch.equal(got[i][k], want[i][k]), f"thread {i}: {k} differs"


def test_results_carry_the_engine_report():
    model = fresh()
    qsd = monoquant.quantize(model.state_dict(), bits=8)
    q = monoquant.quantize(model, bits=8)
    for rep in (qsd.report, q.monoquant_report):
        names = {t["name"] for t in rep["tensors"]}
        assert {"fc.weight", "conv.weight", "dw.weight", "lstm.weight_ih_l0"} <= names, names
        assert rep["tensors_quantized"] == len(names) and rep["sqnr_db"] > 30
    # The engine's per-tensor SQNR agrees with monoquant.sqnr on the module's weights.
    fc = next(t for t in q.monoquant_report["tensors"] if t["name"] == "fc.weight")
    assert fc["sqnr_db"] == pytest.approx(monoquant.sqnr(model.fc.weight.detach(), q.fc.weight), abs=1e-4)


def test_copies_and_pickles_of_a_quantized_model(tmp_path):
    import copy
    import io

    _, q = quantized(dict(bits=8, calibration=True))
    x = torch.randn(2, 3, 4, 4)
    c = copy.deepcopy(q)  # carries the config: save still works
    monoquant.save(c, tmp_path / "c.safetensors")
    buf = io.BytesIO()
    torch.save(q, buf)  # the whole module, pickled
    buf.seek(0)
    r = torch.load(buf, weights_only=False)
    with torch.no_grad():
        assert torch.equal(r(x), q(x))
        assert torch.equal(monoquant.load(tmp_path / "c.safetensors", model=fresh())(x), q(x))
    monoquant.save(r, tmp_path / "r.safetensors")  # the unpickled model saves as it is: the same bytes
    assert (tmp_path / "r.safetensors").read_bytes() == (tmp_path / "c.safetensors").read_bytes()
    sd = monoquant.load(tmp_path / "c.safetensors")
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    plain = torch.load(buf, weights_only=True)
    assert set(plain) == set(sd) and all(torch.equal(plain[k], sd[k]) for k in sd)


@pytest.mark.parametrize("opts", [dict(bits=8), dict(bits=4, group_size=32, scheme="asymmetric"), dict(bits=16)], ids=["int8", "int4-asym", "fp16"])
def test_dequantize_of_a_state_dict_without_its_engine_handle_is_the_engines(opts):
    """A QuantizedStateDict whose engine handle is gone dequantizes through the engine too (the
    stored parts, original dtypes and names are the engine's rules, not repeated in Python):
    the same tensors as with the handle."""
    torch.manual_seed(0)
    sd = {"a.weight": torch.randn(64, 64).to(torch.bfloat16), "a.bias": torch.randn(64), "b.weight": torch.randn(32, 64)}
    q = monoquant.quantize(sd, **opts)
    want = monoquant.dequantize(q)
    q.handle.close()
    got = monoquant.dequantize(q)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name
    assert got["a.weight"].dtype == torch.bfloat16  # the original dtype, as the config says
    bad = monoquant.QuantizedStateDict(q, config=dict(q.config, tensors={"a.weight": dict(q.config["tensors"]["a.weight"], shape=[3, 3])}))
    with pytest.raises(monoquant.MonoquantError):
        monoquant.dequantize(bad)
