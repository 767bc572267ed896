"""Checkpoint files of real architectures (issue 12, the file side): GPT-2's Conv1D quantized on
its output axis from files and folders, tied tensors stored once, Hugging Face folders in and
out, one FP16 overflow rule and errors that name Python's options. Models are built from
``transformers`` configs at small sizes; nothing is downloaded. ``transformers`` is a test-only
dependency."""

import copy
import json
import os
import shutil
import warnings

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

import monoquant

transformers = pytest.importorskip("transformers")

CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def gpt2(vocab=2000, positions=64):
    """A GPT-2 LM with tied embeddings, proportioned like the real one (the token table the
    largest tensor, the position table small)."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=vocab, n_positions=positions)
    return transformers.GPT2LMHeadModel(cfg).eval()


def logits_cos(ref, model, ids):
    with torch.no_grad():
        a, b = ref(ids).logits.flatten(), model(ids).logits.flatten()
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def dequantized_model(path, ref):
    """A fresh GPT-2 holding the engine's dequantized weights of path (lm_head is tied, so a
    file without it is complete)."""
    m = gpt2()
    missing, unexpected = m.load_state_dict(monoquant.dequantize(path), strict=False)
    assert unexpected == [] and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    m.tie_weights()
    return m


def quantize_file(src, dst, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rep = monoquant.quantize_file(src, dst, log=False, **kw)
    return rep, [str(w.message) for w in rec]


def config_of(path):
    with safe_open(path, "pt") as f:
        return json.loads(f.metadata()["monoquant"])


def test_gpt2_folder_quantized_on_the_output_axis(tmp_path):
    """config.json names the architecture, so every Conv1D weight ([in, out]) is quantized per
    output channel (axis 1); the dequantized model's logits stay close to float. Before, the CLI
    quantized GPT-2's file along the input axis."""
    ref = gpt2()
    ref.save_pretrained(tmp_path / "in")
    (tmp_path / "in" / "tokenizer.json").write_text('{"version": "1.0"}')
    rep, warns = quantize_file(tmp_path / "in", tmp_path / "out", validate=True)
    assert not [w for w in warns if "architecture_unknown" in w]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(tmp_path / "in"))
    cfg = config_of(tmp_path / "out" / "model.safetensors")
    conv1d = {n: tc for n, tc in cfg["tensors"].items() if n.endswith(tuple(c + ".weight" for c in CONV1D))}
    assert len(conv1d) == 8
    for name, tc in conv1d.items():
        assert tc["axis"] == 1 and tc["layer_type"] == "linear", (name, tc)
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        for name, tc in conv1d.items():
            assert list(f.get_slice(name + ".scale").get_shape()) == [tc["shape"][1]], name
    ids = torch.randint(0, 2000, (2, 16))
    assert logits_cos(ref, dequantized_model(tmp_path / "out", ref), ids) >= 0.999
    # monoquant.load reads the folder back (a state dict here; modules are another test's).
    sd = monoquant.load(tmp_path / "out")
    assert sd.config["tensors"].keys() == cfg["tensors"].keys()


