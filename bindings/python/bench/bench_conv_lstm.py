"""Conv2d and LSTM at run time, and the memory goals of issue #13, side by side in one run.

    make bench-python   (or: MONOQUANT_LIBRARY=build/libmonoquant.so .venv/bin/python bindings/python/bench/bench_conv_lstm.py)

1. A Conv-BN-ReLU CNN (3 blocks, 3->32->64->64, 3x3, batch 16 x 64x64): float vs monoquant static
   INT8 with folding (oneDNN int8 conv, fused ReLU) vs without folding (BN left in float) vs
   torch.ao static (fuse_modules, x86 qconfig, QuantStub/DeQuantStub), with output cosine vs float.
2. A 2-layer LSTM (input 128, hidden 256), seq 32 x batch 16: float vs monoquant dynamic INT8
   (torch.quantized_lstm) vs torch.ao quantize_dynamic (per-channel).
3. Resident memory (RSS growth of a fresh process holding the model): a 2-layer LSTM 1024/1024
   and a CNN of eight 256->256 3x3 convs, float vs INT8.
4. Quantize-time peak (RSS above the float model, sampled every 2 ms, in a fresh process) for the
   Llama MLP (4096->11008->4096) at INT8 weight-only, inplace and not, against the quantized size;
   and bits=16 / dtype=bf16 against model.half() / model.bfloat16() (time and peak).

Times are medians, the variants interleaved call by call, torch.set_num_threads(BENCH_THREADS).
"""

import copy
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings

THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
os.environ["GOMAXPROCS"] = str(THREADS)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import monoquant  # noqa: E402
from monoquant.nn import QuantizedConv2d, QuantizedLinear, QuantizedLSTM  # noqa: E402

torch.set_num_threads(THREADS)
warnings.simplefilter("ignore")


def interleaved_ms(fns, n, warm=2):
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


def cnn(widths=(3, 32, 64, 64)):
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
    m = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10))
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(8, widths[0], 32, 32))
    return m.eval()


def ao_static_cnn(model, calib):
    from torch.ao.quantization import DeQuantStub, QuantStub, convert, fuse_modules, get_default_qconfig, prepare

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.body, self.dequant = QuantStub(), copy.deepcopy(model), DeQuantStub()

        def forward(self, x):
            return self.dequant(self.body(self.quant(x)))

    m = M().eval()
    groups = [[f"body.{i}", f"body.{i + 1}", f"body.{i + 2}"] for i in range(0, len(model) - 3, 3) if isinstance(model[i], nn.Conv2d)]
    fuse_modules(m, groups, inplace=True)
    m.qconfig = get_default_qconfig("x86")
    prepare(m, inplace=True)
    with torch.no_grad():
        for c in calib:
            m(c)
    return convert(m)


def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim():
    import ctypes

    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)


def rss_child(kind):
    """Fresh process: RSS growth of holding an LSTM or a CNN in float or INT8."""
    model_kind, fmt = kind.split("-")
    # warm the engine and kernels first
    w = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU())
    monoquant.quantize(w, bits=8, calibration_data=[torch.randn(4, 4, 8, 8)], progress=False)(torch.randn(1, 4, 8, 8))
    monoquant.quantize(nn.LSTM(8, 8), bits=8, dynamic=True, progress=False)(torch.randn(3, 1, 8))
    trim()
    base = rss_now()
    # Built module by module with from_float (torch allocates the outputs, the engine fills
    # them), so that the engine's own heap of a quantize() call is not counted.
    spec = monoquant.QuantSpec("int8")
    if model_kind == "lstm":
        m = nn.LSTM(1024, 1024, num_layers=2)
        x = torch.randn(4, 1, 1024)
        if fmt == "int8":
            m = QuantizedLSTM.from_float(m, spec, activation="dynamic")
    else:
        m = nn.Sequential(*[nn.Conv2d(256, 256, 3, padding=1) for _ in range(8)]).eval()
        x = torch.randn(1, 256, 8, 8)
        if fmt == "int8":
            for i in range(len(m)):
                m[i] = QuantizedConv2d.from_float(m[i], spec, activation="static", input_qparams=(0.05, 128))
    trim()
    held = rss_now() - base
    with torch.inference_mode():
        m(x)
    trim()
    kernel = next((getattr(q, "kernel") for q in m.modules() if hasattr(q, "kernel")), "float")
    print(json.dumps({"kind": kind, "bytes": held, "after_call": rss_now() - base, "kernel": kernel}))


