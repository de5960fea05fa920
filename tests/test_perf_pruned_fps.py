r"""Farthest point sampling steps on the candidates only (pruned_fps_steps) against the
brute-force continued FPS: the same picks in the same order, with rounds that must widen the
candidates, ties and clouds that need no points; and where farthest_point_sampling takes them."""

import pytest
import torch

import tg_samplenet.ops.farthest_point as farthest_point
import tg_samplenet.ops.pruned_fps as pruned
from reproduction.testing import brute_fps, random_clouds
from tg_samplenet.ops.farthest_point import farthest_point_sampling
from tg_samplenet.ops.pruned_fps import pruned_fps_steps


def distances_to(pos, batch, selected):
    # Exact squared distance of every point to the selected points of its cloud, -1 for them.
    dist = torch.full((pos.size(0),), float("inf"), dtype=pos.dtype)
    for j in range(pos.size(0)):
        same = selected[batch[selected] == batch[j]]
        if same.numel() > 0:
            dist[j] = (pos[same] - pos[j]).pow(2).sum(-1).min()
    dist[selected] = -1.0
    return dist


def run(sizes, counts, num_selected, seed, dtype=torch.float64):
    pos, batch = random_clouds(sizes, seed=seed, dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    selected = torch.randperm(pos.size(0), generator=generator)[:num_selected]
    # Every cloud that needs points has selected points.
    firsts = torch.tensor([sum(sizes[:i]) for i, n in enumerate(sizes) if n > 0])
    selected = torch.unique(torch.cat([selected, firsts]))
    dist = distances_to(pos, batch, selected)
    got = pruned_fps_steps(pos, batch, dist, torch.tensor(counts), len(sizes))
    expected = brute_fps(pos, batch, counts, selected.tolist())
    assert got.tolist() == expected


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force(seed):
    run([120, 0, 60, 200], [5, 0, 9, 12], 40, seed)


@pytest.mark.parametrize("seed", range(3))
def test_widens_the_candidates_when_the_first_round_is_too_small(seed, monkeypatch):
    # One candidate per pick: nearly every round must add points, and the picks still match.
    monkeypatch.setattr(pruned, "CANDIDATES_PER_PICK", 1)
    monkeypatch.setattr(pruned, "MIN_CANDIDATES", 1)
    run([150, 80], [30, 20], 12, seed)


def test_exhausts_a_cloud(monkeypatch):
    monkeypatch.setattr(pruned, "MIN_CANDIDATES", 1)
    monkeypatch.setattr(pruned, "CANDIDATES_PER_PICK", 1)
    run([30], [24], 5, 0)  # at least 24 of the 30 points are free


def test_ties_go_to_the_lowest_index():
    # A grid: many points share the largest distance to the selected corner.
    axis = torch.arange(5, dtype=torch.float64)
    pos = torch.cartesian_prod(axis, axis, torch.zeros(1, dtype=torch.float64))
    batch = torch.zeros(pos.size(0), dtype=torch.long)
    selected = torch.tensor([0, 24])
    dist = distances_to(pos, batch, selected)
    got = pruned_fps_steps(pos, batch, dist, torch.tensor([6]), 1)
    assert got.tolist() == brute_fps(pos, batch, [6], [0, 24])


def test_no_new_points():
    pos, batch = random_clouds([10, 5], seed=0)
    dist = torch.zeros(15)
    assert pruned_fps_steps(pos, batch, dist, torch.tensor([0, 0]), 2).numel() == 0


# Where farthest_point_sampling takes the pruned steps.


def record_pruned_calls(monkeypatch):
    calls = []

    def spy(pos, batch, dist, counts, num_clouds):
        calls.append(counts.tolist())
        return pruned_fps_steps(pos, batch, dist, counts, num_clouds)

    monkeypatch.setattr(farthest_point, "pruned_fps_steps", spy)
    return calls


@pytest.mark.parametrize("seed", range(2))
def test_continued_sampling_takes_the_pruned_steps(seed, monkeypatch):
    calls = record_pruned_calls(monkeypatch)
    pos, batch = random_clouds([300, 0, 5, 120], seed=seed, dtype=torch.float64)
    selected = torch.tensor([3, 17, 250, 301, 400])  # clouds 0, 2 and 3
    counts = torch.tensor([20, 0, 4, 11])
    got = farthest_point_sampling(pos, batch, counts, selected)
    assert calls == [counts.tolist()]
    assert got.tolist() == brute_fps(pos, batch, counts.tolist(), selected.tolist())


def test_float32_points_match_the_dense_steps(monkeypatch):
    # The pruned steps against the dense ones they replace, on float32 points.
    pos, batch = random_clouds([2000, 700], seed=3)
    selected = torch.randperm(2700, generator=torch.Generator().manual_seed(3))[:300]
    selected = torch.unique(torch.cat([selected, torch.tensor([0, 2000])]))
    counts = torch.tensor([40, 25])
    dense = farthest_point_sampling(pos, batch, counts, selected, random_start=True)
    calls = record_pruned_calls(monkeypatch)
    assert farthest_point_sampling(pos, batch, counts, selected).tolist() == dense.tolist()
    assert calls == [counts.tolist()]


@pytest.mark.parametrize("random_start", [False, True])
def test_a_cloud_without_selected_points_keeps_the_dense_steps(random_start, monkeypatch):
    calls = record_pruned_calls(monkeypatch)
    pos, batch = random_clouds([40, 30], seed=4, dtype=torch.float64)
    selected = torch.tensor([5, 9])  # cloud 1 starts from nothing
    counts = torch.tensor([6, 7])
    got = farthest_point_sampling(pos, batch, counts, selected, random_start=random_start)
    assert calls == []
    if not random_start:
        assert got.tolist() == brute_fps(pos, batch, [6, 7], [5, 9])
