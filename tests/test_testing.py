r"""The brute-force references of :mod:`reproduction.testing` on inputs small enough to
check by hand, and the random inputs' layout."""

from __future__ import annotations

import pytest
import torch

from reproduction.testing import (
    brute_chamfer,
    brute_farthest_points,
    brute_fps,
    brute_hard_sample,
    brute_knn,
    brute_nearest,
    brute_soft_projection,
    dense_soft_projection,
    float32_ceil,
    nn_squared_distances,
    random_clouds,
    sphere_clouds,
    split_clouds,
)

# Two clouds on a line: 0, 1, 3 and 10, 14.
POS = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [10, 0, 0], [14, 0, 0]])
BATCH = torch.tensor([0, 0, 0, 1, 1])


def test_random_inputs_layout():
    pos, batch = random_clouds([3, 0, 2], seed=1, dtype=torch.float64)
    assert pos.shape == (5, 3) and pos.dtype == torch.float64
    assert batch.tolist() == [0, 0, 0, 2, 2] and bool((pos >= 0).all() and (pos < 1).all())
    assert torch.equal(random_clouds([3, 0, 2], seed=1)[0], pos.float())
    pos, batch = sphere_clouds(7, 3)
    torch.testing.assert_close(pos.norm(dim=1), torch.ones(21))
    assert torch.equal(batch, torch.arange(3).repeat_interleave(7))


def test_float32_ceil_counts_like_torch_cluster():
    assert float32_ceil(25, 0.6) == 16 and float32_ceil(50, 0.3) == 16 and float32_ceil(8, 0.5) == 4


def test_knn_and_nearest_stay_in_the_cloud():
    query = torch.tensor([[2.2, 0, 0], [11.0, 0, 0]])
    rows = brute_knn(POS, query, BATCH, torch.tensor([0, 1]), k=3)
    assert rows[0] == [(pytest.approx(0.64), 2), (pytest.approx(1.44), 1), (pytest.approx(4.84), 0)]
    assert [j for _, j in rows[1]] == [3, 4]  # a cloud of two gives two neighbours
    assert brute_nearest(POS, query, BATCH, torch.tensor([1, 1])) == [3, 3]


def test_farthest_points_continue_greedily():
    points = POS.tolist()
    assert brute_farthest_points(points, 3, members=[0, 1, 2]) == [0, 2, 1]
    assert brute_farthest_points(points, 1, selected=[2], members=[0, 1, 2]) == [0]
    assert brute_fps(POS, BATCH, [2, 2]) == [0, 2, 3, 4]
    assert brute_fps(POS, BATCH, [1, 1], selected=[1, 4]) == [2, 3]


def test_hard_sample_matches_then_completes():
    simplified = torch.tensor([[0.9, 0, 0], [1.2, 0, 0], [13.0, 0, 0]])
    args = (POS, BATCH, simplified, torch.tensor([0, 0, 1]))
    # Both queries of cloud 0 match point 1; the farthest point from it (3) completes.
    assert brute_hard_sample(*args, [2, 1], complete=False) == [1, 4]
    assert brute_hard_sample(*args, [2, 2]) == [1, 2, 4, 3]


def test_soft_projection_references_agree_and_weigh_by_distance():
    query = torch.tensor([[0.5, 0, 0], [12.0, 0, 0]])
    query_batch = torch.tensor([0, 1])
    out = brute_soft_projection(POS, query, BATCH, query_batch, k=2, sigma=1.0)
    # Points 0 and 1 are equally far from 0.5; points 10 and 14 from 12.
    assert out == [[pytest.approx(0.5), 0.0, 0.0], [pytest.approx(12.0), 0.0, 0.0]]
    query = torch.tensor([[0.2, 0.1, 0], [2.0, 0.3, 0], [12.5, 0, 0.4]])
    query_batch = torch.tensor([0, 0, 1])
    for k, sigma in ((2, 0.7), (3, 2.0)):
        expected = torch.tensor(brute_soft_projection(POS, query, BATCH, query_batch, k, sigma))
        dense = dense_soft_projection(POS, query, BATCH, query_batch, k, sigma)
        torch.testing.assert_close(dense, expected, atol=1e-5, rtol=1e-5)


def test_nearest_neighbour_distances_and_chamfer():
    X, Y = [[0.0, 0, 0], [2, 0, 0]], [[1.0, 0, 0]]
    assert nn_squared_distances(X, Y) == [1.0, 1.0] and nn_squared_distances(Y, X) == [1.0]
    assert brute_chamfer(X, Y) == 2.0
    assert split_clouds(POS, BATCH, 3) == [POS[:3].tolist(), POS[3:].tolist(), []]
