"""Real architectures from `transformers`, built from configs at small sizes (nothing downloaded):
GPT-2 (Conv1D, tied embedding and head), BERT, Llama- and T5-shaped models (issue 12).

Each test runs the model for real: weights quantized along their output axis, outputs compared
with the float model, files written and read back through monoquant and safetensors.
"""

import json
import os
import warnings

import pytest
import torch
import torch.nn as nn

import monoquant

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.filterwarnings("ignore::monoquant.MonoquantWarning")


def gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    return cfg, transformers.GPT2LMHeadModel


def bert():
    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                                  vocab_size=512, max_position_embeddings=64)
    return cfg, transformers.BertForMaskedLM


def llama():
    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=128, vocab_size=512, max_position_embeddings=64)
    return cfg, transformers.LlamaForCausalLM


def t5():
    cfg = transformers.T5Config(num_layers=2, num_decoder_layers=2, d_model=64, d_kv=16, num_heads=4, d_ff=128,
                                vocab_size=512, decoder_start_token_id=0)
    return cfg, transformers.T5ForConditionalGeneration


MODELS = {"gpt2": gpt2, "bert": bert, "llama": llama, "t5": t5}


def build(kind, seed=0):
    cfg, cls = MODELS[kind]()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(cfg).eval()


def inputs(kind, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 512, (2, 12), generator=g)
    if kind == "t5":
        return {"input_ids": ids, "decoder_input_ids": torch.randint(1, 512, (2, 6), generator=g)}
    return {"input_ids": ids}


def logits(model, kind, x=None):
    with torch.no_grad():
        return model(**(x or inputs(kind))).logits


