"""Generate the safetensors fixtures under testdata/checkpoints/safetensors/ with the official
`safetensors` library and torch, so the Go reader is judged against files the reference writer made.

Run from the repository root:  .venv/bin/python testdata/gen_safetensors_fixtures.py

Outputs (all small, committed):
  all_dtypes.safetensors       every dtype the engine reads (incl. bf16, bool, a scalar, an empty
                               tensor), with __metadata__
  sharded/model-0000k-of-00003.safetensors + sharded/model.safetensors.index.json
                               a 3-shard set laid out like transformers' save_pretrained
  expected.json                per file: metadata, and per tensor dtype, shape, raw bytes (hex) and,
                               for float dtypes, the float32 bit patterns of torch's .float()
  bad/*.safetensors            broken or unsupported files, and bad/manifest.json saying what our
                               reader must report and whether the official library rejects them too
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", "safetensors")

DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.bool: "BOOL",
}


def raw_bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def describe(t):
    d = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "hex": raw_bytes(t).hex()}
    if t.is_floating_point():
        d["f32_bits"] = [int(x) for x in t.float().reshape(-1).numpy().view(np.uint32)]
    return d


def all_dtypes_tensors():
    g = torch.Generator().manual_seed(1234)
    randn = lambda *s: torch.randn(*s, generator=g)
    tensors = {
        "f32.weight": randn(4, 3),
        "f16.weight": (randn(2, 5) * 100).to(torch.float16),
        "bf16.weight": (randn(3, 3) * 1e3).to(torch.bfloat16),
        "f64.bias": randn(5).to(torch.float64),
        "i8": torch.randint(-128, 128, (7,), generator=g, dtype=torch.int8),
        "u8": torch.randint(0, 256, (2, 2, 2), generator=g, dtype=torch.uint8),
        "i16": torch.randint(-30000, 30000, (3,), generator=g, dtype=torch.int16),
        "i32": torch.randint(-2**31, 2**31 - 1, (2, 3), generator=g, dtype=torch.int32),
        "i64": torch.tensor([-(2**62), 0, 2**62 + 12345], dtype=torch.int64),
        "mask": torch.tensor([[True, False, True], [False, False, True]]),
        "scalar": torch.tensor(3.25, dtype=torch.float32),
        "empty": torch.zeros(0, 4, dtype=torch.float32),
        # Values that stress float decoding: subnormals, extremes and a signed zero.
        "specials.f16": torch.tensor([6e-8, -0.0, 65504.0, -1.5e-5], dtype=torch.float16),
        "specials.bf16": torch.tensor([1e-40, -3.0e38, 1.0 / 3.0, -0.0], dtype=torch.bfloat16),
    }
    return tensors


def save_deterministic(tensors, metadata):
    """save() with the metadata keys in sorted order. The library writes __metadata__ from a Rust
    HashMap, in an order that changes from run to run; retrying until it comes out sorted keeps the
    committed fixture stable across regenerations (a few tries suffice for a few keys)."""
    want = sorted(metadata)
    for _ in range(1000):
        blob = save(tensors, metadata=metadata)
        n = struct.unpack("<Q", blob[:8])[0]
        if list(json.loads(blob[8:8 + n])["__metadata__"]) == want:
            return blob
    raise RuntimeError("could not get a stable metadata order")


def header_file(header, data=b"", raw_header=None):
    hb = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(hb)) + hb + data


def official_rejects(path):
    try:
        with safe_open(path, "pt") as f:
            for k in f.keys():
                f.get_tensor(k)
        return False
    except Exception:
        return True


def main():
    os.makedirs(os.path.join(ROOT, "sharded"), exist_ok=True)
    os.makedirs(os.path.join(ROOT, "bad"), exist_ok=True)
    expected = {}

    tensors = all_dtypes_tensors()
    meta = {"format": "pt", "note": "fixture – ünïcode ✓", "quote": 'a "b" \\ c'}
    with open(os.path.join(ROOT, "all_dtypes.safetensors"), "wb") as f:
        f.write(save_deterministic(tensors, meta))
    expected["all_dtypes.safetensors"] = {
        "metadata": meta, "tensors": {k: describe(v) for k, v in tensors.items()}}

    # A sharded set as transformers writes it: shard names, a sorted weight_map and total_size.
    g = torch.Generator().manual_seed(99)
    layers = {f"layers.{i}.weight": torch.randn(8, 4, generator=g) for i in range(5)}
    layers["layers.0.bias"] = torch.randn(8, generator=g).to(torch.bfloat16)
    names = sorted(layers)
    groups = [names[0:2], names[2:4], names[4:]]
    weight_map, total = {}, 0
    for i, grp in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: layers[k] for k in grp}, os.path.join(ROOT, "sharded", fname),
                  metadata={"format": "pt"})
        for k in grp:
            weight_map[k] = fname
            total += layers[k].numel() * layers[k].element_size()
    with open(os.path.join(ROOT, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f,
                  indent=2, sort_keys=True)
        f.write("\n")
    expected["sharded/model.safetensors.index.json"] = {
        "metadata": {"format": "pt", "total_size": str(total)},
        "tensors": {k: describe(v) for k, v in layers.items()}}

    with open(os.path.join(ROOT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")

    # Broken and unsupported files. "want" is a substring our error must contain.
    good = open(os.path.join(ROOT, "all_dtypes.safetensors"), "rb").read()
    t8 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    z8 = b"\0" * 8
    bad = {
        "empty.safetensors": (b"", "too short"),
        "short_length.safetensors": (good[:5], "too short"),
        "truncated.safetensors": (good[: len(good) // 2], "truncated"),
        "truncated_header.safetensors": (good[:60], "runs past the end"),
        "lying_header_length.safetensors": (struct.pack("<Q", len(good) + 100) + good[8:], "runs past the end"),
        "huge_header_length.safetensors": (struct.pack("<Q", 2**63) + good[8:], "exceeds"),
        "offsets_out_of_range.safetensors": (header_file({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, z8), "truncated"),
        "end_before_start.safetensors": (header_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, z8), "end before"),
        "overlap.safetensors": (header_file({"a": t8, "b": t8}, z8), "overlap"),
        "gap.safetensors": (header_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12), "gap"),
        "trailing_bytes.safetensors": (header_file({"a": t8}, b"\0" * 12), "trailing bytes"),
        "huge_shape.safetensors": (header_file({"a": {"dtype": "F32", "shape": [10**15], "data_offsets": [0, 8]}}, z8), "needs 4000000000000000 bytes"),
        "overflow_shape.safetensors": (header_file({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, z8), "overflows"),
        "size_mismatch.safetensors": (header_file({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}}, z8), "needs 16 bytes"),
        "invalid_json.safetensors": (header_file(None, z8, b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}'), "invalid JSON"),
        "trailing_junk.safetensors": (header_file(None, z8, b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}x'), "after the closing brace"),
        "not_an_object.safetensors": (header_file(None, b"", b"[1, 2]  "), "not a JSON object"),
        "non_string_metadata.safetensors": (header_file({"__metadata__": {"epoch": 3}, "a": t8}, z8), "not a string"),
        "unknown_dtype.safetensors": (header_file({"a": {"dtype": "Q7", "shape": [8], "data_offsets": [0, 8]}}, z8), "unknown dtype"),
        "negative_shape.safetensors": (header_file({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, z8), "not an array of non-negative integers"),
        "float_shape.safetensors": (header_file({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, z8), "not an array of non-negative integers"),
        "missing_offsets.safetensors": (header_file({"a": {"dtype": "F32", "shape": [2]}}, z8), "missing field \"data_offsets\""),
        "bad_utf8.safetensors": (header_file(None, z8, b'{"a\xff":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'), "UTF-8"),
        # The official library keeps the last of duplicate keys; a duplicate most likely means a
        # broken writer, so we refuse it.
        "duplicate_names.safetensors": (header_file(None, z8, b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'), "appears twice"),
        # Well-formed but outside what the engine handles.
        "float8.safetensors": (save({"w": torch.zeros(4, dtype=torch.float8_e4m3fn)}), "unsupported dtype F8_E4M3"),
    }
    manifest = {}
    for name, (blob, want) in sorted(bad.items()):
        path = os.path.join(ROOT, "bad", name)
        with open(path, "wb") as f:
            f.write(blob)
        manifest[name] = {"want": want, "official_rejects": official_rejects(path)}
    with open(os.path.join(ROOT, "bad", "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote fixtures to {ROOT}", file=sys.stderr)


if __name__ == "__main__":
    main()
