"""Torch .pt interop: files torch.save writes are read value-exact by core/checkpoint/torchpt, files
torchpt writes load with torch.load(weights_only=True) (plain and mmap) value-exact with their
metadata, and hostile files are refused naming the global. The Go side runs through pttool."""
import base64
import collections
import json
import resource
import subprocess

import pytest
import torch
from torch import nn

from conftest import REPO

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.bool: "BOOL",
}
MALICIOUS = REPO / "testdata" / "malicious"


def raw(t):
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.rnn = nn.LSTM(6, 5, num_layers=2)
        self.emb = nn.Embedding(11, 6)
        self.fc = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
        self.register_buffer("mask", torch.tensor([True, False]))
        self.register_buffer("tmp", torch.ones(2), persistent=False)


def check_dump(dump, named):
    got = [(e["name"], e["dtype"], e["shape"]) for e in dump["entries"]]
    want = [(n, DTYPES[t.dtype], list(t.shape)) for n, t in named]
    assert got == want
    for e, (n, t) in zip(dump["entries"], named):
        assert base64.b64decode(e.get("data") or "") == raw(t), f"{n}: bytes differ from torch's"


def state_cases():
    torch.manual_seed(1)
    base = torch.randn(6, 8)
    return {
        "state_dict": Net().state_dict(),
        "dtypes": collections.OrderedDict(
            (str(dt), (torch.randn(3, 2) * 50).to(dt) if dt.is_floating_point or dt == torch.bool
             else torch.randint(-100 if dt != torch.uint8 else 0, 100, (3, 2), dtype=dt))
            for dt in DTYPES),
        "views": collections.OrderedDict(
            base=base, t=base.t(), cols=base[:, 1::3], row=base[2], scalar=base[1, 1],
            expanded=torch.arange(4.0).expand(3, 4), bf16=torch.randn(4, 3).bfloat16().t()),
    }


@pytest.mark.parametrize("case", ["state_dict", "dtypes", "views"])
@pytest.mark.parametrize("legacy", [False, True])
def test_reads_torch_save(tmp_path, pttool, case, legacy):
    sd = state_cases()[case]
    p = tmp_path / "m.pt"
    torch.save(sd, p, _use_new_zipfile_serialization=not legacy)
    dump = pttool.json("dump", p)
    check_dump(dump, list(sd.items()))
    assert dump["metadata"] == {}
    assert dump["module_types"] is None


def test_reads_nested_containers(tmp_path, pttool):
    obj = {"model": {"w": torch.randn(2, 2), "blocks": [torch.ones(3), {"b": torch.zeros(1)}]},
           "epoch": 3, "opt": {"state": {0: {"momentum_buffer": torch.randn(2)}}},
           "pair": (torch.tensor([1, 2]), torch.tensor(0.5))}
    p = tmp_path / "nested.pt"
    torch.save(obj, p, pickle_protocol=4)
    dump = pttool.json("dump", p)
    check_dump(dump, [("model.w", obj["model"]["w"]), ("model.blocks.0", obj["model"]["blocks"][0]),
                      ("model.blocks.1.b", obj["model"]["blocks"][1]["b"]),
                      ("opt.state.0.momentum_buffer", obj["opt"]["state"][0]["momentum_buffer"]),
                      ("pair.0", obj["pair"][0]), ("pair.1", obj["pair"][1])])


def test_reads_whole_module(tmp_path, pttool):
    net = Net()
    p = tmp_path / "module.pt"
    torch.save(net, p)
    dump = pttool.json("dump", p)
    check_dump(dump, list(net.state_dict().items()))
    assert dump["module_types"] == {name: f"{type(m).__module__}.{type(m).__qualname__}"
                                    for name, m in net.named_modules()}
    assert dump["module_types"]["fc.0"] == "torch.nn.modules.linear.Linear"


