"""One library's HistogramObserver alone in a fresh process: 100 batches of 64x4096 float32
(ranges widening batch by batch, as in bench_python.py) plus calculate_qparams, REPS runs, best
and median wall and process CPU time. Run it once per library (and per engine build, with
MONOQUANT_LIBRARY) to compare them without one library's threads disturbing the other's run.

    MONOQUANT_LIBRARY=build/libmonoquant.so .venv/bin/python bindings/python/bench/bench_histogram_alone.py mq|torch [REPS]
"""

import os
import sys
import time

os.environ.setdefault("GOMAXPROCS", "2")  # before the engine loads
THREADS = int(os.environ["GOMAXPROCS"])

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import monoquant  # noqa: E402


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "mq"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    torch.set_num_threads(THREADS)
    torch.manual_seed(1)
    xs = [torch.randn(64, 4096) * (1 + i / 50) for i in range(100)]
    cls = {"mq": monoquant.HistogramObserver, "torch": torch.ao.quantization.HistogramObserver}[which]
    walls, cpus = [], []
    for _ in range(reps):
        obs = cls()
        c0, t0 = time.process_time(), time.perf_counter()
        for x in xs:
            obs(x)
        scale, zp = obs.calculate_qparams()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    walls.sort()
    cpus.sort()
    print(f"{which} ({THREADS} threads, {reps} runs): wall best {walls[0] * 1e3:.1f} ms median {walls[reps // 2] * 1e3:.1f} ms; "
          f"CPU best {cpus[0] * 1e3:.1f} ms median {cpus[reps // 2] * 1e3:.1f} ms; scale {scale.item():.9g} zero point {zp.item()}")


if __name__ == "__main__":
    main()
