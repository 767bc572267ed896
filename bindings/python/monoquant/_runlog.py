"""The run log from Python: every quantization is recorded (docs/RUNLOG.md); these read it back.

``quantize`` (entry point "python.quantize"), ``quantize_file`` ("python"), the CLI ("cli") and
the C ABI ("c") all record their runs in one SQLite file, ``$MONOQUANT_HOME/runs.sqlite`` (else
``$XDG_DATA_HOME/monoquant/runs.sqlite``, else ``~/.local/share/monoquant/runs.sqlite``).
``log=False`` turns it off for one call, ``MONOQUANT_LOG=0`` for the process. ::

    qmodel = monoquant.quantize(model, bits=4)
    monoquant.log_metric(qmodel.monoquant_run_id, "accuracy", evaluate(qmodel))
    for r in monoquant.runs(entry_point="python.quantize"):
        print(r.id, r.settings["options"], r.results["sqnr_db"], r.metrics)
    print(monoquant.compare([1, 2])["pareto"])
    monoquant.reproduce(3).identical          # for a run of quantize_file / the CLI / C

Each function is a thin translation of a C function of monoquant.h's "Run log" section; the
engine decides what is stored, matched, compared and reproduced.
"""

import ctypes
import json
import os
import platform

from . import _lib
from ._lib import check


def _options(log_file=None, entry_point=None, no_log=False):
    o = _lib.mq_runlog_options()
    check(_lib.mq_runlog_options_init(ctypes.byref(o)), "mq_runlog_options_init")
    if log_file is not None:
        o.path = os.fsencode(os.fspath(log_file))
    o.entry_point = entry_point
    o.no_log = 1 if no_log else 0
    return o


def _json(fn, args, what):
    """A buffer-convention call: size, then read; again while the log grew in between."""
    n = ctypes.c_size_t()
    for _ in range(8):
        st = fn(*args, None, 0, ctypes.byref(n))
        if st not in (_lib.MQ_OK, _lib.MQ_EBUFFER):
            check(st, what)
        buf = ctypes.create_string_buffer(n.value + 1 + 4096)  # room for a run added meanwhile
        st = fn(*args, buf, len(buf), ctypes.byref(n))
        if st != _lib.MQ_EBUFFER:
            check(st, what)
            return json.loads(buf.value.decode("utf-8"))
    check(st, what)


class Run:
    """One recorded run (the JSON ``monoquant runs show --json`` prints), as attributes:

    id, uuid, started (ISO time, UTC), duration_ns, host, versions (monoquant, go, torch, python),
    entry_point ("cli", "c", "python", "python.quantize", "search"), settings (what the run was
    asked: options, output_format, calibration, recipe), config (the resolved per-tensor config
    it applied), input (path, xxh3, sha256, bytes: a file is known by its XXH3-128, its sha256 is
    "" until ``run(id, sha256=True)`` or ``monoquant runs show --sha256 ID`` adds it; an in-memory model has no path and its
    state-dict fingerprint as sha256), output (path, xxh3, sha256, bytes), calibration (path,
    xxh3 or sha256, count, shapes; None when not static), layers (per quantized tensor: name, layer, layer_type,
    format, kernel, sqnr_db, bytes_before, bytes_after), results (whole-model numbers: sizes,
    sqnr_db, bits_per_weight, ...), warnings, peak_rss_bytes and metrics (name -> value).
    ``to_dict()`` gives the JSON object.
    """

    __slots__ = ("_d",)

    def __init__(self, d):
        d.setdefault("calibration", None)
        self._d = d

    def __getattr__(self, name):
        try:
            return self._d[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self):
        return dict(self._d)

    def __eq__(self, other):
        return isinstance(other, Run) and other._d == self._d

    def __repr__(self):
        res = self._d.get("results") or {}
        return (f"Run(id={self._d.get('id')}, entry_point={self._d.get('entry_point')!r}, "
                f"input={(self._d.get('input') or {}).get('path') or '(in memory)'!r}, "
                f"sqnr_db={res.get('sqnr_db')}, metrics={self._d.get('metrics')})")


def _filter_text(v):
    # The engine compares the text `runs show` prints: 4 not 4.0, true/false as Go prints them.
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def runs(log_file=None, **filters):
    """The recorded runs, oldest first, as ``Run`` objects.

    Args:
        log_file: the log (default: the one every entry point writes, see the module doc).
        **filters: ``key=value`` that every run returned matches, on the keys of ``monoquant runs
            list --filter``: entry_point, host, input, input_xxh3, output, output_xxh3, versions.torch,
            options.bits, recipe.rule_1.bits, results.sqnr_db, metrics.accuracy, ... Keys with
            dots go through a dict: ``runs(**{"options.bits": 4})``.

    Returns an empty list when there is no log yet (it is not created).
    """
    f = json.dumps({k: _filter_text(v) for k, v in filters.items()}).encode() if filters else None
    o = _options(log_file)
    return [Run(d) for d in _json(_lib.mq_runs_list_json, (ctypes.byref(o), f), "runs")]


