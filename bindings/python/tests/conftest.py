"""Test setup: import the package from this checkout and the library from MONOQUANT_LIBRARY
(`make test-python` points it at build/libmonoquant.so; the package's own lookup finds the
repository build otherwise)."""

import gc
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PKG_ROOT))
sys.path.insert(0, PKG_ROOT)

# Every quantization is recorded in the run log: the tests' runs go to a folder of their own,
# never the user's log (`make test` points MONOQUANT_HOME at build/test-home itself).
if not os.environ.get("MONOQUANT_HOME"):
    import tempfile

    os.environ["MONOQUANT_HOME"] = tempfile.mkdtemp(prefix="monoquant-test-home-")

# Two threads for torch as for the engine on this 2-core machine; results do not depend on it.
torch.set_num_threads(2)

import monoquant  # noqa: E402


@pytest.fixture
def no_leaks():
    """Asserts that a test frees every native handle it creates."""
    gc.collect()
    before = monoquant.live_handles()
    yield
    gc.collect()
    after = monoquant.live_handles()
    assert after == before, f"live native handles: {before} before the test, {after} after"


def run_python(code, env=None, cwd=None, timeout=300):
    """Runs code in a fresh interpreter (the project venv's) and returns the CompletedProcess."""
    import subprocess

    e = dict(os.environ)
    e["PYTHONPATH"] = PKG_ROOT
    if env:
        for k, v in env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
    return subprocess.run([sys.executable, "-c", code], env=e, cwd=cwd or "/", capture_output=True, text=True, timeout=timeout)
