r"""Farthest point sampling steps on the candidates only (pruned_fps_steps) against the
brute-force continued FPS: the same picks in the same order, with rounds that must widen the
candidates, ties and clouds that need no points."""

import pytest
import torch

import tg_samplenet.ops.pruned_fps as pruned
from tg_samplenet.ops.pruned_fps import pruned_fps_steps
from tg_samplenet.testing import brute_fps, random_clouds


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
