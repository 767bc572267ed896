"""The observers' input fast path (one reused mq_tensor per observer for dense float32 CPU
batches) against torch: batches of changing rank and shape, views and other dtypes between them."""

import pytest
import torch

import monoquant


@pytest.mark.parametrize("cls", ["HistogramObserver", "MinMaxObserver"])
def test_batches_of_changing_rank_and_layout_match_torch(cls):
    g = torch.Generator().manual_seed(5)
    big = torch.randn(6, 5, 4, 3, generator=g)
    batches = [
        torch.randn(64, 32, generator=g),
        big,  # 4-D
        torch.randn(7, generator=g) * 3,  # 1-D after 4-D: the reused shape array must not keep old sizes
        big.transpose(0, 3),  # non-contiguous: the general path
        torch.randn(3, 9, generator=g).to(torch.float16),
        torch.randn(2, 3, 4, generator=g) * 10,
    ]
    ours, theirs = getattr(monoquant, cls)(), getattr(torch.ao.quantization, cls)()
    for x in batches:
        assert ours(x) is x
        theirs(x.float())
        assert torch.equal(ours.min_val, theirs.min_val) and torch.equal(ours.max_val, theirs.max_val)
    s, z = ours.calculate_qparams()
    ts, tz = theirs.calculate_qparams()
    assert torch.equal(s, ts) and torch.equal(z, tz)
