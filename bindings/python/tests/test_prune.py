"""Pruning recipes (core/prune): 2:4 and magnitude pruning stored as zeros at an unchanged size,
and hidden units removed between coupled layers (found by torch.fx), which really shrinks both
layers, the file recording the new shapes."""

import warnings

import pytest
import torch

import monoquant
from monoquant._prune import coupled_layers
from test_accuracy import DigitsCNN, accuracy, trained  # noqa: F401 (the fixture)


def quiet_quantize(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        return monoquant.quantize(model, progress=False, **kw)


def test_coupled_layers_found_by_fx():
    assert coupled_layers(DigitsCNN()) == [("features.0", "features.2"), ("classifier.1", "classifier.3")]

    class Residual(torch.nn.Module):  # fc1's output is used twice: not a pair
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

        def forward(self, x):
            h = self.fc1(x)
            return self.fc2(torch.relu(h)) + h

    assert coupled_layers(Residual()) == []


def test_prune_units_shrinks_both_layers(trained, tmp_path):
    model, _, (xte, yte) = trained
    rec = {"rules": [{"match": "classifier.1", "bits": 8, "prune_units": 0.25, "into": "classifier.3"},
                     {"match": "*", "bits": 8}]}
    q = quiet_quantize(model, recipe=rec)
    fc1, fc2 = q.classifier[1], q.classifier[3]
    assert (fc1.in_features, fc1.out_features, fc2.in_features, fc2.out_features) == (512, 48, 48, 10)
    assert model.classifier[1].out_features == 64  # the float model is left as it was
    # The engine kept the units with the most weight flowing through them: ||(w1_j, b1_j)||·||w2[:, j]||.
    w1, b1, w2 = model.classifier[1].weight, model.classifier[1].bias, model.classifier[3].weight
    score = torch.cat([w1, b1[:, None]], 1).double().norm(dim=1) * w2.double().norm(dim=0)
    want = sorted(score.argsort(descending=True)[:48].tolist())
    assert q.monoquant_pruned_units["classifier.1"] == want
    # Smaller in bytes than the same recipe without pruning, by about a quarter of fc1.
    plain = quiet_quantize(model, recipe={"rules": [{"match": "*", "bits": 8}]})
    saved = plain.monoquant_report["total_bytes_after"] - q.monoquant_report["total_bytes_after"]
    assert saved >= 16 * 512 + 16 * 10, saved
    # It still classifies: a quarter of the hidden units cost little on this CNN.
    assert accuracy(q, xte, yte) >= accuracy(model, xte, yte) - 3.0
    # The file records the new shapes; load() into a fresh skeleton fits them and runs the same.
    path = tmp_path / "pruned.safetensors"
    monoquant.save(q, path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.get_slice("classifier.1.weight").get_shape() == [48, 512]
        assert f.get_slice("classifier.3.weight").get_shape() == [10, 48]
    back = monoquant.load(path, DigitsCNN())
    with torch.no_grad():
        assert torch.equal(back(xte[:32]), q(xte[:32]))


def test_prune_units_on_float_layers_matches_manual_shrink():
    torch.manual_seed(0)
    m = DigitsCNN().eval()
    rec = {"rules": [{"match": "classifier.1", "skip": True, "prune_units": 0.5, "into": "classifier.3"},
                     {"match": "classifier.3", "skip": True}, {"match": "*", "bits": 16}]}
    q = quiet_quantize(m, recipe=rec)
    keep = torch.tensor(q.monoquant_pruned_units["classifier.1"])
    assert len(keep) == 32
    ref = DigitsCNN().eval()
    ref.load_state_dict(m.state_dict())
    ref.classifier[1] = torch.nn.Linear(512, 32)
    ref.classifier[3] = torch.nn.Linear(32, 10)
    with torch.no_grad():
        ref.classifier[1].weight.copy_(m.classifier[1].weight[keep])
        ref.classifier[1].bias.copy_(m.classifier[1].bias[keep])
        ref.classifier[3].weight.copy_(m.classifier[3].weight[:, keep])
        ref.classifier[3].bias.copy_(m.classifier[3].bias)
    ref.features = q.features  # the same fp16 features
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(q(x), ref(x))


def test_two_four_and_magnitude_store_zeros_at_the_same_size():
    torch.manual_seed(0)
    m = DigitsCNN().eval()
    plain = quiet_quantize(m, recipe={"rules": [{"match": "*", "bits": 8}]})
    for rule, frac in (({"prune": "2:4"}, 0.5), ({"prune": "magnitude", "sparsity": 0.3}, 0.3)):
        q = quiet_quantize(m, recipe={"rules": [dict({"match": "classifier.1", "bits": 8}, **rule), {"match": "*", "bits": 8}]})
        assert q.monoquant_report["total_bytes_after"] == plain.monoquant_report["total_bytes_after"]
        w = monoquant.dequantize(q).classifier[1].weight
        zeros = int((w == 0).sum())
        assert zeros >= int(frac * w.numel()), (rule, zeros)
        if rule["prune"] == "2:4":
            assert ((w.reshape(-1, 4) != 0).sum(1) <= 2).all()
        # The weights that stay are the large ones: pruning took the smallest.
        orig = m.classifier[1].weight
        assert orig[w == 0].abs().mean() < orig[w != 0].abs().mean()


def test_bad_pruning_recipes_name_the_problem(tmp_path):
    m = DigitsCNN().eval()
    with pytest.raises(ValueError, match="not coupled layers"):
        quiet_quantize(m, recipe=[{"match": "classifier.1", "prune_units": 0.5, "into": "features.2"}, {"match": "*", "bits": 8}])
    with pytest.raises(ValueError, match="2:4 needs rows whose length is a multiple of 4, not 9"):
        quiet_quantize(m, recipe=[{"match": "features.0", "bits": 8, "prune": "2:4"}, {"match": "*", "bits": 8}])
    with pytest.raises(ValueError, match="prune_units must be between 0 and 1|prune_units 2 must be"):
        quiet_quantize(m, recipe=[{"match": "classifier.1", "prune_units": 2, "into": "classifier.3"}])
    # The file pipeline does not shrink checkpoints: it says where structured pruning runs.
    src = tmp_path / "m.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(src))
    with pytest.raises(ValueError, match="prune_units: a recipe that removes hidden units is applied to a live model"):
        monoquant.quantize_file(src, tmp_path / "q.safetensors", recipe=[{"match": "classifier.1", "bits": 8, "prune_units": 0.5, "into": "classifier.3"}])
