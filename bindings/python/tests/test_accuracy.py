"""Accuracy on a real data set: a small CNN trained here on scikit-learn's bundled 8x8 digits
(no download), quantized every way; the loss in test accuracy must stay within budget."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import monoquant


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.fixture(scope="module")
def trained():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    x, y = x[perm], y[perm]
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    torch.manual_seed(0)
    # Trained in float64, then used in float32: float32 training takes another path through
    # each CPU's kernels (AVX-512, AVX2, oneDNN's ISA) and ends in another model on each, so the
    # accuracies and the searches' fronts here would move with the CPU; float64's rounding
    # differences stay below float32's step (the same float32 model on AVX-512, AVX2 and AVX2
    # oneDNN).
    model = DigitsCNN().double()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        for i in range(0, len(xtr), 64):
            opt.zero_grad()
            F.cross_entropy(model(xtr[i:i + 64].double()), ytr[i:i + 64]).backward()
            opt.step()
    model.float().eval()
    return model, (xtr, ytr), (xte, yte)


def accuracy(model, x, y):
    with torch.no_grad():
        return 100.0 * (model(x).argmax(1) == y).float().mean().item()


CASES = [
    ("int8-static-histogram", dict(bits=8, dynamic=False, observer="histogram"), 1.0),
    ("int8-dynamic", dict(bits=8, dynamic=True), 1.0),
    ("int4-g32", dict(bits=4, group_size=32, group_fallback=True, dynamic=True), 3.0),
    ("fp16", dict(bits=16), 0.1),
]


@pytest.mark.parametrize("name,kwargs,budget", CASES, ids=[c[0] for c in CASES])
def test_accuracy_loss_within_budget(trained, name, kwargs, budget):
    model, (xtr, _), (xte, yte) = trained
    base = accuracy(model, xte, yte)
    assert base > 90, f"the float model reached only {base:.2f}% (training went wrong)"
    if not kwargs.get("dynamic", True):
        kwargs = dict(kwargs, calibration_data=[xtr[i:i + 64] for i in range(0, len(xtr), 64)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        q = monoquant.quantize(model, **kwargs)
    got = accuracy(q, xte, yte)
    print(f"{name}: float {base:.2f}%, quantized {got:.2f}%")
    assert base - got <= budget, f"{name}: accuracy {base:.2f}% -> {got:.2f}%, lost {base - got:.2f} points, budget {budget}"
    n_quantized = sum(isinstance(m, (monoquant.QuantizedConv2d, monoquant.QuantizedLinear)) for m in q.modules())
    assert n_quantized == 4, f"{name}: {n_quantized} layers quantized, want 4"
