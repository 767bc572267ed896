"""The torch side of bench/model: the same job as `monoquant quantize --bits 8` on a safetensors
checkpoint, done the usual torch way. Tensors are read one at a time with safe_open (torch's
best case for memory), each selected weight goes through PerChannelMinMaxObserver(qint8,
per_channel_symmetric) and torch.quantize_per_channel, and the int8 values plus scales are
saved with safetensors.torch.save_file. Prints one JSON line: seconds, peak RSS, overall SQNR.

usage: torch_quantize.py IN.safetensors OUT.safetensors
"""
import json
import math
import sys
import time

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.ao.quantization.observer import PerChannelMinMaxObserver


def vm_hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return -1


def selected(name, t):
    # The same selection as monoquant's default for this state_dict: 2-D ".weight" tensors
    # that are not embeddings.
    return name.endswith(".weight") and t.dim() == 2 and "embed" not in name


def main():
    src, dst = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    out, meta = {}, {}
    signal = noise = 0.0
    with safe_open(src, framework="pt") as f:
        meta = f.metadata() or {}
        for name in f.keys():
            t = f.get_tensor(name)
            if not selected(name, t):
                out[name] = t
                continue
            obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
            obs(t)
            scale, zp = obs.calculate_qparams()
            q = torch.quantize_per_channel(t, scale, zp, 0, torch.qint8)
            out[name] = q.int_repr()
            out[name + ".scale"] = scale.to(torch.float32)
            d = q.dequantize()
            signal += float(t.double().pow(2).sum())
            noise += float((t.double() - d.double()).pow(2).sum())
            del t, q, d
    save_file(out, dst, metadata=meta)
    secs = time.perf_counter() - start
    print(json.dumps({"seconds": secs, "peak_rss_bytes": vm_hwm(),
                      "sqnr_db": 10 * math.log10(signal / noise), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
