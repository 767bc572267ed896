"""Run-time speed and resident memory of quantized models (issue #13), side by side in one run.

    make bench-python   (or: MONOQUANT_LIBRARY=build/libmonoquant.so .venv/bin/python bindings/python/bench/bench_kernels.py)

1. MiniLM-shaped encoder (6 layers, hidden 384, FFN 1536, 6 heads), batch 32 x seq 24:
   float vs monoquant INT8 dynamic (fbgemm) vs torch.ao quantize_dynamic (per-channel), with the
   cosine of each output against float.
2. Llama-shaped MLP (4096 -> 11008 -> 4096, SwiGLU): decode (1 token) float vs INT8 and INT4 g128
   weight-only; prefill (64 tokens) float vs INT8 dynamic vs torch.ao.
3. Resident memory: RSS growth of a fresh process holding the Llama MLP in float, INT8
   weight-only and INT4 g128 weight-only (built layer by layer, float freed as it goes).
4. Quantize-time peak and bits=16: time and peak RSS above the float Llama MLP of
   monoquant.quantize() (INT8 weight-only, a copy and inplace; bits=16 and dtype=bf16 inplace,
   with and without the run log) against model.half() / model.bfloat16(), each in a fresh
   process (bench_conv_lstm.py --peak KIND), the reference and ours in turn, three rounds:
   medians of the times, the largest peak.
5. ``--tied-head`` (run alone): a tied GPT-2 head (vocabulary 32000, 768 wide, as bench_load.py)
   on INT8 dynamic and static: ``intmm_dynamic``/``intmm_static`` (what a tied head runs, sharing
   the embedding's int8 table) against ``fbgemm_dynamic``/``fbgemm_static`` (the same layer
   untied) and float, for 1 token (decode), 8 and 128.

Times are medians over repeated calls after warm-up, the variants of a case interleaved call by call, with torch.set_num_threads(BENCH_THREADS).
Prints a markdown table (pasted into BENCHMARKS.md, section "Quantized models at run time").
"""

import copy
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
os.environ["GOMAXPROCS"] = str(THREADS)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import monoquant  # noqa: E402
from monoquant import QuantSpec  # noqa: E402
from monoquant.nn import QuantizedLinear  # noqa: E402

torch.set_num_threads(THREADS)
warnings.simplefilter("ignore")


def interleaved_ms(fns, n, warm=2):
    """Median ms of each callable, the calls interleaved round-robin so that load from other
    processes falls on every variant alike."""
    times = {k: [] for k in fns}
    with torch.inference_mode():
        for _ in range(warm):
            for f in fns.values():
                f()
        for _ in range(n):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def cos(a, b):
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), 0))


