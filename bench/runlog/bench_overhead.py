"""What the run log costs a 1 GB quantization, from every entry point, in one run.

Three ways in, each with the log on and off:

  cli    `monoquant quantize --model CHECKPOINT` (and `--no-log`), a child process: wall and the
         child's CPU (user+sys) from os.wait4
  file   monoquant.quantize_file(CHECKPOINT, ...) (and log=False), in this process (the C ABI's
         mq_quantize_file)
  cli-first  the CLI's first run of a checkpoint: a copy of it (in OUT_DIR) touched before each
         logged run, so that the log's cache misses and the input's identity is computed
  memory monoquant.quantize(model) of an nn.Module of about the same size (and log=False): the
         input identity is the state-dict fingerprint (mq_model_quantize_into, as C's
         mq_model_quantize)

The six cases are interleaved: every repetition runs each of them once, in an order rotated
from one repetition to the next, so that whatever load other processes put on the machine falls
on all of them alike. Each case's figure is the median over the repetitions; the overhead is
printed twice: as the ratio of the medians, and as the median of each repetition's on/off ratio
(the pairs ran seconds apart). Outputs go to OUT_DIR (default /dev/shm when it exists: on disk the
write's own spread hides a 2 % effect). Before measuring, one logged run of each file entry point
puts the checkpoint's sha256 in the log's cache (as any second run of a model finds it).

    python bench/runlog/bench_overhead.py CLI CHECKPOINT [REPS]

Environment: BENCH_RUNLOG_ONLY (comma-separated entry points to measure: cli, cli-first, file, memory;
default all),
BENCH_RUNLOG_PY_MB (size of the in-memory model, default: the checkpoint's size),
OUT_DIR, MONOQUANT_HOME (default: a fresh temporary folder, never the user's log)."""

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import torch

if len(sys.argv) < 3:
    sys.exit(__doc__)
