"""Generate the tied-parameter fixtures (issue 12): state dicts whose tensors share storage as
tied parameters do (run: .venv/bin/python testdata/gen_tied_fixtures.py from the repo root; the
outputs are committed, beside gen_torch_fixtures.py's).

testdata/checkpoints/torch/tied.pt         a language-model-shaped net: emb (Embedding [40, 16])
                                           tied to head (Linear [40, 16]), fc (Linear [16, 16]),
                                           and two Linear layers a and b sharing one weight.
testdata/checkpoints/torch/tied_legacy.pt  the same, in torch's legacy (non-zip) format.
testdata/checkpoints/torch/tied_module.pt  the whole module pickled (torch.save(model)).
testdata/checkpoints/torch/tied_views.pt   same storage but different views (offset, shape,
                                           transpose): not tied, each stored on its own.
"""

import collections
import os

import torch
from torch import nn

GOOD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "torch")


class TiedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 16)
        self.fc = nn.Linear(16, 16)
        self.a = nn.Linear(16, 16, bias=False)
        self.b = nn.Linear(16, 16, bias=False)
        self.b.weight = self.a.weight
        self.head = nn.Linear(16, 40, bias=False)
        self.head.weight = self.emb.weight


def main():
    torch.manual_seed(0)
    sd = TiedNet().state_dict()
    assert sd["head.weight"].data_ptr() == sd["emb.weight"].data_ptr()
    torch.save(sd, os.path.join(GOOD, "tied.pt"))
    torch.save(sd, os.path.join(GOOD, "tied_legacy.pt"), _use_new_zipfile_serialization=False)
    torch.manual_seed(0)
    torch.save(TiedNet(), os.path.join(GOOD, "tied_module.pt"))
    base = torch.randn(8, 8)
    views = collections.OrderedDict()
    views["x.weight"] = base
    views["rows.weight"] = base[2:6]   # same storage, another offset and shape
    views["t.weight"] = base.t()       # same storage and offset, other strides
    views["flat.weight"] = base.view(4, 16)  # same offset, other shape
    torch.save(views, os.path.join(GOOD, "tied_views.pt"))


if __name__ == "__main__":
    main()