class Peak:
    """Samples RSS every 2 ms in a thread; .peak is the highest seen."""

    def __init__(self):
        self.peak, self._stop = rss_now(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_now())
            time.sleep(0.002)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_now())


class MLP(nn.Module):
    def __init__(self, d=4096, ff=11008):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)


def peak_child(kind):
    """Fresh process: time and peak RSS above the float Llama MLP of one way to convert it."""
    monoquant.quantize(nn.Sequential(nn.Linear(64, 64)), bits=8, activations="none", progress=False)
    monoquant.quantize(nn.Sequential(nn.Linear(64, 64)), bits=16, progress=False)
    torch.manual_seed(0)
    m = MLP()
    trim()
    base = rss_now()
    with Peak() as p:
        t0 = time.perf_counter()
        if kind == "half":
            m.half()
        elif kind == "bfloat16":
            m.bfloat16()
        elif kind in ("bits16", "bits16-nolog"):
            q = monoquant.quantize(m, bits=16, progress=False, inplace=True, log=kind == "bits16")
        elif kind in ("bf16", "bf16-nolog"):
            q = monoquant.quantize(m, dtype="bf16", progress=False, inplace=True, log=kind == "bf16")
        elif kind in ("int8", "int8-inplace"):
            q = monoquant.quantize(m, bits=8, activations="none", progress=False, inplace=kind == "int8-inplace")
        elif kind in ("int8-layerwise", "fp16-layerwise"):
            # what a layer-by-layer quantize() would cost: one engine call per layer into
            # torch-allocated outputs, each float layer dropped as it is replaced
            spec = monoquant.QuantSpec("int8" if kind.startswith("int8") else "fp16")
            for name in ("gate", "up", "down"):
                setattr(m, name, QuantizedLinear.from_float(getattr(m, name), spec, activation="none"))
            q = m
        dt = time.perf_counter() - t0
    qbytes = 0
    if kind.startswith(("int8", "fp16")):
        qbytes = sum(t.numel() * t.element_size() for t in q.state_dict().values())
    print(json.dumps({"kind": kind, "s": dt, "peak": p.peak - base, "qbytes": qbytes}))


