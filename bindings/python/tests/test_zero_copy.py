"""Zero copy: quantizing a 1 GB float32 tensor raises peak RSS by about the output size.

Measured in a fresh interpreter so the peak (VmHWM) belongs to this one job."""

import json

import pytest

from conftest import run_python

CODE = r"""
import json, torch, monoquant

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

n = 16384
x = torch.empty(n, n).uniform_(-1, 1)          # 1 GiB, pages touched
qx = monoquant.quantize_tensor(torch.ones(8, 8))  # warm the engine up (its own start-up memory)
before = hwm()
q = monoquant.quantize_tensor(x, monoquant.QuantSpec(SPEC))
after = hwm()
out = q.data.numel() * q.data.element_size() + (q.scale.numel() * 8 if q.scale is not None else 0)
print(json.dumps({"before": before, "after": after, "out": out, "input": x.numel() * 4}))
"""


# One case per fresh interpreter (a peak cannot be reset); INT8 is the headline, INT4 packs.
@pytest.mark.parametrize("spec", ["'int8'", "'int4', group_size=128"], ids=["int8", "int4"])
def test_peak_rss_grows_by_about_the_output_size(spec):
    r = run_python(CODE.replace("SPEC", spec), env={"GOMAXPROCS": "2"})
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])
    grew = m["after"] - m["before"]
    # Allow the output plus 25% and 32 MiB for the engine's worker stacks and bookkeeping; a copy
    # of the input would add 1 GiB.
    limit = 1.25 * m["out"] + (32 << 20)
    print(f"{spec}: peak RSS grew {grew / 2**20:.0f} MiB for {m['out'] / 2**20:.0f} MiB of output ({m['input'] / 2**30:.0f} GiB input)")
    assert grew <= limit, f"{spec}: peak RSS grew {grew / 2**20:.0f} MiB, output is {m['out'] / 2**20:.0f} MiB (limit {limit / 2**20:.0f} MiB)"
