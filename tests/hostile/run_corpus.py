"""Runs the hostile corpus (gen_corpus.py) through every entry point and checks the guarantees
of SECURITY.md. Usable from pytest (test_hostile.py) or directly:

    python tests/hostile/run_corpus.py CORPUS_DIR --cli build/monoquant --lib build/libmonoquant.so

Entry points: the CLI's inspect, quantize, dequantize and compare (a fresh process per case and
command); Python's monoquant.load, monoquant.dequantize and monoquant.quantize_file and the C
ABI's mq_model_load through ctypes (in batch processes, each item under its own hang guard, restarted after a crash). For
each run it checks:

  - no crash: the process ends by itself (no signal, no Go "fatal error"/"panic", no Python
    traceback outside the library's own exceptions);
  - no hang: each run ends within HANG_GUARD seconds (a guard only; real runs take well under
    a second);
  - nothing hostile accepted: every "refuse" case is refused by every entry point, with the
    expected words when the manifest gives them;
  - no partial output: a run that fails leaves its output folder empty;
  - bounded memory: peak RSS (wait4's ru_maxrss) at most the entry point's baseline on a small
    valid file + RSS_SLACK + RSS_PER_BYTE x the input's size (+ RSS_PER_OUTPUT x the tensors a
    valid file materialises when loaded whole, the manifest's output_bytes);
  - bounded, plain messages: at most MESSAGE_LIMIT bytes, no Go internals;
  - no raw control characters in the CLI's human output (stdout and stderr).
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PKG_ROOT = os.path.join(REPO, "bindings", "python")

HANG_GUARD = 10.0          # seconds; a hang guard, not a speed assertion
RSS_SLACK = 128 << 20      # bytes above the entry point's baseline
RSS_PER_BYTE = 16          # times the input's size (SECURITY.md: views expand at most 16x)
RSS_PER_OUTPUT = 3         # times the tensors a loader materialises (valid files: the output)
MESSAGE_LIMIT = 1200       # bytes of one error line: names.MaxMessage (1 KB) + prefixes

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\u202a-\u202e\u2066-\u2069]")
GO_INTERNALS = re.compile(r"goroutine \d|\*types\.|%!|runtime\.|github\.com/|0xc0[0-9a-f]{8}")
CRASH_MARKS = ("fatal error:", "panic:", "SIGBUS", "SIGSEGV", "unexpected fault address")

# The Python and C entry points run in one batch process per corpus pass (importing torch takes
# seconds on a loaded machine): it reports each item's start and result on stdout, with its peak
# RSS so far; the parent applies the hang guard per item and restarts the batch after a crash.
BATCH = r"""
import ctypes, json, os, resource, sys
sys.path.insert(0, {pkg!r})
import monoquant
lib = ctypes.CDLL({lib!r})
lib.mq_last_error.restype = ctypes.c_char_p
items = json.load(open(sys.argv[1]))
outdir = sys.argv[2]
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def c_load(path):
    h = ctypes.c_void_p()
    rc = lib.mq_model_load(ctypes.byref(h), path.encode())
    if rc == 0:
        lib.mq_model_free(h)
        return "accepted", ""
    return "refused", lib.mq_last_error().decode("utf-8", "replace")
print(json.dumps({{"ready": rss()}}), flush=True)
for i, entry, path in items:
    print(json.dumps({{"start": i}}), flush=True)
    try:
        if entry == "c-load":
            status, err = c_load(path)
        elif entry == "py-quantize-file":
            out = os.path.join(outdir, "q%d.safetensors" % i)
            monoquant.quantize_file(path, out, log=False)
            status, err = "accepted", ""
        else:
            (monoquant.load if entry == "py-load" else monoquant.dequantize)(path)
            status, err = "accepted", ""
    except monoquant.MonoquantError as e:
        status, err = "refused", str(e)
    except (OSError, ValueError, TypeError, KeyError) as e:
        status, err = "refused", type(e).__name__ + ": " + str(e)
    print(json.dumps({{"done": i, "status": status, "error": err, "rss": rss()}}), flush=True)
