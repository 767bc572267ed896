"""Generates the hostile and damaged checkpoint corpus (issue 11) into a folder.

    python tests/hostile/gen_corpus.py OUT_DIR --cli build/monoquant [--full]

Every case is a file (or a folder for sharded checkpoints) plus a line in OUT_DIR/manifest.json:

    {"name": ..., "class": 1..8, "path": relative path, "expect": "refuse" | "any",
     "fast": bool, "want": text the refusal must contain (optional), "note": what it is}

"refuse" cases must be refused by every entry point; "any" cases are legitimate or merely odd
(names with terminal escapes) and may be accepted, but must still not crash, hang, exceed the
memory bound or print raw control characters. run_corpus.py runs them; `make test` runs the
"fast" ones, `make fuzz` all of them.

The eight classes are the issue's: 1 views that claim more than the file holds, 2 files that
change under the reader (run_corpus.py truncates them while they are read), 3 inputs that never
end or grow quadratically, 4 memory far beyond the input, 5 pickle gadgets outside any deny-list,
6 tampered quantized files, 7 names, 8 messages. Everything is built byte by byte or with the
standard library (pickle, zipfile, json, struct); torch is only needed to name torch's globals.
"""

import argparse
import collections
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib

import torch  # noqa: F401  (torch._utils and torch.FloatStorage are pickled by reference)
import torch._utils

# ---------------------------------------------------------------------------------------------
# Builders


class StorageRef:
    """A storage named by a persistent id, as torch.save writes it."""

    def __init__(self, key, numel, typ="FloatStorage"):
        self.key, self.numel, self.typ = key, numel, typ


class TensorRef:
    """A tensor rebuilt by torch._utils._rebuild_tensor_v2 from a storage view."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict()))


class Call:
    """REDUCE of an arbitrary global: what a gadget looks like in a pickle."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", getattr(torch, obj.typ), obj.key, "cpu", obj.numel)
        return None


def dumps(obj, protocol=2):
    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def torch_zip(path, pkl, records=None, deflate=None, raw_entries=None):
    """A torch zip checkpoint: archive/data.pkl, archive/version and archive/data/<key>.

    deflate lists keys whose records are deflated; raw_entries are (name, ZipInfo overrides,
    bytes) written with the sizes given, for lying headers."""
    records = records or {}
    deflate = deflate or set()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("archive/data.pkl"), pkl)
        z.writestr(zipfile.ZipInfo("archive/version"), b"3\n")
        for key, data in records.items():
            info = zipfile.ZipInfo(f"archive/data/{key}")
            info.compress_type = zipfile.ZIP_DEFLATED if key in deflate else zipfile.ZIP_STORED
            z.writestr(info, data)
    for name, data, usize in raw_entries or []:
        append_lying_entry(path, name, data, usize)


def append_lying_entry(path, name, compressed, usize):
    """Rewrites the zip at path with one more deflated entry whose headers claim usize bytes."""
    with open(path, "rb") as f:
        z = zipfile.ZipFile(f)
        entries = [(i, z.read(i)) for i in z.infolist()]
    out = io.BytesIO()
    central = []
    for info, data in entries:
        off = out.tell()
        hdr = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                          len(info.filename), 0)
        out.write(hdr + info.filename.encode() + data)
        central.append((info.filename, 0, zlib.crc32(data), len(data), len(data), off))
    off = out.tell()
    nb = name.encode()
    out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(compressed), usize, len(nb), 0) + nb + compressed)
    central.append((name, 8, 0, len(compressed), usize, off))
    cd = out.tell()
    for fname, method, crc, csize, size, o in central:
        fb = fname.encode()
        out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, csize, size,
                              len(fb), 0, 0, 0, 0, 0, o) + fb)
    end = out.tell()
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), end - cd, cd, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())


def safetensors_file(path, header, data=b""):
    """A safetensors file with the header (a dict, or raw JSON text) and data given."""
    h = header if isinstance(header, (bytes, str)) else json.dumps(header)
    if isinstance(h, str):
        h = h.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def float_tensor_header(names, shape=(8, 8)):
    n = 1
    for d in shape:
        n *= d
    header, off = {}, 0
    for name in names:
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + 4 * n]}
        off += 4 * n
    return header, off


