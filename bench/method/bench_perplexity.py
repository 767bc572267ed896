"""Perplexity of a small character-level GPT after INT4 g128 weight quantization with each method
(issue #14's goal: the perplexity increase with gptq <= 0.6x that of rtn, with hqq <= 0.85x).

Everything is made here, nothing is downloaded: the corpus is the documentation text that ships
with CPython (pydoc_data.topics: about 465,000 characters of English prose and code examples),
cut into 1,000-character chunks of which every tenth is held out (the held-out text comes from
the same distribution as the training text); the model is a 2-layer GPT, 128 wide, trained for
--steps AdamW steps (no weight decay, one-cycle schedule) on 2 threads; the quantized copies come
from monoquant.quantize (bits=4, group_size=128, activations "none": weight-only; gptq's Hessians
from --calib training sequences, sequential). Perplexity is exp(mean cross-entropy) over the
held-out text.

Besides the increase, each method's *mirrored* increase is printed: the perplexity with the
weights moved by the opposite error (w - (q(w) - w)). A small model sits near, not at, a minimum
of the held-out loss, so a weight error e changes the loss by g.e (first order, its sign set by
the direction of e) plus a quadratic term; the mean of the two increases cancels the first-order
part. When the two columns differ a lot, the first-order part dominates and a single increase
says little about the method (see BENCHMARKS.md).

    python bench/method/bench_perplexity.py [--steps 300] [--methods rtn,mse,hqq,gptq]

`--corpus grammar` uses the earlier generated-grammar corpus; `--quick` trains a smaller model
for a few seconds: a smoke run, not the measurement.
"""

import argparse
import copy
import math
import os
import random
import resource
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

import monoquant

WORDS = {
    "det": "the a every some no this that my your our".split(),
    "adj": "small red quick lazy old new bright dark quiet loud heavy light green warm cold".split(),
    "noun": "cat dog fox bird tree river stone house garden city ship engine window letter song market".split(),
    "verb": "sees finds takes builds hears paints moves opens follows carries watches keeps".split(),
    "prep": "near under over behind beside inside across".split(),
    "adv": "slowly quietly often never always gladly again soon".split(),
}


def sentence(rng):
    def np_():
        s = [rng.choice(WORDS["det"])]
        if rng.random() < 0.6:
            s.append(rng.choice(WORDS["adj"]))
        s.append(rng.choice(WORDS["noun"]))
        if rng.random() < 0.3:
            s += [rng.choice(WORDS["prep"])] + np_()
        return s

    s = np_() + [rng.choice(WORDS["verb"])] + np_()
    if rng.random() < 0.4:
        s.append(rng.choice(WORDS["adv"]))
    out = " ".join(s)
    return out[0].upper() + out[1:] + rng.choice([".", ".", ".", "!", "?"])


def corpus(n_chars, seed):
    rng = random.Random(seed)
    parts, n = [], 0
    while n < n_chars:
        s = sentence(rng) + ("\n" if rng.random() < 0.2 else " ")
        parts.append(s)
        n += len(s)
    return "".join(parts)[:n_chars]


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, d=128, layers=4, heads=4, ctx=64):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return self.head(self.ln(self.blocks(x)))


def pydoc_corpus():
    import pydoc_data.topics as topics

    return "".join(topics.topics[k] for k in sorted(topics.topics))


def split(data, chunk=1000, every=10):
    """Every ``every``-th chunk of ``chunk`` tokens is held out."""
    n = len(data) // chunk
    chunks = data[: n * chunk].view(n, chunk)
    held = torch.arange(n) % every == every - 1
    return chunks[~held].reshape(-1), chunks[held].reshape(-1)


@torch.no_grad()
def mirrored(model, q, data, ctx):
    """Perplexity with every quantized Linear's weight moved by the opposite of its error."""
    m = copy.deepcopy(model)
    qmods = dict(q.named_modules())
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Linear) and hasattr(qmods.get(name), "dequantized"):
            mod.weight.copy_(2 * mod.weight - qmods[name].weight)
    return perplexity(m, data, ctx)


def batches(data, n, ctx, g):
    ix = torch.randint(0, len(data) - ctx - 1, (n,), generator=g)
    return torch.stack([data[i:i + ctx] for i in ix]), torch.stack([data[i + 1:i + ctx + 1] for i in ix])


@torch.no_grad()
def perplexity(model, data, ctx):
    n = (len(data) - 1) // ctx
    x = data[: n * ctx].view(n, ctx)
    y = data[1: n * ctx + 1].view(n, ctx)
    loss = 0.0
    for i in range(0, n, 64):
        logits = model(x[i:i + 64])
        loss += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + 64].reshape(-1), reduction="sum").item()
    return math.exp(loss / (n * ctx))


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--methods", default="rtn,mse,hqq,gptq")
    ap.add_argument("--calib", type=int, default=128, help="training sequences for gptq's Hessians")
    ap.add_argument("--corpus", choices=("pydoc", "grammar"), default="pydoc")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    d, layers, steps = (64, 2, 60) if a.quick else (a.width, a.layers, a.steps)
    ctx = 64
    text = pydoc_corpus() if a.corpus == "pydoc" else corpus(400_000, seed=1)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    train, val = split(data)
    model = GPT(len(chars), d=d, layers=layers, ctx=ctx)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=a.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    load0 = os.getloadavg()[0]
    c0, t0 = cpu(), time.perf_counter()
    model.train()
    for step in range(steps):
        x, y = batches(train, 32, ctx, g)
        loss = F.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    train_wall, train_cpu = time.perf_counter() - t0, cpu() - c0
    base = perplexity(model, val, ctx)
    print(f"char GPT on the {a.corpus} corpus ({len(train):,} training, {len(val):,} held-out chars): {layers} layers x {d}, "
          f"vocab {len(chars)}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params; "
          f"trained {steps} steps of 32x{ctx} chars in {train_wall:.0f} s wall, {train_cpu:.0f} s CPU "
          f"(load average {load0:.1f} at the start; goal: under 3 minutes on 2 cores); final loss {loss.item():.3f}")
    print(f"float perplexity on the held-out chars: {base:.4f}")
    calib = [batches(train, 16, ctx, torch.Generator().manual_seed(1))[0] for _ in range(a.calib // 16)]
    inc = {}
    rows = []
    for m in a.methods.split(","):
        kw = {"calibration_data": calib} if m == "gptq" else {}
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", monoquant.MonoquantWarning)
            q = monoquant.quantize(model, bits=4, group_size=min(128, d), method=m, activations="none", progress=False, **kw)
        qt = time.perf_counter() - t
        p = perplexity(q, val, ctx)
        inc[m] = p - base
        rows.append((m, p, p - base, mirrored(model, q, val, ctx) - base, q.monoquant_report["sqnr_db"], qt))
    print(f"{'method':8} {'perplexity':>10} {'increase':>9} {'vs rtn':>7} {'mirrored':>9} {'weight SQNR':>12} {'quantize':>9}")
    for m, p, dp, dm, sq, qt in rows:
        ratio = dp / inc["rtn"] if "rtn" in inc and inc["rtn"] > 0 else float("nan")
        print(f"{m:8} {p:10.4f} {dp:9.4f} {ratio:7.2f} {dm:9.4f} {sq:9.2f} dB {qt:8.1f}s")
    if "rtn" in inc:
        for m, goal in (("gptq", 0.6), ("hqq", 0.85)):
            if m in inc:
                r = inc[m] / inc["rtn"]
                print(f"goal {m}: increase {r:.2f}x rtn's (<= {goal}x): {'met' if r <= goal else 'NOT met'}")


if __name__ == "__main__":
    main()
