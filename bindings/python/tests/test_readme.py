"""The quick start in bindings/python/README.md runs as written (the top README copies it)."""

import os
import re

from conftest import PKG_ROOT, run_python


def test_quick_start_runs(tmp_path):
    text = open(os.path.join(PKG_ROOT, "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python block"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 10, "the quick start must stay within 10 lines"
    r = run_python(code, cwd=str(tmp_path))
    assert r.returncode == 0, f"quick start failed:\n{code}\n{r.stderr}"
    assert "torch.Size([4, 10])" in r.stdout and "SQNR" in r.stdout