def cos(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def weight_matrices(model):
    """(module name, module, output axis) of every module holding a weight matrix the default
    selection quantizes: Linear (output axis 0) and transformers' Conv1D (stored [in, out]:
    axis 1)."""
    out = []
    for name, mod in model.named_modules():
        if type(mod).__name__ == "Conv1D":
            out.append((name, mod, 1))
        elif isinstance(mod, nn.Linear):
            out.append((name, mod, 0))
    return out


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_weight_matrix_is_quantized_along_its_output_axis_and_outputs_stay_close(kind, tmp_path):
    model = build(kind)
    x = inputs(kind)
    q = monoquant.quantize(model, bits=8, progress=False, validate=x)
    mats = weight_matrices(model)
    assert mats
    qmods = dict(q.named_modules())
    config = q._monoquant_file["config"]
    aliases = config.get("aliases", {})
    for name, mod, axis in mats:
        qm = qmods[name]
        assert isinstance(qm, monoquant.QuantizedLinear), f"{name} ({type(mod).__name__}) left as {type(qm).__name__}"
        out_features = mod.weight.shape[axis]
        assert qm.weight_scale.numel() == out_features, f"{name}: {qm.weight_scale.numel()} scales, {out_features} output channels"
        wname = name + ".weight"
        tc = config["tensors"].get(wname) or config["tensors"][aliases[wname]]
        assert tc["granularity"] == "per_channel" and tc["axis"] == (axis if wname in config["tensors"] else tc["axis"])
        # per output channel: each output channel's error is bounded by its own scale
        w = mod.weight.detach()
        dq = qm.dequantized("weight")
        assert dq.shape == w.shape
        err = (dq - w).abs().amax(dim=1 - axis)
        assert bool((err <= qm.weight_scale.reshape(-1) * 0.5 + 1e-6).all()), name
    v = q.monoquant_report["model_validation"]
    assert v["validated"] and v["cos"] >= 0.999, v
    assert v["cos"] == pytest.approx(cos(logits(model, kind, x), logits(q, kind, x)), abs=1e-6) or v["outputs"] > 0
    assert v["sqnr_db"] > 20

    # file round trip: the same outputs from the file, loaded into a fresh model and into a factory
    path = tmp_path / "q.safetensors"
    monoquant.save(q, path)
    want = logits(q, kind, x)
    loaded = monoquant.load(path, build(kind, seed=7))
    assert torch.equal(logits(loaded, kind, x), want)
    cfg, cls = MODELS[kind]()
    from_factory = monoquant.load(path, lambda: cls(cfg).eval())
    assert torch.equal(logits(from_factory, kind, x), want)
    # the file carries each axis: safetensors reads it, and scales match the output channels
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    stored = json.loads(header["__metadata__"]["monoquant"])
    for name, mod, axis in mats:
        wname = name + ".weight"
        if wname in stored["tensors"]:
            assert stored["tensors"][wname]["axis"] == axis, wname


def test_gpt2_conv1d_runs_on_torch_kernels_and_int4_runs_dequantized():
    model = build("gpt2")
    q = monoquant.quantize(model, bits=8, progress=False)
    c = q.transformer.h[0].attn.c_attn
    assert isinstance(c, monoquant.QuantizedConv1D) and c.kernel == "fbgemm_dynamic"
    assert c.weight.shape == model.transformer.h[0].attn.c_attn.weight.shape  # [in, out], as Conv1D's
    assert c.state_dict()["weight"].shape == (64, 192)  # stored [in, out], the file's layout
    w = monoquant.quantize(model, bits=8, activations="none", progress=False).transformer.h[0].attn.c_attn
    assert w.kernel == "int8pack"
    q4 = monoquant.quantize(model, bits=4, progress=False)
    assert cos(logits(model, "gpt2"), logits(q4, "gpt2")) > 0.98
    # state dict round trip of the INT4 layout
    fresh = monoquant.quantize(build("gpt2", seed=3), bits=4, progress=False)
    fresh.load_state_dict(q4.state_dict())
    assert torch.equal(logits(fresh, "gpt2"), logits(q4, "gpt2"))


def test_tied_gpt2_is_quantized_once_stored_once_and_tied_again_on_load(tmp_path):
    model = build("gpt2")
    assert model.transformer.wte.weight is model.lm_head.weight
    q = monoquant.quantize(model, bits=8, progress=False)
    rep = q.monoquant_report
    assert ["transformer.wte.weight", "lm_head.weight"] in rep["tied"]
    assert isinstance(q.transformer.wte, monoquant.QuantizedEmbedding)
    # held once: the embedding and the head read one int8 table
    assert torch.equal(q.transformer.wte.weight_q, q.lm_head.weight_q)
    path = tmp_path / "gpt2.q.safetensors"
    monoquant.save(q, path)
    plain = safetensors_torch.load_file(str(path))
    names = {"transformer.wte.weight", "lm_head.weight"}
    assert len(names & set(plain)) == 1  # stored once
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(json.loads(f.read(n))["__metadata__"]["monoquant"])
    (stored,) = names & set(plain)
    (alias,) = names - {stored}
    assert meta["aliases"] == {alias: stored}
    # smaller than 0.3x the float file (Hugging Face's own, tied head stored once), at a size
    # where the config and the float norms and biases no longer dominate
    big = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=2048, n_positions=32,
                                                               bos_token_id=0, eos_token_id=0)).eval()
    big.save_pretrained(tmp_path / "float", safe_serialization=True)
    float_size = os.path.getsize(tmp_path / "float" / "model.safetensors")
    monoquant.save(monoquant.quantize(big, bits=8, progress=False), tmp_path / "big.q.safetensors")
    q_size = os.path.getsize(tmp_path / "big.q.safetensors")
    assert q_size < 0.3 * float_size, (q_size, float_size)
    # loaded back: tied again (one tensor for both names), the same outputs
    loaded = monoquant.load(path, build("gpt2", seed=5))
    assert torch.equal(loaded.transformer.wte.weight_q, loaded.lm_head.weight_q)
    assert torch.equal(logits(loaded, "gpt2"), logits(q, "gpt2"))
    # dequantized: a float model whose embedding and head are one Parameter again
    f = monoquant.dequantize(loaded)
    assert f.transformer.wte.weight is f.lm_head.weight
    assert cos(logits(f, "gpt2"), logits(model, "gpt2")) > 0.999


