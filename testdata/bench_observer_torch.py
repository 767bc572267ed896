#!/usr/bin/env python3
"""torch's side of BenchmarkHistogram100x64x4096: HistogramObserver over 100 batches of 64×4096
float32 gaussians with a slowly growing spread, then calculate_qparams. Prints ns/op in the format
of `go test -bench` so the two lines sit side by side. Run with .venv/bin/python."""
import time
import warnings

import torch
from torch.ao.quantization.observer import HistogramObserver

warnings.filterwarnings("ignore")
g = torch.Generator().manual_seed(0)
batches = [torch.randn(64, 4096, generator=g) * (1 + b / 50) for b in range(100)]
best = float("inf")
for _ in range(2):
    obs = HistogramObserver()
    t = time.perf_counter_ns()
    for x in batches:
        obs(x)
    obs.calculate_qparams()
    best = min(best, time.perf_counter_ns() - t)
print(f"torch {torch.__version__} HistogramObserver100x64x4096 \t{best} ns/op (best of 2, {torch.get_num_threads()} threads)")
