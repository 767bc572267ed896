"""The raw ctypes layer: header parity, typed errors, library lookup, GIL release."""

import ctypes
import os
import re
import subprocess
import threading

import pytest
import torch

import monoquant
from monoquant import _lib

from conftest import REPO, run_python

HEADER = os.path.join(REPO, "include", "monoquant.h")


def header_functions():
    text = open(HEADER).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return sorted(set(re.findall(r"MQ_API\s+[^;(]*?\b(mq_\w+)\s*\(", text)))


def test_every_header_function_is_declared_and_exported():
    names = header_functions()
    assert len(names) >= 20, f"parsed only {names} from {HEADER}"
    for n in names:
        assert hasattr(_lib, n), f"_lib does not declare {n} from monoquant.h"
    assert _lib.MISSING == [], f"the library at {_lib.LIBRARY_PATH} lacks {_lib.MISSING}"


def test_declared_prototypes_carry_types():
    for n in header_functions():
        f = getattr(_lib, n)
        assert f.restype is not None or n == "mq_debug_panic", f"{n} has no restype"
        assert f.argtypes is not None, f"{n} has no argtypes"


def test_struct_sizes_match_the_library():
    # mq_config_init writes size = sizeof(mq_config) as the library sees it.
    cfg = _lib.mq_config()
    assert _lib.mq_config_init(ctypes.byref(cfg)) == 0
    assert cfg.size == ctypes.sizeof(_lib.mq_config), f"library sizeof(mq_config)={cfg.size}, ctypes {ctypes.sizeof(_lib.mq_config)}"
    assert cfg.version == _lib.MQ_CONFIG_VERSION
    ocfg = _lib.mq_observer_config()
    assert _lib.mq_observer_config_init(ctypes.byref(ocfg)) == 0
    assert ocfg.size == ctypes.sizeof(_lib.mq_observer_config)


def test_version():
    n = _lib.mq_version_number()
    assert (n // 10000, n // 100 % 100) == _lib.HEADER_VERSION[:2]
    assert monoquant.library_version == _lib.mq_version_string().decode()


@pytest.mark.parametrize(
    "status,cls,base",
    [
        (_lib.MQ_EINVAL, monoquant.InvalidArgumentError, ValueError),
        (_lib.MQ_EHANDLE, monoquant.InvalidHandleError, ValueError),
        (_lib.MQ_EDTYPE, monoquant.DTypeError, TypeError),
        (_lib.MQ_ESHAPE, monoquant.ShapeError, ValueError),
        (_lib.MQ_EBUFFER, monoquant.BufferTooSmallError, ValueError),
        (_lib.MQ_ENONFINITE, monoquant.NonFiniteError, ValueError),
        (_lib.MQ_EIO, monoquant.MonoquantIOError, OSError),
        (_lib.MQ_EFORMAT, monoquant.FormatError, ValueError),
        (_lib.MQ_EUNSUPPORTED, monoquant.UnsupportedError, NotImplementedError),
        (_lib.MQ_EINTERNAL, monoquant.InternalError, monoquant.MonoquantError),
        (_lib.MQ_EPANIC, monoquant.EnginePanicError, monoquant.MonoquantError),
    ],
)
def test_status_codes_map_to_typed_exceptions(status, cls, base):
    with pytest.raises(cls) as ei:
        _lib.check(status, "mq_test")
    assert isinstance(ei.value, base) and isinstance(ei.value, monoquant.MonoquantError)
    assert ei.value.status == status and ei.value.function == "mq_test"


def test_library_message_reaches_the_exception():
    with pytest.raises(monoquant.NonFiniteError, match=r"NaN|non-finite"):
        monoquant.quantize_tensor(torch.tensor([1.0, float("nan")]))
    assert "NaN" in _lib.last_error() or "non-finite" in _lib.last_error()


def test_panic_becomes_exception_with_message():
    with pytest.raises(monoquant.EnginePanicError) as ei:
        _lib.check(_lib.mq_debug_panic(), "mq_debug_panic")
    assert str(ei.value) != "mq_debug_panic: "


def test_error_messages_are_per_thread():
    # A failure on another thread must not overwrite this thread's message.
    with pytest.raises(monoquant.NonFiniteError):
        monoquant.quantize_tensor(torch.tensor([float("inf")]))
    mine = _lib.last_error()

    def other():
        with pytest.raises(monoquant.InvalidArgumentError):
            monoquant.quantize_tensor(torch.ones(4, 6), monoquant.QuantSpec("int4", group_size=4))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert _lib.last_error() == mine


def test_missing_library_is_one_clear_import_error(tmp_path):
    r = run_python("import monoquant", env={"MONOQUANT_LIBRARY": str(tmp_path / "nope" / "libmonoquant.so")})
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: monoquant: cannot load the engine library"), r.stderr
    assert "nope/libmonoquant.so" in last and "make lib" in last, last


def test_library_of_another_version_is_refused(tmp_path):
    src = tmp_path / "fake.c"
    src.write_text("unsigned mq_version_number(void) { return 20304; }\n")
    so = tmp_path / "libmonoquant.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    r = run_python("import monoquant", env={"MONOQUANT_LIBRARY": str(so)})
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "ImportError: monoquant: version mismatch" in last and "2.3.4" in last and "make lib" in last, last


def test_not_a_library_is_refused(tmp_path):
    bad = tmp_path / "libmonoquant.so"
    bad.write_bytes(b"not an ELF file")
    r = run_python("import monoquant", env={"MONOQUANT_LIBRARY": str(bad)})
    assert r.returncode != 0 and "ImportError: monoquant: cannot load" in r.stderr, r.stderr


def test_calls_release_the_gil():
    # While one thread is inside a long engine call, this thread must keep running Python code.
    x = torch.randn(4096, 8192)
    spec = monoquant.QuantSpec("int8", granularity="per_channel")
    entered = threading.Event()
    done = threading.Event()

    def work():
        entered.set()
        for _ in range(3):
            monoquant.quantize_tensor(x, spec)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    entered.wait()
    spins = 0
    while not done.is_set():
        spins += 1
    t.join()
    # With the GIL held for the calls the loop could only run in the gaps between them.
    assert spins > 10000, f"main thread ran only {spins} loop iterations while the engine worked"


def test_two_threads_quantizing_at_once_are_correct():
    torch.manual_seed(1)
    xs = [torch.randn(1024, 2048) for _ in range(2)]
    spec = monoquant.QuantSpec("int4", group_size=64)
    expected = [monoquant.quantize_tensor(x, spec) for x in xs]
    results = [[], []]

    def work(i):
        for _ in range(5):
            results[i].append(monoquant.quantize_tensor(xs[i], spec))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(results[i]) == 5, f"thread {i} made {len(results[i])} of 5 calls"
        for q in results[i]:
            assert torch.equal(q.data, expected[i].data) and torch.equal(q.scale, expected[i].scale)
