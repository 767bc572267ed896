"""The hostile corpus through every entry point (issue 11, SECURITY.md).

`make test` runs the fast subset (test-hostile); `make fuzz` sets MONOQUANT_HOSTILE_FULL=1 for
every case, including a file truncated while it is read. The corpus is generated afresh by
gen_corpus.py in a temporary folder; run_corpus.py does the checking."""

import ctypes
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run_corpus import REPO, Runner  # noqa: E402

CLI = os.environ.get("MONOQUANT_CLI", os.path.join(REPO, "build", "monoquant"))
LIB = os.environ.get("MONOQUANT_LIBRARY", os.path.join(REPO, "build", "libmonoquant.so"))
FULL = os.environ.get("MONOQUANT_HOSTILE_FULL") == "1"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("hostile") / "corpus")
    cmd = [sys.executable, os.path.join(HERE, "gen_corpus.py"), out, "--cli", CLI] + (["--full"] if FULL else [])
    subprocess.run(cmd, check=True)
    return out


def test_corpus_every_entry_point(corpus):
    r = Runner(corpus, CLI, LIB)
    failures = r.run_all(only_fast=not FULL)
    assert r.stats["runs"] > 7 * len([c for c in r.cases if c["expect"] not in ("truncate", "interrupt")]), r.stats
    assert not failures, "\n".join(failures) + f"\n{r.stats}"


def test_corpus_covers_every_class(corpus):
    r = Runner(corpus, CLI, LIB)
    classes = {c["class"] for c in r.cases}
    want = set(range(1, 9)) if FULL else set(range(1, 9)) - {2}  # class 2 runs under make fuzz
    assert want <= classes, f"classes without a case: {want - classes}"


class MQTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64))]


def test_c_abi_broadcast_view_is_bounded():
    """A stride-0 view claiming 4 TiB over one float is refused with MQ_ESHAPE before anything of
    its logical size is allocated; strides whose reach wraps 64 bits are refused too."""
    lib = ctypes.CDLL(LIB)
    lib.mq_last_error.restype = ctypes.c_char_p
    cfg = ctypes.create_string_buffer(256)
    assert lib.mq_config_init(cfg) == 0
    one = (ctypes.c_float * 4)(1.0, 2.0, 3.0, 4.0)
    out = (ctypes.c_int8 * 64)()
    scales = (ctypes.c_float * 64)()
    zps = (ctypes.c_int32 * 64)()
    for shape, strides, words in [((1 << 20, 1 << 20), (0, 0), b"broadcast view"),
                                  ((3, 2), (1 << 62, 1), b"64 bits")]:
        sh = (ctypes.c_int64 * 2)(*shape)
        st = (ctypes.c_int64 * 2)(*strides)
        t = MQTensor(ctypes.cast(one, ctypes.c_void_p), 1, 2, sh, st)
        rc = lib.mq_quantize_tensor(cfg, ctypes.byref(t), out, ctypes.c_size_t(64), scales, zps,
                                    ctypes.c_size_t(64), None)
        assert rc == -4, (rc, lib.mq_last_error())
        assert words in lib.mq_last_error(), lib.mq_last_error()
