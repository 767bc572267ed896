"""Engine-backed observers against live torch.ao.quantization observers."""

import copy
import random
import zlib

import pytest
import torch
import torch.ao.quantization as tq

import monoquant

# torch deprecates reduce_range in favour of explicit ranges; the cases still use it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max")

PAIRS = [
    (monoquant.MinMaxObserver, tq.MinMaxObserver),
    (monoquant.MovingAverageMinMaxObserver, tq.MovingAverageMinMaxObserver),
    (monoquant.HistogramObserver, tq.HistogramObserver),
    (monoquant.PerChannelMinMaxObserver, tq.PerChannelMinMaxObserver),
    (monoquant.MovingAveragePerChannelMinMaxObserver, tq.MovingAveragePerChannelMinMaxObserver),
]
PER_CHANNEL = (monoquant.PerChannelMinMaxObserver, monoquant.MovingAveragePerChannelMinMaxObserver)


def random_kwargs(rng, ours):
    per_channel = ours in PER_CHANNEL
    dtype = rng.choice([torch.quint8, torch.qint8])
    sym = rng.random() < 0.5
    if per_channel:
        qscheme = torch.per_channel_symmetric if sym else torch.per_channel_affine
    else:
        qscheme = torch.per_tensor_symmetric if sym else torch.per_tensor_affine
    kw = {"dtype": dtype, "qscheme": qscheme}
    r = rng.random()
    if r < 0.2:
        kw["quant_min"], kw["quant_max"] = (0, 127) if dtype == torch.quint8 else (-127, 127)
    elif r < 0.35 and not (sym and dtype == torch.quint8):
        kw["reduce_range"] = True
    if rng.random() < 0.2:
        kw["eps"] = 2.0 ** -12
    if ours in (monoquant.MovingAverageMinMaxObserver, monoquant.MovingAveragePerChannelMinMaxObserver):
        kw["averaging_constant"] = rng.choice([0.01, 0.1, 0.5, 1.0])
    if per_channel:
        kw["ch_axis"] = rng.choice([0, 1, -1])
    if ours is monoquant.HistogramObserver:
        kw["bins"] = rng.choice([256, 2048])
    return kw


def random_batch(rng, shape, kind):
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    x = torch.randn(shape, generator=g)
    if kind == "relu":
        x = x.clamp_min(0)
    elif kind == "scaled":
        x = x * rng.choice([1e-3, 1.0, 40.0]) + rng.choice([-2.0, 0.0, 3.0])
    elif kind == "outlier":
        x.view(-1)[rng.randrange(x.numel())] = 50.0
    elif kind == "constant":
        x = torch.full(shape, rng.choice([0.0, 1.5, -2.0]))
    return x


def assert_same_qparams(ours, theirs, ctx):
    try:
        s2, z2 = theirs.calculate_qparams()
    except AssertionError:
        # torch refuses min > max, which a moving average of constant batches can produce by
        # float32 rounding; the engine must refuse it too.
        with pytest.raises(monoquant.InvalidArgumentError, match="min .* > max"):
            ours.calculate_qparams()
        return
    s1, z1 = ours.calculate_qparams()
    assert s1.dtype == s2.dtype and z1.dtype == z2.dtype, f"{ctx}: dtypes {s1.dtype},{z1.dtype} vs torch {s2.dtype},{z2.dtype}"
    assert s1.shape == s2.shape and z1.shape == z2.shape, f"{ctx}: shapes {s1.shape} vs torch {s2.shape}"
    assert torch.equal(s1, s2), f"{ctx}: scale got {s1.tolist()} want {s2.tolist()}"
    assert torch.equal(z1, z2), f"{ctx}: zero_point got {z1.tolist()} want {z2.tolist()}"


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_random_cases_and_multi_batch_sequences_match_torch(ours, theirs, no_leaks):
    rng = random.Random(zlib.crc32(ours.__name__.encode()))  # str hash() changes per process
    n_cases = 6 if ours is monoquant.HistogramObserver else 40
    for case in range(n_cases):
        kw = random_kwargs(rng, ours)
        # torch's per-channel observers refuse 1-D input (flatten(start_dim=1)); so does the engine.
        shapes = [(8, 33), (4, 6, 10), (2, 3, 4, 5)] + ([] if ours in PER_CHANNEL else [(64,)])
        shape = rng.choice(shapes)
        kind = rng.choice(["normal", "relu", "scaled", "outlier", "constant"])
        with ours(**kw) as a:
            b = theirs(**copy.deepcopy(kw))
            for step in range(rng.choice([1, 2, 5])):
                x = random_batch(rng, shape, kind if step == 0 else rng.choice(["normal", "scaled", kind]))
                out = a(x)
                assert out is x, "obs(x) must return x itself"
                b(x)
                ctx = f"case {case}: {ours.__name__}({kw}) after {step + 1} batches of {shape} {kind}"
                assert_same_qparams(a, b, ctx)
            if ours in PER_CHANNEL:
                assert torch.equal(a.min_val, b.min_val) and torch.equal(a.max_val, b.max_val), ctx
            else:
                assert float(a.min_val) == float(b.min_val) and float(a.max_val) == float(b.max_val), ctx


