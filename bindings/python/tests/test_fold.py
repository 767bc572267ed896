"""Conv-BN(-ReLU) folding (docs/folding.md): parity with torch.ao.quantization.fuse_modules,
pairs found in nn.Sequential and through torch.fx, pairs named by a recipe (Python, the CLI on
files), refusals naming both modules, save/load, and static INT8 accuracy with folding."""

import copy
import json
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.quantization import fuse_modules

import monoquant

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

# oneDNN's int8 conv where it sums exactly (CPUs with VNNI), the dequantizing path elsewhere.
CONV_KERNEL = "onednn_static" if monoquant._kernels._probe_onednn_conv() else "dequant"

ROOT = Path(__file__).resolve().parents[3]


def trained_bn(m, seed=0, shape=(16, 3, 10, 10)):
    """Gives the norms of m running statistics away from the identity, then eval mode."""
    torch.manual_seed(seed)
    m.train()
    with torch.no_grad():
        for _ in range(5):
            m(torch.randn(*shape) * 2 + 1)
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.weight.uniform_(0.5, 2.0)
                mod.bias.uniform_(-0.5, 0.5)
    return m.eval()


def seq_cnn(bias=False):
    return trained_bn(nn.Sequential(nn.Conv2d(3, 8, 3, bias=bias), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16, eps=1e-3),
                                    nn.Flatten(), nn.Linear(16 * 8 * 8, 10)))


def calib(n=4, shape=(16, 3, 10, 10), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) * 2 + 1 for _ in range(n)]


@pytest.mark.parametrize("bias", [False, True], ids=["no-conv-bias", "conv-bias"])
def test_folded_float_weights_equal_torch_fuse_modules(bias):
    """Layers left in float (skipped) hold the folded weights exactly as torch computes them."""
    m = seq_cnn(bias)
    ref = fuse_modules(copy.deepcopy(m), [["0", "1", "2"], ["3", "4"]])
    q = monoquant.quantize(m, bits=8, dynamic=True, skip=["0", "3"], progress=False)
    assert isinstance(q[1], nn.Identity) and isinstance(q[4], nn.Identity)
    assert isinstance(q[2], nn.ReLU)  # a float conv does not fuse the ReLU
    for qi, ri in ((0, ref[0][0]), (3, ref[3])):
        assert torch.allclose(q[qi].weight, ri.weight, rtol=1e-6, atol=1e-7), (q[qi].weight - ri.weight).abs().max()
        assert torch.allclose(q[qi].bias, ri.bias, rtol=1e-6, atol=1e-6), (q[qi].bias - ri.bias).abs().max()
    x = torch.randn(4, 3, 10, 10)
    ref[6] = q[6]  # the one quantized layer, shared: the rest must agree to float rounding
    with torch.no_grad():
        assert torch.allclose(q(x), ref(x), rtol=1e-5, atol=1e-5)


