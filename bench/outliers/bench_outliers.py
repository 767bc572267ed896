"""The run-time cost of LLM.int8() outliers (docs/methods.md) on one 4096×4096 Linear, side by
side in one process: plain INT8 dynamic (fbgemm linear_dynamic) against the outlier mode,
dynamic (columns found per batch, their weights read back from the packed INT8 weight) and
static (stored float columns), with 0, 4 and 32 outlier input features, and the float Linear.

    make bench-outliers            (BENCH_REPS=N, default 20; BENCH_THREADS=N, default torch's)
"""

import argparse
import os
import time

import torch
import torch.nn as nn

import monoquant


def fastest(fns, x, reps):
    """The fastest time of each fn on x over `reps` rounds, the calls interleaved (one of each
    per round). On a machine shared with other work the fastest round is the one without
    preemption: each torch op is an OpenMP barrier that a descheduled thread stalls, so medians
    penalise the path with more ops for the machine's load, not for its work."""
    ts = [[] for _ in fns]
    with torch.no_grad():
        for f in fns:
            f(x)
            f(x)
        for _ in range(reps):
            for i, f in enumerate(fns):
                t = time.perf_counter()
                f(x)
                ts[i].append(time.perf_counter() - t)
    return [min(t) for t in ts]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    n = 4096
    lin = nn.Sequential(nn.Linear(n, n)).eval()
    calib = torch.randn(64, n)
    calib[:, :32] *= 40
    plain = monoquant.quantize(lin, activations="dynamic", progress=False)
    dyn = monoquant.quantize(lin, activations="dynamic", outliers=True, progress=False)
    stat = monoquant.quantize(lin, calibration_data=[calib], outliers=True, progress=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.tokens} tokens × {n} → {n}, fastest of {a.reps} interleaved rounds; load {os.getloadavg()[0]:.2f}")
    def dyn_new_set(x):
        # the worst case: a different outlier set every batch, so the weight columns are read
        # back through the kernel each call (the layer keeps only the last set's)
        dyn[0].__dict__.pop("_outlier_cache", None)
        return dyn(x)

    print("| outlier features | float Linear | INT8 dynamic | + outliers, dynamic (same set) | ratio | + outliers, dynamic (new set every batch) | ratio | + outliers, static (32 stored) | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in (0, 4, 32):
        x = torch.randn(a.tokens, n)
        x[:, :k] *= 40  # |x| well above 6 in k features
        tf, tp, td, tn, ts = fastest((lin, plain, dyn, dyn_new_set, stat), x, a.reps)
        print(f"| {k} | {tf * 1e3:.2f} ms | {tp * 1e3:.2f} ms | {td * 1e3:.2f} ms | {td / tp:.2f}× | {tn * 1e3:.2f} ms | {tn / tp:.2f}× | {ts * 1e3:.2f} ms | {ts / tp:.2f}× |")


if __name__ == "__main__":
    main()