def test_lone_gpt2_file_is_never_guessed_silently(tmp_path):
    """A GPT-2 safetensors file with no config.json draws a warning that says how to name the
    architecture; with config.json beside it, the Conv1D axis is right."""
    gpt2().save_pretrained(tmp_path / "hf")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tmp_path / "hf" / "model.safetensors", lone / "gpt2.safetensors")
    rep, warns = quantize_file(lone / "gpt2.safetensors", lone / "q.safetensors")
    arch = [w for w in warns if "architecture_unknown" in w]
    assert arch and "named like GPT-2's Conv1D" in arch[0] and 'put its config.json ("model_type": "gpt2") beside the checkpoint' in arch[0], warns
    assert config_of(lone / "q.safetensors")["tensors"]["transformer.h.0.attn.c_attn.weight"]["axis"] == 0
    shutil.copy(tmp_path / "hf" / "config.json", lone / "config.json")
    rep, warns = quantize_file(lone / "gpt2.safetensors", lone / "q2.safetensors")
    assert not [w for w in warns if "architecture_unknown" in w]
    assert config_of(lone / "q2.safetensors")["tensors"]["transformer.h.0.attn.c_attn.weight"]["axis"] == 1


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_tied_gpt2_state_dict_stored_once(tmp_path, suffix):
    """torch.save of a tied GPT-2 keeps one storage under two names; the quantized file stores it
    once (INT8, as lm_head's rule says), names the alias, and is under 0.3x the float file.
    Before, the tied tensor was stored twice."""
    ref = gpt2()
    torch.save(ref.state_dict(), tmp_path / "gpt2.pt")
    out = tmp_path / ("q" + suffix)
    rep, warns = quantize_file(tmp_path / "gpt2.pt", out, validate=True)
    assert rep["aliases"] == {"transformer.wte.weight": "lm_head.weight"}
    assert [w for w in warns if "tied_tensors" in w and '"transformer.wte.weight" and "lm_head.weight" share one storage' in w]
    ratio = os.path.getsize(out) / os.path.getsize(tmp_path / "gpt2.pt")
    assert ratio < 0.3, ratio
    sd = monoquant.load(out)
    assert sd.config["aliases"] == {"transformer.wte.weight": "lm_head.weight"}
    assert "transformer.wte.weight" not in sd and sd["lm_head.weight"].dtype == torch.int8
    d = monoquant.dequantize(out)
    assert torch.equal(d["transformer.wte.weight"], d["lm_head.weight"])
    ids = torch.randint(0, 2000, (2, 16))
    assert logits_cos(ref, dequantized_model(out, ref), ids) >= 0.999


class TiedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(300, 64)
        self.fc = nn.Linear(64, 64)
        self.head = nn.Linear(64, 300, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x):
        return self.head(torch.relu(self.fc(self.emb(x))))


def test_load_reties_tied_parameters(tmp_path):
    """monoquant.load(path, model) gives the alias the stored values: dequantized for a float
    Embedding whose tied head was quantized, and the same Parameter again for a kept pair."""
    torch.manual_seed(0)
    ref = TiedNet().eval()
    torch.save(ref.state_dict(), tmp_path / "tied.pt")
    x = torch.randint(0, 300, (4, 7))
    quantize_file(tmp_path / "tied.pt", tmp_path / "q.safetensors")
    q = monoquant.load(tmp_path / "q.safetensors", TiedNet())
    cos = torch.nn.functional.cosine_similarity(ref(x).flatten(), q(x).flatten(), dim=0)
    assert cos >= 0.999
    quantize_file(tmp_path / "tied.pt", tmp_path / "k.safetensors", skip=["head"])
    assert config_of(tmp_path / "k.safetensors")["aliases"] == {"head.weight": "emb.weight"}
    k = monoquant.load(tmp_path / "k.safetensors", TiedNet())
    assert k.head.weight is k.emb.weight and torch.equal(k.emb.weight, ref.emb.weight)


def test_bin_folder_in_safetensors_folder_out(tmp_path):
    """A folder of pytorch_model.bin (tied, one storage) with tokenizer files gives the same
    folder with model.safetensors, every other file copied, the tied tensor stored once."""
    src = tmp_path / "bin"
    src.mkdir()
    ref = gpt2()
    torch.save(ref.state_dict(), src / "pytorch_model.bin")
    ref.config.to_json_file(src / "config.json")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (src / f).write_text("{}")
    rep, warns = quantize_file(src, tmp_path / "out", validate=True)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
    cfg = config_of(tmp_path / "out" / "model.safetensors")
    assert cfg["aliases"] == {"transformer.wte.weight": "lm_head.weight"}
    assert cfg["tensors"]["transformer.h.1.mlp.c_proj.weight"]["axis"] == 1
    ids = torch.randint(0, 2000, (2, 16))
    assert logits_cos(ref, dequantized_model(tmp_path / "out", ref), ids) >= 0.999


def test_sharded_folder_keeps_its_layout(tmp_path):
    ref = gpt2()
    ref.save_pretrained(tmp_path / "in", max_shard_size="200KB")
    shards = sorted(n for n in os.listdir(tmp_path / "in") if n.endswith(".safetensors"))
    assert len(shards) > 1
    rep, _ = quantize_file(tmp_path / "in", tmp_path / "out", bits=4, group_size=32, validate=True)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(tmp_path / "in"))
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    assert "monoquant" in index["metadata"]  # the quantization config, recorded with the index
    sd = monoquant.load(tmp_path / "out" / "model.safetensors.index.json")
    assert sd.config["tensors"]["transformer.h.0.mlp.c_fc.weight"]["group_size"] == 32
    ids = torch.randint(0, 2000, (2, 16))
    assert logits_cos(ref, dequantized_model(tmp_path / "out", ref), ids) >= 0.99  # INT4


