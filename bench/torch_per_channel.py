"""torch's own per-channel INT8 path on a 4096x4096 float32 matrix, for comparison with
bench/c/bench_quantize.c: PerChannelMinMaxObserver + torch.quantize_per_channel, best of N runs,
with torch using as many threads as the engine (GOMAXPROCS, default: all cores).

    .venv/bin/python bench/torch_per_channel.py [runs]
"""
import os
import sys
import time
import warnings

import torch
from torch.ao.quantization import PerChannelMinMaxObserver

warnings.filterwarnings("ignore", category=UserWarning)
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
threads = int(os.environ.get("GOMAXPROCS", os.cpu_count()))
torch.set_num_threads(threads)
torch.manual_seed(0)
x = torch.rand(4096, 4096) * 2 - 1

best = best_cpu = float("inf")
for r in range(runs + 1):
    c0, t0 = time.process_time(), time.perf_counter()
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(x)
    s, z = obs.calculate_qparams()
    q = torch.quantize_per_channel(x, s, z, 0, torch.qint8)
    t, cpu = time.perf_counter() - t0, time.process_time() - c0
    if r > 0:
        best, best_cpu = min(best, t), min(best_cpu, cpu)
n = 4 * x.numel()
print(f"{'torch int8 per-channel':<24} {best:.6f} s  {n / best / 1e9:.2f} GB/s  cpu {best_cpu:.6f} s  "
      f"{n / best_cpu / 1e9:.2f} GB/s per core-second  (torch {torch.__version__}, {threads} threads)")
