"""End-to-end benchmark of the `monoquant` CLI on a generated large checkpoint, against a torch
script doing the same job in the same run (BENCHMARKS.md, "CLI end to end").

    .venv/bin/python tests/cli/bench_e2e.py --gb 2 --monoquant build/monoquant   (make bench-cli)

1. Generates a Llama-shaped float32 safetensors checkpoint of about --gb GiB with the model
   benchmark's generator (bench/model, `gen`), in a temporary folder deleted at the end.
2. Runs `monoquant quantize --bits 8` and `--bits 4` on it, each as its own process: wall time
   and peak RSS (the child's ru_maxrss from wait4, so it covers everything the CLI does: reading,
   quantizing, writing with fsync, and the post-write validation that reopens the output,
   dequantizes every quantized tensor and runs every Linear layer on a random input).
3. Runs bench/model/torch_quantize.py (safe_open tensor by tensor, PerChannelMinMaxObserver +
   quantize_per_channel, save_file) on the same file, measured the same way.
Prints a markdown table; the figures in BENCHMARKS.md come from it.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def measured(cmd):
    """Run cmd, return (seconds, peak RSS bytes, stdout, CPU seconds)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    secs = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)}: exit {code}\n{err.decode(errors='replace')}")
    return secs, ru.ru_maxrss * 1024, out.decode(), ru.ru_utime + ru.ru_stime


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0, help="checkpoint size in GiB")
    ap.add_argument("--monoquant", default=os.path.join(ROOT, "build", "monoquant"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    mq = os.path.abspath(a.monoquant)
    tmp = tempfile.mkdtemp(prefix="monoquant-bench-cli-", dir=os.environ.get("BENCH_DIR"))
    try:
        gen = os.path.join(tmp, "benchmodel")
        subprocess.run(["go", "build", "-o", gen, "./bench/model"], cwd=ROOT, check=True)
        src = os.path.join(tmp, "model.safetensors")
        t0 = time.perf_counter()
        subprocess.run([gen, "gen", "-out", src, "-size", f"{int(a.gb * 1024)}MiB"], check=True)
        size = os.path.getsize(src)
        print(f"generated {src}: {size / 1e9:.2f} GB in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        rows = []
        for bits in (8, 4):
            out = os.path.join(tmp, f"q{bits}.safetensors")
            secs, rss, doc, cpu = measured([mq, "quantize", "--model", src, "--bits", str(bits), "--out", out, "--json", "--quiet"])
            rep = json.loads(doc)
            worst = min((l["output_sqnr_db"] for l in rep["validation"]["layer_outputs"]), default=None)
            rows.append({"what": f"monoquant quantize --bits {bits}", "seconds": secs, "rss": rss,
                         "out": os.path.getsize(out), "sqnr": rep["report"]["sqnr_db"], "worst_out": worst, "cpu": cpu})
            print(f"monoquant --bits {bits}: {secs:.1f}s, peak RSS {rss / 1e6:.0f} MB", file=sys.stderr)
            os.remove(out)
        out = os.path.join(tmp, "torch8.safetensors")
        secs, rss, doc, cpu = measured([sys.executable, os.path.join(ROOT, "bench", "model", "torch_quantize.py"), src, out])
        t = json.loads(doc.strip().splitlines()[-1])
        rows.append({"what": f"torch {t['torch']} script, INT8 per-channel", "seconds": secs, "rss": rss,
                     "out": os.path.getsize(out), "sqnr": t["sqnr_db"], "worst_out": None, "cpu": cpu})
        print(f"torch: {secs:.1f}s, peak RSS {rss / 1e6:.0f} MB", file=sys.stderr)

        print(f"\nInput: {size / 1e9:.2f} GB float32 safetensors (Llama-shaped, bench/model generator); "
              f"{cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
              f"page cache warm (the file was just written).\n")
        print("| run | wall time | CPU time | throughput | peak RSS | RSS / input | output | overall SQNR |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['what']} | {r['seconds']:.1f} s | {r['cpu']:.1f} s | {size / r['seconds'] / 1e9:.2f} GB/s | {r['rss'] / 1e6:.0f} MB | "
                  f"{100 * r['rss'] / size:.0f}% | {r['out'] / 1e9:.2f} GB | {r['sqnr']:.2f} dB |")
        torch_s = rows[-1]["seconds"]
        for r in rows[:-1]:
            print(f"\n{r['what']}: {torch_s / r['seconds']:.2f}× the torch script's speed "
                  f"({rows[-1]['cpu'] / r['cpu']:.2f}× in CPU time), "
                  f"{rows[-1]['rss'] / r['rss']:.2f}× less peak memory; worst Linear output SQNR on a random input "
                  f"{r['worst_out']:.2f} dB")
    finally:
        if a.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
