"""Zero copies on the way out of the model path: quantize() of a state dict or a module has the
engine write every result into tensors torch allocated, and the engine's quantized model (what
save() writes) reads those same tensors instead of holding a copy."""

import json

import pytest
import torch
import torch.nn as nn

import monoquant
from conftest import run_python

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _bytes(t):
    return t.reshape(-1).view(torch.uint8)


def _engine_bytes(handle, name, t):
    """The bytes the engine's model holds for tensor ``name`` (copied out through the C ABI)."""
    return _bytes(handle.read(name, t.dtype, tuple(t.shape), t.numel() * t.element_size()))


@pytest.mark.parametrize("opts", [dict(bits=8), dict(bits=4, group_size=32, scheme="asymmetric")], ids=["int8", "int4-asym"])
def test_state_dict_results_are_the_engine_model_memory(opts):
    g = torch.Generator().manual_seed(0)
    sd = {"fc.weight": torch.randn(96, 64, generator=g), "fc.bias": torch.randn(96, generator=g)}
    q = monoquant.quantize(sd, **opts)
    h = q.handle
    borrowed = {t.data_ptr() for t in h._borrowed}
    names = [n for n, *_ in h.infos()]
    assert sorted(q.keys()) == sorted(names)
    for name in names:
        t = q[name]
        assert t.data_ptr() in borrowed, f"{name}: not one of the tensors the engine wrote into"
        before = _engine_bytes(h, name, t)
        assert torch.equal(before, _bytes(t))
        # Changing the torch tensor changes what the engine's model reads: one memory, no copy.
        _bytes(t)[0] ^= 0xFF
        after = _engine_bytes(h, name, t)
        _bytes(t)[0] ^= 0xFF
        assert not torch.equal(before, after), f"{name}: the engine's model holds its own copy"
    h.close()


def test_module_results_are_the_bytes_of_the_copying_path(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 8)).eval()
    qm = monoquant.quantize(m, bits=8, dynamic=True, progress=False, log=False)
    # The layers were built from tensors the engine wrote into torch's memory; what they hold
    # (saved as they are now) has the bytes the copying mq_model_quantize gives.
    from monoquant import _model
    from monoquant.api import _config, _describe

    cfg = _config(runtime=True, bits=8, dynamic=True)
    with _model.ModelHandle.new() as mh:
        _describe(m, mh)
        with mh.quantize(cfg) as ref:
            want = ref.tensors()
    path = tmp_path / "q.safetensors"
    monoquant.save(qm, path)
    got = monoquant.load(path)
    assert list(got) == list(want)
    for name, t in want.items():
        assert torch.equal(_bytes(t), _bytes(got[name])), name


def test_dequantized_tensors_are_written_in_place():
    g = torch.Generator().manual_seed(1)
    sd = {"fc.weight": torch.randn(96, 64, generator=g), "fc.bias": torch.randn(96, generator=g)}
    q = monoquant.quantize(sd, bits=4, group_size=32)
    with q.handle.dequantize() as f:
        want = f.tensors()  # the copying path
    got = monoquant.dequantize(q)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name
    f, outs = q.handle.dequantize_into()
    try:
        for name, t in outs.items():
            assert torch.equal(t, want[name])
            before = _engine_bytes(f, name, t)
            _bytes(t)[0] ^= 0xFF
            after = _engine_bytes(f, name, t)
            _bytes(t)[0] ^= 0xFF
            assert not torch.equal(before, after), f"{name}: the engine's float model holds its own copy"
    finally:
        f.close()
        q.handle.close()


MEM = r"""
import json, torch, monoquant

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

n = 16384
sd = {"fc.weight": torch.empty(n, n).uniform_(-1, 1)}   # 1 GiB, pages touched
monoquant.quantize({"w.weight": torch.ones(64, 64)}, bits=8)  # warm the engine up
before = hwm()
q = monoquant.quantize(sd, bits=BITS)
after = hwm()
out = sum(t.numel() * t.element_size() for t in q.values())
print(json.dumps({"before": before, "after": after, "out": out}))
"""


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_state_dict_peak_rss_is_about_the_output(bits):
    # quantize() of a state dict with one 1 GiB weight: the peak grows by the output (the engine
    # writes it in blocks into torch's tensors), not by a second copy of it.
    r = run_python(MEM.replace("BITS", str(bits)), env={"GOMAXPROCS": "2"})
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])
    grew = m["after"] - m["before"]
    limit = 1.1 * m["out"] + (24 << 20)
    print(f"bits={bits}: peak RSS grew {grew / 2**20:.0f} MiB for {m['out'] / 2**20:.0f} MiB of output")
    assert grew <= limit, f"peak RSS grew {grew / 2**20:.0f} MiB for {m['out'] / 2**20:.0f} MiB of output (limit {limit / 2**20:.0f} MiB)"


def test_zero_dimensional_tensors_have_a_layout():
    # A BatchNorm's num_batches_tracked is 0-d: its layout row has shape [], never null.
    m = nn.Sequential(nn.BatchNorm1d(16), nn.Linear(16, 8)).eval()
    q = monoquant.quantize(m, bits=8, progress=False, log=False)
    assert q[0].num_batches_tracked.shape == ()
    sd = monoquant.quantize({"fc.weight": torch.randn(8, 16), "bn.num_batches_tracked": torch.tensor(3)}, bits=8, progress=False, log=False)
    assert sd["bn.num_batches_tracked"].shape == () and int(sd["bn.num_batches_tracked"]) == 3