def test_static_int8_folded_matches_torch_ao_fused_static():
    """The quantized folded conv holds torch's fused weight, quantized per channel as torch does,
    and runs quantize → int8 conv (+ fused ReLU) → float, as the reference does in float."""
    from torch.ao.quantization import PerChannelMinMaxObserver

    m = seq_cnn(True)
    ref = fuse_modules(copy.deepcopy(m), [["0", "1", "2"], ["3", "4"]])
    q = monoquant.quantize(m, bits=8, calibration_data=calib(), observer="minmax", progress=False)
    c0 = q[0]
    assert c0.kernel == CONV_KERNEL and c0.relu and isinstance(q[2], nn.Identity)
    rows = {r["name"]: r for r in monoquant.report(m, q).layers}
    assert rows["0"]["kernel"] == CONV_KERNEL and rows["0"]["sqnr_db"] > 35  # against the folded weight
    fw = ref[0][0].weight.detach()
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(fw)
    s, z = obs.calculate_qparams()
    want_w = torch.quantize_per_channel(fw, s.double(), z.long(), 0, torch.qint8).dequantize()
    assert torch.allclose(c0.weight, want_w, atol=1e-6), (c0.weight - want_w).abs().max()
    x = torch.randn(4, 3, 10, 10) * 2 + 1
    xd = torch.quantize_per_tensor(x, float(c0.input_scale), int(c0.input_zero_point), torch.quint8).dequantize()
    want = F.relu(F.conv2d(xd, want_w, ref[0][0].bias.detach()))
    with torch.no_grad():
        got = c0(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()


class Block(nn.Module):
    """Conv-BN-ReLU written as a forward, not an nn.Sequential: found through torch.fx."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.skip_conv = nn.Conv2d(3, 8, 1)
        self.skip_bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)
        self.fc_bn = nn.BatchNorm1d(4)

    def forward(self, x):
        y = self.act(self.bn(self.conv(x)))
        s = self.skip_conv(x)
        y = y + self.skip_bn(s) + s  # skip_conv feeds two users: not foldable
        return self.fc_bn(self.fc(y.mean((2, 3))))


def test_pairs_found_in_sequential_and_by_fx():
    from monoquant import _fold

    assert _fold.find_pairs(seq_cnn()) == [("0", "1", "2"), ("3", "4", None)]
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(5 - 1), nn.Conv2d(4, 4, 1), nn.MaxPool2d(2), nn.BatchNorm2d(4))
    assert sorted(_fold.find_pairs(nested)) == [("0.0", "0.1", None), ("1", "2", None)]  # not through the pool
    shared = nn.Conv2d(3, 3, 1)
    assert _fold.find_pairs(nn.Sequential(shared, nn.BatchNorm2d(3), shared, nn.BatchNorm2d(3))) == []
    assert sorted(_fold.find_pairs(trained_bn(Block(), shape=(4, 3, 6, 6)))) == [("conv", "bn", "act"), ("fc", "fc_bn", None)]


def test_fx_found_pairs_fold_and_quantize():
    m = trained_bn(Block(), shape=(8, 3, 6, 6))
    q = monoquant.quantize(m, bits=8, calibration_data=calib(shape=(16, 3, 6, 6)), progress=False)
    assert isinstance(q.bn, nn.Identity) and isinstance(q.act, nn.Identity) and isinstance(q.fc_bn, nn.Identity)
    assert isinstance(q.skip_bn, nn.BatchNorm2d) and q.conv.relu and q.conv.kernel == CONV_KERNEL
    x = torch.randn(4, 3, 6, 6) * 2 + 1
    with torch.no_grad():
        assert monoquant.sqnr(m(x), q(x)) > 25


def test_recipe_pairs_and_refusals():
    m = seq_cnn()
    # fold=False: only what the recipe names.
    q = monoquant.quantize(m, bits=8, dynamic=True, fold=False, recipe={"rules": [{"match": "*", "bits": 8}], "fold": [["0", "1"]]}, progress=False)
    assert isinstance(q[1], nn.Identity) and isinstance(q[4], nn.BatchNorm2d)
    assert q.monoquant_report is not None
    # Not directly after: refused by the engine for numbered neighbours, naming both modules.
    with pytest.raises(ValueError, match=r'"1".*"3".*not directly after'):
        monoquant.quantize(m, bits=8, dynamic=True, fold=[["3", "1"]], progress=False)
    # ... and by the live module walk for any other names.
    b = trained_bn(Block(), shape=(4, 3, 6, 6))
    with pytest.raises(ValueError, match=r"cannot fold 'skip_bn' into 'conv': 'skip_bn' is not directly after 'conv'"):
        monoquant.quantize(b, bits=8, dynamic=True, fold=[["conv", "skip_bn"]], progress=False)
    with pytest.raises(ValueError, match=r"cannot fold 'skip_bn' into 'skip_conv': 'skip_bn' is not directly after"):
        monoquant.quantize(b, bits=8, dynamic=True, fold=[["skip_conv", "skip_bn"]], progress=False)
    with pytest.raises(ValueError, match=r"""cannot fold .act. into .conv."""):
        monoquant.quantize(b, bits=8, dynamic=True, fold=[["conv", "act"]], progress=False)
    # A recipe pair whose eps is not the module's.
    with pytest.raises(ValueError, match=r"eps 1e-05.*module's eps is 0.001"):
        monoquant.quantize(m, bits=8, dynamic=True, fold=False, recipe={"rules": [{"match": "*"}], "fold": [["3", "4"]]}, progress=False)
    with pytest.raises(ValueError, match="fold"):
        monoquant.quantize(m, bits=8, dynamic=True, recipe={"rules": [{"match": "*"}], "fold": [["0"]]}, progress=False)


def test_save_and_load_keep_the_folded_structure(tmp_path):
    m = seq_cnn()
    q = monoquant.quantize(m, bits=8, calibration_data=calib(), progress=False)
    x = torch.randn(3, 3, 10, 10)
    with torch.no_grad():
        want = q(x)
    path = tmp_path / "q.safetensors"
    monoquant.save(q, path)
    # plan() shows the same pairs, found the same way.
    assert [p["layer"] for p in monoquant.plan(m, calibration_data=calib()).recipe["fold"]] == ["0", "3"]
    deq = monoquant.dequantize(q)
    assert isinstance(deq[2], nn.ReLU) and isinstance(deq[0], nn.Conv2d)
    with torch.no_grad():
        assert monoquant.sqnr(m(x), deq(x)) > 25
    back = monoquant.load(path, seq_cnn())
    assert isinstance(back[1], nn.Identity) and isinstance(back[4], nn.Identity) and back[0].relu
    with torch.no_grad():
        assert torch.allclose(back(x), want, atol=1e-6)


def test_cli_folds_the_pairs_a_recipe_names(tmp_path):
    """A checkpoint file: the CLI folds the recipe's pairs with the engine's arithmetic."""
    safetensors = pytest.importorskip("safetensors.torch")
    m = seq_cnn(bias=False)
    src = tmp_path / "cnn.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(src))
    rec = tmp_path / "recipe.json"
    rec.write_text(json.dumps({"rules": [{"match": "*", "bits": 8}], "fold": [["0", "1"], {"layer": "3", "norm": "4", "eps": 1e-3}]}))
    out = tmp_path / "out.safetensors"
    r = subprocess.run([str(ROOT / "build" / "monoquant"), "quantize", "--model", str(src), "--recipe", str(rec), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = safetensors.load_file(str(out))
    assert not any(k.startswith(("1.", "4.")) for k in got)
    ref = fuse_modules(copy.deepcopy(m), [["0", "1"], ["3", "4"]])
    assert torch.allclose(got["0.bias"], ref[0].bias, atol=1e-6) and torch.allclose(got["3.bias"], ref[3].bias, atol=1e-6)
    deq = monoquant.dequantize(str(out))
    for i in (0, 3):
        assert (deq[f"{i}.weight"] - ref[i].weight).abs().max() <= got[f"{i}.weight.scale"].max() * 0.5 + 1e-6
    # A pair out of order is refused, naming both modules.
    rec.write_text(json.dumps({"rules": [{"match": "*"}], "fold": [["0", "4"]]}))
    r = subprocess.run([str(ROOT / "build" / "monoquant"), "quantize", "--model", str(src), "--recipe", str(rec), "--out", str(tmp_path / "bad.safetensors")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and '"4"' in r.stderr and '"0"' in r.stderr and "not directly after" in r.stderr, r.stderr


class DigitsBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_static_int8_accuracy_with_folding_at_least_without():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    torch.manual_seed(0)
    model = DigitsBN().double()  # trained in float64: the same float32 model on every CPU (test_accuracy)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(6):
        for i in range(0, len(xtr), 64):
            opt.zero_grad()
            F.cross_entropy(model(xtr[i:i + 64].double()), ytr[i:i + 64]).backward()
            opt.step()
    model.float().eval()

    def acc(m):
        with torch.no_grad():
            return 100.0 * (m(xte).argmax(1) == yte).float().mean().item()

    cal = [xtr[i:i + 64] for i in range(0, len(xtr), 64)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        folded = monoquant.quantize(model, bits=8, calibration_data=cal, progress=False)
        plain = monoquant.quantize(model, bits=8, calibration_data=cal, progress=False, fold=False)
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules()) == 0
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.modules()) == 3
    base, a_fold, a_plain = acc(model), acc(folded), acc(plain)
    print(f"float {base:.2f}%, static INT8 folded {a_fold:.2f}%, not folded {a_plain:.2f}%")
    assert base > 90
    assert a_fold >= a_plain, f"folded {a_fold:.2f}% < not folded {a_plain:.2f}%"
    assert base - a_fold <= 1.0
