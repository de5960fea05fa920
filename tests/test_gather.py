r"""gather_rows: the rows src[index] gives, with a backward pass that sums repeated
indices in index order, on any number of threads."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tg_samplenet.losses import chamfer_distance
from tg_samplenet.nn.weighted_gather import gather_rows


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    width=st.lists(st.integers(1, 4), max_size=2),
    seed=st.integers(0, 2**16),
)
def test_rows_and_gradient_equal_advanced_indexing(n, shape, width, seed):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randn(n, *width, generator=gen, dtype=torch.float64)
    index = torch.randint(0, n, shape, generator=gen)
    upstream = torch.randn(*shape, *width, generator=gen, dtype=torch.float64)
    a, b = src.clone().requires_grad_(), src.clone().requires_grad_()
    want, got = a[index], gather_rows(b, index)
    assert torch.equal(got, want)
    (want * upstream).sum().backward()
    (got * upstream).sum().backward()
    # float64 sums of a few terms: the same up to rounding in another order.
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-12)


def _chamfer_gradient(points, reference, batch):
    points = points.clone().requires_grad_()
    chamfer_distance(points, reference, batch, batch).backward()
    return points.grad


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_chamfer_gradient_repeats_on_two_threads(two_threads):
    # Large enough (> 32768 gathered values) for the parallel kernels, in one cloud (the
    # threads' halves of the index share their targets), with every point the nearest of
    # many reference points: advanced indexing's backward gave other sums from run to run.
    gen = torch.Generator().manual_seed(0)
    batch = torch.zeros(16384, dtype=torch.long)
    points = torch.rand(batch.numel(), 3, generator=gen)
    reference = torch.rand(batch.numel(), 3, generator=gen) ** 4  # bunched: repeats
    first = _chamfer_gradient(points, reference, batch)
    for _ in range(10):
        assert torch.equal(_chamfer_gradient(points, reference, batch), first)
    torch.set_num_threads(1)  # and the sums one thread computes
    assert torch.equal(_chamfer_gradient(points, reference, batch), first)


def test_bad_index():
    with pytest.raises(IndexError):
        gather_rows(torch.zeros(3, 2), torch.tensor([3]))
