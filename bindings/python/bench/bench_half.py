"""quantize(bits=16) / quantize(dtype="bf16") against model.half() / model.bfloat16(), time and peak.

    bench/prio.sh .venv/bin/python bindings/python/bench/bench_half.py [ROUNDS] [--old LIB] [--new LIB]

Every variant runs in a fresh process (bench_conv_lstm.py --peak KIND: the Llama-shaped MLP
4096->11008->4096, 517 MiB float, inplace=True, RSS sampled every 2 ms above the float model),
the variants one after the other in each round, ROUNDS rounds (default 5): medians of the times,
the largest peak. With --old LIB (and --new LIB, default: the library monoquant finds as usual)
the monoquant variants run with both libraries in the same rounds, old and new side by side.
Issue #13's goal: at most 1.5x the time and 1.2x the memory of model.half() / model.bfloat16().
"""

import json
import os
import statistics
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_conv_lstm.py")
OURS = ("bits16", "bits16-nolog", "bf16", "bf16-nolog")


def main(argv):
    rounds, libs = 5, {}
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("--old", "--new"):
            libs[a[2:]] = os.path.abspath(args.pop(0))
        else:
            rounds = int(a)
    tags = [t for t in ("old", "new") if t in libs] or [""]
    if "old" in libs and "new" not in libs:
        tags = ["old", ""]
    variants = [("half", "half", None)]
    variants += [(f"{k}{'-' + t if t else ''}", k, libs.get(t)) for k in OURS[:2] for t in tags]
    variants += [("bfloat16", "bfloat16", None)]
    variants += [(f"{k}{'-' + t if t else ''}", k, libs.get(t)) for k in OURS[2:] for t in tags]
    runs = {label: [] for label, _, _ in variants}
    for _ in range(rounds):
        for label, kind, lib in variants:
            env = dict(os.environ)
            if lib:
                env["MONOQUANT_LIBRARY"] = lib
            out = subprocess.run([sys.executable, SCRIPT, "--peak", kind], capture_output=True, text=True, check=True, env=env)
            runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"load average at the end: {' '.join('%.2f' % x for x in os.getloadavg())}; {rounds} rounds")
    print("| variant | median s | runs (ms) | peak MiB above the float model | vs reference |")
    print("|---|---:|---|---:|---|")
    ref = None
    for label, kind, _ in variants:
        med = statistics.median(r["s"] for r in runs[label])
        peak = max(r["peak"] for r in runs[label])
        if kind in ("half", "bfloat16"):
            ref = (med, peak, kind)
            vs = ""
        else:
            vs = f"time {med / ref[0]:.2f}x, peak {peak / max(ref[1], 1):.2f}x model.{ref[2]}()"
        ms = " ".join("%.0f" % (r["s"] * 1e3) for r in runs[label])
        print(f"| {label} | {med:.3f} | {ms} | {peak / 2**20:.0f} | {vs} |")


if __name__ == "__main__":
    main(sys.argv[1:])