"""

STARTUP_GUARD = 180.0  # seconds for the batch process to import torch on a loaded machine

class Run:
    def __init__(self, code, sig, stdout, stderr, rss, seconds, hung):
        self.code, self.sig, self.stdout, self.stderr = code, sig, stdout, stderr
        self.rss, self.seconds, self.hung = rss, seconds, hung


def spawn(cmd, env=None, during=None):
    """Runs cmd with output to files; returns a Run with the child's own peak RSS (wait4).
    during(proc) is called once shortly after the start (truncation, signals)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        if during:
            during(p)
        hung = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > HANG_GUARD:
                hung = True
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        p.returncode = 0  # reaped here; keep Popen from waiting again
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        so, se = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    return Run(code if code >= 0 else None, -code if code < 0 else None, so, se, ru.ru_maxrss * 1024, seconds, hung)


def wait_until_open(pid, path, limit=HANG_GUARD):
    """Waits (at most limit seconds) until process pid has path open (Linux /proc; elsewhere it
    waits 0.1 s)."""
    fds, want = f"/proc/{pid}/fd", os.path.realpath(path)
    if not os.path.isdir(fds):
        time.sleep(0.1)
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if any(os.path.realpath(os.path.join(fds, fd)) == want for fd in os.listdir(fds)):
                return
        except OSError:
            return  # the process is gone
        time.sleep(0.005)


