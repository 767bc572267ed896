"""Recipes and the engine's decisions from Python: every form of recipe=, plan(), quantize_file(),
defaults(), errors that name the rule, and the one FP16/BF16 overflow rule."""

import json
import warnings

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open

import monoquant

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)).eval()


RECIPE = {"rules": [{"match": "2", "bits": 4, "group_size": 32}, {"match": "4", "skip": True}, {"match": "0", "dtype": "bf16"}]}


def formats(q):
    return {n: m.weight_spec().format for n, m in q.named_modules() if isinstance(m, monoquant.QuantizedLinear)}


@pytest.mark.parametrize("form", ["dict", "list", "json", "path"])
def test_every_form_of_recipe_gives_the_same_model(form, tmp_path):
    m = net()
    p = tmp_path / "r.json"
    p.write_text(json.dumps(RECIPE))
    r = {"dict": RECIPE, "list": RECIPE["rules"], "json": json.dumps(RECIPE), "path": str(p)}[form]
    q = monoquant.quantize(m, recipe=r)
    assert formats(q) == {"0": "bf16", "2": "int4"}, formats(q)
    assert isinstance(q[4], nn.Linear) and not isinstance(q[4], monoquant.QuantizedLinear)
    assert q[2].weight_spec().group_size == 32
    assert q[0].activation == "none" and q[2].activation == "none"  # bf16 and int4 default to weight-only


def test_plan_shows_decisions_without_quantizing():
    m = net()
    p = monoquant.plan(m, recipe=RECIPE, bits=8, scheme="asymmetric")
    by = {t["name"]: t for t in p.tensors}
    assert by["2.weight"]["config"]["format"] == "int4" and by["2.weight"]["rule"] == 0
    assert by["4.weight"]["action"] == "keep" and "rule 2" in by["4.weight"]["reason"]
    assert by["0.weight"]["config"]["format"] == "bf16"
    # the stored tensors and their dtypes come from the engine
    # (rule 1 sets no scheme: it takes the call's asymmetric one, so zero points are stored)
    assert [(s["name"], s["dtype"]) for s in by["2.weight"]["stored"]] == [("2.weight", "U8"), ("2.weight.scale", "F32"), ("2.weight.zero_point", "I32")]
    assert p.recipe["rules"][-1]["match"] == "*" and p.recipe["rules"][-1]["scheme"] == "asymmetric"
    assert 0 < p.bytes_after < p.bytes_before
    assert "rule 1: 2:" in str(p) and m[2].weight.dtype == torch.float32  # nothing was quantized


def test_quantize_file_is_the_files_pipeline(tmp_path):
    m = net()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    rep = monoquant.quantize_file(tmp_path / "m.pt", tmp_path / "q.safetensors", recipe=RECIPE, progress=False)
    assert {t["name"]: t["format"] for t in rep["tensors"]} == {"0.weight": "bf16", "2.weight": "int4"}
    with safe_open(tmp_path / "q.safetensors", "pt") as f:
        cfg = json.loads(f.metadata()["monoquant"])
    assert cfg["tensors"]["2.weight"]["rule"] == 0 and cfg["recipe"]["rules"][1] == {"match": "4", "skip": True}
    # the same file, loaded onto the model skeleton, runs
    q = monoquant.load(tmp_path / "q.safetensors", net())
    assert formats(q) == {"0": "bf16", "2": "int4"}
    with pytest.raises(ValueError, match="one of the input files"):
        monoquant.quantize_file(tmp_path / "m.pt", tmp_path / "m.pt")
    with pytest.raises(TypeError, match="unexpected keyword"):
        monoquant.quantize_file(tmp_path / "m.pt", tmp_path / "x.safetensors", bitz=4)


def test_quantize_file_validates_when_asked(tmp_path):
    m = net()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    rep = monoquant.quantize_file(tmp_path / "m.pt", tmp_path / "q.safetensors", recipe=RECIPE, progress=False, log=False)
    assert "validation" not in rep
    rep = monoquant.quantize_file(tmp_path / "m.pt", tmp_path / "v.safetensors", recipe=RECIPE, progress=False, log=False, validate=True)
    v = rep["validation"]
    # all 6 input tensors (2 quantized, 4 kept) checked, both quantized SQNRs recomputed from the file
    assert v["config_checked"] and v["tensors_checked"] == 6 and v["sqnr_confirmed"] == 2, v
    assert {c["layer"] for c in v["layer_outputs"]} == {"0", "2"} and all(c["output_sqnr_db"] > 10 for c in v["layer_outputs"])
    # validating changes nothing in the file
    assert (tmp_path / "q.safetensors").read_bytes() == (tmp_path / "v.safetensors").read_bytes()


