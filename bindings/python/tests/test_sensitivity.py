"""monoquant.sensitivity and monoquant.recipe_for: one layer quantized at a time by the engine,
the model run here, the table and the knapsack in the engine (core/sensitivity)."""

import json
import math
import warnings

import pytest
import torch
import torch.nn as nn

import monoquant


def quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        return fn(*a, **kw)


def mlp(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 16)).eval()
    with torch.no_grad():
        model[2].weight[:, :4] *= 30  # a few huge input columns: INT4 groups suffer most here
    return model


def batches(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 64, generator=g) for _ in range(n)]


def test_table_ranks_layers_and_matches_quantizing_the_layer_alone(no_leaks):
    model, data = mlp(), batches()
    before = [p.clone() for p in model.parameters()]
    tab = monoquant.sensitivity(model, data, progress=False)
    assert tab.metric == "output_sqnr" and [f["name"] for f in tab.formats] == ["int8", "int4"]
    assert [l["rank"] for l in tab.layers] == [1, 2, 3] and tab.layers[0]["name"] == "2"
    for l in tab.layers:
        i8, i4 = l["results"]
        assert i8["output_sqnr_db"] > i4["output_sqnr_db"] and i8["weight_sqnr_db"] > i4["weight_sqnr_db"]
        assert i4["score"] == pytest.approx(10 ** (-i4["output_sqnr_db"] / 10))
        assert l["sensitivity"] == i4["score"]
    # the model is left as it was
    assert all(isinstance(m, (nn.Linear, nn.ReLU, nn.Sequential)) for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # each entry is the output SQNR of the model quantized with only that layer in that format
    # (quantize() with a recipe), over all batches at once
    row = {l["name"]: l for l in tab.layers}["0"]
    q = quiet(monoquant.quantize, model, recipe=[{"match": "0", "dtype": "int4"}, {"match": "*", "skip": True}], progress=False)
    with torch.no_grad():
        ref = torch.cat([model(x) for x in data])
        out = torch.cat([q(x) for x in data])
    assert row["results"][1]["output_sqnr_db"] == pytest.approx(monoquant.sqnr(ref, out), abs=1e-4)
    assert row["results"][1]["bytes_after"] == 128 * 64 // 2 + 128 * 8  # values + a scale and zero point per group
    # as data for the search: {layer: sensitivity}
    assert set(tab.sensitivity()) == {"0", "2", "4"} and tab.sensitivity("int8")["2"] == tab.layers[0]["results"][0]["score"]
    text = str(tab)
    assert "int4 dB" in text and "most sensitive first" in text


def test_user_metric_and_formats_as_rule_options():
    model, data = mlp(), batches()
    x = torch.cat(data)
    with torch.no_grad():
        target = model(x).argmax(1)
    calls = []

    def agreement(m):
        calls.append(1)
        with torch.no_grad():
            return float((m(x).argmax(1) == target).float().mean())

    tab = monoquant.sensitivity(model, metric=agreement, formats=["int8", {"bits": 4, "group_size": 32, "method": "hqq"}], progress=False)
    assert tab.metric == "user" and tab.baseline == 1.0 and len(calls) == 1 + 3 * 2
    assert [f["name"] for f in tab.formats] == ["int8", "int4-g32-hqq"]
    assert tab.formats[1]["rule"] == {"match": "", "group_size": 32, "bits": 4, "method": "hqq"} or tab.formats[1]["rule"]["method"] == "hqq"
    for l in tab.layers:
        for r in l["results"]:
            assert r["score"] == pytest.approx(1.0 - r["metric"])
            assert r["weight_sqnr_db"] is not None and "output_sqnr_db" not in r


def test_recipe_for_meets_the_budget_and_beats_uniform_int4(tmp_path):
    model, data = mlp(), batches()
    tab = monoquant.sensitivity(model, data, progress=False)
    r = monoquant.recipe_for(tab, max_bits_per_weight=6)
    assert r["rules"][-1] == {"match": "*", "skip": True} and len(r["rules"]) == 4
    assert r.bits_per_weight <= 6 and {c["layer"]: c["format"] for c in r.choices}["2"] == "int4"  # the most sensitive layer is also the biggest
    p = monoquant.plan(model, recipe=r)
    weights = sum(t["bytes"] // 4 for t in p.tensors if t["action"] == "quantize")
    stored = sum(t["bytes_after"] for t in p.tensors if t["action"] == "quantize")
    assert 8 * stored / weights == pytest.approx(r.bits_per_weight)
    # the recipe is a plain dict: quantize with it, save it, give it to the CLI's --recipe
    q = quiet(monoquant.quantize, model, recipe=r, progress=False)
    q4 = quiet(monoquant.quantize, model, bits=4, progress=False)
    x = torch.cat(data)
    with torch.no_grad():
        assert monoquant.sqnr(model(x), q(x)) > monoquant.sqnr(model(x), q4(x))
    path = tmp_path / "r.json"
    r.save(path)
    assert json.loads(path.read_text()) == dict(r)
    # a model and data give the same recipe as the table
    r2 = monoquant.recipe_for(model, data, max_bits_per_weight=6, progress=False)
    assert dict(r2) == dict(r)
    # max_size counts the whole checkpoint: biases too
    big = monoquant.recipe_for(tab, max_size=10**9)
    assert all(c["format"] == "int8" for c in big.choices) and big.bytes == sum(c["bytes_after"] for c in big.choices) + tab.other_bytes
    tab.save(tmp_path / "t.json")
    assert dict(monoquant.recipe_for(str(tmp_path / "t.json"), max_bits_per_weight=6)) == dict(r)


def test_bad_input_is_named():
    model = mlp()
    with pytest.raises(ValueError, match="needs data="):
        monoquant.sensitivity(model)
    with pytest.raises(ValueError, match=r"formats\[0\].*bits 3"):
        monoquant.sensitivity(model, batches(), formats=[{"bits": 3}], progress=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        monoquant.sensitivity(model, batches(), bitz=4)
    tab = monoquant.sensitivity(model, batches(1), progress=False)
    with pytest.raises(ValueError, match=r"max_bits_per_weight 3 cannot be met: the smallest choice .* takes 4.65\d* bits per weight"):
        monoquant.recipe_for(tab, max_bits_per_weight=3)
    with pytest.raises(ValueError, match="not both"):
        monoquant.recipe_for(tab, max_bits_per_weight=5, max_size=10)
    with pytest.raises(ValueError, match="needs a budget"):
        monoquant.recipe_for(tab)
    with pytest.raises(TypeError, match="number"):
        monoquant.sensitivity(model, metric=lambda m: "good", progress=False)
    with pytest.raises(monoquant.NonFiniteError, match="finite"):
        monoquant.sensitivity(model, metric=lambda m: math.nan, progress=False)


def test_a_transformers_bert_with_dict_inputs():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                                  max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(0, 200, (4, 16), generator=g), "attention_mask": torch.ones(4, 16, dtype=torch.long)} for _ in range(1)]
    tab = monoquant.sensitivity(model, data, formats=["int8"], progress=False)
    names = {l["name"] for l in tab.layers}
    assert "encoder.layer.0.attention.self.query" in names and "pooler.dense" in names and len(names) == 6 + 1
    assert all(l["results"][0]["output_sqnr_db"] > 20 for l in tab.layers)
    # replaying the unchanged blocks gives the table of running the whole model every time
    full = monoquant.sensitivity(model, data, formats=["int8"], progress=False, reuse=False)
    for a, b in zip(tab.layers, full.layers):
        assert a["name"] == b["name"] and a["results"][0]["output_sqnr_db"] == pytest.approx(b["results"][0]["output_sqnr_db"], abs=1e-6)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(32, 32), nn.Tanh())

    def forward(self, x):
        y = self.fc(x)
        y += x  # in place, on a block's output
        return y


def test_replaying_unchanged_blocks_is_exact_with_in_place_ops():
    torch.manual_seed(0)
    model = nn.Sequential(_Residual(), nn.ReLU(inplace=True), _Residual(), nn.ReLU(inplace=True), _Residual()).eval()
    g = torch.Generator().manual_seed(2)
    data = [torch.randn(8, 32, generator=g) for _ in range(3)]
    a = monoquant.sensitivity(model, data, progress=False)
    b = monoquant.sensitivity(model, data, progress=False, reuse=False)
    assert a.to_dict() == b.to_dict()
