"""The ctypes layer against include/monoquant.h: every MQ_* constant the header defines has the
same value here, every exception's status is the header's code, every ctypes struct has the C
layout (sizes and field offsets printed by a C program compiled against the header), and the
version is one: the header's, the library's, the package's, the wheel's and the CLI's."""

import ctypes
import os
import re
import subprocess

import pytest

import monoquant
from monoquant import _errors, _lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HEADER = os.path.join(ROOT, "include", "monoquant.h")
TEXT = open(HEADER).read()


def _header_constants():
    """name -> value of every MQ_* enum member and numeric #define of the header."""
    consts = {}
    for body in re.findall(r"typedef enum \w+ \{(.*?)\}", TEXT, re.S):
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        for name, expr in re.findall(r"(MQ_[A-Z0-9_]+)\s*=\s*([^,]+)", body):
            consts[name] = eval(expr.strip(), {}, dict(consts))  # header expressions: ints, <<, |
    for name, expr in re.findall(r"^#define (MQ_[A-Z0-9_]+) +([0-9][^/\n]*|\(.*\))", TEXT, re.M):
        consts[name] = eval(expr, {}, dict(consts))
    return consts


CONSTS = _header_constants()


def test_the_header_parses():
    assert len(CONSTS) > 60 and CONSTS["MQ_EPANIC"] == -11 and CONSTS["MQ_LAYER_DEFAULT"] == 1 | 4 | 16


@pytest.mark.parametrize("name", sorted(CONSTS))
def test_every_constant_matches_the_header(name):
    if name in ("MQ_VERSION_NUMBER",):
        assert _lib.LIBRARY_VERSION[0] * 10000 + _lib.LIBRARY_VERSION[1] * 100 + _lib.LIBRARY_VERSION[2] == CONSTS[name]
        return
    if name.startswith("MQ_VERSION_"):
        return  # checked as one version below
    assert hasattr(_lib, name), f"{name} is in monoquant.h but not in monoquant._lib"
    assert getattr(_lib, name) == CONSTS[name], f"{name}: header {CONSTS[name]}, _lib {getattr(_lib, name)}"


def test_every_status_code_is_the_headers():
    classes = [c for c in vars(_errors).values() if isinstance(c, type) and issubclass(c, _errors.MonoquantError) and getattr(c, "status", None) is not None]
    assert len(classes) >= 11
    for cls in classes:
        code = [n for n, v in CONSTS.items() if n.startswith("MQ_E") and v == cls.status]
        assert code, f"{cls.__name__}.status = {cls.status} is no MQ_E* code of the header"


STRUCTS = [_lib.mq_tensor, _lib.mq_config, _lib.mq_quant_stats, _lib.mq_size_info, _lib.mq_observer_config, _lib.mq_model_config, _lib.mq_tensor_info, _lib.mq_runlog_options, _lib.mq_hessian]


def test_struct_layouts_are_the_headers(tmp_path):
    lines = []
    for st in STRUCTS:
        n = st.__name__
        lines.append(f'printf("{n} %zu\\n", sizeof({n}));')
        for f in st._fields_:
            lines.append(f'printf("{n}.{f[0]} %zu\\n", offsetof({n}, {f[0]}));')
        assert re.search(r"typedef struct %s \{" % n, TEXT), f"{n} is not a struct of monoquant.h"
        # every field of the C struct is in the ctypes struct, in order
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (n, n), TEXT, re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        cfields = re.findall(r"(\w+)(?:\[[^\]]*\])?;", body)
        assert cfields == [f[0] for f in st._fields_], f"{n}: C fields {cfields}, ctypes {[f[0] for f in st._fields_]}"
    src = tmp_path / "layout.c"
    src.write_text('#include <stddef.h>\n#include <stdio.h>\n#include "monoquant.h"\nint main(void) {\n' + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-std=c99", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)], check=True)
    got = dict(line.split() for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines())
    for st in STRUCTS:
        n = st.__name__
        assert int(got[n]) == ctypes.sizeof(st), f"sizeof({n}): C {got[n]}, ctypes {ctypes.sizeof(st)}"
        for f in st._fields_:
            assert int(got[f"{n}.{f[0]}"]) == getattr(st, f[0]).offset, f"offsetof({n}, {f[0]})"


def test_one_version():
    header = re.search(r'#define MQ_VERSION_STRING "([^"]+)"', TEXT).group(1)
    assert monoquant.__version__ == header == monoquant.library_version
    assert _lib.mq_version_string().decode() == header
    pyproject = open(os.path.join(ROOT, "bindings", "python", "pyproject.toml")).read()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == header, "pyproject.toml's version is not the header's"
    cli = os.environ.get("MONOQUANT_CLI", os.path.join(ROOT, "build", "monoquant"))
    if os.path.exists(cli):
        out = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True).stdout
        assert out.startswith(f"monoquant {header} "), out
