"""The run-time cost of LLM.int8() outliers (docs/methods.md) on one 4096×4096 Linear, side by
side in one process: plain INT8 dynamic (fbgemm linear_dynamic) against the outlier mode,
dynamic (columns found per batch, their weights read back from the packed INT8 weight) and
static (stored float columns), with 0, 4 and 32 outlier input features, and the float Linear.

    make bench-outliers            (BENCH_REPS=N, default 20; threads: torch's default)
"""

import argparse
import os
import time

import torch
import torch.nn as nn

import monoquant


def best(fn, x, reps):
    with torch.no_grad():
        fn(x)
        fn(x)
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn(x)
            ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]  # median


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    torch.manual_seed(0)
    n = 4096
    lin = nn.Sequential(nn.Linear(n, n)).eval()
    calib = torch.randn(64, n)
    calib[:, :32] *= 40
    plain = monoquant.quantize(lin, activations="dynamic", progress=False)
    dyn = monoquant.quantize(lin, activations="dynamic", outliers=True, progress=False)
    stat = monoquant.quantize(lin, calibration_data=[calib], outliers=True, progress=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.tokens} tokens × {n} → {n}, median of {a.reps}; load {os.getloadavg()[0]:.2f}")
    print("| outlier features | float Linear | INT8 dynamic | + outliers, dynamic | ratio | + outliers, static (32 stored) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for k in (0, 4, 32):
        x = torch.randn(a.tokens, n)
        x[:, :k] *= 40  # |x| well above 6 in k features
        tf, tp, td, ts = (best(m, x, a.reps) for m in (lin, plain, dyn, stat))
        print(f"| {k} | {tf * 1e3:.2f} ms | {tp * 1e3:.2f} ms | {td * 1e3:.2f} ms | {td / tp:.2f}× | {ts * 1e3:.2f} ms | {ts / tp:.2f}× |")


if __name__ == "__main__":
    main()