class Runner:
    def __init__(self, corpus, cli, lib, python=sys.executable):
        self.corpus, self.cli, self.lib, self.python = corpus, cli, lib, python
        with open(os.path.join(corpus, "manifest.json")) as f:
            m = json.load(f)
        self.cases, self.base = m["cases"], os.path.join(corpus, m["base"])
        self.env = dict(os.environ, MONOQUANT_LIBRARY=lib, PYTHONPATH=PKG_ROOT)
        self.failures, self.stats = [], {"runs": 0, "crashes": 0, "hangs": 0, "accepted": 0,
                                         "partial_outputs": 0, "over_rss": 0, "raw_control": 0, "bad_messages": 0}
        self.baseline = {}

    CLI_ENTRIES = ["cli-inspect", "cli-quantize", "cli-dequantize", "cli-compare"]
    BATCH_ENTRIES = ["py-load", "py-dequantize", "py-quantize-file", "c-load"]

    def entry_points(self):
        return self.CLI_ENTRIES

    def command(self, entry, path, out):
        cli = self.cli
        return {
            "cli-inspect": [cli, "inspect", path],
            "cli-quantize": [cli, "quantize", "--model", path, "--out", os.path.join(out, "q.safetensors"), "--quiet"],
            "cli-dequantize": [cli, "dequantize", path, "--out", os.path.join(out, "d.safetensors"), "--quiet"],
            "cli-compare": [cli, "compare", path, self.base],
        }[entry]

    def measure_baselines(self):
        for entry in self.entry_points():
            out = tempfile.mkdtemp(prefix="mq-hostile-")
            try:
                r = spawn(self.command(entry, self.base, out), env=self.env)
                self.baseline[entry] = r.rss
            finally:
                shutil.rmtree(out, ignore_errors=True)

    def fail(self, case, entry, what, run=None):
        detail = ""
        if run is not None:
            detail = f" (exit {run.code}, signal {run.sig}, {run.seconds:.1f} s, {run.rss >> 20} MiB)\n    stderr: {run.stderr[-600:]!r}\n    stdout: {run.stdout[-300:]!r}"
        self.failures.append(f"[class {case['class']}] {case['name']} via {entry}: {what}{detail}")

    def outcome(self, entry, r):
        """("accepted" | "refused", message) of a finished run, or (None, why) for a crash."""
        if r.sig is not None:
            return None, f"killed by signal {r.sig}"
        if any(m in r.stderr for m in CRASH_MARKS) or "Traceback" in r.stderr:
            return None, "crashed"
        if entry.startswith("cli-"):
            if r.code == 0:
                return "accepted", ""
            if r.code in (2, 3, 4, 5, 6, 7, 8):  # the documented refusal exit codes (not 1: a bug)
                return "refused", r.stderr.strip()
            return None, f"exit code {r.code}"
        try:
            res = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None, f"no result (exit {r.code})"
        return res["status"], res.get("error", "")

    def run_case(self, case):
        path = os.path.join(self.corpus, case["path"])
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        if case["expect"] == "truncate":
            return self.run_truncate(case, path)
        if case["expect"] == "interrupt":
            return self.run_interrupt(case, path)
        for entry in self.entry_points():
            out = tempfile.mkdtemp(prefix="mq-hostile-")
            try:
                r = spawn(self.command(entry, path, out), env=self.env)
                self.stats["runs"] += 1
                if r.hung:
                    self.stats["hangs"] += 1
                    self.fail(case, entry, f"still running after {HANG_GUARD:.0f} s", r)
                    continue
                status, msg = self.outcome(entry, r)
                if status is None:
                    self.stats["crashes"] += 1
                    self.fail(case, entry, msg, r)
                    continue
                self.check_refusal(case, entry, status, msg, r)
                if status == "refused" and os.listdir(out):
                    self.stats["partial_outputs"] += 1
                    self.fail(case, entry, f"left output behind: {os.listdir(out)}", r)
                bound = self.baseline.get(entry, 0) + RSS_SLACK + RSS_PER_BYTE * size + RSS_PER_OUTPUT * case.get("output_bytes", 0)
                if r.rss > bound:
                    self.stats["over_rss"] += 1
                    self.fail(case, entry, f"peak RSS {r.rss >> 20} MiB above the bound {bound >> 20} MiB", r)
                if entry.startswith("cli-") and (RAW_CONTROL.search(r.stdout) or RAW_CONTROL.search(r.stderr)):
                    self.stats["raw_control"] += 1
                    self.fail(case, entry, "raw control characters on the terminal", r)
            finally:
                shutil.rmtree(out, ignore_errors=True)

    def run_interrupt(self, case, path):
        """Class 3: SIGTERM during a long read stops the CLI (exit 130) and leaves no output."""
        out = tempfile.mkdtemp(prefix="mq-hostile-")
        sent = []
        try:
            def term(p):
                # SIGTERM once the CLI is reading the file: its handler is installed first thing in
                # main, so the signal cannot land before it (a fixed 0.1 s could, on a loaded
                # machine, and the default action would kill the process without exit 130).
                wait_until_open(p.pid, path)
                sent.append(time.monotonic())
                p.send_signal(signal.SIGTERM)
            r = spawn(self.command("cli-quantize", path, out), env=self.env, during=term)
            self.stats["runs"] += 1
            self.stats["stop_after_sigterm_s"] = round(time.monotonic() - sent[0], 2) if sent else None
            if r.hung or r.code != 130:
                self.fail(case, "cli-quantize", "did not stop on SIGTERM with exit 130", r)
            if os.listdir(out):
                self.stats["partial_outputs"] += 1
                self.fail(case, "cli-quantize", f"left output behind: {os.listdir(out)}", r)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def run_truncate(self, case, path):
        """Class 2: the file is cut short while the CLI quantizes it."""
        keep = path + ".orig"
        shutil.copyfile(path, keep)
        for attempt in range(3):
            shutil.copyfile(keep, path)
            out = tempfile.mkdtemp(prefix="mq-hostile-")
            try:
                def cut(p, delay=0.15 * (attempt + 1)):
                    time.sleep(delay)
                    os.truncate(path, 4096)
                r = spawn(self.command("cli-quantize", path, out), env=self.env, during=cut)
                self.stats["runs"] += 1
                status, msg = self.outcome("cli-quantize", r)
                if r.hung or status is None:
                    self.stats["crashes" if not r.hung else "hangs"] += 1
                    self.fail(case, "cli-quantize", "crashed or hung on a file truncated under it", r)
                    return
                if status == "refused":
                    if os.listdir(out):
                        self.stats["partial_outputs"] += 1
                        self.fail(case, "cli-quantize", f"left output behind: {os.listdir(out)}", r)
                    if "truncated" not in msg:
                        self.fail(case, "cli-quantize", f"refusal does not say the file changed: {msg[:300]!r}")
                    return
            finally:
                shutil.rmtree(out, ignore_errors=True)
        # Finished before every truncation: nothing was read from a vanished page.

    def check_refusal(self, case, entry, status, msg, run=None):
        if case["expect"] == "refuse":
            if status == "accepted":
                self.stats["accepted"] += 1
                self.fail(case, entry, "hostile file accepted", run)
            elif case.get("want") and case["want"] not in msg and not (entry in ("cli-quantize", "py-quantize-file") and case["class"] == 6):
                # (quantize refuses an already quantized file before looking at its values)
                self.fail(case, entry, f"refusal does not say {case['want']!r}: {msg[:300]!r}")
        if status == "refused":
            line = msg.splitlines()[-1] if msg else ""
            if len(line.encode()) > MESSAGE_LIMIT or GO_INTERNALS.search(msg):
                self.stats["bad_messages"] += 1
                self.fail(case, entry, f"message of {len(line.encode())} bytes or with Go internals: {line[:300]!r}")

    def run_batch(self, cases):
        """Python's load/dequantize and the C ABI's mq_model_load for every case, in batch
        processes (restarted after a crash or a hang, with the rest of the items)."""
        items = []
        # Cases that may be accepted come last: the batch's peak RSS only grows, and a valid file
        # that materialises a large model must not hide a later case's growth.
        order = sorted(range(len(cases)), key=lambda ci: (cases[ci]["expect"] == "any", cases[ci].get("output_bytes", 0)))
        for ci in order:
            case = cases[ci]
            if case["expect"] in ("truncate", "interrupt"):
                continue
            for entry in self.BATCH_ENTRIES:
                items.append((ci, entry, os.path.join(self.corpus, case["path"])))
        items.insert(0, (-1, "c-load", self.base))  # the baseline: a small valid file
        base_rss = None
        while items:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump([[k, e, p] for k, (ci, e, p) in enumerate(items)], f)
                listing = f.name
            outdir = tempfile.mkdtemp(prefix="mq-hostile-py-")
            p = subprocess.Popen([self.python, "-c", BATCH.format(pkg=PKG_ROOT, lib=self.lib), listing, outdir],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env, text=True)
            deadline, current, done_upto, last_rss = time.monotonic() + STARTUP_GUARD, None, -1, 0
            crashed = None
            while True:
                r, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not r:
                    p.kill()
                    crashed = "hang"
                    break
                line = p.stdout.readline()
                if not line:
                    p.wait()
                    if done_upto < len(items) - 1:
                        crashed = "crash"
                    break
                msg = json.loads(line)
                if "ready" in msg:
                    deadline = time.monotonic() + HANG_GUARD
                elif "start" in msg:
                    current, deadline = msg["start"], time.monotonic() + HANG_GUARD
                elif "done" in msg:
                    k = msg["done"]
                    done_upto = k
                    ci, entry, path = items[k]
                    self.stats["runs"] += 1
                    if ci < 0:
                        base_rss = msg["rss"]
                    else:
                        case = cases[ci]
                        self.check_refusal(case, entry, msg["status"], msg["error"])
                        left = os.path.join(outdir, "q%d.safetensors" % k)
                        if entry == "py-quantize-file" and msg["status"] == "refused" and os.path.exists(left):
                            self.stats["partial_outputs"] += 1
                            self.fail(case, entry, "left output behind")
                        size = os.path.getsize(path) if os.path.isfile(path) else 0
                        bound = (base_rss or 0) + RSS_SLACK + RSS_PER_BYTE * size + RSS_PER_OUTPUT * case.get("output_bytes", 0)
                        if msg["rss"] > bound and msg["rss"] > last_rss:
                            self.stats["over_rss"] += 1
                            self.fail(case, entry, f"peak RSS {msg['rss'] >> 20} MiB above the bound {bound >> 20} MiB")
                    last_rss = msg["rss"]
                    deadline = time.monotonic() + HANG_GUARD
            os.unlink(listing)
            shutil.rmtree(outdir, ignore_errors=True)
            if crashed is None:
                break
            err = p.stderr.read()[-600:] if p.stderr else ""
            if current is None or current <= done_upto:
                self.fail({"class": 0, "name": "batch"}, "python", f"the batch process {crashed}ed before an item: {err!r}")
                break
            ci, entry, _ = items[current]
            self.stats["hangs" if crashed == "hang" else "crashes"] += 1
            self.fail(cases[ci] if ci >= 0 else {"class": 0, "name": "base"}, entry,
                      f"{crashed} (stderr {err!r})")
            items = items[current + 1:]
            items.insert(0, (-1, "c-load", self.base))
        self.baseline["python+c"] = base_rss or 0

    def run_all(self, only_fast=False):
        self.measure_baselines()
        cases = [c for c in self.cases if c["fast"] or not only_fast]
        for case in cases:
            self.run_case(case)
        self.run_batch(cases)
        return self.failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("--cli", default=os.path.join(REPO, "build", "monoquant"))
    ap.add_argument("--lib", default=os.path.join(REPO, "build", "libmonoquant.so"))
    ap.add_argument("--fast", action="store_true")
    a = ap.parse_args()
    r = Runner(a.corpus, a.cli, a.lib)
    t0 = time.monotonic()
    failures = r.run_all(only_fast=a.fast)
    print(json.dumps({"cases": len(r.cases), **r.stats, "baseline_rss_mib": {k: v >> 20 for k, v in r.baseline.items()},
                      "seconds": round(time.monotonic() - t0, 1)}, indent=1))
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
