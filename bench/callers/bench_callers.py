"""The same 2 GB float32 checkpoint quantized through each caller — the CLI, Python's
quantize_file and C's mq_quantize_file — in interleaved rounds, with the output bytes checked
equal. Prints a markdown table for BENCHMARKS.md (median wall time, ratio to the CLI).

    make bench-callers                    # BENCH_GB=2, BENCH_REPS=3
    .venv/bin/python bench/callers/bench_callers.py --gb 2 --reps 3
"""

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")


def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bits", default="8")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="mq-callers-", dir=os.environ.get("TMPDIR", "/tmp"))
    src = os.path.join(d, "model.safetensors")
    subprocess.run(["go", "run", "./bench/model", "gen", "-out", src, "-size", f"{int(a.gb * (1 << 30))}"], check=True, cwd=ROOT)
    exe = os.path.join(d, "quantize_file")
    subprocess.run(["cc", "-O2", "-std=c99", "-I", os.path.join(ROOT, "include"), "-I", os.path.join(ROOT, "capi"), os.path.join(ROOT, "tests", "parity", "quantize_file.c"),
                    "-o", exe, "-L", BUILD, "-lmonoquant", "-Wl,-rpath," + BUILD], check=True)
    env = dict(os.environ, MONOQUANT_LIBRARY=os.path.join(BUILD, "libmonoquant.so"), PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    # The call is timed inside the process: `import monoquant` (torch's import, seconds on a
    # busy machine) is reported apart, as it is paid once per process, not per file.
    py = ("import time, sys; t0 = time.perf_counter(); import monoquant; t1 = time.perf_counter(); "
          "monoquant.quantize_file(sys.argv[1], sys.argv[2], bits=int(sys.argv[3]), progress=False, validate=True); "
          "print(t1 - t0, time.perf_counter() - t1)")
    callers = {
        "CLI (`monoquant quantize`, with its validation)": lambda out: [os.path.join(BUILD, "monoquant"), "quantize", "--model", src, "--out", out, "--bits", a.bits, "--quiet"],
        "Python `monoquant.quantize_file(validate=True)`": lambda out: [sys.executable, "-W", "ignore", "-c", py, src, out, a.bits],
        "C `mq_quantize_file` (validate = 1)": lambda out: [exe, src, out, "--bits", a.bits, "--validate"],
    }
    times = {k: [] for k in callers}
    imports = []
    hashes = {}
    for r in range(a.reps):
        for name, cmd in callers.items():
            out = os.path.join(d, f"out-{len(hashes)}.safetensors")
            t0 = time.perf_counter()
            p = subprocess.run(cmd(out), check=True, env=env, stdout=subprocess.PIPE, text=True)
            wall = time.perf_counter() - t0
            if name.startswith("Python"):
                imp, call = map(float, p.stdout.split()[-2:])
                imports.append(imp)
                wall = call
            times[name].append(wall)
            hashes.setdefault(name, sha(out))
            os.remove(out)
    same = len(set(hashes.values())) == 1
    size = os.path.getsize(src)
    cli = statistics.median(next(iter(times.values())))
    print(f"\n{size / 1e9:.2f} GB float32 safetensors → INT{a.bits}, median of {a.reps} interleaved rounds "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}); outputs byte-identical: {'yes' if same else 'NO'}\n")
    print(f"(Python: the quantize_file call, timed in the process; `import monoquant` took {statistics.median(imports):.2f} s more.)\n")
    print("| caller | median s | GB/s | × CLI |\n|---|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.2f} | {size / 1e9 / m:.2f} | {m / cli:.2f} |")
    for f in (src, exe):
        os.remove(f)
    os.rmdir(d)
    if not same:
        sys.exit("the callers' outputs differ")


if __name__ == "__main__":
    main()
