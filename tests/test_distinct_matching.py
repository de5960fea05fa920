import pytest
import torch

import tg_samplenet.ops.matching as matching
from reproduction.testing import brute_distinct_sample, random_clouds
from tg_samplenet.ops.checks import InputError
from tg_samplenet.ops.matching import distinct_sample, hard_sample


def problem(sizes, queries, seed, spread=1.0):
    pos, batch = random_clouds(sizes, seed=seed, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed + 1)
    # Queries bunched near a few input points of their cloud, so that nearest-point
    # matching repeats itself and the greedy matching has to choose.
    simplified, simplified_batch = [], []
    for cloud, (n, m) in enumerate(zip(sizes, queries, strict=True)):
        if n == 0 or m == 0:
            continue
        members = (batch == cloud).nonzero().view(-1)
        anchor = members[torch.randint(0, min(n, 3), (m,), generator=generator)]
        noise = 0.05 * spread * torch.randn(m, 3, generator=generator, dtype=torch.float64)
        simplified.append(pos[anchor] + noise)
        simplified_batch.append(torch.full((m,), cloud))
    return pos, batch, torch.cat(simplified), torch.cat(simplified_batch)


@pytest.mark.parametrize("k", [1, 2, 16])
@pytest.mark.parametrize("seed", range(4))
def test_matches_the_sorted_pairs_greedy(backend, k, seed, monkeypatch):
    # Few candidates per query and round force the searches of the free points again.
    monkeypatch.setattr(matching, "DISTINCT_CANDIDATES", k)
    sizes, queries = [30, 7, 0, 12, 1], [12, 7, 0, 20, 1]
    pos, batch, simplified, simplified_batch = problem(sizes, queries, seed)
    counts = torch.tensor([12, 7, 0, 12, 1])  # cloud 3 keeps its first 12 of 20
    index = distinct_sample(pos, batch, simplified, simplified_batch, counts)
    assert index.tolist() == brute_distinct_sample(pos, batch, simplified, simplified_batch, counts)
    assert torch.bincount(batch[index], minlength=5).tolist() == counts.tolist()
    for cloud in range(5):
        mine = index[batch[index] == cloud]
        assert mine.unique().numel() == mine.numel()


def test_a_cloud_matched_whole_is_a_permutation(backend, monkeypatch):
    # As many queries as points: the greedy matching orders the whole cloud.
    monkeypatch.setattr(matching, "DISTINCT_CANDIDATES", 3)
    pos, batch, simplified, simplified_batch = problem([25, 9], [25, 9], seed=5, spread=4.0)
    counts = torch.tensor([25, 9])
    index = distinct_sample(pos, batch, simplified, simplified_batch, counts)
    assert index.tolist() == brute_distinct_sample(pos, batch, simplified, simplified_batch, counts)
    assert sorted(index.tolist()) == list(range(34))


def test_without_repeats_it_is_the_nearest_point_matching():
    # Queries right next to distinct input points: nothing to resolve, and hard_sample
    # (which needs no completion here) gives the same sample.
    pos, batch = random_clouds([40, 15], seed=3, dtype=torch.float64)
    pick = torch.tensor([3, 17, 8, 30, 41, 52, 40])
    simplified = pos[pick] + 1e-6
    simplified_batch = batch[pick]
    counts = torch.tensor([4, 3])
    index = distinct_sample(pos, batch, simplified, simplified_batch, counts)
    assert index.tolist() == pick.tolist()
    assert torch.equal(index, hard_sample(pos, batch, simplified, simplified_batch, counts))


@pytest.mark.parametrize("max_matched", [0, 1, 4, 100])
def test_max_matched_keeps_a_prefix_and_continues_with_fps(max_matched):
    pos, batch, simplified, simplified_batch = problem([30, 12], [10, 12], seed=7)
    counts = torch.tensor([10, 9])
    index = distinct_sample(
        pos, batch, simplified, simplified_batch, counts, max_matched=max_matched
    )
    expected = brute_distinct_sample(pos, batch, simplified, simplified_batch, counts, max_matched)
    assert index.tolist() == expected


def test_too_few_simplified_points_are_completed_or_not():
    pos, batch, simplified, simplified_batch = problem([20, 10], [3, 10], seed=2)
    counts = torch.tensor([8, 10])
    full = distinct_sample(pos, batch, simplified, simplified_batch, counts)
    assert full.tolist() == brute_distinct_sample(pos, batch, simplified, simplified_batch, counts)
    short = distinct_sample(pos, batch, simplified, simplified_batch, counts, complete=False)
    assert torch.bincount(batch[short], minlength=2).tolist() == [3, 10]
    assert short.tolist() == full[:3].tolist() + full[8:].tolist()


def test_float32_and_gradients_do_not_matter():
    pos, batch, simplified, simplified_batch = problem([30, 12], [10, 12], seed=4)
    counts = torch.tensor([10, 12])
    expected = distinct_sample(pos, batch, simplified, simplified_batch, counts)
    q = simplified.float().requires_grad_()
    index = distinct_sample(pos.float(), batch, q, simplified_batch, counts)
    assert index.tolist() == expected.tolist()


def test_nothing_to_match():
    pos, batch = random_clouds([5], seed=0)
    empty = torch.empty(0, 3)
    index = distinct_sample(pos, batch, empty, torch.empty(0, dtype=torch.long), torch.tensor([0]))
    assert index.numel() == 0 and index.dtype == torch.long


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(counts=torch.tensor([6])), "counts"),
        (dict(max_matched=-1), "max_matched must be at least 0"),
        (dict(complete=1), "complete must be a bool"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    pos, batch = random_clouds([5], seed=0)
    args = dict(
        pos=pos,
        batch=batch,
        simplified=pos[:2] + 0.01,
        simplified_batch=batch[:2],
        counts=torch.tensor([2]),
    )
    with pytest.raises(InputError, match=message):
        distinct_sample(**(args | kwargs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result():
    pos, batch, simplified, simplified_batch = problem([300, 50], [120, 50], seed=9)
    counts = torch.tensor([100, 50])
    expected = distinct_sample(pos, batch, simplified, simplified_batch, counts)
    args = [t.cuda() for t in (pos, batch, simplified, simplified_batch, counts)]
    assert distinct_sample(*args).cpu().tolist() == expected.tolist()
