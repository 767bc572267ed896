"""Cost of monoquant.sensitivity on a MiniLM-sized BERT (6 layers, hidden 384, FFN 1536, 12 heads,
built from a transformers BertConfig with random weights: nothing downloaded), 32 samples of
--seq tokens, formats int8 and int4: 37 Linear layers x 2 formats = 74 candidates.

Goal (issue #14): <= 60 s on 2 cores. Prints wall and CPU time, the load average, and the
time of one float forward pass over the 32 samples for scale.

    python bench/method/bench_sensitivity.py [--seq 128] [--batch 8] [--no-reuse]
"""

import argparse
import os
import resource
import time
import warnings

import torch
import transformers

import monoquant


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--no-reuse", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    model = transformers.BertModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g),
             "attention_mask": torch.ones(a.batch, a.seq, dtype=torch.long)} for _ in range(a.samples // a.batch)]
    with torch.no_grad():
        t = time.perf_counter()
        for d in data:
            model(**d)
        fwd = time.perf_counter() - t
    print(f"model: BertModel 6x384 (FFN 1536), {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params; "
          f"{a.samples} samples x {a.seq} tokens in batches of {a.batch}; one float pass {fwd:.2f} s")
    load0 = os.getloadavg()[0]
    c0, t0 = cpu(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        tab = monoquant.sensitivity(model, data, formats=["int8", "int4"], progress=False, reuse=not a.no_reuse)
    wall, c = time.perf_counter() - t0, cpu() - c0
    n = sum(len(l["results"]) for l in tab.layers)
    print(f"sensitivity: {len(tab.layers)} layers x {len(tab.formats)} formats = {n} candidates, reuse={not a.no_reuse}: "
          f"wall {wall:.1f} s, CPU {c:.1f} s (load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after); goal <= 60 s on 2 cores")
    print("\n".join(str(tab).splitlines()[:8]))


if __name__ == "__main__":
    main()
