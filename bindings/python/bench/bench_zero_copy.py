"""Peak RSS growth of the in-memory model path against its output size, each case in a fresh
interpreter (a peak cannot be reset):

    make bench-python   (or: MONOQUANT_LIBRARY=build/libmonoquant.so .venv/bin/python bindings/python/bench/bench_zero_copy.py)

quantize() of a state dict holding one 1 GiB float32 weight (INT8 and INT4 g128), and
dequantize() of the INT8 result; with quantize_tensor of the same tensor for reference. Prints a
markdown table (BENCHMARKS.md, "Zero copies on the way out").
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CODE = r"""
import json, torch, monoquant

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

def size(ts):
    return sum(t.numel() * t.element_size() for t in ts)

n = 16384
sd = {"fc.weight": torch.empty(n, n).uniform_(-1, 1)}   # 1 GiB, pages touched
monoquant.quantize({"w.weight": torch.ones(64, 64)}, bits=8)  # warm the engine up
monoquant.quantize_tensor(torch.ones(8, 8))
CASE
print(json.dumps({"grew": after - before, "out": out}))
"""

CASES = {
    "quantize(state dict), INT8 per-channel": "before = hwm(); q = monoquant.quantize(sd, bits=8); after = hwm(); out = size(q.values())",
    "quantize(state dict), INT4 g128": "before = hwm(); q = monoquant.quantize(sd, bits=4); after = hwm(); out = size(q.values())",
    "dequantize(the INT8 result)": "q = monoquant.quantize(sd, bits=8); before = hwm(); d = monoquant.dequantize(q); after = hwm(); out = size(d.values())",
    "quantize_tensor, INT8 (reference)": "before = hwm(); r = monoquant.quantize_tensor(sd['fc.weight'], monoquant.QuantSpec('int8')); after = hwm(); out = size([r.data, r.scale])",
}


def main():
    env = dict(os.environ, GOMAXPROCS="2")
    env.setdefault("PYTHONPATH", os.path.dirname(HERE))
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| call (one 1 GiB float32 weight) | peak RSS growth | output | growth / output |")
    print("|---|---|---|---|")
    for name, case in CASES.items():
        r = subprocess.run([sys.executable, "-c", CODE.replace("CASE", case)], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"| {name} | failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode} | | |")
            continue
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {name} | {m['grew'] / 2**20:.0f} MiB | {m['out'] / 2**20:.0f} MiB | {m['grew'] / m['out']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
