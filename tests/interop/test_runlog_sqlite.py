"""core/runlog's SQLite (modernc.org/sqlite, pure Go) inside a Python process that has loaded its
own libsqlite3 through the `sqlite3` module: no symbol clash, and both read and write one file.

A cgo SQLite linked into a shared library would export sqlite3_* symbols into the process; the
pure-Go one exports none, which is checked here on a c-shared build of core/runlog
(tests/interop/runlogso), the way libmonoquant.so is built.
"""
import ctypes
import os
import shutil
import sqlite3
import subprocess

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def runlogso(tmp_path_factory):
    go = os.environ.get("GO") or shutil.which("go")
    assert go, "the Go toolchain is needed (set GO or PATH)"
    out = tmp_path_factory.mktemp("runlogso") / "librunlogtest.so"
    env = dict(os.environ, CGO_ENABLED="1")
    res = subprocess.run([go, "build", "-buildmode=c-shared", "-o", str(out), "./tests/interop/runlogso"],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    lib = ctypes.CDLL(str(out))
    lib.runlog_record.argtypes = [ctypes.c_char_p, ctypes.c_double]
    lib.runlog_record.restype = ctypes.c_longlong
    lib.runlog_metric.argtypes = [ctypes.c_char_p, ctypes.c_longlong, ctypes.c_char_p]
    lib.runlog_metric.restype = ctypes.c_double
    return lib


def test_exports_no_sqlite_symbols(runlogso):
    for sym in ("sqlite3_open", "sqlite3_open_v2", "sqlite3_prepare_v2", "sqlite3_exec"):
        with pytest.raises(AttributeError):
            getattr(runlogso, sym)


def test_python_sqlite_and_go_share_one_log(runlogso, tmp_path):
    path = str(tmp_path / "runs.sqlite")
    # Python's sqlite3 is loaded and in use before and while the Go SQLite runs.
    mem = sqlite3.connect(":memory:")
    mem.execute("create table t(x)")
    assert runlogso.runlog_record(path.encode(), 0.5) == 1

    con = sqlite3.connect(path)
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert con.execute("select version from schema_version").fetchone()[0] >= 1
    assert con.execute("select entry_point from runs where id = 1").fetchone()[0] == "c"
    assert con.execute("select value from metrics where run_id = 1 and key = 'accuracy'").fetchone()[0] == 0.5
    assert con.execute("select name, sqnr_db from layers").fetchall() == [("fc.weight", 40.0)]

    # Python writes, Go reads; Go writes, Python reads; the connection stays open throughout.
    con.execute("insert into metrics (run_id, key, value, logged) values (1, 'f1', 0.75, 'now')")
    con.commit()
    assert runlogso.runlog_metric(path.encode(), 1, b"f1") == 0.75
    assert runlogso.runlog_record(path.encode(), 0.25) == 2
    assert con.execute("select count(*) from runs").fetchone()[0] == 2
    assert sqlite3.sqlite_version  # the module's own library still answers
    mem.execute("insert into t values (1)")
    assert mem.execute("select count(*) from t").fetchone()[0] == 1
    con.close()
