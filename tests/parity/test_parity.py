"""Cross-caller parity: the same input and options give byte-identical files from Python (in
memory, then save), Python's quantize_file, the CLI and C (mq_quantize_file with the config's
own fields). Every decision is the engine's, so any difference is a rule written twice; the
failure names the first tensor and config field that differ."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
os.environ.setdefault("MONOQUANT_LIBRARY", os.path.join(ROOT, "build", "libmonoquant.so"))
import monoquant  # noqa: E402
from safetensors import safe_open  # noqa: E402

CLI = os.environ.get("MONOQUANT_CLI", os.path.join(ROOT, "build", "monoquant"))

RECIPE_A = {"rules": [{"match": "blocks.*.fc1", "bits": 4, "group_size": 64}, {"match": "head", "skip": True},
                      {"match": "conv", "dtype": "fp16"}, {"match": "*", "bits": 8, "scheme": "asymmetric"}]}
RECIPE_B = {"rules": [{"match": "lstm.weight_ih_l0", "bits": 4, "group_size": 64}, {"match": "lstm", "bits": 4, "group_size": 16},
                      {"match": "blocks.[01]", "dtype": "bf16"}, {"match": "conv", "activations": "none"}]}

# name: (python kwargs, CLI flags, C flags)
CASES = {
    "int8": ({}, [], []),
    "int4-g32": (dict(bits=4, group_size=32), ["--bits", "4", "--group-size", "32"], ["--bits", "4", "--group-size", "32"]),
    "int4-g16-asym": (dict(bits=4, group_size=16, scheme="asymmetric"), ["--bits", "4", "--group-size", "16", "--scheme", "asymmetric"],
                      ["--bits", "4", "--group-size", "16", "--asym"]),
    "fp16": (dict(bits=16), ["--bits", "16"], ["--bits", "16"]),
    "bf16": (dict(dtype="bf16"), ["--dtype", "bf16"], ["--bf16"]),
    "int8-asym": (dict(scheme="asymmetric"), ["--scheme", "asymmetric"], ["--asym"]),
    "skips": (dict(skip=["head", "blocks.1", "lstm.weight_ih_l0"]), ["--skip", "head", "--skip", "blocks.1", "--skip", "lstm.weight_ih_l0"],
              ["--skip", "head", "--skip", "blocks.1", "--skip", "lstm.weight_ih_l0"]),
    "recipe-a": (dict(recipe="RECIPE_A"), ["--recipe", "RECIPE_A"], ["--recipe", "RECIPE_A"]),
    "recipe-b": (dict(recipe="RECIPE_B", bits=4, group_size=32), ["--recipe", "RECIPE_B", "--bits", "4", "--group-size", "32"],
                 ["--recipe", "RECIPE_B", "--bits", "4", "--group-size", "32"]),
    "weight-only": (dict(activations="none"), ["--activations", "none"], ["--activations", "none"]),
    "dynamic": (dict(activations="dynamic", bits=4, group_size=32), ["--activations", "dynamic", "--bits", "4", "--group-size", "32"],
                ["--activations", "dynamic", "--bits", "4", "--group-size", "32"]),
    # LLM.int8() outliers (dynamic: the threshold goes into the file's config and recipe)
    "outliers": (dict(outliers=True, outlier_threshold=4.0), ["--outliers", "--outlier-threshold", "4"],
                 ["--outliers", "--outlier-threshold", "4"]),
}


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 128), nn.Linear(128, 64)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 32, 2)
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.lstm = nn.LSTM(64, 32, num_layers=2)
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    model = Net().eval()
    torch.save(model.state_dict(), d / "model.pt")
    for name, r in (("RECIPE_A", RECIPE_A), ("RECIPE_B", RECIPE_B)):
        (d / f"{name}.json").write_text(json.dumps(r))
    exe = d / "quantize_file"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(ROOT, "include"), "-I", os.path.join(ROOT, "capi"),
                    os.path.join(ROOT, "tests", "parity", "quantize_file.c"), "-o", str(exe),
                    "-L", os.path.join(ROOT, "build"), "-lmonoquant", "-Wl,-rpath," + os.path.join(ROOT, "build")], check=True)
    return d, model, exe


def _sub(args, d):
    return [str(d / f"{a}.json") if a in ("RECIPE_A", "RECIPE_B") else a for a in args]


def _describe_difference(a, b):
    """The first tensor, or config field, in which two safetensors files differ."""
    with safe_open(a, "pt") as fa, safe_open(b, "pt") as fb:
        ma, mb = fa.metadata() or {}, fb.metadata() or {}
        ka, kb = list(fa.keys()), list(fb.keys())
        if ka != kb:
            return f"tensor lists differ: {sorted(set(ka) ^ set(kb)) or 'same names, other order'}"
        for k in ka:
            ta, tb = fa.get_tensor(k), fb.get_tensor(k)
            if ta.dtype != tb.dtype or ta.shape != tb.shape or not torch.equal(ta.view(-1).view(torch.uint8), tb.view(-1).view(torch.uint8)):
                return f"tensor {k!r}: {ta.dtype} {list(ta.shape)} vs {tb.dtype} {list(tb.shape)}"
    ca, cb = json.loads(ma.get("monoquant", "{}")), json.loads(mb.get("monoquant", "{}"))
    for name in sorted(set(ca.get("tensors", {})) | set(cb.get("tensors", {}))):
        ta, tb = ca.get("tensors", {}).get(name, {}), cb.get("tensors", {}).get(name, {})
        for field in sorted(set(ta) | set(tb)):
            if ta.get(field) != tb.get(field):
                return f"layer {ta.get('layer', tb.get('layer'))!r} tensor {name!r} field {field!r}: {ta.get(field)!r} vs {tb.get(field)!r}"
    for field in sorted(set(ca) | set(cb)):
        if ca.get(field) != cb.get(field):
            return f"config field {field!r}: {ca.get(field)!r} vs {cb.get(field)!r}"
    return "metadata or layout"


def _sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


@pytest.mark.parametrize("case", list(CASES))
def test_every_caller_writes_the_same_bytes(work, case):
    d, model, exe = work
    kw, cli_flags, c_flags = CASES[case]
    kw = {k: (str(d / f"{v}.json") if k == "recipe" else v) for k, v in kw.items()}
    src = d / "model.pt"
    outs = {caller: d / f"{case}.{caller}.safetensors" for caller in ("python", "quantize_file", "cli", "c")}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        monoquant.save(monoquant.quantize(model, **kw), outs["python"])
        monoquant.quantize_file(src, outs["quantize_file"], progress=False, **kw)
    r = subprocess.run([CLI, "quantize", "--model", str(src), "--out", str(outs["cli"]), "--quiet", *_sub(cli_flags, d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe), str(src), str(outs["c"]), *_sub(c_flags, d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ref = outs["python"]
    for caller, p in outs.items():
        assert _sha(p) == _sha(ref), f"{caller} differs from python in memory: {_describe_difference(ref, p)}"
    # The files are real checkpoints: the official library opens them, and torch loads the values.
    with safe_open(ref, "pt") as f:
        assert "monoquant" in (f.metadata() or {})


def test_the_stored_recipe_reproduces_the_file(work):
    """The resolved recipe in a file, fed back alone, gives the same bytes (defaults included)."""
    d, model, _ = work
    first = d / "repro1.safetensors"
    monoquant.quantize_file(d / "model.pt", first, recipe=RECIPE_A, progress=False)
    with safe_open(first, "pt") as f:
        stored = json.loads(f.metadata()["monoquant"])["recipe"]
    again = d / "repro2.safetensors"
    r = subprocess.run([CLI, "quantize", "--model", str(d / "model.pt"), "--out", str(again), "--quiet", "--recipe", "/dev/stdin"],
                       input=json.dumps(stored), capture_output=True, text=True)
    # /dev/stdin is not a regular file: the engine refuses it (a FIFO could block forever) ...
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr
    (d / "stored.json").write_text(json.dumps(stored))
    r = subprocess.run([CLI, "quantize", "--model", str(d / "model.pt"), "--out", str(again), "--quiet", "--recipe", str(d / "stored.json"), "--bits", "16"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # ... and a later base (--bits 16) is never reached: the stored recipe ends with its own "*".
    assert _sha(first) == _sha(again), _describe_difference(first, again)


def test_a_pattern_is_valid_everywhere_or_nowhere(work):
    d, model, exe = work
    for pattern, ok in (("[", False), ("blocks.[", False), ("encoder.", True), ("*.fc1", True)):
        py_ok = cli_ok = c_ok = True
        try:
            monoquant.plan(model, skip=[pattern])
        except ValueError:
            py_ok = False
        r = subprocess.run([CLI, "plan", "--model", str(d / "model.pt"), "--skip", pattern], capture_output=True, text=True)
        cli_ok = r.returncode == 0
        r = subprocess.run([str(exe), str(d / "model.pt"), str(d / "pattern.safetensors"), "--skip", pattern], capture_output=True, text=True)
        c_ok = r.returncode == 0
        assert py_ok == cli_ok == c_ok == ok, (pattern, py_ok, cli_ok, c_ok)


@pytest.mark.parametrize("src", ["testdata/checkpoints/torch/tied.pt", "folder"])
def test_file_callers_agree_on_tied_tensors_and_folders(work, tmp_path, src):
    """Tied tensors stored once and Hugging Face folders (issue 12): Python's quantize_file, the
    CLI and C write the same bytes (the in-memory path has no file to compare)."""
    d, model, exe = work
    if src == "folder":
        folder = tmp_path / "hf"
        folder.mkdir()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        (folder / "config.json").write_text('{"model_type": "custom"}')
        (folder / "tokenizer.json").write_text("{}")
        src = folder
    else:
        src = os.path.join(ROOT, src)
    outs = {caller: tmp_path / f"{caller}" for caller in ("quantize_file", "cli", "c")}
    if src != tmp_path / "hf":
        outs = {k: v.with_suffix(".safetensors") for k, v in outs.items()}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        monoquant.quantize_file(src, outs["quantize_file"], progress=False, log=False)
    r = subprocess.run([CLI, "quantize", "--model", str(src), "--out", str(outs["cli"]), "--quiet", "--no-log"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe), str(src), str(outs["c"])], capture_output=True, text=True, env={**os.environ, "MONOQUANT_LOG": "0"})
    assert r.returncode == 0, r.stderr
    files = {k: (v / "model.safetensors" if v.is_dir() else v) for k, v in outs.items()}
    for caller, p in files.items():
        assert _sha(p) == _sha(files["quantize_file"]), f"{caller} differs from quantize_file: {_describe_difference(files['quantize_file'], p)}"
    with safe_open(files["cli"], "pt") as f:
        cfg = json.loads(f.metadata()["monoquant"])
    if src == tmp_path / "hf":
        assert sorted(os.listdir(outs["c"])) == ["config.json", "model.safetensors", "tokenizer.json"]
    else:
        assert cfg["aliases"] == {"emb.weight": "head.weight", "b.weight": "a.weight"}


def test_dequantize_callers_write_the_same_folder(work, tmp_path):
    """monoquant.dequantize_file, `monoquant dequantize` and C's mq_dequantize_file turn a
    quantized sharded Hugging Face folder into the same folder, file for file and byte for byte,
    laid out as the float folder was (issue 12)."""
    transformers = pytest.importorskip("transformers")
    d, _model, _exe = work
    exe = d / "dequantize_file"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(ROOT, "include"), "-I", os.path.join(ROOT, "capi"),
                    os.path.join(ROOT, "tests", "parity", "dequantize_file.c"), "-o", str(exe),
                    "-L", os.path.join(ROOT, "build"), "-lmonoquant", "-Wl,-rpath," + os.path.join(ROOT, "build")], check=True)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=32)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "hf", max_shard_size="150KB")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        monoquant.quantize_file(tmp_path / "hf", tmp_path / "q", progress=False, log=False)
    outs = {caller: tmp_path / f"dq-{caller}" for caller in ("python", "cli", "c")}
    monoquant.dequantize_file(tmp_path / "q", outs["python"], progress=False)
    r = subprocess.run([CLI, "dequantize", str(tmp_path / "q"), "--out", str(outs["cli"]), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe), str(tmp_path / "q"), str(outs["c"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    names = sorted(os.listdir(tmp_path / "hf"))
    assert len([n for n in names if n.endswith(".safetensors")]) > 1
    for caller, out in outs.items():
        assert sorted(os.listdir(out)) == names, caller
        for n in names:
            assert _sha(out / n) == _sha(outs["python"] / n), f"{caller}: {n} differs from dequantize_file's"
