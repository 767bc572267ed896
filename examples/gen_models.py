"""Make the small example models that `make demo` quantizes (run once; outputs are committed).

    .venv/bin/python examples/gen_models.py

* digits_cnn: a small CNN (Conv2d + Linear) trained for a few epochs on scikit-learn's bundled
  8x8 digits data set (no download). Saved as a state_dict (.pt), as safetensors, and as a whole
  pickled nn.Module (.pt) so the layer types can be read from the file.
* tiny_transformer: a 2-layer nn.TransformerEncoder language model trained briefly on a
  synthetic sequence task (predict the next token of a repeating pattern), saved the same ways.

Everything is seeded, so rerunning gives the same files on the same torch version.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from example_models import DigitsCNN, TinyTransformerLM  # noqa: E402


def digits_data():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    x, y = x[perm], y[perm]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def train_cnn():
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = digits_data()
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(12):
        for i in range(0, len(xtr), 64):
            opt.zero_grad()
            loss = F.cross_entropy(model(xtr[i:i + 64]), ytr[i:i + 64])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    print(f"digits_cnn: test accuracy {acc:.4f}")
    return model


def train_transformer():
    torch.manual_seed(0)
    model = TinyTransformerLM()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    vocab = model.vocab
    for step in range(150):
        start = torch.randint(0, vocab, (32, 1))
        stride = torch.randint(1, 4, (32, 1))
        seq = (start + stride * torch.arange(33)) % vocab
        logits = model(seq[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), seq[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"tiny_transformer: final loss {loss.item():.4f}")
    model.eval()
    return model


def save_all(model, name):
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    torch.save(sd, os.path.join(HERE, f"{name}.pt"))
    save_file(sd, os.path.join(HERE, f"{name}.safetensors"), metadata={"model": name})
    torch.save(model, os.path.join(HERE, f"{name}_module.pt"))


if __name__ == "__main__":
    torch.set_num_threads(2)
    save_all(train_cnn(), "digits_cnn")
    save_all(train_transformer(), "tiny_transformer")