def child(flag, kind):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), flag, kind], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) == 3 and sys.argv[1] in ("--rss", "--peak"):
        (rss_child if sys.argv[1] == "--rss" else peak_child)(sys.argv[2])
        return
    print(f"torch {torch.__version__}, {THREADS} threads, {platform.machine()}, quantized engine {torch.backends.quantized.engine}, "
          f"load average {os.getloadavg()[0]:.1f}")
    mib = 1 << 20

    torch.manual_seed(0)
    m = cnn()
    calib = [torch.randn(16, 3, 64, 64) for _ in range(4)]
    x = torch.randn(16, 3, 64, 64)
    fold = monoquant.quantize(m, bits=8, calibration_data=calib, observer="minmax", progress=False)
    nofold = monoquant.quantize(m, bits=8, calibration_data=calib, observer="minmax", progress=False, fold=False)
    ao = ao_static_cnn(m, calib)
    with torch.inference_mode():
        f = m(x)
        c = {"fold": cos(fold(x), f), "nofold": cos(nofold(x), f), "ao": cos(ao(x), f)}
    t = interleaved_ms({"float": lambda: m(x), "fold": lambda: fold(x), "nofold": lambda: nofold(x), "ao": lambda: ao(x)}, 20)
    print("\n| case | path | ms | x float | vs torch.ao | output cos vs float |\n|---|---|---:|---:|---|---|")
    print(f"| CNN 3x(conv3x3-BN-ReLU) 3->32->64->64, batch 16 x 64x64 | float | {t['float']:.1f} | 1.00 | | |")
    print(f"| | monoquant static INT8, folded (`onednn_static`, ReLU fused) | {t['fold']:.1f} | {t['fold'] / t['float']:.2f} | {t['fold'] / t['ao']:.2f}x | {c['fold']:.6f} |")
    print(f"| | monoquant static INT8, not folded (BN in float) | {t['nofold']:.1f} | {t['nofold'] / t['float']:.2f} | {t['nofold'] / t['ao']:.2f}x | {c['nofold']:.6f} |")
    print(f"| | torch.ao static (fuse_modules, x86 qconfig) | {t['ao']:.1f} | {t['ao'] / t['float']:.2f} | | {c['ao']:.6f} |")
    # channels-last: oneDNN's own layout, so no reorder on either side of each int8 conv
    cl = torch.channels_last
    mcl, foldcl, xcl = copy.deepcopy(m).to(memory_format=cl), copy.deepcopy(fold).to(memory_format=cl), x.contiguous(memory_format=cl)
    aocl = copy.deepcopy(ao)
    with torch.inference_mode():
        ccl = cos(foldcl(xcl), f)
    t = interleaved_ms({"float": lambda: mcl(xcl), "fold": lambda: foldcl(xcl), "ao": lambda: aocl(xcl)}, 20)
    print(f"| the same CNN, channels-last input and model | float | {t['float']:.1f} | 1.00 | | |")
    print(f"| | monoquant static INT8, folded (`onednn_static`, ReLU fused) | {t['fold']:.1f} | {t['fold'] / t['float']:.2f} | {t['fold'] / t['ao']:.2f}x | {ccl:.6f} |")
    print(f"| | torch.ao static (fuse_modules, x86 qconfig) | {t['ao']:.1f} | {t['ao'] / t['float']:.2f} | | |")

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.manual_seed(0)
    lstm = nn.LSTM(128, 256, num_layers=2).eval()
    xs = torch.randn(32, 16, 128)
    ql = monoquant.quantize(lstm, bits=8, dynamic=True, progress=False)
    al = quantize_dynamic(nn.Sequential(copy.deepcopy(lstm)), {nn.LSTM: per_channel_dynamic_qconfig}, dtype=torch.qint8)[0]
    with torch.inference_mode():
        f = lstm(xs)[0]
        cq, ca = cos(ql(xs)[0], f), cos(al(xs)[0], f)
    t = interleaved_ms({"float": lambda: lstm(xs), "mq": lambda: ql(xs), "ao": lambda: al(xs)}, 20)
    print(f"| LSTM 2 layers 128/256, seq 32 x batch 16 | float | {t['float']:.1f} | 1.00 | | |")
    print(f"| | monoquant dynamic INT8 (`fbgemm_dynamic`, torch.quantized_lstm) | {t['mq']:.1f} | {t['mq'] / t['float']:.2f} | {t['mq'] / t['ao']:.2f}x | {cq:.6f} |")
    print(f"| | torch.ao quantize_dynamic, per-channel | {t['ao']:.1f} | {t['ao'] / t['float']:.2f} | | {ca:.6f} |")

    print("\n| resident memory (RSS growth of a fresh process) | MiB held | x float | MiB after one call | goal |\n|---|---:|---:|---:|---|")
    for model_kind, label in (("lstm", "LSTM 2 x 1024/1024"), ("cnn", "CNN 8 x conv 256->256 3x3")):
        fl = child("--rss", f"{model_kind}-float")
        q8 = child("--rss", f"{model_kind}-int8")
        print(f"| {label}, float | {fl['bytes'] / mib:.1f} | 1.000 | {fl['after_call'] / mib:.1f} | |")
        print(f"| {label}, INT8 (`{q8['kernel']}`) | {q8['bytes'] / mib:.1f} | {q8['bytes'] / fl['bytes']:.3f} | {q8['after_call'] / mib:.1f} | <= 0.30 |")

    print("\n| Llama MLP 4096->11008->4096 (517 MiB float) | s | peak MiB above the float model | ratio | goal |\n|---|---:|---:|---|---|")
    r = {k: child("--peak", k) for k in ("int8", "int8-inplace", "int8-layerwise", "half", "bits16", "fp16-layerwise", "bfloat16", "bf16")}
    for k, label in (("int8", "quantize(bits=8, activations='none')"), ("int8-inplace", "the same, inplace=True"),
                     ("int8-layerwise", "QuantizedLinear.from_float layer by layer (no whole-model engine result)")):
        print(f"| {label} | {r[k]['s']:.2f} | {r[k]['peak'] / mib:.0f} | {r[k]['peak'] / r[k]['qbytes']:.2f}x the quantized size ({r[k]['qbytes'] / mib:.0f} MiB) | <= 1.2x |")
    for ref, ours, label in (("half", "bits16", "quantize(bits=16, inplace=True)"), ("half", "fp16-layerwise", "FP16 QuantizedLinear.from_float layer by layer"),
                             ("bfloat16", "bf16", "quantize(dtype='bf16', inplace=True)")):
        print(f"| model.{ref}() | {r[ref]['s']:.2f} | {r[ref]['peak'] / mib:.0f} | | |")
        print(f"| {label} | {r[ours]['s']:.2f} | {r[ours]['peak'] / mib:.0f} | time {r[ours]['s'] / r[ref]['s']:.2f}x, "
              f"peak {r[ours]['peak'] / max(r[ref]['peak'], 1):.2f}x model.{ref}() | <= 1.5x time, <= 1.2x memory |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