def run(run_id, log_file=None, sha256=False):
    """One run by id, as a ``Run``. Raises InvalidArgumentError for an id the log lacks.

    Runs record their files by XXH3-128 (``input["xxh3"]``, ``output["xxh3"]``); with
    ``sha256=True`` the sha256 of the input, output and calibration files is computed first and
    added to the record for good (as ``monoquant runs show ID --sha256``): each file is read once
    and checked against its recorded XXH3. Raises MonoquantIOError when a file has changed since
    the run or is gone (nothing is stored)."""
    o = _options(log_file)
    if sha256:
        check(_lib.mq_run_add_sha256(ctypes.byref(o), int(run_id)), f"sha256 of run {run_id}'s files")
    return Run(_json(_lib.mq_run_show_json, (ctypes.byref(o), int(run_id)), f"run {run_id}"))


def compare(ids, log_file=None):
    """Runs side by side, as the engine compares them (``monoquant runs compare``): a dict with
    "ids", "settings", "results", "layers" (SQNR and kernel per tensor) and "metrics" (lists of
    {"key", "values": one string per run, "differs"}) and "pareto" (one bool per run: on the
    size-versus-SQNR front)."""
    ids = [int(i) for i in ids]
    arr = (ctypes.c_int64 * max(1, len(ids)))(*ids)
    o = _options(log_file)
    return _json(_lib.mq_runs_compare_json, (ctypes.byref(o), arr, len(ids)), "compare")


class Reproduction(dict):
    """What ``reproduce`` found (a dict, keys also as attributes): run_id, identical (the output's
    digest is the recorded one), output_digest and recorded_digest (``"xxh3 <32 hex digits>"``,
    or ``"sha256 <64 hex digits>"`` for a run recorded before XXH3), output (the kept file, when
    ``output`` was given), differences (how a non-identical output differs), new_run_id (the
    reproduction's own run), log_warning, report (the quantization report)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def reproduce(run_id, output=None, log_file=None, log=True, progress=None):
    """Runs a recorded run again from its stored settings and says whether the output is
    byte-identical (``.identical``) or how it differs (``.differences``); the same as
    ``monoquant runs reproduce`` and the C ABI's mq_run_reproduce.

    Args:
        run_id: a run recorded from a file (quantize_file, the CLI, C).
        output: keep the reproduced file there (default: a temporary file, removed).
        log: record the reproduction itself as a run (entry point "python").
        progress: None, or a callable ``progress(done, total)``.

    Raises:
        MonoquantIOError: the input or calibration file is missing or changed since the run
            (nothing runs; the message gives both hashes).
        UnsupportedError: the run has no input file (an in-memory ``quantize`` or a search trial).
        InvalidArgumentError: no such run.
    """
    from ._model import progress_callback

    o = _options(log_file, entry_point=b"python", no_log=not log)
    err = []
    cb = progress_callback(progress, err)
    rep = ctypes.c_void_p()
    out = None if output is None else os.fsencode(os.fspath(output))
    st = _lib.mq_run_reproduce(ctypes.byref(o), int(run_id), out, cb, None, ctypes.byref(rep))
    if err:
        raise err[0]
    check(st, f"reproduce run {run_id}")
    try:
        return Reproduction(_json(_lib.mq_report_json, (rep,), "mq_report_json"))
    finally:
        _lib.mq_report_free(rep)


def log_metric(run_id, name, value, log_file=None):
    """Attaches (or replaces) a metric you measured, e.g. ``log_metric(7, "accuracy", 0.91)``.
    Raises InvalidArgumentError for an unknown run or an empty name, NonFiniteError for NaN/Inf."""
    o = _options(log_file)
    check(_lib.mq_run_log_metric(ctypes.byref(o), int(run_id), str(name).encode("utf-8"), float(value)), "log_metric")


def record_search_trial(search_handle, trial):
    """Records a told search trial as a run (entry point "search", objectives as metrics);
    returns its id (0 when the log is off or could not be written: a search never fails on the
    log)."""
    rid = ctypes.c_int64()
    check(_lib.mq_search_record_run(search_handle, int(trial), None, ctypes.byref(rid)), "record search trial")
    return rid.value


def _set_host_versions():
    """Names this process's torch and Python in every run it records."""
    import torch

    for k, v in (("torch", torch.__version__), ("python", platform.python_version())):
        check(_lib.mq_runlog_set_version(k.encode(), str(v).encode()), "mq_runlog_set_version")


_set_host_versions()
