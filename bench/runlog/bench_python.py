"""What the run log costs an in-memory monoquant.quantize: the same model quantized with the
log and with log=False, alternating (BENCH_RUNLOG_PY_MB of F32 Linear weights, BENCH_RUNLOG_PY_PAIRS
pairs). The log's cost here is the state-dict fingerprint (sha256 of every tensor, computed by
the engine beside the quantization) and one SQLite insert. Prints medians of wall and CPU time."""

import os
import resource
import statistics
import sys
import tempfile
import time
import warnings

import torch

os.environ.setdefault("MONOQUANT_HOME", tempfile.mkdtemp(prefix="monoquant-bench-runlog-"))
import monoquant  # noqa: E402

mb = int(os.environ.get("BENCH_RUNLOG_PY_MB", "512"))
pairs = int(os.environ.get("BENCH_RUNLOG_PY_PAIRS", "5"))
n = 2048
layers = max(1, mb * 2**20 // (n * n * 4))
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(n, n, bias=False) for _ in range(layers)]).eval()
warnings.simplefilter("ignore", monoquant.MonoquantWarning)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def once(log):
    w0, c0 = time.perf_counter(), cpu()
    q = monoquant.quantize(model, bits=8, progress=False, log=log)
    w, c = time.perf_counter() - w0, cpu() - c0
    assert (q.monoquant_run_id > 0) == log
    del q
    return w, c


once(False)  # warm up
res = {True: [], False: []}
for i in range(pairs):
    for log in ((True, False) if i % 2 == 0 else (False, True)):
        res[log].append(once(log))
size = sum(p.numel() * 4 for p in model.parameters()) / 1e6
print(f"monoquant.quantize of {layers} x Linear({n},{n}) F32 ({size:.0f} MB) to INT8, {pairs} pairs alternating; load {os.getloadavg()[0]:.1f}")
for log, name in ((False, "log=False"), (True, "run log")):
    w = statistics.median(x[0] for x in res[log])
    c = statistics.median(x[1] for x in res[log])
    print(f"  {name:10s} wall {w:.3f} s  cpu {c:.3f} s")
wl, wn = statistics.median(x[0] for x in res[True]), statistics.median(x[0] for x in res[False])
cl, cn = statistics.median(x[1] for x in res[True]), statistics.median(x[1] for x in res[False])
print(f"  overhead: wall {100 * (wl / wn - 1):+.1f} %, cpu {100 * (cl / cn - 1):+.1f} %")
sys.exit(0)
