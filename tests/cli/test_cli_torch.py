"""The CLI's output files, judged by real torch (run by `make test-cli-py`, part of `make test`).

The Go tests read outputs back with core/checkpoint; here torch and the safetensors library do,
as a user would: `torch.load(..., weights_only=True)` and `safe_open`. INT8 values must equal
torch's own PerChannelMinMaxObserver + quantize_per_channel bit for bit, FP16/BF16 must equal
`.half()` / `.bfloat16()`, the reported SQNR must match torch's compute_sqnr, and `dequantize`
must give (q - zp) * scale exactly.
"""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.ao.ns.fx.utils import compute_sqnr
from torch.ao.quantization.observer import PerChannelMinMaxObserver

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("MONOQUANT_CLI", os.path.join(ROOT, "build", "monoquant"))
sys.path.insert(0, os.path.join(ROOT, "examples"))  # the pickled modules' classes
# torch deprecates quantize_per_channel, but it is still the reference the files must match.
pytestmark = pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions:UserWarning")
EXAMPLES = ["examples/digits_cnn.pt", "examples/digits_cnn_module.pt", "examples/tiny_transformer.safetensors"]


def cli(*args):
    p = subprocess.run([CLI, *args], capture_output=True, text=True)
    assert p.returncode == 0, f"monoquant {' '.join(args)}: exit {p.returncode}: {p.stderr}"
    return p.stdout


def load_any(path):
    if path.endswith(".safetensors"):
        return load_file(path)
    sd = torch.load(path, weights_only=False if path.endswith("_module.pt") else True)
    if isinstance(sd, torch.nn.Module):
        sd = sd.state_dict()
    return dict(sd)


def load_output(path):
    """The quantized file as torch sees it: tensors and the monoquant config."""
    if path.endswith(".safetensors"):
        with safe_open(path, framework="pt") as f:
            cfg = json.loads(f.metadata()["monoquant"])
            return {k: f.get_tensor(k) for k in f.keys()}, cfg
    obj = torch.load(path, weights_only=True)
    assert isinstance(obj, dict)
    return obj, None


@pytest.fixture(scope="module", autouse=True)
def built_cli():
    if not os.path.exists(CLI):
        pytest.skip(f"{CLI} is not built (make cli)")


@pytest.mark.parametrize("model", EXAMPLES)
@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_int8_matches_torch(model, ext, tmp_path):
    out = str(tmp_path / ("q" + ext))
    rep = json.loads(cli("quantize", "--model", os.path.join(ROOT, model), "--bits", "8", "--out", out, "--json", "--quiet"))
    orig = load_any(os.path.join(ROOT, model))
    q, cfg = load_output(out)
    if cfg is not None:
        assert set(cfg["tensors"]) == {t["name"] for t in rep["report"]["tensors"]}
    reported = {t["name"]: t for t in rep["report"]["tensors"]}
    assert reported, "nothing was quantized"
    for name, w in orig.items():
        if name not in reported:
            assert torch.equal(q[name], w), f"{name} should be copied unchanged"
            continue
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        obs(w)
        scale, zp = obs.calculate_qparams()
        want = torch.quantize_per_channel(w, scale, zp, 0, torch.qint8)
        assert q[name].dtype == torch.int8
        assert torch.equal(q[name], want.int_repr()), f"{name}: INT8 values differ from torch's"
        assert torch.equal(q[name + ".scale"], scale.to(torch.float32)), f"{name}: scales differ from torch's"
        assert name + ".zero_point" not in q, "symmetric qint8 stores no zero point"
        sqnr = compute_sqnr(w, want.dequantize()).item()
        assert abs(sqnr - reported[name]["sqnr_db"]) < 1e-3, f"{name}: SQNR {reported[name]['sqnr_db']} vs torch {sqnr}"


@pytest.mark.parametrize("dtype,flags", [(torch.float16, []), (torch.bfloat16, ["--dtype", "bf16"])])
def test_half_casts_match_torch(dtype, flags, tmp_path):
    model = os.path.join(ROOT, "examples", "tiny_transformer.safetensors")
    out = str(tmp_path / "h.safetensors")
    rep = json.loads(cli("quantize", "--model", model, "--bits", "16", *flags, "--out", out, "--json", "--quiet"))
    orig, (q, _) = load_any(model), load_output(out)
    for t in rep["report"]["tensors"]:
        assert torch.equal(q[t["name"]], orig[t["name"]].to(dtype)), t["name"]