class Block(nn.Module):
    def __init__(self, d=384, ff=1536, heads=6):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        b, s, d = x.shape
        sh = lambda t: t.reshape(b, s, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(sh(self.q(x)), sh(self.k(x)), sh(self.v(x)))
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(b, s, d)))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class MLP(nn.Module):
    def __init__(self, d=4096, ff=11008):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def ao_dynamic(model):
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(copy.deepcopy(model), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def weight_only(model, spec):
    q = copy.deepcopy(model)
    for name, mod in list(q.named_children()):
        setattr(q, name, QuantizedLinear.from_float(mod, spec, activation="none"))
    return q


def rss_child(kind):
    """Runs in a fresh process: RSS growth (bytes) of holding the Llama MLP as `kind`."""
    import ctypes

    libc = ctypes.CDLL(None)

    def rss():
        gc.collect()
        libc.malloc_trim(0)  # hand freed temporaries back to the OS: count what is held
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    # Warm everything a quantized layer touches (engine, kernel probes) before the baseline.
    QuantizedLinear.from_float(nn.Linear(256, 64), QuantSpec("int4"), activation="none")(torch.randn(1, 256))
    QuantizedLinear.from_float(nn.Linear(256, 64), QuantSpec("int8"), activation="none")(torch.randn(1, 256))
    base = rss()
    layers = []
    for k, n in ((4096, 11008), (4096, 11008), (11008, 4096)):
        lin = nn.Linear(k, n, bias=False)
        if kind == "float":
            layers.append(lin)
            continue
        spec = QuantSpec("int8") if kind == "int8" else QuantSpec("int4", group_size=128)
        layers.append(QuantizedLinear.from_float(lin, spec, activation="none"))
        del lin
    with torch.inference_mode():
        for m in layers:
            m(torch.randn(1, m.in_features))
    print(json.dumps({"kind": kind, "bytes": rss() - base, "kernel": getattr(layers[0], "kernel", "float")}))


def tied_head():
    """Section 5: the tied head's kernel against fbgemm's and float, side by side, for dynamic
    and static (calibrated: input scale 0.05, zero point 128 -- the shift into int8 is then 0;
    and zero point 100, where intmm_static adds the row-sum term) activations."""
    torch.manual_seed(0)
    lin = nn.Linear(768, 32000, bias=False).eval()
    spec = QuantSpec("int8")
    load0 = os.getloadavg()[0]
    print("| activation | tokens | float ms | fbgemm ms | intmm ms | intmm / fbgemm | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for act, qp in (("dynamic", None), ("static", (0.05, 128)), ("static", (0.05, 100))):
        tied = QuantizedLinear.from_float(lin, spec, activation=act, input_qparams=qp)
        tied._tie_table()
        fb = QuantizedLinear.from_float(lin, spec, activation=act, input_qparams=qp)
        assert tied.kernel == "intmm_" + act and fb.kernel == "fbgemm_" + act
        label = act if qp is None else f"static zp {qp[1]}"
        for m in (1, 8, 128):
            x = torch.randn(m, 768)
            t = interleaved_ms({"float": lambda: lin(x), "fbgemm": lambda: fb(x), "intmm": lambda: tied(x)}, 30 if m < 128 else 10)
            with torch.inference_mode():
                d = (fb(x) - tied(x)).abs().max().item()
            print(f"| {label} | {m} | {t['float']:.2f} | {t['fbgemm']:.2f} | {t['intmm']:.2f} | {t['intmm'] / t['fbgemm']:.2f} | {d:.1e} |")
    print(f"threads {THREADS}; load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--rss":
        rss_child(sys.argv[2])
        return
    if sys.argv[1:] == ["--tied-head"]:
        tied_head()
        return
    rows = []
    load0 = os.getloadavg()[0]
    torch.manual_seed(0)

    # 1. MiniLM-shaped encoder
    enc = nn.Sequential(*(Block() for _ in range(6))).eval()
    x = torch.randn(32, 24, 384)
    q8 = monoquant.quantize(enc, bits=8, dynamic=True, progress=False)
    ao = ao_dynamic(enc)
    with torch.inference_mode():
        ref, y8, yao = enc(x), q8(x), ao(x)
    n = 30
    t = interleaved_ms({"f": lambda: enc(x), "q": lambda: q8(x), "ao": lambda: ao(x)}, n)
    tf, t8, tao = t["f"], t["q"], t["ao"]
    kern = q8[0].fc1.kernel
    rows.append(("MiniLM encoder 6x384/1536, batch 32 x seq 24", "float", tf, 1.0, "", ""))
    rows.append(("", f"monoquant INT8 dynamic ({kern})", t8, t8 / tf, f"{t8 / tao:.2f}x torch.ao", f"cos {cos(y8, ref):.6f}"))
    rows.append(("", "torch.ao quantize_dynamic per-channel", tao, tao / tf, "", f"cos {cos(yao, ref):.6f}"))
    del enc, q8, ao

    # 2. Llama-shaped MLP
    mlp = MLP().eval()
    w8 = weight_only(mlp, QuantSpec("int8"))
    w4 = weight_only(mlp, QuantSpec("int4", group_size=128))
    d8 = monoquant.quantize(mlp, bits=8, dynamic=True, progress=False)
    ao = ao_dynamic(mlp)
    x1 = torch.randn(1, 4096)
    x64 = torch.randn(64, 4096)
    with torch.inference_mode():
        r1, r64 = mlp(x1), mlp(x64)
        c8, c4, cd, cao = cos(w8(x1), r1), cos(w4(x1), r1), cos(d8(x64), r64), cos(ao(x64), r64)
    n = 20
    t = interleaved_ms({"f": lambda: mlp(x1), "8": lambda: w8(x1), "4": lambda: w4(x1)}, n)
    tf1, t81, t41 = t["f"], t["8"], t["4"]
    rows.append(("Llama MLP 4096->11008->4096, decode 1 token", "float", tf1, 1.0, "", ""))
    rows.append(("", f"monoquant INT8 weight-only ({w8.gate.kernel})", t81, t81 / tf1, "", f"cos {c8:.6f}"))
    rows.append(("", f"monoquant INT4 g128 weight-only ({w4.gate.kernel})", t41, t41 / tf1, "", f"cos {c4:.6f}"))
    n = 10
    t = interleaved_ms({"f": lambda: mlp(x64), "q": lambda: d8(x64), "ao": lambda: ao(x64)}, n)
    tf64, td64, tao64 = t["f"], t["q"], t["ao"]
    rows.append(("Llama MLP, prefill 64 tokens", "float", tf64, 1.0, "", ""))
    rows.append(("", f"monoquant INT8 dynamic ({d8.gate.kernel})", td64, td64 / tf64, f"{td64 / tao64:.2f}x torch.ao", f"cos {cd:.6f}"))
    rows.append(("", "torch.ao quantize_dynamic per-channel", tao64, tao64 / tf64, "", f"cos {cao:.6f}"))
    del mlp, w8, w4, d8, ao
    gc.collect()

    # 3. Resident memory, each in a fresh process
    mem = {}
    for kind in ("float", "int8", "int4"):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss", kind], capture_output=True, text=True, check=True)
        mem[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    fb = mem["float"]["bytes"]

    # 4. Quantize-time peak and bits=16, each in a fresh process, in turn, three rounds
    peak_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_conv_lstm.py")
    kinds = ("int8", "int8-inplace", "half", "bits16", "bits16-nolog", "bfloat16", "bf16", "bf16-nolog")
    runs = {k: [] for k in kinds}
    for _ in range(3):
        for kind in kinds:
            out = subprocess.run([sys.executable, peak_script, "--peak", kind], capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    peak = {k: {"s": statistics.median(r["s"] for r in v), "peak": max(r["peak"] for r in v), "qbytes": v[0]["qbytes"]}
            for k, v in runs.items()}

    print(f"torch {torch.__version__}, {THREADS} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"quantized engine {torch.backends.quantized.engine}, {platform.machine()}, load average at the start {load0:.1f}, "
          f"at the end {os.getloadavg()[0]:.1f}")
    print()
    print("| case | path | ms | x float | vs torch.ao | output |")
    print("|---|---|---|---|---|---|")
    for case, path, ms, ratio, vs, out in rows:
        print(f"| {case} | {path} | {ms:.2f} | {ratio:.2f} | {vs} | {out} |")
    print()
    print("| resident memory (RSS growth holding the Llama MLP) | MiB | x float | kernel |")
    print("|---|---|---|---|")
    for kind in ("float", "int8", "int4"):
        b = mem[kind]["bytes"]
        print(f"| {kind} | {b / 2**20:.0f} | {b / fb:.3f} | {mem[kind]['kernel']} |")
    print()
    print("| quantizing the Llama MLP (517 MiB float) | s | peak MiB above the float model | ratio | goal |")
    print("|---|---|---|---|---|")
    for k, label in (("int8", "quantize(bits=8, activations='none')"), ("int8-inplace", "the same, inplace=True")):
        r = peak[k]
        print(f"| {label} | {r['s']:.2f} | {r['peak'] / 2**20:.0f} | peak {r['peak'] / r['qbytes']:.2f}x the quantized size "
              f"({r['qbytes'] / 2**20:.0f} MiB) | <= 1.2x |")
    for ref, ours in (("half", "bits16"), ("half", "bits16-nolog"), ("bfloat16", "bf16"), ("bfloat16", "bf16-nolog")):
        r, o = peak[ref], peak[ours]
        label = ("quantize(bits=16, inplace=True)" if ours.startswith("bits16") else "quantize(dtype='bf16', inplace=True)") + \
            (", log=False" if ours.endswith("nolog") else "")
        if ours in ("bits16", "bf16"):
            print(f"| model.{ref}() | {r['s']:.2f} | {r['peak'] / 2**20:.0f} | | |")
        print(f"| {label} | {o['s']:.2f} | {o['peak'] / 2**20:.0f} | time {o['s'] / r['s']:.2f}x, peak {o['peak'] / max(r['peak'], 1):.2f}x "
              f"model.{ref}() | <= 1.5x time, <= 1.2x memory |")


if __name__ == "__main__":
    main()
