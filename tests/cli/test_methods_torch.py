"""core/method judged by torch and the reference implementations (part of `make test-cli-py`).

hqq: parity with the `hqq` package (test-only dependency) on the same matrices. The package
optimises a float zero point; our files store integer zero points (docs/FORMAT.md), so the
test holds monoquant's hqq to more than the package's result once its zero is rounded to an
integer (the same stored form), and to the package's SQNR with float zeros (what torchao's HQQ
stores): at least it at group size 128, within 0.3 dB of it at 64; and its error is orthogonal
to the weights in every group (no shrink).
mse: never below round-to-nearest with the same scheme. Every file is dequantized by torch with
the format's rule, (q - zero_point) * scale, not by monoquant.
"""
import json
import os
import subprocess

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("MONOQUANT_CLI", os.path.join(ROOT, "build", "monoquant"))


def sqnr(x, y):
    return (10 * torch.log10(x.double().pow(2).sum() / (x.double() - y.double()).pow(2).sum())).item()


def matrices():
    """Heavy-tailed weights (Student-t, df 4), the shape of trained Linear weights' tails."""
    g = torch.Generator().manual_seed(14)
    out = {}
    for i, (r, k) in enumerate([(256, 512), (384, 256), (128, 1024)]):
        # chi-square with 4 degrees of freedom from the seeded generator (Chi2.sample would
        # draw from the global one: other matrices on every run)
        chi = torch.randn(4, r, k, generator=g).pow(2).sum(0)
        t = torch.randn(r, k, generator=g) / torch.sqrt(chi / 4)
        out[f"l{i}.weight"] = (0.02 * t).float().contiguous()
    return out


def quantize(tmp_path, weights, group, *flags):
    src = str(tmp_path / "w.safetensors")
    save_file(weights, src)
    out = str(tmp_path / ("q" + "_".join(flags).replace("-", "") + ".safetensors"))
    p = subprocess.run([CLI, "quantize", "--model", src, "--out", out, "--bits", "4", "--group-size", str(group),
                        "--layers", "linear", "--quiet", "--json", *flags], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    with safe_open(out, "pt") as f:
        cfg = json.loads(f.metadata()["monoquant"])
        q = {k: f.get_tensor(k) for k in f.keys()}
    back = {}
    for name, tc in cfg["tensors"].items():
        rows, k = tc["quant_shape"]
        b = q[name].reshape(-1).to(torch.int32)
        v = torch.stack([b & 0xF, (b >> 4) & 0xF], 1).reshape(-1)[: rows * k]
        if tc["qdtype"] == "qint4":
            v = torch.where(v > 7, v - 16, v)
        v = v.reshape(rows, k // group, group).float()
        s = q[name + ".scale"].reshape(rows, k // group, 1)
        z = q[name + ".zero_point"].reshape(rows, k // group, 1).float() if tc["zero_point"] else 0.0
        back[name] = ((v - z) * s).reshape(rows, k)
    return back, cfg, json.loads(p.stdout)


def hqq_package(w, group, round_zero):
    hqq = pytest.importorskip("hqq.core.quantize")
    wq, meta = hqq.Quantizer.quantize(w, nbits=4, group_size=group, axis=1, optimize=True, round_zero=round_zero,
                                      bitpack=False, device="cpu")
    if round_zero:
        meta["zero"] = torch.round(meta["zero"])
    return hqq.Quantizer.dequantize(wq, meta).reshape(w.shape).float()


@pytest.mark.parametrize("group", [64, 128])
def test_hqq_parity_with_hqq_package(tmp_path, group):
    w = matrices()
    ours, cfg, report = quantize(tmp_path, w, group, "--method", "hqq")
    for name, x in w.items():
        tc = cfg["tensors"][name]
        assert tc["method"] == "hqq" and tc["scheme"] == "asymmetric" and tc["zero_point"]
        got = sqnr(x, ours[name])
        pkg_float = sqnr(x, hqq_package(x, group, False))
        pkg_int = sqnr(x, hqq_package(x, group, True))
        print(f"{name} g{group}: monoquant hqq {got:.3f} dB, hqq package {pkg_float:.3f} dB (float zero), {pkg_int:.3f} dB (integer zero)")
        # g128: at least the package's float zeros; g64, where a float zero per 64 values
        # carries more, within 0.3 dB of them (measured: 0.27 dB below on l0; 0.19-0.21 dB
        # before hqq kept its error orthogonal to the weights, which costs 0.05-0.09 dB here)
        assert got >= pkg_float - (0.02 if group == 128 else 0.3), (name, got, pkg_float)
        assert got > pkg_int, (name, got, pkg_int)
        # no shrink (core/method unshrink): Σ x·x̂ = Σ x² in every group, as the package's
        # min/max step with a float zero gives on average; a least-squares fit would pull every
        # group toward its zero point by about 1/SQNR (2 % at 17 dB)
        xg, qg = x.double().reshape(-1, group), ours[name].double().reshape(-1, group)
        rel = ((xg * qg).sum(1) / (xg * xg).sum(1) - 1).abs().max().item()
        assert rel < 1e-5, (name, rel)
    # the report's SQNR is the error of the stored integers, as torch computes it
    by_name = {t["name"]: t["sqnr_db"] for t in report["report"]["tensors"]}
    for name, x in w.items():
        assert abs(by_name[name] - sqnr(x, ours[name])) < 1e-3


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_mse_not_below_rtn(tmp_path, scheme):
    w = matrices()
    rtn, _, _ = quantize(tmp_path, w, 128, "--scheme", scheme)
    mse, cfg, _ = quantize(tmp_path, w, 128, "--scheme", scheme, "--method", "mse")
    for name, x in w.items():
        assert cfg["tensors"][name]["method"] == "mse"
        a, b = sqnr(x, rtn[name]), sqnr(x, mse[name])
        print(f"{name} {scheme}: rtn {a:.3f} dB, mse {b:.3f} dB")
        assert b > a + 0.2, (name, a, b)
