"""Shared fixtures for the interop tests: they run the Go code through small helper tools built
here once per session with `go build`, and compare it with the official Python libraries."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "testdata" / "checkpoints"


def _go():
    go = os.environ.get("GO") or shutil.which("go")
    if not go:
        pytest.fail("the Go toolchain is needed to build the interop helper tools (set GO or PATH)")
    return go


@pytest.fixture(scope="session")
def build_go_tool(tmp_path_factory):
    """build_go_tool("./tests/interop/sttool") -> path of the built binary (built once)."""
    built = {}
    out_dir = tmp_path_factory.mktemp("gotools")

    def build(pkg):
        if pkg not in built:
            exe = out_dir / Path(pkg).name
            res = subprocess.run([_go(), "build", "-o", str(exe), pkg], cwd=REPO,
                                 capture_output=True, text=True)
            if res.returncode != 0:
                pytest.fail(f"go build {pkg} failed:\n{res.stderr}")
            built[pkg] = exe
        return built[pkg]

    return build


class GoTool:
    """Runs a built Go helper; run() returns stdout, fail() returns stderr of an expected error."""

    def __init__(self, exe):
        self.exe = str(exe)

    def _run(self, *args):
        return subprocess.run([self.exe, *map(str, args)], capture_output=True, text=True, timeout=120)

    def run(self, *args):
        res = self._run(*args)
        if res.returncode != 0:
            raise AssertionError(f"{self.exe} {args} failed ({res.returncode}): {res.stderr}")
        return res.stdout

    def json(self, *args):
        return json.loads(self.run(*args))

    def fail(self, *args):
        res = self._run(*args)
        assert res.returncode == 1, f"{args}: exit {res.returncode}, want 1 (stdout {res.stdout[:200]!r}, stderr {res.stderr!r})"
        return res.stderr


@pytest.fixture(scope="session")
def sttool(build_go_tool):
    return GoTool(build_go_tool("./tests/interop/sttool"))


@pytest.fixture(scope="session")
def pttool(build_go_tool):
    """The torch .pt helper (tests/interop/pttool), for tests/interop/test_torch_*.py."""
    return GoTool(build_go_tool("./tests/interop/pttool"))