def test_nonfinite_errors_name_python_options(tmp_path):
    """The NaN error names the option each Python call has (it used to name one Python lacks)."""
    m = nn.Sequential(nn.Linear(8, 8))
    with torch.no_grad():
        m[0].weight[1, 1] = float("nan")
    with pytest.raises(monoquant.NonFiniteError, match='pass nonfinite="clamp" to quantize anyway'):
        monoquant.quantize(m)
    save_file({"0.weight": m[0].weight.detach().clone()}, tmp_path / "nan.safetensors")
    with pytest.raises(monoquant.NonFiniteError, match='pass nonfinite="clamp" to quantize anyway'):
        monoquant.quantize_file(tmp_path / "nan.safetensors", tmp_path / "q.safetensors", log=False)
    assert not (tmp_path / "q.safetensors").exists()
    with pytest.raises(monoquant.NonFiniteError, match=r"pass QuantSpec\(\.\.\., clamp_nonfinite=True\) to quantize anyway"):
        monoquant.quantize_tensor(torch.tensor([[float("nan"), 1.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = monoquant.quantize(m, nonfinite="clamp")  # the option named works
    assert [w for w in q.monoquant_report["warnings"] if w["code"] == "non_finite_clamped"]


def test_quantize_file_fp16_overflow_saturates(tmp_path):
    """quantize_file: FP16 overflow saturates with a warning naming the layer and count, the
    file is finite (before: an InternalError for +Inf in the report)."""
    w = torch.randn(8, 32)
    w[0, :2] = torch.tensor([1e6, -7e4])
    save_file({"fc.weight": w}, tmp_path / "big.safetensors")
    rep, warns = quantize_file(tmp_path / "big.safetensors", tmp_path / "h.safetensors", dtype="fp16", validate=True)
    assert [x for x in warns if 'fp16_overflow' in x and 'layer "fc": 2 values of "fc.weight"' in x], warns
    with safe_open(tmp_path / "h.safetensors", "pt") as f:
        h = f.get_tensor("fc.weight")
    assert torch.isfinite(h).all() and h[0, 0] == 65504 and h[0, 1] == -65504


def test_dequantize_file_of_a_folder_writes_a_folder_like_the_input(tmp_path):
    """dequantize_file of a quantized sharded folder writes a folder laid out as the float one
    (the same shard files and weight_map, config.json and tokenizer files copied) that
    transformers loads with from_pretrained, its logits close to float's (issue 12). Before, a
    folder gave one file."""
    ref = gpt2()
    ref.save_pretrained(tmp_path / "in", max_shard_size="200KB")
    (tmp_path / "in" / "tokenizer.json").write_text('{"version": "1.0"}')
    names = sorted(os.listdir(tmp_path / "in"))
    assert len([n for n in names if n.endswith(".safetensors")]) > 1
    quantize_file(tmp_path / "in", tmp_path / "q")
    calls = []
    monoquant.dequantize_file(tmp_path / "q", tmp_path / "dq", progress=lambda done, total, name: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert sorted(os.listdir(tmp_path / "dq")) == names
    index_in = json.loads((tmp_path / "in" / "model.safetensors.index.json").read_text())
    index_out = json.loads((tmp_path / "dq" / "model.safetensors.index.json").read_text())
    assert index_out["weight_map"] == index_in["weight_map"]
    assert "monoquant" not in index_out.get("metadata", {})
    for n in ("config.json", "tokenizer.json"):
        assert (tmp_path / "dq" / n).read_bytes() == (tmp_path / "in" / n).read_bytes()
    for shard in set(index_out["weight_map"].values()):
        with safe_open(tmp_path / "dq" / shard, "pt") as f:
            assert "monoquant" not in (f.metadata() or {})
            for k in f.keys():
                assert f.get_slice(k).get_dtype() == "F32", k
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "dq").eval()
    ids = torch.randint(0, 2000, (2, 16))
    assert logits_cos(ref, back, ids) >= 0.999


def test_dequantize_file_errors(tmp_path):
    """A non-empty output folder, the input itself and a float folder are refused by name."""
    ref = gpt2()
    ref.save_pretrained(tmp_path / "in")
    quantize_file(tmp_path / "in", tmp_path / "q")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(monoquant.InvalidArgumentError, match="not empty"):
        monoquant.dequantize_file(tmp_path / "q", tmp_path / "full", progress=False)
    with pytest.raises(monoquant.InvalidArgumentError, match="input folder"):
        monoquant.dequantize_file(tmp_path / "q", tmp_path / "q", progress=False)
    with pytest.raises(monoquant.FormatError, match="not monoquant quantized"):
        monoquant.dequantize_file(tmp_path / "in", tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()
    assert os.listdir(tmp_path / "full") == ["x"]


def test_tied_int4_table_is_held_once_by_the_packed_head(tmp_path):
    """A tied INT4 embedding and head (GPT-2) loaded into a meta skeleton hold the table once:
    the embedding reads its rows from the head's int4pack tensor (issue 12's load memory). Rows,
    logits, state dict and saved bytes are those of a model holding its own table."""
    from monoquant import _kernels

    if not _kernels.available()["int4pack"]:
        pytest.skip("no int4pack kernel here")
    ref = gpt2(vocab=2048)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monoquant.save(monoquant.quantize(ref, bits=4, group_size=32, progress=False), tmp_path / "q.safetensors")
    with torch.device("meta"):
        skel = transformers.GPT2LMHeadModel(ref.config)
    m = monoquant.load(tmp_path / "q.safetensors", skel).eval()
    emb, head = m.transformer.wte, m.lm_head
    assert head.kernel == "int4pack" and "weight_q" not in emb._buffers
    own = copy.deepcopy(m)
    own.transformer.wte._unshare()
    assert "weight_q" in own.transformer.wte._buffers
    ids = torch.randint(0, 2048, (3, 40))
    ids[0, :4] = torch.tensor([0, 63, 64, 2047])  # block edges
    table = monoquant.dequantize(tmp_path / "q.safetensors")["transformer.wte.weight"]
    assert torch.equal(emb(ids), torch.nn.functional.embedding(ids, table))
    with torch.no_grad():
        assert torch.equal(m(ids).logits, own(ids).logits)
    assert torch.equal(m.state_dict()["transformer.wte.weight"], own.state_dict()["transformer.wte.weight"])
    monoquant.save(m, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "q.safetensors").read_bytes()
    # new values for the table make it the embedding's own again
    sd = {k: v for k, v in emb.state_dict().items()}
    sd["weight"] = torch.zeros_like(sd["weight"])
    emb.load_state_dict(sd)
    assert "weight_q" in emb._buffers and torch.equal(emb.weight_q, sd["weight"])
    assert not torch.equal(head.weight_q, sd["weight"])


def _fbgemm_head_twin(m, kernel="fbgemm_dynamic"):
    """A copy of m whose tied head runs fbgemm's packed weight and whose embedding holds its own
    int8 table: the layout before tied dynamic (static) INT8 tables were shared."""
    own = copy.deepcopy(m)
    own.transformer.wte._unshare()
    head = own.lm_head
    head.tied_table = False
    head._set_stored(head.weight_q.clone())
    assert head.kernel == kernel and "weight_q" in own.transformer.wte._buffers
    return own


def _check_table_held_once(ref, model, activation, ids, tmp_path):
    """What the tied INT8 dynamic and static tests share, for a quantized or loaded GPT-2
    `model` of float `ref` (saved at tmp_path / "q.safetensors"): the head runs intmm_<activation>
    (repr and report), untied layers keep fbgemm, the embedding reads its rows from the head's
    table (one data_ptr), and logits equal those of a twin whose head runs fbgemm on its own
    copy. Returns that twin."""
    emb, head = model.transformer.wte, model.lm_head
    kernel = f"intmm_{activation}"
    assert head.kernel == kernel and f"kernel={kernel}" in repr(head)
    assert {r["name"]: r["kernel"] for r in monoquant.report(ref, model, verbose=False).layers}["lm_head"] == kernel
    assert model.transformer.h[0].mlp.c_fc.kernel == f"fbgemm_{activation}"  # untied layers keep fbgemm
    assert "weight_q" not in emb._buffers and emb.weight_q.data_ptr() == head._stored_q.data_ptr()
    own = _fbgemm_head_twin(model, f"fbgemm_{activation}")
    assert emb.weight_q.data_ptr() != own.transformer.wte.weight_q.data_ptr()
    table = monoquant.dequantize(tmp_path / "q.safetensors")["transformer.wte.weight"]
    assert torch.equal(emb(ids), torch.nn.functional.embedding(ids, table))
    with torch.no_grad():
        a, b = model(ids).logits, own(ids).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert logits_cos(ref, model, ids) > 0.99
    return own


def test_tied_int8_dynamic_table_is_held_once(tmp_path):
    """A tied GPT-2 quantized INT8 dynamic holds its table once: the head runs intmm_dynamic
    on the stored int8 matrix and the embedding looks its rows up in that same tensor, after
    quantize and after a meta-skeleton load (issue 12's load memory). Logits equal those of the
    fbgemm head (the same per-batch quint8 qparams, exact int32 sums) and of torch.ao's
    dynamic Linear on the same weight; state dict and saved bytes do not change."""
    from monoquant import _kernels

    if not (_kernels.available()["fbgemm"] and _kernels._probe("intmm")):
        pytest.skip("no fbgemm, or no exact torch._int_mm (a CPU without VNNI), here")
    ref = gpt2(vocab=2048)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = monoquant.quantize(ref, bits=8, progress=False)
    monoquant.save(q, tmp_path / "q.safetensors")
    with torch.device("meta"):
        skel = transformers.GPT2LMHeadModel(ref.config)
    m = monoquant.load(tmp_path / "q.safetensors", skel).eval()
    ids = torch.randint(0, 2048, (3, 40))
    for model in (q, m):
        head, own = model.lm_head, _check_table_held_once(ref, model, "dynamic", ids, tmp_path)
        # the head alone against torch.ao's dynamic Linear (quantize_dynamic's module) on the same int8 weight
        x = torch.randn(5, 7, head.in_features) * 3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qw = torch._make_per_channel_quantized_tensor(head.weight_q.clone(), head.weight_scale.double(),
                                                          torch.zeros(head.out_features, dtype=torch.int64), 0)
            ao = torch.ao.nn.quantized.dynamic.Linear(head.in_features, head.out_features, bias_=False)
            ao.set_weight_bias(qw, None)
            torch.testing.assert_close(head(x), ao(x), rtol=1e-5, atol=1e-5)
        assert torch.equal(model.state_dict()["transformer.wte.weight"], own.state_dict()["transformer.wte.weight"])
        monoquant.save(model, tmp_path / "again.safetensors")
        assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "q.safetensors").read_bytes()
        monoquant.save(own, tmp_path / "own.safetensors")
        assert (tmp_path / "own.safetensors").read_bytes() == (tmp_path / "q.safetensors").read_bytes()
    # sharing survives a dtype cast; new values for the table make it the embedding's own again
    m.half()
    assert m.transformer.wte.weight_q.data_ptr() == m.lm_head._stored_q.data_ptr()
    emb, head = m.transformer.wte, m.lm_head
    sd = dict(emb.state_dict())
    sd["weight"] = torch.zeros_like(sd["weight"])
    emb.load_state_dict(sd)
    assert "weight_q" in emb._buffers and torch.equal(emb.weight_q, sd["weight"])
    assert not torch.equal(head.weight_q, sd["weight"])


def test_tied_int8_static_table_is_held_once(tmp_path):
    """A tied GPT-2 quantized INT8 with static (calibrated) activations holds its table once:
    the head runs intmm_static on the stored int8 matrix, the embedding looks its rows up in
    that same tensor, after quantize and after a meta-skeleton load. Logits equal those of the
    fbgemm_static head (the same calibrated input qparams and rounding, exact int32 sums, the
    same float32 output pass); state dict and saved bytes do not change."""
    from monoquant import _kernels

    if not (_kernels.available()["fbgemm"] and _kernels._probe("intmm")):
        pytest.skip("no fbgemm/_int_mm here (fbgemm's static Linear is the reference)")
    ref = gpt2(vocab=2048)
    torch.manual_seed(3)
    calib = [torch.randint(0, 2048, (2, 24)) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = monoquant.quantize(ref, bits=8, activations="static", calibration_data=calib, progress=False)
    monoquant.save(q, tmp_path / "q.safetensors")
    with torch.device("meta"):
        skel = transformers.GPT2LMHeadModel(ref.config)
    m = monoquant.load(tmp_path / "q.safetensors", skel).eval()
    ids = torch.randint(0, 2048, (3, 40))
    for model in (q, m):
        head, own = model.lm_head, _check_table_held_once(ref, model, "static", ids, tmp_path)
        assert head.activation == "static"
        # the head alone on inputs that clamp at both ends of quint8, against the fbgemm head
        x = torch.randn(5, 7, head.in_features) * 40
        torch.testing.assert_close(head(x), own.lm_head(x), rtol=1e-5, atol=1e-5)
        assert torch.equal(model.state_dict()["transformer.wte.weight"], own.state_dict()["transformer.wte.weight"])
        assert model.state_dict().keys() == own.state_dict().keys()
        monoquant.save(model, tmp_path / "again.safetensors")
        assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "q.safetensors").read_bytes()
        monoquant.save(own, tmp_path / "own.safetensors")
        assert (tmp_path / "own.safetensors").read_bytes() == (tmp_path / "q.safetensors").read_bytes()
    # sharing (and the kernel) survive a dtype cast
    m.half()
    assert m.lm_head.kernel == "intmm_static" and m.transformer.wte.weight_q.data_ptr() == m.lm_head._stored_q.data_ptr()


def test_intmm_static_matches_fbgemm_with_zero_points_and_empty_batches():
    """The intmm_static kernel alone: per-channel and per-tensor weights with and without zero
    points, input zero points 0, 128 and 255 (the shift into int8 taken off exactly), inputs
    that clamp, and an empty batch, against fbgemm's static linear on the same integers."""
    from monoquant import _kernels

    if not (_kernels.available()["fbgemm"] and _kernels._probe("intmm")):
        pytest.skip("no fbgemm/_int_mm here")
    torch.manual_seed(2)
    n, k = 48, 40
    q = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    rs = _kernels.row_sums(q)
    for per_channel in (True, False):
        scale = torch.rand(n) * 0.02 + 1e-3 if per_channel else torch.tensor([0.01])
        for zp in (torch.zeros(n if per_channel else 1, dtype=torch.int32),
                   torch.randint(-5, 6, (n,), dtype=torch.int32) if per_channel else torch.tensor([3], dtype=torch.int32)):
            packed = _kernels.PackedInt8(q, scale, zp, per_channel)
            for xs, xz in ((0.03, 0), (0.02, 128), (0.05, 255), (0.01, 37)):
                for x in (torch.randn(6, k) * 4, torch.rand(3, k) + 0.5, -torch.rand(2, k)):
                    torch.testing.assert_close(_kernels.intmm_static(x, q, scale, zp, xs, xz, rs), packed.static(x, xs, xz), rtol=1e-5, atol=1e-5)
            assert _kernels.intmm_static(torch.empty(0, k), q, scale, zp, 0.1, 7, rs).shape == (0, n)


def test_intmm_dynamic_matches_fbgemm_with_zero_points_and_empty_batches():
    """The intmm_dynamic kernel alone: per-channel and per-tensor weights with non-zero zero
    points, inputs of any sign and an empty batch, against fbgemm's linear_dynamic on the same
    integers (the same qparams rule and rounding: equal up to float rounding)."""
    from monoquant import _kernels

    if not (_kernels.available()["fbgemm"] and _kernels._probe("intmm")):
        pytest.skip("no fbgemm/_int_mm here")
    torch.manual_seed(1)
    n, k = 48, 40
    q = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    for per_channel in (True, False):
        scale = torch.rand(n) * 0.02 + 1e-3 if per_channel else torch.tensor([0.01])
        zp = torch.randint(-5, 6, (n,), dtype=torch.int32) if per_channel else torch.tensor([3], dtype=torch.int32)
        packed = _kernels.PackedInt8(q, scale, zp, per_channel)
        for x in (torch.randn(6, k) * 4, torch.rand(3, k) + 0.5, -torch.rand(2, k)):
            torch.testing.assert_close(_kernels.intmm_dynamic(x, q, scale, zp), packed.dynamic(x), rtol=1e-5, atol=1e-5)
        assert _kernels.intmm_dynamic(torch.empty(0, k), q, scale, zp).shape == (0, n)