def test_meta_skeleton_loads_only_the_files_tensors(tmp_path):
    model = build("gpt2")
    q = monoquant.quantize(model, bits=8, progress=False)
    path = tmp_path / "q.safetensors"
    monoquant.save(q, path)
    cfg, cls = MODELS["gpt2"]()
    with torch.device("meta"):
        skeleton = cls(cfg).eval()
    assert all(p.is_meta for p in skeleton.parameters())
    loaded = monoquant.load(path, skeleton)
    assert not any(t.is_meta for t in loaded.state_dict().values())
    assert torch.equal(logits(loaded, "gpt2"), logits(q, "gpt2"))
    # a skeleton whose non-persistent buffers are on meta too (Llama's rotary inv_freq) cannot
    # run: the error says so and names the way out
    cfg, cls = MODELS["llama"]()
    lq = monoquant.quantize(build("llama"), bits=8, progress=False)
    monoquant.save(lq, tmp_path / "l.safetensors")
    with torch.device("meta"):
        lskel = cls(cfg).eval()
    if any(b.is_meta for _, b in lskel.named_buffers()):
        with pytest.raises(ValueError, match="meta device"):
            monoquant.load(tmp_path / "l.safetensors", lskel)
    loaded = monoquant.load(tmp_path / "l.safetensors", lambda: cls(cfg).eval())
    assert torch.equal(logits(loaded, "llama"), logits(lq, "llama"))


def test_hf_folder_in_quantized_file_out_loads_back(tmp_path):
    model = build("gpt2")
    model.save_pretrained(tmp_path / "gpt2", safe_serialization=True)
    out = tmp_path / "gpt2-q"
    rep = monoquant.quantize_file(tmp_path / "gpt2", out, bits=8, progress=False)
    assert not any(w["code"] == "architecture_unknown" for w in rep.get("warnings") or [])
    assert (out / "config.json").exists()
    loaded = monoquant.load(out / "model.safetensors", build("gpt2", seed=9))
    for name, mod, axis in weight_matrices(model):
        if name == "lm_head":
            continue  # tied: save_pretrained stores it once, as the embedding
        qm = loaded.get_submodule(name)
        assert isinstance(qm, monoquant.QuantizedLinear), name
        assert qm.weight_scale.numel() == mod.weight.shape[axis], name
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()  # re-tied from the one tensor
    assert cos(logits(loaded, "gpt2"), logits(model, "gpt2")) >= 0.999


# ------------------------------------------------------------------------------------------------
# Regressions of issue 12's "Why"

def test_save_writes_the_model_as_it_is_now_and_a_second_quantize_is_refused(tmp_path):
    model = build("gpt2")
    q = monoquant.quantize(model, bits=8, progress=False, inplace=False)
    with pytest.raises(ValueError, match="already has quantized layers.*dequantize"):
        monoquant.quantize(q, bits=4, progress=False)
    # re-quantizing is done from the dequantized model, and that saves and loads
    q2 = monoquant.quantize(monoquant.dequantize(q), bits=4, progress=False)
    monoquant.save(q2, tmp_path / "q2.safetensors")
    l2 = monoquant.load(tmp_path / "q2.safetensors", build("gpt2", seed=2))
    assert torch.equal(logits(l2, "gpt2"), logits(q2, "gpt2"))
    # a change after quantize is what save writes: a layer put back in float, a norm edited
    q.transformer.h[1].mlp.c_fc = model.transformer.h[1].mlp.c_fc
    with torch.no_grad():
        q.transformer.ln_f.weight.mul_(2)
    monoquant.save(q, tmp_path / "q.safetensors")
    sd = safetensors_torch.load_file(str(tmp_path / "q.safetensors"))
    assert "transformer.h.1.mlp.c_fc.weight.scale" not in sd
    assert sd["transformer.h.1.mlp.c_fc.weight"].dtype == torch.float32
    assert torch.equal(sd["transformer.ln_f.weight"], q.transformer.ln_f.weight.detach())
    loaded = monoquant.load(tmp_path / "q.safetensors", build("gpt2", seed=4))
    assert type(loaded.transformer.h[1].mlp.c_fc).__name__ == "Conv1D"
    assert torch.equal(logits(loaded, "gpt2"), logits(q, "gpt2"))


