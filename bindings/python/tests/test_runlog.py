"""The run log from Python (docs/RUNLOG.md): every entry point records its runs (CLI, C,
quantize_file, in-memory quantize, search trials); runs/run/compare/log_metric/reproduce over the
C ABI; a reproduction from Python, the CLI and C gives the recorded output hash; the in-memory
fingerprint is the documented formula; a corrupt, read-only or older-schema log and concurrent
writers (2 processes x 4 threads) behave as issue #15 says."""

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import monoquant
from monoquant import _lib

from conftest import PKG_ROOT, REPO, run_python

CLI = os.environ.get("MONOQUANT_CLI", os.path.join(REPO, "build", "monoquant"))
EXAMPLE = os.path.join(REPO, "examples", "digits_cnn.safetensors")
FIXTURE_V1 = os.path.join(REPO, "core", "runlog", "testdata", "schema", "v1.sqlite")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh run log for the test (never the user's), logging on."""
    h = tmp_path / "home"
    monkeypatch.setenv("MONOQUANT_HOME", str(h))
    monkeypatch.setenv("MONOQUANT_LOG", "1")
    return h


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))


def quiet_quantize(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        return monoquant.quantize(model, progress=False, **kw)


def cli(*args, env=None):
    if not os.path.exists(CLI):
        pytest.skip(f"the CLI is not built ({CLI}: make cli)")
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=dict(os.environ, **(env or {})))


class _XXH128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


def xxh3_128(data):
    """XXH3-128 of data in xxHash's canonical hex (as `xxhsum -H2` prints it), from the reference
    C library: libxxhash.so.0, which every Debian/Ubuntu system has (libapt-pkg depends on it)."""
    try:
        lib = ctypes.CDLL("libxxhash.so.0")
    except OSError:
        pytest.skip("libxxhash.so.0 (the reference XXH3) is not installed: apt-get install libxxhash0")
    lib.XXH3_128bits.restype = _XXH128
    lib.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    h = lib.XXH3_128bits(data, len(data))
    return f"{h.high64:016x}{h.low64:016x}"


