"""Peak resident memory of monoquant.load into a skeleton on the meta device (issue 12).

A GPT-2-shaped model (transformers, built from a config: nothing downloaded) is quantized and
saved once; then, each in a fresh process, the file is loaded
  * into a skeleton built under ``torch.device("meta")`` (no float weight allocated),
  * through a module factory (parameters on meta, buffers real),
  * into a float model built the ordinary way (for contrast: the float weights are resident),
and the peak RSS of the load alone is measured: the process's high-water mark is reset
(/proc/self/clear_refs) just before monoquant.load, and VmHWM minus the RSS before it is the
memory the load took. The target is at most 1.3x the file size.

    make bench-load        (or: python bindings/python/bench/bench_load.py [--small] [--meta-only])
"""

import json
import os
import subprocess
import sys
import tempfile
import time


# (label, quantize options): the kernels differ in what a loaded layer keeps (docs/kernels.md)
# (INT8 static is calibrated on a few batches of random token ids, made in main())
VARIANTS = (("INT8 dynamic", {"bits": 8}), ("INT8 static", {"bits": 8, "activations": "static"}),
            ("INT8 weight-only", {"bits": 8, "activations": "none"}), ("INT4 g128", {"bits": 4}))


def cfg(small):
    import transformers

    if small:
        return transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=4096, n_positions=64, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=32000, n_positions=256, bos_token_id=0, eos_token_id=0)


def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def child(path, how, small):
    import torch
    import transformers

    import monoquant

    c = cfg(small)
    # Warm up what any first call pays once (code imported lazily, kernel libraries loaded), so
    # the measured window holds the load only.
    with torch.device("meta"):
        transformers.GPT2LMHeadModel(c)
    for bits in (8, 4):
        q = monoquant.quantize(torch.nn.Sequential(torch.nn.Linear(64, 64)), bits=bits, progress=False)
        with torch.no_grad():
            q(torch.randn(2, 64))
        # the library's code for opening and reading a file is paged in once per process
        with tempfile.TemporaryDirectory() as d:
            monoquant.save(q, os.path.join(d, "w.safetensors"))
            with torch.device("meta"):
                skel = torch.nn.Sequential(torch.nn.Linear(64, 64))
            monoquant.load(os.path.join(d, "w.safetensors"), skel)
    del q, skel
    if how == "meta":
        with torch.device("meta"):
            skel = transformers.GPT2LMHeadModel(c)
    elif how == "float":
        skel = transformers.GPT2LMHeadModel(c)
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM: the peak from here on is the load's
    t0 = time.perf_counter()
    if how == "factory":
        m = monoquant.load(path, lambda: transformers.GPT2LMHeadModel(c))
    else:
        m = monoquant.load(path, skel)
    wall = time.perf_counter() - t0
    peak = status("VmHWM")
    after = status("VmRSS")
    # A tied embedding and head whose kernels keep different forms of the one stored tensor
    # (the embedding's rows beside the head's packing) hold it twice: counted apart.
    emb, head = m.transformer.wte, m.lm_head
    tied = 0
    if isinstance(emb, monoquant.QuantizedEmbedding) and isinstance(head, monoquant.QuantizedLinear) and "weight_q" in emb._buffers:
        head_ptrs = {b.untyped_storage().data_ptr() for b in head.buffers()}
        if emb.weight_q.untyped_storage().data_ptr() not in head_ptrs:  # not the head's own int8pack operand
            tied = emb.weight_q.untyped_storage().nbytes()
    with torch.no_grad():
        y = m(torch.randint(0, c.vocab_size, (1, 8))).logits
    print(json.dumps({"how": how, "before": before, "peak": peak, "after": after, "wall": wall, "tied": tied, "finite": bool(torch.isfinite(y).all())}))


def main():
    small = "--small" in sys.argv
    skeletons = ("meta",) if "--meta-only" in sys.argv else ("meta", "factory", "float")
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3], small)
    import warnings

    import torch
    import transformers

    import monoquant

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(cfg(small)).eval()
        nparams = sum(p.numel() for p in model.parameters())
        rows = []
        for label, kw in VARIANTS:
            path = os.path.join(d, f"gpt2.{label.replace(' ', '_')}.safetensors")
            if kw.get("activations") == "static":
                kw = dict(kw, calibration_data=[torch.randint(0, model.config.vocab_size, (2, 32)) for _ in range(4)])
            monoquant.save(monoquant.quantize(model, progress=False, **kw), path)
            size = os.path.getsize(path)
            for how in skeletons:
                out = subprocess.run([sys.executable, __file__, "--child", path, how] + (["--small"] if small else []),
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                rows.append((label, how, size, r))
        del model
    print(f"GPT-2-shaped model, {nparams / 1e6:.1f} M parameters ({nparams * 4 / 1e6:.0f} MB float32); load {os.getloadavg()}")
    print(f"{'file':>16} {'skeleton':>8} {'file MB':>8} {'load peak MB':>13} {'held after MB':>14} {'peak / file':>11} {'peak / held':>11} {'tied 2nd MB':>11} {'(peak - tied) / file':>20} {'wall s':>7}")
    for label, how, size, r in rows:
        took, held = r["peak"] - r["before"], r["after"] - r["before"]
        assert r["finite"]
        print(f"{label:>16} {how:>8} {size / 1e6:8.1f} {took / 1e6:13.1f} {held / 1e6:14.1f} {took / size:11.2f} {took / max(held, 1):11.2f}"
              f" {r['tied'] / 1e6:11.1f} {(took - r['tied']) / size:20.2f} {r['wall']:7.2f}")
    print("held after = what the loaded model keeps resident; tied 2nd = the tied embedding's own table, held beside the head's"
          " packed form of the same stored tensor (0 when shared: a tied INT4 embedding reads the head's int4pack blocks, a tied"
          " INT8 one the head's int8 operand of int8pack / intmm_dynamic / intmm_static)")
    print("peak / file with the meta skeleton: " + ", ".join(f"{label} {(r['peak'] - r['before']) / size:.2f}" for label, how, size, r in rows if how == "meta")
          + f"  (goal <= 1.3; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