def test_histogram_many_batches_of_activations():
    torch.manual_seed(7)
    a, b = monoquant.HistogramObserver(), tq.HistogramObserver()
    for i in range(20):
        x = torch.relu(torch.randn(16, 256) * (1 + i / 10))
        a(x)
        b(x)
    assert_same_qparams(a, b, "histogram, 20 widening batches")
    a.close()


def test_uninitialized_observer_returns_torch_defaults():
    for ours, theirs in PAIRS:
        with ours() as a, pytest.warns(UserWarning, match="must run observer"):
            s, z = a.calculate_qparams()
        assert torch.equal(s, torch.tensor([1.0])) and torch.equal(z, torch.tensor([0])), ours.__name__


def test_reset_forgets_everything():
    a = monoquant.MinMaxObserver()
    a(torch.tensor([-5.0, 5.0]))
    a.reset_min_max_vals()
    a(torch.tensor([0.0, 1.0]))
    b = tq.MinMaxObserver()
    b(torch.tensor([0.0, 1.0]))
    assert_same_qparams(a, b, "after reset")
    a.close()


def test_inputs_of_other_dtypes_are_converted_like_torch():
    x = torch.randn(100).to(torch.bfloat16)
    a, b = monoquant.MinMaxObserver(), tq.MinMaxObserver()
    a(x)
    b(x)
    assert_same_qparams(a, b, "bfloat16 input")
    a.close()


def test_nan_is_refused_and_leaves_state_unchanged():
    a = monoquant.MinMaxObserver()
    a(torch.tensor([1.0, 2.0]))
    before = a.calculate_qparams()
    # The header promises MQ_ENONFINITE; the library currently reports MQ_EINVAL. Both are
    # ValueErrors naming the NaN.
    with pytest.raises(ValueError, match="NaN"):
        a(torch.tensor([float("nan"), 100.0]))
    after = a.calculate_qparams()
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    a.close()


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(ValueError, match="qscheme"):
        monoquant.MinMaxObserver(qscheme=torch.per_channel_affine)
    with pytest.raises(ValueError, match="qscheme"):
        monoquant.PerChannelMinMaxObserver(qscheme=torch.per_tensor_affine)
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric, reduce_range=True)
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.MinMaxObserver(quant_min=5, quant_max=100)
    with pytest.raises(ValueError, match="quant_min"):
        monoquant.MinMaxObserver(quant_min=0)
    with pytest.raises(NotImplementedError):
        monoquant.PerChannelMinMaxObserver(qscheme=torch.per_channel_affine_float_qparams)
    with pytest.raises(NotImplementedError):
        monoquant.MinMaxObserver(dtype=torch.float16)
    with pytest.raises(TypeError, match="unexpected"):
        monoquant.MinMaxObserver(colour="blue")
    with pytest.raises(monoquant.InvalidArgumentError):
        monoquant.MovingAverageMinMaxObserver(averaging_constant=2.0)
    with pytest.raises(TypeError):
        monoquant.MinMaxObserver()(torch.zeros(3, dtype=torch.int64))


def test_per_channel_count_must_stay_constant():
    a = monoquant.PerChannelMinMaxObserver()
    a(torch.randn(4, 3))
    with pytest.raises(monoquant.MonoquantError):
        a(torch.randn(5, 3))
    a.close()


def test_closed_observer_raises_and_close_twice_is_safe(no_leaks):
    a = monoquant.HistogramObserver()
    a(torch.randn(10))
    a.close()
    a.close()
    with pytest.raises(monoquant.InvalidHandleError):
        a(torch.randn(10))
    with pytest.raises(monoquant.InvalidHandleError):
        a.calculate_qparams()
    with pytest.raises(monoquant.InvalidHandleError):
        a.reset_min_max_vals()


def test_context_manager_and_garbage_collection_free_the_handle(no_leaks):
    with monoquant.MinMaxObserver() as a:
        a(torch.randn(3))
    assert a._native.closed
    b = monoquant.PerChannelMinMaxObserver()
    b(torch.randn(3, 3))
    del b  # __del__ frees it; no_leaks checks


def test_with_args_factory():
    f = monoquant.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    a = f()
    assert a.dtype == torch.qint8 and a.qscheme == torch.per_tensor_symmetric
    a.close()


def test_one_dimensional_input_to_per_channel_is_refused_like_torch():
    a = monoquant.PerChannelMinMaxObserver()
    with pytest.raises(ValueError, match="dimensions"):
        a(torch.randn(5))
    a.close()


def test_per_channel_results_follow_the_channel_count_after_reset():
    # The results are read into buffers sized for the most values seen so far (one call into the
    # engine, not a size query first): more channels than before, then fewer after a reset, must
    # give torch's shapes and values each time, and none before any data.
    ours, theirs = monoquant.PerChannelMinMaxObserver(), tq.PerChannelMinMaxObserver()
    assert ours.min_val.shape == theirs.min_val.shape == (0,)
    for channels in (1, 7, 3):
        g = torch.Generator().manual_seed(channels)
        x = torch.randn(channels, 5, generator=g)
        ours(x)
        theirs(x)
        assert_same_qparams(ours, theirs, f"{channels} channels")
        assert torch.equal(ours.min_val, theirs.min_val) and torch.equal(ours.max_val, theirs.max_val)
        ours.reset_min_max_vals()
        theirs.reset_min_max_vals()
    ours.close()