def test_defaults_come_from_the_engine():
    d = monoquant.defaults()
    assert d["bits"] == 8 and d["group_size"] == 128 and d["activations"]["int8"] == "dynamic" and "rtn" in d["methods"]
    assert d["version"] == monoquant.__version__
    # the stored parts' names (docs/FORMAT.md), which Python takes from here and never spells out
    assert d["suffixes"] == {"scale": ".scale", "zero_point": ".zero_point",
                             "outlier_columns": ".outlier_columns", "outlier_weight": ".outlier_weight"}
    from monoquant import files
    assert files.STORED_SUFFIXES == ("", ".scale", ".zero_point", ".outlier_columns", ".outlier_weight")


@pytest.mark.parametrize("recipe,message", [
    ({"rules": [{"match": "2", "bitz": 4}]}, 'rule 1: unknown key "bitz"'),
    ({"rules": [{"match": "0", "skip": True}, {"match": "2", "bits": 3}]}, 'rule 2 \\("2"\\): bits 3 is not supported'),
    ({"rules": [{"match": "2", "bits": 4, "group_size": 48}]}, 'tensor "2.weight" \\(rule 1 \\("2"\\)\\): group_size 48 does not divide the row length 128'),
    ({"rules": [{"match": "2[", "bits": 4}]}, "unclosed"),
    ({"rules": [{"match": "0", "activations": "static"}]}, "needs calibration data"),
])
def test_bad_recipes_name_the_rule(recipe, message):
    with pytest.raises(ValueError, match=message):
        monoquant.quantize(net(), recipe=recipe)


def test_a_rule_that_selects_nothing_warns():
    with pytest.warns(monoquant.MonoquantWarning, match='unused_rule: rule 1 \\("encoder"\\) selects no layer'):
        monoquant.quantize(net(), recipe={"rules": [{"match": "encoder", "bits": 4}]})


def test_fp16_and_bf16_overflow_saturate_with_a_warning(tmp_path):
    for dtype, top in (("fp16", 65504.0), ("bf16", float(torch.finfo(torch.bfloat16).max))):
        m = net()
        with torch.no_grad():
            m[2].weight[0, :3] = torch.tensor([1e5, -1e6, 3.4e38])
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            q = monoquant.quantize(m, dtype=dtype)
        over = [str(w.message) for w in rec if "fp16_overflow" in str(w.message)]
        n = 3 if dtype == "fp16" else 1
        assert over and f'layer "2": {n} values of "2.weight"' in over[0], over
        w = q[2].weight
        assert torch.isfinite(w).all()
        assert w[0, 2] == top and (dtype == "bf16" or (w[0, 0] == top and w[0, 1] == -top))
        monoquant.save(q, tmp_path / f"{dtype}.safetensors")  # the report and the file stay finite
        with safe_open(tmp_path / f"{dtype}.safetensors", "pt") as f:
            assert torch.isfinite(f.get_tensor("2.weight").float()).all()


def test_quant_spec_defaults_are_resolved_by_the_engine():
    s = monoquant.QuantSpec("int4", scheme="asymmetric")
    assert s.to_dict() == {"format": "int4", "scheme": "asymmetric", "granularity": "per_group", "qdtype": "qint4", "group_size": 128}
    assert s.stores_zero_point and s.storage_dtype() == torch.uint8
    assert s.data_shape((4, 6)) == (4, 3) and monoquant.QuantSpec("int8", axis=-1).param_shape((3, 5)) == (5,)
    assert monoquant.QuantSpec().to_dict() == {"format": "int8", "scheme": "symmetric", "granularity": "per_channel", "qdtype": "qint8", "axis": 0}
    with pytest.raises(ValueError, match="storage type qint8 does not match format int4"):
        monoquant.QuantSpec("int4", qdtype="qint8")


def test_quantize_file_records_the_run(tmp_path, monkeypatch):
    """Every file-to-file run is in the run log, under the entry point "python"; log=False and
    MONOQUANT_LOG=0 leave it out; the CLI reproduces a run Python recorded, byte for byte."""
    import os
    import subprocess

    monkeypatch.setenv("MONOQUANT_HOME", str(tmp_path / "home"))
    m = net()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    rep = monoquant.quantize_file(tmp_path / "m.pt", tmp_path / "q.safetensors", recipe=RECIPE, progress=False)
    assert rep["run_id"] == 1
    assert monoquant.quantize_file(tmp_path / "m.pt", tmp_path / "q2.safetensors", progress=False, log=False)["run_id"] == 0
    monkeypatch.setenv("MONOQUANT_LOG", "0")
    assert monoquant.quantize_file(tmp_path / "m.pt", tmp_path / "q3.safetensors", progress=False)["run_id"] == 0
    cli = os.environ.get("MONOQUANT_CLI", os.path.join(os.path.dirname(__file__), "..", "..", "..", "build", "monoquant"))
    if os.path.exists(cli):
        env = dict(os.environ, MONOQUANT_HOME=str(tmp_path / "home"), MONOQUANT_LOG="1")
        out = subprocess.run([cli, "runs", "list", "--json"], env=env, capture_output=True, text=True, check=True).stdout
        runs = json.loads(out)
        assert [r["entry_point"] for r in runs] == ["python"], runs
        r = subprocess.run([cli, "runs", "reproduce", "1"], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.startswith("identical"), r.stdout + r.stderr
