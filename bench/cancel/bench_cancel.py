"""Time from a signal to the stop of quantize_file / `monoquant quantize`, and to the exit of
the process; then checks that nothing was left in the output folder.

    make bench-cancel   (BENCH_CANCEL_SRC=big.safetensors; default: generates 2.17 GB with bench-model)

The Python child prints a line right before it calls quantize_file and another when the call
has raised (KeyboardInterrupt for SIGINT, SystemExit from a SIGTERM handler): "stop" is the
time from the signal to that line, "exit" to the end of the process, whose interpreter teardown
(torch's) is timed alone too. The CLI's stop is its exit. Several delays after the start, so
that the signal lands inside different tensors (the 262 MB embedding and lm_head included).
--old-python-path/--old-library run the same Python child against another build (A/B).
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

CHILD = r"""
import os, signal, sys
import monoquant
src, dst, sig = sys.argv[1], sys.argv[2], sys.argv[3]
if sig == "TERM":
    def on_term(*a):
        raise SystemExit(143)  # a program that exits on SIGTERM
    signal.signal(signal.SIGTERM, on_term)
print("start", flush=True)
try:
    monoquant.quantize_file(src, dst, log=False, progress=False)
    print("finished", flush=True)
except BaseException as e:
    print("stopped", type(e).__name__, flush=True)
    raise
"""

BASELINE = "import torch, monoquant; print('start', flush=True)"


def run_once(cmd, out_dir, delay, sig, env, wait_line):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    if wait_line:
        line = p.stdout.readline()
        assert line.strip() == "start", line
    time.sleep(delay)
    t0 = time.perf_counter()
    p.send_signal(sig)
    stop, finished = None, False
    for line in p.stdout:
        if line.startswith("stopped"):
            stop = time.perf_counter() - t0
        finished |= line.startswith("finished")
    p.wait()
    dt = time.perf_counter() - t0
    left = os.listdir(out_dir)
    for f in left:
        os.unlink(os.path.join(out_dir, f))
    return (stop if stop is not None else dt), dt, p.returncode, finished, left


def teardown(python, env):
    p = subprocess.Popen([python, "-c", BASELINE], stdout=subprocess.PIPE, env=env, text=True)
    p.stdout.readline()
    t0 = time.perf_counter()
    p.wait()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--cli", default=os.path.join(REPO, "build", "monoquant"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--library", default=os.path.join(REPO, "build", "libmonoquant.so"))
    ap.add_argument("--old-python-path", default="")
    ap.add_argument("--old-library", default="")
    ap.add_argument("--delays", default="0.3,0.6,0.9,1.2,1.5")
    args = ap.parse_args()
    delays = [float(d) for d in args.delays.split(",")]
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "bindings", "python"), MONOQUANT_LOG="0", MONOQUANT_LIBRARY=args.library)
    old_env = dict(env, PYTHONPATH=args.old_python_path, MONOQUANT_LIBRARY=args.old_library)
    print(f"input {args.src} ({os.path.getsize(args.src) / 1e9:.2f} GB), load average {os.getloadavg()[0]:.1f}")
    print("| caller | signal | delay (s) | signal to stop (s) | signal to exit (s) | exit code | output left |")
    print("|---|---|---|---|---|---|---|")
    worst = {}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.src))) as out_dir:
        dst = os.path.join(out_dir, "q.safetensors")
        py = [args.python, "-c", CHILD, args.src, dst]
        jobs = [
            ("python", env, "INT", py + ["INT"], signal.SIGINT, True),
            ("python", env, "TERM (handler)", py + ["TERM"], signal.SIGTERM, True),
            ("python", env, "TERM (default)", py + ["DFL"], signal.SIGTERM, True),
            ("cli", env, "INT", [args.cli, "quantize", "-m", args.src, "-o", dst, "-b", "8", "--no-log"], signal.SIGINT, False),
        ]
        if args.old_library:
            jobs.insert(1, ("python, before", old_env, "INT", py + ["INT"], signal.SIGINT, True))
        for name, e, sname, cmd, sig, wait_line in jobs:
            for d in delays:
                stop, dt, rc, finished, left = run_once(cmd, out_dir, d, sig, e, wait_line)
                note = " (had finished)" if finished else ""
                print(f"| {name} | SIG{sname} | {d:.1f} | {stop:.3f}{note} | {dt:.3f} | {rc} | {left or 'none'} |", flush=True)
                if not finished:
                    w = worst.setdefault((name, sname), [0, 0])
                    w[0], w[1] = max(w[0], stop), max(w[1], dt)
    print()
    print(f"interpreter teardown alone (`{BASELINE}`, from its print to its exit): "
          + ", ".join(f"{teardown(args.python, env):.3f}" for _ in range(3)) + " s")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    for k, v in worst.items():
        print(f"worst {k[0]} SIG{k[1]}: stop {v[0]:.3f} s, exit {v[1]:.3f} s")


if __name__ == "__main__":
    main()