def ramp(nbytes):
    vals = [((i % 13) - 6) * 0.125 for i in range(nbytes // 4)]
    return struct.pack(f"<{len(vals)}f", *vals)


# ---------------------------------------------------------------------------------------------
# Cases


class Corpus:
    def __init__(self, out, cli, full):
        self.out, self.cli, self.full, self.cases = out, cli, full, []

    def add(self, name, cls, path, expect="refuse", fast=True, want=None, note="", output_bytes=0):
        if not fast and not self.full:
            p = os.path.join(self.out, path)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
            return
        self.cases.append({"name": name, "class": cls, "path": path, "expect": expect, "fast": fast,
                           "want": want, "note": note, "output_bytes": output_bytes})

    def p(self, name):
        return os.path.join(self.out, name)


def class1_views(c):
    st = StorageRef("0", 1)
    torch_zip(c.p("broadcast_4tib.pt"), dumps({"w": TensorRef(st, 0, (1 << 20, 1 << 20), (0, 0))}),
              {"0": b"\0\0\x80\x3f"})
    c.add("broadcast_4tib", 1, "broadcast_4tib.pt", want="broadcast view",
          note="stride-0 view of one float claiming 4 TiB")
    st = StorageRef("0", 4)
    torch_zip(c.p("stride_wrap.pt"), dumps({"w": TensorRef(st, 0, (3, 2), (1 << 62, 1))}), {"0": bytes(16)})
    c.add("stride_wrap", 1, "stride_wrap.pt", want="64 bits", note="strides {2^62, 1}: the reach wraps int64")
    st = StorageRef("0", 4)
    torch_zip(c.p("shape_wrap.pt"), dumps({"w": TensorRef(st, 0, (1 << 32, 1 << 32, 1 << 32), (0, 0, 0))}),
              {"0": bytes(16)})
    c.add("shape_wrap", 1, "shape_wrap.pt", note="a shape whose element count overflows 64 bits")
    st = StorageRef("0", 1 << 40)
    torch_zip(c.p("numel_lie.pt"), dumps({"w": TensorRef(st, 0, (1 << 40,), (1,))}), {"0": bytes(16)})
    c.add("numel_lie", 1, "numel_lie.pt", note="storage claims 2^40 elements over 16 bytes")
    header = {"w": {"dtype": "F32", "shape": [1 << 31, 1 << 31], "data_offsets": [0, 16]}}
    safetensors_file(c.p("st_shape_lie.safetensors"), header, bytes(16))
    c.add("st_shape_lie", 1, "st_shape_lie.safetensors", note="safetensors shape far beyond its offsets")


def class2_truncation(c, base):
    # run_corpus.py truncates this file while the CLI reads it (kind "truncate").
    header, n = float_tensor_header([f"layers.{i}.weight" for i in range(64)], (512, 512))
    path = c.p("truncate_me.safetensors")
    with open(path if c.full else os.devnull, "wb") as f:
        h = json.dumps(header).encode()
        f.write(struct.pack("<Q", len(h)) + h)
        chunk = ramp(512 * 512 * 4) if c.full else b""
        for _ in range(64 if c.full else 0):
            f.write(chunk)
    c.add("truncate_while_reading", 2, "truncate_me.safetensors", expect="truncate", fast=False,
          note="64 MiB file cut to 4 KiB while it is being quantized")


def class3_endless(c):
    os.mkfifo(c.p("fifo.safetensors"))
    c.add("fifo_input", 3, "fifo.safetensors", want="FIFO", note="a named pipe with no writer as the input")
    d = c.p("fifo_shard")
    os.makedirs(d)
    os.mkfifo(os.path.join(d, "model-00001.safetensors"))
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": {"w": "model-00001.safetensors"}}, f)
    c.add("fifo_shard", 3, "fifo_shard/model.safetensors.index.json", note="a FIFO given as a shard")
    d = c.p("many_shards")
    os.makedirs(d)
    n = 150_000 if c.full else 20_000
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": {f"t{i}": f"shard-{i}.safetensors" for i in range(n)}}, f)
    c.add("many_shards", 3, "many_shards/model.safetensors.index.json",
          note=f"an index naming {n} shards (deduplicated in linear time; the shards are missing)")
    # A list that contains itself twice per level: 2^60 paths through 60 containers.
    p = b"\x80\x02]q\x00"
    for i in range(60):
        p += b"](h" + bytes([i]) + b"h" + bytes([i]) + b"eq" + bytes([i + 1])
    p += b"."
    torch_zip(c.p("fanout.pt"), p)
    c.add("fanout", 3, "fanout.pt", want="shared references", note="names fan out as 2^60 paths")


def class3_interrupt(c):
    # 60 MB of NONE/POP opcodes: a valid pickle that takes seconds to read. run_corpus.py sends
    # SIGTERM once the CLI has it open, during a quantize of it (kind "interrupt").
    if c.full:
        torch_zip(c.p("slow_pickle.pt"), b"\x80\x02" + b"N0" * 30_000_000 + b"}.")
    c.add("SIGTERM during a long read", 3, "slow_pickle.pt", expect="interrupt", fast=False,
          note="the CLI must stop within about a second with exit 130 and no output")


def class4_memory(c):
    # Dicts with two 300-byte keys both holding the level below: 1.5 KB of pickle, exponential names.
    key = lambda ch: b"X" + struct.pack("<I", 300) + ch * 300  # noqa: E731
    p = b"\x80\x02]q\x00"
    for i in range(2):
        p += b"}(" + key(b"a") + b"h" + bytes([i]) + key(b"b") + b"h" + bytes([i]) + b"uq" + bytes([i + 1])
    p += b"}(" + b"X\x01\x00\x00\x00k" + b"h\x02" + b"X\x01\x00\x00\x00j" + b"h\x02" + b"uq\x03"
    for i in range(3, 40):
        p += b"}(X\x01\x00\x00\x00ah" + bytes([i]) + b"X\x01\x00\x00\x00bh" + bytes([i]) + b"uq" + bytes([i + 1])
    p += b"."
    torch_zip(c.p("name_bomb.pt"), p)
    c.add("name_bomb", 4, "name_bomb.pt", note=f"{len(p)}-byte pickle whose dotted names would take terabytes")
    # REDUCE on a list that repeats one 64 KiB bytes value: an error quoting it would be huge.
    big = b"B" + struct.pack("<I", 1 << 16) + b"A" * (1 << 16)
    p = b"\x80\x02(" + big + b"q\x00" + b"h\x00" * 15 + b"lK\x01\x85R."
    torch_zip(c.p("message_bomb.pt"), p)
    c.add("message_bomb", 4, "message_bomb.pt", note="an error message that would quote 1 MB of values")
    p = b"\x80\x02(" + big + b"q\x00" + b"h\x00" * 4000 + b"l."
    torch_zip(c.p("literal_bomb.pt"), p)
    c.add("literal_bomb", 4, "literal_bomb.pt", want="memory bomb",
          note="one 64 KiB literal referenced 4000 times (256 MiB of values from 76 KB)")
    # A deflated record claiming 2 GiB, within deflate's ratio, over 2 MiB of compressed bytes.
    torch_zip(c.p("deflate_2gib.pt"), dumps({"w": TensorRef(StorageRef("0", 1 << 29), 0, (1 << 29,), (1,))}),
              raw_entries=[("archive/data/0", os.urandom(2 << 20), 2 << 30)])
    c.add("deflate_2gib", 4, "deflate_2gib.pt", want="zip bomb",
          note="a 2 MiB deflated record declaring 2 GiB (within 1100:1, beyond 100x the file)")
    # One deflated 4 MiB storage shared by 256 views: inflated once (legitimate, accepted).
    st = StorageRef("0", 1 << 20)
    views = {f"v{i}": TensorRef(st, 0, (1024, 1024), (1024, 1)) for i in range(256)}
    torch_zip(c.p("shared_deflated.pt"), dumps(views), {"0": bytes(4 << 20)}, deflate={"0"})
    c.add("shared_deflated", 4, "shared_deflated.pt", expect="any", fast=c.full, output_bytes=256 * (4 << 20),
          note="256 views of one deflated 4 MiB storage: inflated once, not 256 times (loading the "
               "model still materialises its 1 GiB of tensors: that is the output)")


GADGETS = [
    ("uuid", "_get_command_stdout"), ("_osx_support", "_read_output"), ("imaplib", "IMAP4_stream"),
    ("torch.utils.collect_env", "run"), ("logging.config", "dictConfig"), ("typing", "_eval_type"),
    ("gzip", "open"), ("os", "system"), ("builtins", "eval"),
]


def class5_gadgets(c):
    for module, name in GADGETS:
        g = f"c{module}\n{name}\n".encode()
        p = b"\x80\x02}X\x01\x00\x00\x00w" + g + b"X\x02\x00\x00\x00id\x85Rs."
        fn = f"gadget_{module.replace('.', '_')}_{name.strip('_')}.pt"
        torch_zip(c.p(fn), p)
        c.add(f"gadget {module}.{name}", 5, fn, want=f"{module}.{name}", note="a callable that runs code in Python")
        # The protocol 4 spelling, memoised strings and STACK_GLOBAL.
        mb, nb = module.encode(), name.encode()
        p4 = (b"\x80\x04}\x94\x8c\x01w\x94\x8c" + bytes([len(mb)]) + mb + b"\x94\x8c" + bytes([len(nb)]) + nb +
              b"\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94s.")
        fn4 = fn[:-3] + "_p4.pt"
        torch_zip(c.p(fn4), p4)
        c.add(f"gadget {module}.{name} (STACK_GLOBAL)", 5, fn4, fast=c.full, want=f"{module}.{name}")
    p = (b"\x80\x02}X\x01\x00\x00\x00wccopy_reg\n_reconstructor\nc__main__\nX\nc__builtin__\nobject\nN\x87Rs.")
    torch_zip(c.p("gadget_copy_reg.pt"), p)
    c.add("gadget copy_reg._reconstructor", 5, "gadget_copy_reg.pt", want="copyreg._reconstructor",
          note="the Python 2 spelling the unpickler engine resolves by itself")


def class6_tampered(c, base):
    q = c.p("quantized.safetensors")
    r = subprocess.run([c.cli, "quantize", "--model", base, "--out", q, "--quiet", "--scheme", "asymmetric"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        r = subprocess.run([c.cli, "quantize", "--model", base, "--out", q, "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"gen_corpus: quantizing the base model failed: {r.stderr}")
    raw = open(q, "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + hlen])
    data = bytearray(raw[8 + hlen:])
    scale = next(k for k in header if k.endswith(".scale"))
    zp = next((k for k in header if k.endswith(".zero_point")), None)
    cfg = json.loads(header["__metadata__"]["monoquant"])

    def variant(fname, edit_data=None, edit_cfg=None):
        d = bytearray(data)
        h = json.loads(json.dumps(header))
        if edit_data:
            edit_data(d, h)
        if edit_cfg:
            cc = json.loads(json.dumps(cfg))
            edit_cfg(cc)
            h["__metadata__"]["monoquant"] = json.dumps(cc)
        hb = json.dumps(h).encode()
        with open(c.p(fname), "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + bytes(d))
        return fname

    def set_f32(name, value):
        def edit(d, h):
            off = h[name]["data_offsets"][0]
            d[off:off + 4] = struct.pack("<f", value)
        return edit

    for label, v in [("zero", 0.0), ("negative", -0.5), ("nan", float("nan")), ("inf", float("inf")), ("huge", 1e37)]:
        fn = variant(f"tampered_scale_{label}.safetensors", set_f32(scale, v))
        c.add(f"tampered scale {label}", 6, fn, want="scale", note=f"{scale}[0] = {v}")
    if zp:
        def set_i32(value):
            def edit(d, h):
                off = h[zp]["data_offsets"][0]
                d[off:off + 4] = struct.pack("<i", value)
            return edit
        for label, v in [("above", 99999), ("below", -99999)]:
            fn = variant(f"tampered_zp_{label}.safetensors", set_i32(v))
            c.add(f"tampered zero point {label}", 6, fn, want="zero point", note=f"{zp}[0] = {v}")

    def act(cc):
        layer = next(iter(cc["tensors"].values()))["layer"]
        cc["mode"] = "static"
        cc["activations"] = {layer: {"observer": "minmax", "qdtype": "quint8", "scheme": "asymmetric",
                                     "scale": [0.1], "zero_point": [99999], "min": 0, "max": 1, "batches": 1}}
    fn = variant("tampered_act_zp.safetensors", edit_cfg=act)
    c.add("tampered activation zero point 99999", 6, fn, want="99999")


def class7_names(c):
    header, n = float_tensor_header(["a\u0000b.weight"])
    safetensors_file(c.p("name_nul.safetensors"), header, ramp(n))
    c.add("name with NUL (safetensors)", 7, "name_nul.safetensors", want="NUL")
    st = StorageRef("0", 64)
    torch_zip(c.p("name_nul.pt"), dumps({"fc\x00.weight": TensorRef(st, 0, (8, 8), (8, 1))}), {"0": ramp(256)})
    c.add("name with NUL (torch)", 7, "name_nul.pt", want="NUL")
    torch_zip(c.p("name_surrogate.pt"), dumps({"fc\udcff.weight": TensorRef(st, 0, (8, 8), (8, 1))}), {"0": ramp(256)})
    c.add("name not UTF-8 (torch)", 7, "name_surrogate.pt", want="UTF-8")
    evil = "fc\x1b[2J\x1b]0;pwned\x07\u009b31m\u202e.weight"
    header, n = float_tensor_header([evil, "fc.bias\r\x1b[1A"], (8, 8))
    header["__metadata__"] = {"note\x1b[5m": "v\x1b[?1049h"}
    safetensors_file(c.p("name_escapes.safetensors"), header, ramp(n))
    c.add("names with terminal escapes", 7, "name_escapes.safetensors", expect="any",
          note="accepted, but every human output must show the escapes escaped")


def class8_messages(c):
    # A key of 1 MB in an error path (the tensor's storage is missing).
    long = "k" * (1 << 20)
    torch_zip(c.p("long_name_error.pt"), dumps({long: TensorRef(StorageRef("9", 4), 0, (4,), (1,))}))
    c.add("1 MB name in an error", 8, "long_name_error.pt", note="the error must stay about 1 KB")
    # A value of an unexpected kind where a tensor argument belongs (no Go type names).
    p = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(]K\x00)))\x89ccollections\nOrderedDict\n)RtRs."
    torch_zip(c.p("odd_value.pt"), p)
    c.add("list where a storage belongs", 8, "odd_value.pt", want="list")
    safetensors_file(c.p("bad_json.safetensors"), b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]' + b" " * 100)
    c.add("truncated header JSON", 8, "bad_json.safetensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--cli", required=True, help="path to the monoquant CLI (quantizes the base of class 6)")
    ap.add_argument("--full", action="store_true", help="every case, not only the fast subset")
    a = ap.parse_args()
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    c = Corpus(a.out, a.cli, a.full)
    base = c.p("base.safetensors")
    header, n = float_tensor_header(["fc1.weight", "fc2.weight"], (16, 32))
    safetensors_file(base, header, ramp(n))
    class1_views(c)
    class2_truncation(c, base)
    class3_endless(c)
    class3_interrupt(c)
    class4_memory(c)
    class5_gadgets(c)
    class6_tampered(c, base)
    class7_names(c)
    class8_messages(c)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump({"base": "base.safetensors", "cases": c.cases}, f, indent=1)
    print(f"{len(c.cases)} cases in {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