def fingerprint(state_dict):
    """docs/RUNLOG.md's state-dict fingerprint, computed here without the engine."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.int64: "I64"}
    lines = []
    for name in sorted(state_dict):
        t = state_dict[name].detach().contiguous().cpu()
        data = xxh3_128(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        lines.append(f"{name}\t{names[t.dtype]}\t{','.join(map(str, t.shape))}\t{data}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def test_in_memory_quantize_is_recorded(home):
    m = net()
    q = quiet_quantize(m, bits=8)
    assert q.monoquant_run_id == 1 and q.monoquant_report["run_id"] == 1
    r = monoquant.run(1)
    assert r.entry_point == "python.quantize"
    assert r.input == {"path": "", "sha256": fingerprint(m.state_dict()), "bytes": sum(t.numel() * 4 for t in m.state_dict().values())}
    assert r.versions["torch"] == torch.__version__ and r.versions["monoquant"] == monoquant.__version__
    assert sorted(l["name"] for l in r.layers) == ["0.weight", "2.weight", "4.weight"]
    assert r.settings["recipe"]["rules"] and r.results["sqnr_db"] > 30 and r.calibration is None
    # the same weights in another module: the same input identity
    assert quiet_quantize(net(), bits=4).monoquant_run_id == 2
    assert monoquant.run(2).input["sha256"] == r.input["sha256"]
    # the state dict itself (quantize's other caller path): the same identity
    sd = quiet_quantize(m.state_dict(), bits=8)
    assert monoquant.run(sd.report["run_id"]).input["sha256"] == r.input["sha256"]
    # one weight one ulp up: another identity, still the documented formula
    m2 = net()
    with torch.no_grad():
        m2[2].weight[5, 7] = torch.nextafter(m2[2].weight[5, 7], torch.tensor(2.0))
    changed = monoquant.run(quiet_quantize(m2, bits=8).monoquant_run_id).input["sha256"]
    assert changed != r.input["sha256"] and changed == fingerprint(m2.state_dict())
    # log=False and MONOQUANT_LOG=0 record nothing
    assert quiet_quantize(m, log=False).monoquant_run_id == 0
    os.environ["MONOQUANT_LOG"] = "0"
    assert quiet_quantize(m).monoquant_run_id == 0
    os.environ["MONOQUANT_LOG"] = "1"
    assert [x.id for x in monoquant.runs()] == [1, 2, 3, 4]


def test_static_quantize_records_the_calibration_fingerprint(home):
    m = net()
    data = [torch.randn(4, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    q = quiet_quantize(m, activations="static", calibration_data=data)
    cal = monoquant.run(q.monoquant_run_id).calibration
    # one activation batch per static layer and batch, as a calibration file's entries
    assert cal["count"] == 3 * 3 and cal["shapes"][0] == [4, 32] and len(cal["sha256"]) == 64
    again = quiet_quantize(m, activations="static", calibration_data=data)
    other = quiet_quantize(m, activations="static", calibration_data=data[:2] + [data[2] + 1])
    assert monoquant.run(again.monoquant_run_id).calibration["sha256"] == cal["sha256"]
    assert monoquant.run(other.monoquant_run_id).calibration["sha256"] != cal["sha256"]


def test_every_entry_point_records_and_every_caller_reproduces_identically(home, tmp_path):
    """CLI, C, Python quantize_file and Python quantize each record a run; the file runs
    reproduce from Python, the CLI and the C ABI with the recorded output hash."""
    src = tmp_path / "m.safetensors"
    shutil.copy(EXAMPLE, src)
    r = cli("quantize", "--model", str(src), "--bits", "4", "--out", str(tmp_path / "cli.safetensors"), "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    cfg = monoquant.api._config()
    cfg.struct.entry_point = None  # what a C caller gets by default: "c"
    rep = ctypes.c_void_p()
    assert _lib.mq_quantize_file(str(src).encode(), str(tmp_path / "c.safetensors").encode(), cfg.ref, None,
                                 _lib.mq_progress_fn(0), None, ctypes.byref(rep)) == 0
    _lib.mq_report_free(rep)
    monoquant.quantize_file(src, tmp_path / "py.safetensors", bits=4, group_size=32, group_fallback=True, progress=False)
    quiet_quantize(net())
    assert [(x.id, x.entry_point) for x in monoquant.runs()] == [(1, "cli"), (2, "c"), (3, "python"), (4, "python.quantize")]

    for rid in (1, 2, 3):
        first = monoquant.run(rid).output
        recorded = "xxh3 " + first["xxh3"]
        assert len(first["xxh3"]) == 32 and first["sha256"] == ""  # the sha256 is computed on request
        # Python
        py = monoquant.reproduce(rid, output=tmp_path / f"again{rid}.safetensors")
        assert py.identical and py.output_digest == recorded == py.recorded_digest and py.differences == []
        # the sha256 of the recorded files on request, as hashlib computes it: from the CLI
        # (`runs show --sha256`) for run 1, from Python (the C ABI's mq_run_add_sha256) for the rest
        if rid == 1:
            r = cli("runs", "show", str(rid), "--sha256")
            assert r.returncode == 0, r.stderr
            rec = monoquant.run(rid)
        else:
            rec = monoquant.run(rid, sha256=True)
        sha = hashlib.sha256(open(first["path"], "rb").read()).hexdigest()
        assert rec.output["sha256"] == sha == hashlib.sha256((tmp_path / f"again{rid}.safetensors").read_bytes()).hexdigest()
        assert rec.input["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert monoquant.run(py.new_run_id).entry_point == "python"
        # the CLI
        r = cli("runs", "reproduce", str(rid), "--quiet")
        assert r.returncode == 0 and r.stdout.startswith(f"identical: run {rid} reproduced") and recorded in r.stdout, r.stdout + r.stderr
        # the C ABI, called as a C program would
        opts = _lib.mq_runlog_options()
        assert _lib.mq_runlog_options_init(ctypes.byref(opts)) == 0
        res = ctypes.c_void_p()
        assert _lib.mq_run_reproduce(ctypes.byref(opts), rid, None, _lib.mq_progress_fn(0), None, ctypes.byref(res)) == 0, _lib.mq_last_error()
        n = ctypes.c_size_t()
        _lib.mq_report_json(res, None, 0, ctypes.byref(n))
        buf = ctypes.create_string_buffer(n.value + 1)
        assert _lib.mq_report_json(res, buf, n.value + 1, ctypes.byref(n)) == 0
        _lib.mq_report_free(res)
        c = json.loads(buf.value)
        assert c["identical"] is True and c["output_digest"] == recorded
        assert monoquant.run(c["new_run_id"]).entry_point == "c"


def test_list_filters_compare_and_metrics(home, tmp_path):
    assert monoquant.runs() == []
    assert not (home / "runs.sqlite").exists()  # listing creates no log
    m = net()
    a, b = quiet_quantize(m, bits=8), quiet_quantize(m, bits=4, group_size=32)
    monoquant.log_metric(b.monoquant_run_id, "accuracy", 0.875)
    assert [r.id for r in monoquant.runs(**{"options.bits": 4})] == [b.monoquant_run_id]
    assert [r.id for r in monoquant.runs(entry_point="python.quantize", **{"metrics.accuracy": 0.875})] == [2]
    assert monoquant.runs(entry_point="cli") == []
    c = monoquant.compare([a.monoquant_run_id, b.monoquant_run_id])
    assert c["ids"] == [1, 2] and len(c["pareto"]) == 2
    bits = next(row for row in c["settings"] if row["key"] == "options.bits")
    assert bits == {"key": "options.bits", "values": ["8", "4"], "differs": True}
    assert next(row for row in c["metrics"] if row["key"] == "accuracy")["values"] == ["", "0.875"]
    with pytest.raises(monoquant.InvalidArgumentError, match="run 9"):
        monoquant.run(9)
    with pytest.raises(monoquant.InvalidArgumentError, match="run 9"):
        monoquant.log_metric(9, "accuracy", 1)
    with pytest.raises(monoquant.NonFiniteError):
        monoquant.log_metric(1, "accuracy", float("nan"))
    with pytest.raises(monoquant.InvalidArgumentError, match="empty"):
        monoquant.log_metric(1, "", 1)
    other = tmp_path / "other.sqlite"
    assert monoquant.runs(log_file=other) == []


def test_reproduce_refusals(home, tmp_path):
    src = tmp_path / "m.safetensors"
    shutil.copy(EXAMPLE, src)
    monoquant.quantize_file(src, tmp_path / "q.safetensors", progress=False)
    q = quiet_quantize(net())
    with pytest.raises(monoquant.UnsupportedError, match="in-memory"):
        monoquant.reproduce(q.monoquant_run_id)
    with pytest.raises(monoquant.InvalidArgumentError, match="run 42"):
        monoquant.reproduce(42)
    src.write_bytes(src.read_bytes() + b"\0")
    with pytest.raises(monoquant.MonoquantIOError, match="changed since the run"):
        monoquant.reproduce(1)
    assert len(monoquant.runs()) == 2  # nothing ran, nothing recorded
    # no sha256 for a file that is no longer what the run read: an error naming it, nothing stored
    with pytest.raises(monoquant.MonoquantIOError, match="input .*m.safetensors no longer holds the recorded content"):
        monoquant.run(1, sha256=True)
    assert monoquant.run(1).input["sha256"] == "" and monoquant.run(1).output["sha256"] == ""
    with pytest.raises(monoquant.InvalidArgumentError, match="run 42"):
        monoquant.run(42, sha256=True)


def test_search_records_each_trial_once(home):
    m = net()
    res = monoquant.search(m, lambda q: 1.0, objectives=("metric", "size"), trials=4, population=4, seed=0)
    runs = monoquant.runs()
    assert [r.entry_point for r in runs] == ["search"] * 4  # the trials' quantizations are not logged twice
    sizes = sorted(r.metrics["size"] for r in runs)
    assert sizes == sorted(t.objectives["size"] for t in res.trials)
    assert all(r.metrics["metric"] == 1.0 and r.settings["recipe"]["rules"] for r in runs)
    # compare finds the search's own front, on its objectives
    m = net()
    res = monoquant.search(m, lambda q: float(torch.rand(1, generator=torch.Generator().manual_seed(len(str(q))))),
                           objectives=("metric", "size"), trials=8, population=4, seed=1)
    trials = [r for r in monoquant.runs() if r.id > 4]
    c = monoquant.compare([r.id for r in trials])
    assert c["front"] == "metric (max), size (min)"
    on_front = sorted(int(r.results["trial"]) for r, on in zip(trials, c["pareto"]) if on)
    assert on_front == sorted(t.trial for t in res)


def test_a_broken_log_never_costs_the_quantization(tmp_path, monkeypatch):
    monkeypatch.setenv("MONOQUANT_LOG", "1")
    m = net()
    # corrupt: one warning, the model returned, the file left as it was
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "runs.sqlite").write_bytes(b"not a database " * 500)
    monkeypatch.setenv("MONOQUANT_HOME", str(corrupt))
    with pytest.warns(monoquant.MonoquantWarning, match="run not recorded: .*not a database") as w:
        q = monoquant.quantize(m, progress=False)
    assert q.monoquant_run_id == 0 and q(torch.randn(2, 32)).shape == (2, 8)
    assert len([x for x in w if "run not recorded" in str(x.message)]) == 1
    assert (corrupt / "runs.sqlite").read_bytes() == b"not a database " * 500
    with pytest.raises(monoquant.MonoquantIOError, match="not a database"):
        monoquant.runs()
    # a read-only folder (/proc/self refuses new files even to root)
    monkeypatch.setenv("MONOQUANT_HOME", "/proc/self")
    with pytest.warns(monoquant.MonoquantWarning, match="run not recorded"):
        rep = monoquant.quantize_file(EXAMPLE, tmp_path / "q.safetensors", progress=False)
    assert rep["run_id"] == 0 and (tmp_path / "q.safetensors").exists()
    # a log written by an older schema: migrated, its runs still read, the new run appended
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(FIXTURE_V1, old / "runs.sqlite")
    monkeypatch.setenv("MONOQUANT_HOME", str(old))
    before = monoquant.runs()
    assert len(before) == 2 and before[1].metrics == {"accuracy": 0.875}
    q = quiet_quantize(m)
    assert q.monoquant_run_id == 3 and [r.id for r in monoquant.runs()] == [1, 2, 3]


WRITER = """
import sys, threading, warnings, torch, monoquant
warnings.simplefilter("ignore", monoquant.MonoquantWarning)
ids, errors = [], []
def work(k):
    try:
        torch.manual_seed(k)
        m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        for i in range(3):
            q = monoquant.quantize(m, progress=False)
            ids.append(q.monoquant_run_id)
            if q.monoquant_run_id == 0:
                errors.append("not recorded")
    except BaseException as e:
        errors.append(repr(e))
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sorted(ids), errors)
sys.exit(1 if errors else 0)
"""


def test_two_processes_and_four_threads_lose_no_run(home):
    env = {"MONOQUANT_HOME": str(home), "MONOQUANT_LOG": "1", "PYTHONPATH": PKG_ROOT}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER], env=dict(os.environ, **env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd="/") for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out + err
    runs = monoquant.runs()
    assert sorted(r.id for r in runs) == list(range(1, 2 * 4 * 3 + 1))
    assert all(r.entry_point == "python.quantize" and len(r.layers) == 2 for r in runs)
    assert len({r.host for r in runs}) == 1 and all(len(r.input["sha256"]) == 64 for r in runs)


def test_library_symbols_and_run_python(home):
    # the package names its host in every run, also in a fresh interpreter
    r = run_python("import monoquant, torch; q = monoquant.quantize(torch.nn.Linear(8, 8), progress=False); "
                   "print(monoquant.run(q.monoquant_run_id).versions['python'])", env={"MONOQUANT_HOME": str(home)})
    assert r.returncode == 0 and r.stdout.strip().split("\n")[-1].count(".") == 2, r.stdout + r.stderr
