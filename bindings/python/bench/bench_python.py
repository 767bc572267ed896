"""Speed of the Python package against torch, side by side in one run, same thread count.

    make bench-python            (or: MONOQUANT_LIBRARY=build/libmonoquant.so .venv/bin/python bindings/python/bench/bench_python.py)

1. monoquant.quantize(bits=8, dynamic=True) of a ~100M-parameter MLP vs
   torch.ao.quantization.quantize_dynamic on the same model (both return a copy).
2. HistogramObserver over 100 batches of 64x4096 float32: monoquant's vs torch's, with the
   qparams compared.
Prints a markdown table (pasted into BENCHMARKS.md, section "Python").
"""

import os
import platform
import subprocess
import sys
import time
import warnings

THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
# The engine sizes its worker pool from GOMAXPROCS when the library loads: set it first.
os.environ["GOMAXPROCS"] = str(THREADS)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import monoquant  # noqa: E402

torch.set_num_threads(THREADS)
warnings.simplefilter("ignore")


def best(fn, n):
    times = []
    out = None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
    return min(times)


def mlp():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(4096, 4096), nn.ReLU()]
    m = nn.Sequential(*layers).eval()
    return m, sum(p.numel() for p in m.parameters())


def bench_quantize(reps):
    m, n = mlp()
    t_mq = best(lambda: monoquant.quantize(m, bits=8, dynamic=True), reps)
    t_torch = best(lambda: torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8), reps)
    # The engine alone on the same weights (tensor API, zero copy): what the model path adds on top.
    ws = [mod.weight.detach() for mod in m if isinstance(mod, nn.Linear)]
    spec = monoquant.QuantSpec("int8")
    t_kernel = best(lambda: [monoquant.quantize_tensor(w, spec) for w in ws], reps)
    return n, t_mq, t_kernel, t_torch


def bench_histogram(reps, batches=100):
    """Best of ``reps`` runs for each library (a fresh observer each time, the two libraries
    alternating so that both see the same neighbours): wall time, and the process CPU time of
    the same run (all threads), which the other load on the machine barely moves."""
    torch.manual_seed(1)
    xs = [torch.randn(64, 4096) * (1 + i / 50) for i in range(batches)]

    def run(cls):
        obs = cls()
        # Let the other library's threads go idle first (torch's OpenMP workers spin for a while
        # after a parallel region, and the engine's helper polls for 30 us after a batch).
        time.sleep(0.05)
        c0, t0 = time.process_time(), time.perf_counter()
        for x in xs:
            obs(x)
        qp = obs.calculate_qparams()
        return time.perf_counter() - t0, time.process_time() - c0, qp

    mq, th = [], []
    for _ in range(reps):
        mq.append(run(monoquant.HistogramObserver))
        th.append(run(torch.ao.quantization.HistogramObserver))
    t_mq, c_mq, qp_mq = min(mq, key=lambda r: r[0])
    t_torch, c_torch, qp_torch = min(th, key=lambda r: r[0])
    same = all(torch.equal(a[2][0], b[2][0]) and torch.equal(a[2][1], b[2][1]) for a in mq for b in th)

    def med(v):
        v = sorted(v)
        return v[len(v) // 2]

    return ((t_mq, min(r[1] for r in mq), med(r[0] for r in mq), med(r[1] for r in mq)),
            (t_torch, min(r[1] for r in th), med(r[0] for r in th), med(r[1] for r in th)), same, qp_mq, qp_torch)


def machine():
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name"))
    except Exception:
        model = platform.processor()
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, {THREADS} threads (torch.set_num_threads and GOMAXPROCS)"


def main():
    reps = int(os.environ.get("BENCH_REPS", 3))
    load0 = os.getloadavg()[0]
    if os.environ.get("BENCH_ONLY") == "histogram":
        n, t_mq, t_mq_ns, t_torch = 0, float("nan"), float("nan"), float("nan")
    else:
        n, t_mq, t_mq_ns, t_torch = bench_quantize(reps)
    hreps = int(os.environ.get("BENCH_HIST_REPS", max(reps, 5)))
    h_mq, h_torch, same, qp_mq, qp_torch = bench_histogram(hreps)
    print(f"machine: {machine()}")
    print(f"load average at the start: {load0:.1f}, at the end: {os.getloadavg()[0]:.1f}")
    print()
    print("| job | monoquant | torch | speed-up |")
    print("|---|---|---|---|")
    if n:
        print(f"| quantize {n / 1e6:.1f}M-param MLP, INT8 dynamic (best of {reps}) | {t_mq:.3f} s | {t_torch:.3f} s (quantize_dynamic) | {t_torch / t_mq:.1f}x |")
        print(f"| (engine kernel alone: quantize_tensor on the 6 weights) | {t_mq_ns:.3f} s | | |")
    print(f"| HistogramObserver, 100 batches of 64x4096 + calculate_qparams (best of {hreps}, alternating), wall | {h_mq[0]:.4f} s | {h_torch[0]:.4f} s | {h_torch[0] / h_mq[0]:.1f}x |")
    print(f"| the same, process CPU time (all threads, best of {hreps}) | {h_mq[1]:.4f} s | {h_torch[1]:.4f} s | {h_torch[1] / h_mq[1]:.1f}x |")
    print(f"| the same, median wall / median CPU of {hreps} | {h_mq[2]:.4f} / {h_mq[3]:.4f} s | {h_torch[2]:.4f} / {h_torch[3]:.4f} s | {h_torch[2] / h_mq[2]:.1f}x / {h_torch[3] / h_mq[3]:.1f}x |")
    print()
    print(f"histogram qparams equal: {same} (monoquant scale {qp_mq[0].item():.9g} zp {qp_mq[1].item()}, torch scale {qp_torch[0].item():.9g} zp {qp_torch[1].item()})")


if __name__ == "__main__":
    main()
