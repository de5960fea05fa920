r"""The kd-tree search (scipy's cKDTree, all clouds in one tree) against a brute-force
reference: the same neighbours (equal distances, so only exact ties may be ordered
differently), padding where a cloud holds fewer than k points, the Z-order path, other
dimensions; and the back-end choice that routes CPU searches to it."""

import pytest
import torch

import tg_samplenet.ops.kdtree as kdtree_search
import tg_samplenet.ops.neighbors as neighbors
from reproduction.testing import brute_knn, random_clouds
from tg_samplenet.ops.kdtree import kdtree_knn
from tg_samplenet.ops.neighbors import available_backends, padded_knn, use_backend
from tg_samplenet.ops.zorder import zorder

pytest.importorskip("scipy")


def check_against_brute_force(pos, batch, query, query_batch, k, B):
    index, mask = kdtree_knn(pos, query, k, batch, query_batch, B)
    expected = brute_knn(pos, query, batch, query_batch, k)
    assert index.shape == mask.shape == (query.size(0), k)
    for row, (got, real, want) in enumerate(zip(index.tolist(), mask.tolist(), expected)):
        assert real == [slot < len(want) for slot in range(k)], row
        q = query[row].double()
        got_dist = (pos[got].double() - q).pow(2).sum(-1).tolist()
        want_dist = [d for d, _ in want]
        # Real neighbours: the brute force's distances in order; padding repeats the first.
        assert got_dist[: len(want)] == pytest.approx(want_dist, rel=1e-12, abs=1e-300), row
        assert all(j == got[0] for j in got[len(want) :]), row
        assert all(batch[j] == query_batch[row] for j in got), row


@pytest.mark.parametrize("k", [1, 3, 7])
def test_matches_brute_force_on_clouds_of_any_size(k):
    pos, batch = random_clouds([40, 1, 0, 5, 60], seed=0, dtype=torch.float64)
    query, query_batch = random_clouds([9, 3, 0, 4, 11], seed=1, dtype=torch.float64)
    check_against_brute_force(pos, batch, query, query_batch, k, 5)


def test_matches_brute_force_in_zorder(monkeypatch):
    # The Z-order path (normally from 16k points) on a small input, float32 points.
    monkeypatch.setattr(kdtree_search, "ZORDER_ABOVE", 1)
    pos, batch = random_clouds([300, 2, 150], seed=2)
    query, query_batch = random_clouds([50, 6, 20], seed=3)
    check_against_brute_force(pos, batch, query, query_batch, 4, 3)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_other_dimensions(dim, monkeypatch):
    monkeypatch.setattr(kdtree_search, "ZORDER_ABOVE", 1)
    generator = torch.Generator().manual_seed(dim)
    pos = torch.rand(80, dim, generator=generator, dtype=torch.float64)
    query = torch.rand(15, dim, generator=generator, dtype=torch.float64)
    batch = torch.zeros(80, dtype=torch.long)
    query_batch = torch.zeros(15, dtype=torch.long)
    check_against_brute_force(pos, batch, query, query_batch, 3, 1)


def test_duplicate_points_are_all_found():
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [3, 0, 0]])
    batch = torch.zeros(5, dtype=torch.long)
    query = torch.tensor([[0.9, 0, 0]])
    index, mask = kdtree_knn(pos, query, 3, batch, batch[:1], 1)
    assert sorted(index[0].tolist()) == [1, 2, 3] and bool(mask.all())


def test_zorder_keeps_clouds_in_place():
    pos, batch = random_clouds([100, 0, 30, 70], seed=4)
    order = zorder(pos, batch, 4)
    assert sorted(order.tolist()) == list(range(200))
    assert torch.equal(batch[order], batch)


# The back-end choice in tg_samplenet.ops.neighbors.


def record_kdtree_calls(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0].size(0))
        return kdtree_knn(*args, **kwargs)

    monkeypatch.setattr(neighbors, "kdtree_knn", spy)
    return calls


def test_cpu_searches_use_the_kdtree_by_default_and_others_when_forced(monkeypatch):
    calls = record_kdtree_calls(monkeypatch)
    pos, batch = random_clouds([20, 40], seed=7)
    query, query_batch = random_clouds([60, 70], seed=8)
    padded_knn(pos, query, 2, batch, query_batch)
    padded_knn(query, pos, 2, query_batch, batch)
    assert calls == [60, 130]
    for other in [name for name in available_backends() if name != "kdtree"]:
        with use_backend(other):
            padded_knn(pos, query, 2, batch, query_batch)
    assert calls == [60, 130]


@pytest.mark.parametrize("k", [1, 5])
def test_brute_force_matches_brute_force(k, monkeypatch):
    # The plain-torch back-end (the GPU's without extensions) on CPU tensors.
    pos, batch = random_clouds([40, 1, 0, 25], seed=9, dtype=torch.float64)
    query, query_batch = random_clouds([7, 3, 0, 30], seed=10, dtype=torch.float64)
    with use_backend("torch"):
        index, mask = padded_knn(pos, query, k, batch, query_batch)
    expected = brute_knn(pos, query, batch, query_batch, k)
    for row, want in enumerate(expected):
        assert mask[row].tolist() == [slot < len(want) for slot in range(k)]
        got = (pos[index[row]] - query[row]).pow(2).sum(-1).tolist()[: len(want)]
        assert got == pytest.approx([d for d, _ in want], rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("swap", [False, True])
def test_more_queries_than_references_and_fewer(swap):
    pos, batch = random_clouds([90, 2, 40], seed=11, dtype=torch.float64)
    query, query_batch = random_clouds([10, 5, 60], seed=12, dtype=torch.float64)
    if swap:
        pos, batch, query, query_batch = query, query_batch, pos, batch
    index, mask = padded_knn(pos, query, 4, batch, query_batch)
    for row, want in enumerate(brute_knn(pos, query, batch, query_batch, 4)):
        assert mask[row].tolist() == [slot < len(want) for slot in range(4)]
        got = (pos[index[row]] - query[row]).pow(2).sum(-1).tolist()[: len(want)]
        assert got == pytest.approx([d for d, _ in want], rel=1e-12, abs=1e-300)


def test_clouds_far_apart_in_the_tree_do_not_mix():
    # A cloud of one point beside large clouds: its queries find only it, as padding.
    pos = torch.cat([torch.rand(50, 3), torch.rand(1, 3) * 0.99, torch.rand(30, 3)]) * 2 - 1
    batch = torch.tensor([0] * 50 + [1] + [2] * 30)
    query = torch.zeros(3, 3)
    index, mask = kdtree_knn(pos, query, 4, batch, torch.tensor([0, 1, 2]), 3)
    assert index[1].tolist() == [50] * 4 and mask[1].tolist() == [True, False, False, False]
    assert all(batch[j] == 0 for j in index[0]) and all(batch[j] == 2 for j in index[2])