def write_with_pttool(pttool, tmp_path, named, metadata):
    spec = {"tensors": [], "metadata": metadata}
    for i, (name, t) in enumerate(named):
        f = tmp_path / f"t{i}.bin"
        f.write_bytes(raw(t))
        spec["tensors"].append({"name": name, "dtype": DTYPES[t.dtype], "shape": list(t.shape), "file": str(f)})
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "ours.pt"
    pttool.run("write", out, tmp_path / "spec.json")
    return out


@pytest.mark.parametrize("mmap", [False, True])
def test_torch_loads_our_file(tmp_path, pttool, mmap):
    named = [(n, t) for case in state_cases().values() for n, t in case.items()]
    named = [(f"{i}.{n}", t) for i, (n, t) in enumerate(named)] + [("empty", torch.zeros(0, 3))]
    meta = {"monoquant.format_version": "1", "config": json.dumps({"bits": 8, "scheme": "sym"}), "ünï": "cödé"}
    out = write_with_pttool(pttool, tmp_path, named, meta)
    sd = torch.load(out, weights_only=True, mmap=mmap)
    assert type(sd) is collections.OrderedDict
    assert list(sd.keys()) == [n for n, _ in named]
    for n, t in named:
        assert sd[n].dtype == t.dtype and sd[n].shape == t.shape, n
        assert raw(sd[n]) == raw(t), f"{n}: torch read different bytes"
    assert sd._monoquant_metadata == meta


def test_round_trip_state_dict_loads_into_module(tmp_path, pttool):
    net = Net()
    p = tmp_path / "orig.pt"
    torch.save(net.state_dict(), p)
    dump = pttool.json("dump", p)
    named = [(e["name"], net.state_dict()[e["name"]]) for e in dump["entries"]]
    out = write_with_pttool(pttool, tmp_path, named, {"k": "v"})
    fresh = Net()
    fresh.load_state_dict(torch.load(out, weights_only=True), strict=True)
    for (n, a), b in zip(net.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), n


def test_our_metadata_survives_torch_resave(tmp_path, pttool):
    out = write_with_pttool(pttool, tmp_path, [("w", torch.randn(2))], {"a": "1"})
    sd = torch.load(out, weights_only=True)
    resaved = tmp_path / "resaved.pt"
    torch.save(sd, resaved)
    assert pttool.json("dump", resaved)["metadata"] == {"a": "1"}


def limited_memory():
    # 2 GiB of address space: a reader that allocated by a claimed 10^15-element shape would die.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


MANIFEST = json.loads((MALICIOUS / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_malicious_corpus_refused(pttool, name):
    want = MANIFEST[name]
    res = subprocess.run([pttool.exe, "dump", str(MALICIOUS / name)], capture_output=True, text=True,
                         timeout=30, preexec_fn=limited_memory)
    assert res.returncode == 1, f"{name}: exit {res.returncode}, stderr {res.stderr!r}"
    if "refused" in want:
        assert f"refusing to unpickle {want['refused']}: it could run code" in res.stderr
    else:
        assert want["error"] in res.stderr


def test_torch_agrees_the_corpus_is_unsafe():
    # Sanity check of the corpus itself: torch's own weights-only loader rejects the hostile files.
    for name, want in MANIFEST.items():
        if "refused" in want:
            with pytest.raises(Exception):
                torch.load(MALICIOUS / name, weights_only=True)


def test_reads_parameters_and_tensor_subclass_paths(tmp_path, pttool):
    # A tensor with Python attributes pickles through torch._tensor._rebuild_from_type_v2, a
    # Parameter through _rebuild_parameter; both must come back as plain tensors.
    tagged = torch.randn(3)
    tagged.tag = "calibrated"
    obj = collections.OrderedDict(tagged=tagged, param=nn.Parameter(torch.randn(2, 2)),
                                  frozen=nn.Parameter(torch.randn(2), requires_grad=False))
    p = tmp_path / "subclass.pt"
    torch.save(obj, p)
    check_dump(pttool.json("dump", p), list(obj.items()))