cli, ckpt = sys.argv[1], sys.argv[2]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 9
home = os.environ.setdefault("MONOQUANT_HOME", tempfile.mkdtemp(prefix="monoquant-bench-runlog-"))
os.environ.pop("MONOQUANT_LOG", None)
out_root = os.environ.get("OUT_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
out_dir = tempfile.mkdtemp(prefix="monoquant-bench-runlog-", dir=out_root)

import monoquant  # noqa: E402

warnings.simplefilter("ignore", monoquant.MonoquantWarning)
torch.set_num_threads(os.cpu_count() or 1)

mb = int(os.environ.get("BENCH_RUNLOG_PY_MB", "0")) or max(1, os.path.getsize(ckpt) // 2**20)
n = 2048
layers = max(1, mb * 2**20 // (n * n * 4))
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(n, n, bias=False) for _ in range(layers)]).eval()
model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_cli(log, env=None, model=None):
    out = os.path.join(out_dir, "cli.safetensors")
    args = [cli, "quantize", "--model", model or ckpt, "--out", out, "--quiet"] + ([] if log else ["--no-log"])
    w0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    w = time.perf_counter() - w0
    err = p.stderr.read().decode()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0 or "not recorded" in err:
        sys.exit(f"{' '.join(args)}: exit {p.returncode}: {err}")
    os.remove(out)
    return w, ru.ru_utime + ru.ru_stime


first_ckpt = None


def run_cli_first(log):
    """The CLI's first run of a checkpoint: a copy of it whose times are touched before each
    logged run (a new ctime), so that the log's cache does not know it and its identity is
    computed; the log itself exists already. The log-off case quantizes the same copy."""
    global first_ckpt
    if first_ckpt is None:
        first_ckpt = os.path.join(out_dir, "first-" + os.path.basename(ckpt))
        shutil.copyfile(ckpt, first_ckpt)
    if log:
        os.utime(first_ckpt)
    return run_cli(log, model=first_ckpt)


def run_file(log):
    out = os.path.join(out_dir, "file.safetensors")
    w0, c0 = time.perf_counter(), self_cpu()
    rep = monoquant.quantize_file(ckpt, out, progress=False, log=log)
    w, c = time.perf_counter() - w0, self_cpu() - c0
    assert (rep["run_id"] > 0) == log and not rep.get("log_warning"), rep.get("log_warning")
    os.remove(out)
    return w, c


def run_memory(log):
    w0, c0 = time.perf_counter(), self_cpu()
    q = monoquant.quantize(model, bits=8, progress=False, log=log)
    w, c = time.perf_counter() - w0, self_cpu() - c0
    assert (q.monoquant_run_id > 0) == log
    del q
    return w, c


entries = [("cli", run_cli), ("cli-first", run_cli_first), ("file", run_file), ("memory", run_memory)]
only = [x for x in os.environ.get("BENCH_RUNLOG_ONLY", "").split(",") if x]
entries = [e for e in entries if not only or e[0] in only] or sys.exit(f"BENCH_RUNLOG_ONLY={only}: no such entry point (cli, cli-first, file, memory)")
cases = [(name, fn, log) for name, fn in entries for log in (True, False)]

# The input's ctime must be older than the hash cache's racy window (2 s) before a logged run
# can cache it; then one logged run per file entry point caches it, and one of each warms up.
time.sleep(max(0.0, 3 - (time.time() - os.stat(ckpt).st_ctime)))
first = {}
for name, fn in entries:
    first[name] = fn(True)
    fn(False)

load0 = os.getloadavg()
t0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
res = {(name, log): [] for name, _, log in cases}
for i in range(reps):
    k = i % len(cases)
    for name, fn, log in cases[k:] + cases[:k]:
        res[(name, log)].append(fn(log))
load1 = os.getloadavg()

print(f"Run log overhead, {t0}: {reps} repetitions of {len(cases)} cases interleaved (order rotated each repetition)")
print(f"machine: {os.cpu_count()} cores; load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
      f"at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
print(f"file entry points: {ckpt} ({os.path.getsize(ckpt) / 1e9:.2f} GB) to INT8, outputs in {out_dir}")
print(f"memory: monoquant.quantize of {layers} x Linear({n},{n}) F32 ({model_bytes / 1e9:.2f} GB) to INT8")
print(f"first logged run (hashes the file once; later runs find it in the log's cache): "
      + ", ".join(f"{name} {first[name][0]:.2f} s" for name, _ in entries if name in ("cli", "file")))
print()
print("| entry point | log off: wall / CPU (median) | log on: wall / CPU (median) | overhead, ratio of medians: wall / CPU | overhead, median of paired ratios: wall / CPU |")
print("|---|---|---|---|---|")
summary = []
for name, _ in entries:
    on, off = res[(name, True)], res[(name, False)]
    mw = [statistics.median(x[j] for x in on) for j in (0, 1)]
    mo = [statistics.median(x[j] for x in off) for j in (0, 1)]
    pr = [100 * (statistics.median(a[j] / b[j] for a, b in zip(on, off)) - 1) for j in (0, 1)]
    rm = [100 * (mw[j] / mo[j] - 1) for j in (0, 1)]
    print(f"| {name} | {mo[0]:.3f} s / {mo[1]:.3f} s | {mw[0]:.3f} s / {mw[1]:.3f} s | {rm[0]:+.1f} % / {rm[1]:+.1f} % | {pr[0]:+.1f} % / {pr[1]:+.1f} % |")
    summary.append(f"{name} {rm[0]:+.1f} %")
print()
print("wall times per repetition (s), on / off:")
for name, _ in entries:
    on, off = res[(name, True)], res[(name, False)]
    print(f"  {name:6s} on  " + " ".join(f"{x[0]:.2f}" for x in on))
    print(f"  {name:6s} off " + " ".join(f"{x[0]:.2f}" for x in off))
print("overhead (wall, ratio of medians): " + ", ".join(summary))
shutil.rmtree(out_dir, ignore_errors=True)