@pytest.mark.parametrize("bits,scheme", [("8", "asymmetric"), ("4", "symmetric"), ("4", "asymmetric")])
def test_dequantize_is_q_minus_zp_times_scale(bits, scheme, tmp_path):
    model = os.path.join(ROOT, "examples", "digits_cnn.pt")
    q_path, d_path = str(tmp_path / "q.safetensors"), str(tmp_path / "d.pt")
    cli("quantize", "--model", model, "--bits", bits, "--scheme", scheme, "--group-size", "32", "--group-fallback", "--out", q_path, "--quiet") if bits == "4" else \
        cli("quantize", "--model", model, "--bits", bits, "--scheme", scheme, "--out", q_path, "--quiet")
    cli("dequantize", q_path, "--out", d_path, "--quiet")
    q, cfg = load_output(q_path)
    d = torch.load(d_path, weights_only=True)
    orig = load_any(model)
    assert set(d) == set(orig)
    for name, tc in cfg["tensors"].items():
        assert d[name].dtype == torch.float32 and list(d[name].shape) == tc["shape"]
        vals = q[name]
        if tc["format"] == "int4":
            # Two values per byte, the even flat index in the low nibble; signed values are
            # two's-complement nibbles (docs/FORMAT.md).
            b = vals.reshape(-1).to(torch.int32)
            nib = torch.stack([b & 0xF, b >> 4], dim=1).reshape(-1)[: orig[name].numel()]
            if tc["qdtype"] == "qint4":
                nib = torch.where(nib >= 8, nib - 16, nib)
            ints = nib.reshape(tc["quant_shape"]).to(torch.float32)
        else:
            ints = vals.to(torch.float32).reshape(tc["quant_shape"])
        scale = q[name + ".scale"]
        zp = q[name + ".zero_point"].to(torch.float32) if tc["zero_point"] else torch.zeros_like(scale)
        if tc["granularity"] == "per_group":
            rows, k = tc["quant_shape"]
            g = tc["group_size"]
            want = ((ints.reshape(rows, k // g, g) - zp.reshape(rows, k // g, 1)) * scale.reshape(rows, k // g, 1)).reshape(rows, k)
        else:
            shape = [-1] + [1] * (ints.dim() - 1)
            want = (ints - zp.reshape(shape)) * scale.reshape(shape)
        assert torch.equal(d[name].reshape(want.shape), want), f"{name}: dequantized values differ from (q - zp) * scale"
        assert compute_sqnr(orig[name], d[name]).item() > (30 if bits == "8" else 12)
    for name in set(orig) - set(cfg["tensors"]):
        assert torch.equal(d[name], orig[name]), f"{name} should be copied unchanged"


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "histogram"])
def test_static_calibration_from_python_recording(observer, tmp_path):
    """Activations recorded by the Python package feed the CLI's --calibration; the stored
    activation qparams equal torch's observer of the same name (quint8, affine, defaults) fed
    the same tensors in the same order."""
    lib = os.environ.get("MONOQUANT_LIBRARY", os.path.join(ROOT, "build", "libmonoquant.so"))
    if not os.path.exists(lib):
        pytest.skip(f"{lib} is not built (make lib)")
    os.environ["MONOQUANT_LIBRARY"] = lib
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import monoquant
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver
    torch_observer = {"minmax": MinMaxObserver, "moving_average": MovingAverageMinMaxObserver, "histogram": HistogramObserver}[observer]

    model_path = os.path.join(ROOT, "examples", "digits_cnn_module.pt")
    model = torch.load(model_path, weights_only=False)
    g = torch.Generator().manual_seed(7)
    batches = [torch.rand(8, 1, 8, 8, generator=g) for _ in range(3)]
    acts = str(tmp_path / "acts.safetensors")
    layers = monoquant.record_activations(model, batches, acts)
    out = str(tmp_path / "q.safetensors")
    rep = json.loads(cli("quantize", "--model", model_path, "--calibration", acts, "--observer", observer,
                         "--out", out, "--json", "--quiet"))
    assert rep["mode"] == "static"
    got = rep["report"]["activations"]
    assert sorted(got) == sorted(layers)
    recorded = load_file(acts)
    for layer in layers:
        obs = torch_observer(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
        for i in range(len(batches)):
            obs(recorded[f"{layer}.{i}"])
        scale, zp = obs.calculate_qparams()
        assert got[layer]["batches"] == len(batches)
        # JSON holds the float32 scale in its shortest form: compare as float32.
        mine = torch.tensor(got[layer]["scale"], dtype=torch.float32)
        assert torch.equal(mine, scale.to(torch.float32)), f"{layer}: scale {mine} vs torch {scale}"
        assert got[layer]["zero_point"][0] == zp.item(), f"{layer}: zero point"
    with safe_open(out, framework="pt") as f:
        assert json.loads(f.metadata()["monoquant"])["activations"] == got