@pytest.mark.parametrize("move", ["half", "bfloat16", "to_bf16"])
def test_dtype_moves_keep_the_quantized_weights(move):
    model = build("gpt2")
    q = monoquant.quantize(model, bits=8, progress=False)
    before = q.transformer.h[0].attn.c_attn.state_dict()["weight"].clone()
    dt = {"half": torch.float16, "bfloat16": torch.bfloat16, "to_bf16": torch.bfloat16}[move]
    moved = q.half() if move == "half" else q.bfloat16() if move == "bfloat16" else q.to(torch.bfloat16)
    c = moved.transformer.h[0].attn.c_attn
    assert torch.equal(c.state_dict()["weight"], before)  # the integers stay
    assert c.weight_scale.dtype == torch.float32 and c.bias.dtype == dt  # qparams stay, float parts move
    assert moved.transformer.ln_f.weight.dtype == dt
    y = logits(moved, "gpt2")
    assert y.dtype == dt
    assert cos(y.float(), logits(model, "gpt2")) > 0.99
    back = moved.float()
    assert back.transformer.ln_f.weight.dtype == torch.float32 and logits(back, "gpt2").dtype == torch.float32


def test_dequantize_gives_each_tensor_its_original_dtype():
    model = build("llama").to(torch.bfloat16)
    q = monoquant.quantize(model, bits=8, progress=False)
    f = monoquant.dequantize(q)
    for name, p in f.named_parameters():
        assert p.dtype == torch.bfloat16, name
    assert cos(logits(f, "llama").float(), logits(model, "llama").float()) > 0.99


def test_fp16_overflow_in_memory_saturates_with_a_warning():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[0].weight[0, 0] = 1e6
        model[0].weight[1, 1] = -7e5
    with pytest.warns(monoquant.MonoquantWarning, match="fp16_overflow"):
        q = monoquant.quantize(model, dtype="fp16", progress=False)
    w = q[0].weight
    assert torch.isfinite(w).all()
    assert float(w[0, 0]) == 65504.0 and float(w[1, 1]) == -65504.0
    codes = [x["code"] for x in q.monoquant_report["warnings"]]
    assert "fp16_overflow" in codes


def test_layers_that_cannot_run_quantized_are_reported_left_in_float():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(8, 8)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(self.gru(x)[0])

    with pytest.warns(monoquant.MonoquantWarning, match="left_in_float.*gru"):
        q = monoquant.quantize(Net(), layers=[nn.Linear, nn.GRU], progress=False)
    assert isinstance(q.gru, nn.GRU) and isinstance(q.fc, monoquant.QuantizedLinear)
    left = [w for w in q.monoquant_report["warnings"] if w["code"] == "left_in_float"]
    assert left and left[0]["layer"] == "gru" and "GRU" in left[0]["message"]


def test_embedding_is_quantized_per_row_when_a_recipe_asks():
    model = build("bert")
    q = monoquant.quantize(model, recipe={"rules": [{"match": "*word_embeddings", "layers": ["embedding"], "dtype": "int8"}]},
                           progress=False)
    e = q.bert.embeddings.word_embeddings
    assert isinstance(e, monoquant.QuantizedEmbedding) and e.kernel == "rows"
    assert e.weight_scale.numel() == e.num_embeddings  # one scale per row
    assert cos(logits(q, "bert"), logits(model, "bert")) >= 0.999


def test_validate_argument_is_checked():
    model = build("gpt2")
    with pytest.raises(TypeError, match="validate takes example inputs"):
        monoquant.quantize(model, progress=False, validate=3)


@pytest.mark.parametrize("options", [dict(bits=8), dict(bits=8, activations="none"), dict(bits=4)], ids=["int8", "int8-wo", "int4"])
def test_report_of_gpt2_matches_its_conv1d_weights_to_the_engines_sqnr(options):
    # Conv1D keeps its weight [in, out]; the quantized layer may hold it transposed in memory:
    # report() must still pair each value with its own, as the engine did when quantizing.
    model = build("gpt2")
    q = monoquant.quantize(model, progress=False, **options)
    rep = monoquant.report(model, q)
    engine = {t["name"]: t["sqnr_db"] for t in q.monoquant_report["tensors"]}
    rows = {r["name"]: r for r in rep.layers}
    name = "transformer.h.0.attn.c_attn"
    assert isinstance(q.get_submodule(name), monoquant.QuantizedConv1D)
    assert rows[name]["sqnr_db"] == pytest.approx(engine[name + ".weight"], abs=0.05)
