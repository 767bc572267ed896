"""Generate the torch checkpoint fixtures for core/checkpoint/torchpt (run: .venv/bin/python
testdata/gen_torch_fixtures.py from the repo root; the outputs are committed).

testdata/checkpoints/torch/   files written by real torch.save, plus expected.json: for every file
                              its tensors in state_dict/walk order (name, dtype, shape, sha256 of the
                              contiguous little-endian bytes), module types and metadata.
testdata/malicious/           pickles that must be refused (manifest.json: file -> the global the
                              error must name) and broken files (file -> an error substring).
"""

import collections
import hashlib
import io
import json
import os
import struct
import subprocess
import zipfile

import torch
from torch import nn

ROOT = os.path.dirname(os.path.abspath(__file__))
GOOD = os.path.join(ROOT, "checkpoints", "torch")
BAD = os.path.join(ROOT, "malicious")

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.bool: "BOOL",
}


def tensor_bytes(t):
    t = t.detach().contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    return t.view(torch.uint8).numpy().tobytes()


def describe(named):
    return [
        {"name": n, "dtype": DTYPES[t.dtype], "shape": list(t.shape),
         "sha256": hashlib.sha256(tensor_bytes(t)).hexdigest()}
        for n, t in named
    ]


def flatten(obj, prefix=""):
    """Our reader's naming of nested containers: dict keys and list indices joined by '.'."""
    join = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: str(k))
    if isinstance(obj, torch.Tensor):
        return [(prefix, obj)]
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += flatten(v, join(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += flatten(v, join(i))
    return out


class TinyNet(nn.Module):
    """CNN + Linear + LSTM + Embedding, small enough for a few-KB fixture."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
        self.embed = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(4, 3, batch_first=True)
        self.head = nn.Linear(3, 2)
        self.register_buffer("scale", torch.tensor([0.5, 2.0]))
        self.register_buffer("scratch", torch.zeros(3), persistent=False)


class Evil:
    """Pickles as a call to os.system (never called here: pickling only records it)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def main():
    os.makedirs(GOOD, exist_ok=True)
    os.makedirs(BAD, exist_ok=True)
    torch.manual_seed(0)
    expected = {}

    model = TinyNet().eval()
    with torch.no_grad():
        model.features[1].running_mean.uniform_(-1, 1)
    sd = model.state_dict()
    torch.save(sd, os.path.join(GOOD, "model_state.pt"))
    expected["model_state.pt"] = {"entries": describe(sd.items()), "module_types": None}

    # Same state dict with pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL opcodes).
    torch.save(sd, os.path.join(GOOD, "model_state_proto4.pt"), pickle_protocol=4)
    expected["model_state_proto4.pt"] = expected["model_state.pt"]

    # Whole module with a class defined in this script (pickled as __main__.TinyNet).
    torch.save(model, os.path.join(GOOD, "module.pt"))
    expected["module.pt"] = {
        "entries": describe(sd.items()),
        "module_types": {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in model.named_modules()},
    }

    dtypes = collections.OrderedDict()
    for dt in DTYPES:
        if dt == torch.bool:
            dtypes["bool"] = torch.tensor([True, False, True, True])
        elif dt.is_floating_point:
            dtypes[str(dt).split(".")[1]] = (torch.randn(2, 3) * 100).to(dt)
        else:
            info = torch.iinfo(dt)
            dtypes[str(dt).split(".")[1]] = torch.tensor([info.min, -1 if info.min < 0 else 0, 0, 1, info.max], dtype=dt)
    dtypes["scalar"] = torch.tensor(3.25, dtype=torch.float64)
    dtypes["empty"] = torch.zeros(0, 4)
    torch.save(dtypes, os.path.join(GOOD, "dtypes.pt"))
    expected["dtypes.pt"] = {"entries": describe(dtypes.items()), "module_types": None}

    base = torch.arange(24, dtype=torch.float32)
    views = collections.OrderedDict()
    views["base"] = base
    views["slice"] = base[4:10]                       # shared storage, offset 4
    views["transposed"] = base.view(4, 6).t()         # non-contiguous
    views["strided"] = base.view(4, 6)[1:, ::2]       # offset and gaps
    views["expanded"] = torch.arange(3.0).expand(4, 3)  # stride 0
    views["bf16_t"] = torch.randn(3, 5).bfloat16().t()
    torch.save(views, os.path.join(GOOD, "views.pt"))
    expected["views.pt"] = {"entries": describe(views.items()), "module_types": None}

    nested = {
        "model": {"a": torch.randn(2), "layers": [torch.randn(3), {"x": torch.ones(2, 2)}]},
        "step": 5,
        "optimizer": {"state": {0: {"exp_avg": torch.randn(4)}}, "param_groups": [{"lr": 0.1}]},
        "pair": (torch.tensor([1, 2], dtype=torch.int32), torch.tensor([3.0])),
    }
    torch.save(nested, os.path.join(GOOD, "nested.pt"))
    expected["nested.pt"] = {"entries": describe(flatten(nested)), "module_types": None}

    legacy = collections.OrderedDict(w=torch.randn(3, 4), t=torch.randn(4, 3).t(), h=torch.randn(5).half())
    torch.save(legacy, os.path.join(GOOD, "legacy.pt"), _use_new_zipfile_serialization=False)
    expected["legacy.pt"] = {"entries": describe(legacy.items()), "module_types": None}

    for v in expected.values():
        v.setdefault("metadata", {})
    with open(os.path.join(GOOD, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)

    make_malicious(sd)


def save_pickle_zip(path, pkl, records=None):
    """A torch-shaped zip (archive/data.pkl + records) around a hand-made pickle."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for name, data in (records or {}).items():
            z.writestr("archive/" + name, data)
        z.writestr("archive/version", "3\n")


def reduce_pickle(module, name, arg):
    """PROTO 2, GLOBAL module.name, (arg,), REDUCE, STOP."""
    a = arg.encode()
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n"
            + b"X" + struct.pack("<I", len(a)) + a + b"\x85R.")


def tensor_pickle(storage_numel, shape, stride, offset=0):
    """An OrderedDict {'w': tensor} whose storage/shape claims we choose (torch-identical opcodes)."""
    def tup(v):
        return b"(" + b"".join(b"J" + struct.pack("<i", x) if x < 2**31 else b"\x8a\x08" + struct.pack("<q", x) for x in v) + b"t"
    def num(x):
        return b"J" + struct.pack("<i", x) if x < 2**31 else b"\x8a\x08" + struct.pack("<q", x)
    return (b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w"
            + b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
            + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpu" + num(storage_numel) + b"tQ" + num(offset)
            + tup(shape) + tup(stride) + b"\x89ccollections\nOrderedDict\n)RtRu.")


def make_malicious(sd):
    manifest = {}

    def refused(fname, global_name):
        manifest[fname] = {"refused": global_name}

    # Made by torch.save itself: the evil object sits where a tensor or attribute would.
    torch.save({"x": Evil(os.system, ("echo pwned",))}, os.path.join(BAD, "os_system.pt"))
    refused("os_system.pt", "posix.system")
    torch.save(Evil(eval, ("__import__('os').system('echo pwned')",)), os.path.join(BAD, "eval.pt"))
    refused("eval.pt", "builtins.eval")
    torch.save([Evil(exec, ("import os; os.system('echo pwned')",))], os.path.join(BAD, "exec_reduce.pt"))
    refused("exec_reduce.pt", "builtins.exec")
    torch.save({"p": Evil(subprocess.Popen, (["echo", "pwned"],))}, os.path.join(BAD, "subprocess_popen.pt"))
    refused("subprocess_popen.pt", "subprocess.Popen")
    evil_sd = collections.OrderedDict(sd)
    evil_sd["features.0.weight"] = Evil(os.system, ("echo pwned",))
    torch.save(evil_sd, os.path.join(BAD, "nested_in_tensor_dict.pt"))
    refused("nested_in_tensor_dict.pt", "posix.system")
    m = TinyNet()
    m.hook = Evil(os.system, ("echo pwned",))
    torch.save(m, os.path.join(BAD, "in_module.pt"))
    refused("in_module.pt", "posix.system")
    torch.save({"x": Evil(os.system, ("echo pwned",))}, os.path.join(BAD, "legacy_os_system.pt"),
               _use_new_zipfile_serialization=False)
    refused("legacy_os_system.pt", "posix.system")

    # getattr(__import__('os'), 'system')('echo pwned'), hand-written: getattr is named first.
    chain = (b"\x80\x02c__builtin__\ngetattr\n(c__builtin__\n__import__\nX\x02\x00\x00\x00os\x85R"
             b"X\x06\x00\x00\x00systemtRX\x0a\x00\x00\x00echo pwned\x85R.")
    save_pickle_zip(os.path.join(BAD, "getattr_chain.pt"), chain)
    refused("getattr_chain.pt", "builtins.getattr")

    # One hand-made REDUCE per dangerous callable (some cannot be pickled on Linux, e.g. nt).
    for module, name in [
        ("nt", "system"), ("os", "execv"), ("posix", "popen"), ("subprocess", "check_output"),
        ("builtins", "__import__"), ("builtins", "open"), ("builtins", "compile"),
        ("builtins", "setattr"), ("builtins", "globals"), ("sys", "exit"),
        ("importlib", "import_module"), ("runpy", "run_path"), ("shutil", "rmtree"),
        ("socket", "create_connection"), ("pickle", "loads"), ("_pickle", "loads"),
        ("marshal", "loads"), ("ctypes", "CDLL"), ("code", "interact"), ("pty", "spawn"),
        ("webbrowser", "open"), ("torch", "load"), ("numpy", "load"), ("functools", "partial"),
        ("operator", "attrgetter"), ("torch.serialization", "load"),
    ]:
        fname = f"reduce_{module.replace('.', '_')}_{name.strip('_')}.pt"
        save_pickle_zip(os.path.join(BAD, fname), reduce_pickle(module, name, "echo pwned"))
        refused(fname, f"{module}.{name}")

    # Broken, not hostile: each must fail fast with a clear error.
    good = open(os.path.join(GOOD, "model_state.pt"), "rb").read()
    with open(os.path.join(BAD, "truncated.pt"), "wb") as f:
        f.write(good[: len(good) // 2])
    manifest["truncated.pt"] = {"error": "truncated or corrupt"}
    data24 = struct.pack("<6f", *range(6))
    save_pickle_zip(os.path.join(BAD, "lying_numel.pt"), tensor_pickle(10**12, [10**12], [1]), {"data/0": data24})
    manifest["lying_numel.pt"] = {"error": "claims 1000000000000 elements"}
    save_pickle_zip(os.path.join(BAD, "huge_shape.pt"), tensor_pickle(6, [10**15], [1]), {"data/0": data24})
    manifest["huge_shape.pt"] = {"error": "needs 1000000000000000 elements but its storage has 6"}
    save_pickle_zip(os.path.join(BAD, "huge_2d_shape.pt"), tensor_pickle(6, [10**8, 10**7], [10**7, 1]), {"data/0": data24})
    manifest["huge_2d_shape.pt"] = {"error": "but its storage has 6"}
    save_pickle_zip(os.path.join(BAD, "missing_record.pt"), tensor_pickle(6, [6], [1]), {})
    manifest["missing_record.pt"] = {"error": "is not in the archive"}
    save_pickle_zip(os.path.join(BAD, "offset_outside.pt"), tensor_pickle(6, [2], [1], offset=5), {"data/0": data24})
    manifest["offset_outside.pt"] = {"error": "but its storage has 6"}
    lying_len = b"\x80\x02X\xff\xff\xff\x7fabc."
    save_pickle_zip(os.path.join(BAD, "lying_string_length.pt"), lying_len)
    manifest["lying_string_length.pt"] = {"error": "claims 2147483647 bytes"}
    with open(os.path.join(BAD, "plain_pickle.pt"), "wb") as f:
        f.write(b"\x80\x02}q\x00.")
    manifest["plain_pickle.pt"] = {"error": "magic number"}

    with open(os.path.join(BAD, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
