"""The Go safetensors reader/writer against the official `safetensors` library, both ways,
value-exact, through tests/interop/sttool."""
import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save, save_file

from conftest import FIXTURES

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.bool: "BOOL",
}


def raw(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def sample_tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, dt in enumerate(DTYPES):
        shape = [(3, 5), (7,), (2, 1, 4), (), (0, 3)][i % 5]
        if dt.is_floating_point:
            t = (torch.randn(shape, generator=g) * 10 ** (i % 4)).to(dt)
        elif dt == torch.bool:
            t = torch.randint(0, 2, shape, generator=g).bool()
        else:
            info = torch.iinfo(dt)
            t = torch.randint(max(info.min, -2**62), min(info.max, 2**62), shape, generator=g, dtype=dt)
        out[f"block.{i}.{DTYPES[dt].lower()}"] = t
    out["special.f32"] = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0, 1e-45])
    out["special.bf16"] = torch.tensor([float("nan"), 1e-39, -3e38], dtype=torch.bfloat16)
    return out


def to_spec(tensors, metadata=None):
    return {
        "metadata": metadata or {},
        "tensors": [{"name": k, "dtype": DTYPES[t.dtype], "shape": list(t.shape), "hex": raw(t).hex()}
                    for k, t in tensors.items()],
    }


def assert_same_tensors(got_by_name, want):
    assert set(got_by_name) == set(want)
    for name, t in want.items():
        g = got_by_name[name]
        assert g["dtype"] == DTYPES[t.dtype], f"{name}: dtype {g['dtype']}, want {DTYPES[t.dtype]}"
        assert g["shape"] == list(t.shape), f"{name}: shape {g['shape']}, want {list(t.shape)}"
        assert g["hex"] == raw(t).hex(), f"{name}: bytes differ"


def test_go_reads_library_files(sttool, tmp_path):
    tensors = sample_tensors(1)
    meta = {"format": "pt", "ünïcode": "✓ \"quoted\""}
    path = tmp_path / "lib.safetensors"
    save_file(tensors, path, metadata=meta)
    dump = sttool.json("dump", path)
    assert dump["metadata"] == meta
    assert_same_tensors({t["name"]: t for t in dump["tensors"]}, tensors)


def test_library_reads_go_files(sttool, tmp_path):
    tensors = sample_tensors(2)
    meta = {"format": "pt", "monoquant": json.dumps({"bits": 8, "scheme": "sym"})}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(to_spec(tensors, meta)))
    out = tmp_path / "go.safetensors"
    sttool.run("write", out, spec)
    with safe_open(out, framework="pt") as f:
        assert f.metadata() == meta
        assert set(f.keys()) == set(tensors)
        for name, want in tensors.items():
            got = f.get_tensor(name)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert raw(got) == raw(want), f"{name}: bytes differ"
            # Slicing goes through the official library's offset arithmetic too.
            if want.dim() >= 1 and want.shape[0] > 1:
                assert raw(f.get_slice(name)[1:]) == raw(want[1:]), f"{name}: slice differs"


def test_go_writes_the_same_bytes_as_the_library(sttool, tmp_path):
    """Declared in the library's order, our file is byte-identical: same JSON layout, same padding."""
    tensors = sample_tensors(3)
    blob = save(tensors, metadata={"format": "pt"})
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(to_spec({k: tensors[k] for k in order}, {"format": "pt"})))
    out = tmp_path / "go.safetensors"
    sttool.run("write", out, spec)
    assert out.read_bytes() == blob


def test_sharded_written_by_go_loads_like_transformers(sttool, tmp_path):
    tensors = sample_tensors(4)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(to_spec(tensors, {"format": "pt"})))
    out = tmp_path / "model"
    out.mkdir()
    sttool.run("write-sharded", out, "model", 64, spec)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    # What transformers' load_sharded_checkpoint does: every shard through the official library.
    loaded = {}
    for shard in shards:
        with safe_open(out / shard, framework="pt") as f:
            assert f.metadata() == {"format": "pt"}
            for k in f.keys():
                assert index["weight_map"][k] == shard
                loaded[k] = f.get_tensor(k)
    assert set(loaded) == set(tensors)
    for k, t in tensors.items():
        assert raw(loaded[k]) == raw(t), k
    # And our reader over the index.
    dump = sttool.json("dump", out / "model.safetensors.index.json")
    assert_same_tensors({t["name"]: t for t in dump["tensors"]}, tensors)


def test_go_reads_library_sharded_fixture(sttool):
    expected = json.loads((FIXTURES / "safetensors" / "expected.json").read_text())
    want = expected["sharded/model.safetensors.index.json"]
    dump = sttool.json("dump", FIXTURES / "safetensors" / "sharded" / "model.safetensors.index.json")
    assert dump["metadata"] == want["metadata"]
    assert {t["name"]: t["hex"] for t in dump["tensors"]} == {k: v["hex"] for k, v in want["tensors"].items()}


MANIFEST = json.loads((FIXTURES / "safetensors" / "bad" / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_bad_files(sttool, name):
    """We reject every broken file with a message saying what is wrong; where the official
    library rejects it too, we agree (the manifest records the two deliberate differences)."""
    path = FIXTURES / "safetensors" / "bad" / name
    err = sttool.fail("dump", path)
    assert MANIFEST[name]["want"] in err, f"{name}: error {err!r}"
    try:
        with safe_open(path, framework="pt") as f:
            for k in f.keys():
                f.get_tensor(k)
        official_rejects = False
    except Exception:
        official_rejects = True
    assert official_rejects == MANIFEST[name]["official_rejects"]


def test_go_reads_torch_bin_shards(sttool, tmp_path):
    """transformers' sharded torch layout (pytorch_model-0000k-of-0000N.bin + index) through
    checkpoint.Open, value-exact, like the safetensors one."""
    tensors = {k: v for k, v in sample_tensors(5).items() if v.numel() > 0}
    names = sorted(tensors)
    groups = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, grp in enumerate(groups):
        fname = f"pytorch_model-{i + 1:05d}-of-{len(groups):05d}.bin"
        torch.save({k: tensors[k] for k in grp}, tmp_path / fname)
        weight_map.update({k: fname for k in grp})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    dump = sttool.json("dump", tmp_path / "pytorch_model.bin.index.json")
    assert dump["metadata"]["total_size"] == str(total)
    assert_same_tensors({t["name"]: t for t in dump["tensors"]}, tensors)
