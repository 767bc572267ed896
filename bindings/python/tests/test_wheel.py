"""The wheel: built with the library inside, installed into a fresh virtualenv, imported from
outside the repository with no MONOQUANT_LIBRARY and no PYTHONPATH."""

import glob
import os
import shutil
import site
import subprocess
import sys

import pytest

from conftest import PKG_ROOT

from monoquant import _lib


def build_wheel(dest):
    """What `make wheel` does, for runs outside make: stage the sources, add the .so, pip wheel."""
    stage = os.path.join(dest, "src")
    os.makedirs(stage)
    for f in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(PKG_ROOT, f), stage)
    shutil.copytree(os.path.join(PKG_ROOT, "monoquant"), os.path.join(stage, "monoquant"), ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(_lib.LIBRARY_PATH, os.path.join(stage, "monoquant", "libmonoquant.so"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", dest, stage], check=True)
    return glob.glob(os.path.join(dest, "monoquant-*.whl"))


def test_wheel_installs_into_a_fresh_venv_and_imports_outside_the_repo(tmp_path):
    wheel_dir = os.environ.get("MONOQUANT_WHEEL_DIR")
    wheels = glob.glob(os.path.join(wheel_dir, "monoquant-*.whl")) if wheel_dir else build_wheel(str(tmp_path / "dist"))
    assert len(wheels) == 1, f"expected one wheel, found {wheels}"
    whl = wheels[0]
    name = os.path.basename(whl)
    assert name.startswith("monoquant-0.1.0-py3-none-linux_"), f"not a platform wheel: {name}"
    import zipfile

    assert "monoquant/libmonoquant.so" in zipfile.ZipFile(whl).namelist()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    target = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True).stdout.strip()
    # torch comes from the project venv through a .pth file: never downloaded again.
    with open(os.path.join(target, "project_torch.pth"), "w") as f:
        f.write(site.getsitepackages()[0] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", whl], check=True)

    env = {k: v for k, v in os.environ.items() if k not in ("MONOQUANT_LIBRARY", "PYTHONPATH")}
    code = (
        "import monoquant, torch, torch.nn as nn\n"
        "print(monoquant.library_path)\n"
        "q = monoquant.quantize(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)), bits=4, group_size=8, skip=['1'])\n"
        "print(q(torch.randn(3, 8)).shape)\n"
    )
    r = subprocess.run([py, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(target), f"library loaded from {lines[0]}, not from the installed package in {target}"
    assert lines[1] == "torch.Size([3, 2])"
