import numpy as np
import pytest
import torch

from reproduction.testing import brute_fps, random_clouds
from tg_samplenet.ops.batch import rank_in_cloud, sample_counts
from tg_samplenet.ops.farthest_point import farthest_point_sampling


def run(pos, batch, counts, selected=None, **kwargs):
    counts = torch.tensor(counts, device=pos.device)
    if selected is not None:
        selected = torch.tensor(selected, dtype=torch.long, device=pos.device)
    return farthest_point_sampling(pos, batch, counts, selected, **kwargs).tolist()


def test_continuation_matches_brute_force(backend, device, make_clouds):
    sizes = [20, 9, 15, 1, 6]
    pos, batch = make_clouds(sizes, seed=0, dtype=torch.float64, device=device)
    # Clouds 0 and 2 continue from chosen points (given out of order), the others start.
    selected = [3, 17, 11, 29, 40, 33]
    counts = [8, 4, 6, 1, 6]
    expected = brute_fps(pos, batch, counts, selected)
    assert run(pos, batch, counts, selected) == expected


def test_start_without_a_selected_set_matches_brute_force(make_clouds):
    sizes = [12, 30]
    pos, batch = make_clouds(sizes, seed=1, dtype=torch.float64)
    counts = [12, 10]
    assert run(pos, batch, counts) == brute_fps(pos, batch, counts)


def test_never_repeats_an_index_with_duplicate_points():
    # Five distinct points, each present three times, in one cloud and in a second cloud.
    base = torch.rand(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cloud = base.repeat(3, 1)
    pos = torch.cat([cloud, cloud])
    batch = torch.repeat_interleave(torch.arange(2), 15)
    selected = [0, 5, 10]  # three copies of the same point in cloud 0
    index = run(pos, batch, [12, 15], selected)
    first, second = index[:12], index[12:]
    assert sorted(first + selected) == list(range(15))
    assert sorted(second) == list(range(15, 30))
    assert index == brute_fps(pos, batch, [12, 15], selected)


@pytest.mark.parametrize("grid", [False, True])
def test_small_clouds_compare_with_all_selected_points_as_the_search_does(
    backend, grid, monkeypatch
):
    # Small clouds get their distances to the selected points from a dense comparison,
    # larger ones from the nearest-neighbour search: the same values, hence the same picks,
    # with duplicate points and exact ties (points on an integer grid) and empty clouds.
    import tg_samplenet.ops.farthest_point as farthest_point

    sizes = [40, 0, 25, 60, 1]
    pos, batch = random_clouds(sizes, seed=7)
    if grid:
        pos = (pos * 3).round()
    generator = torch.Generator().manual_seed(8)
    selected = torch.unique(torch.randperm(pos.size(0), generator=generator)[:20])
    selected = torch.unique(torch.cat([selected, torch.tensor([0, 65, 125])]))
    counts = torch.tensor([10, 0, 7, 20, 0])
    seeded = torch.zeros(len(sizes), dtype=torch.bool)
    seeded[batch[selected]] = True
    query = seeded[batch].nonzero().view(-1)
    dense = farthest_point._selected_distances(pos, batch, selected, query, len(sizes))
    expected = farthest_point_sampling(pos, batch, counts, selected)
    monkeypatch.setattr(farthest_point, "_DENSE_PAIRS", 0)
    searched = farthest_point._selected_distances(pos, batch, selected, query, len(sizes))
    assert torch.equal(dense, searched)
    assert torch.equal(farthest_point_sampling(pos, batch, counts, selected), expected)
    # Each value is the smallest (q - s).pow(2).sum(-1) over the selected points of q's cloud.
    for value, j in zip(dense.tolist(), query.tolist(), strict=True):
        same = selected[batch[selected] == batch[j]]
        assert value == float((pos[same] - pos[j]).pow(2).sum(-1).min())
    if not grid:  # no exact ties: the brute force's order
        assert expected.tolist() == brute_fps(pos, batch, counts.tolist(), selected.tolist())


def test_counts_are_respected(make_clouds):
    sizes = [10, 4, 7]
    pos, batch = make_clouds(sizes, seed=3)
    counts = [3, 4, 0]
    index = torch.tensor(run(pos, batch, counts, selected=[1, 2]))
    assert torch.bincount(batch[index], minlength=3).tolist() == counts
    assert index.unique().numel() == index.numel()
    assert not set(index.tolist()) & {1, 2}


def test_clouds_of_one_point(device):
    pos = torch.rand(5, 3, device=device)
    batch = torch.tensor([0, 1, 2, 2, 2], device=device)
    assert run(pos, batch, [1, 1, 1]) == [0, 1, 2]
    # An already chosen single point leaves nothing to add to its cloud.
    expected = brute_fps(pos, batch, [1, 0, 2], [1])
    assert run(pos, batch, [1, 0, 2], selected=[1]) == expected


def test_nothing_to_pick(make_clouds):
    pos, batch = make_clouds([4, 3])
    assert run(pos, batch, [0, 0]) == []
    assert run(pos[:0], batch[:0], []) == []


def test_random_start_is_reproducible_with_a_generator(make_clouds):
    sizes = [30, 30, 1]
    pos, batch = make_clouds(sizes, seed=4)
    counts = [10, 10, 1]
    first = run(pos, batch, counts, random_start=True, generator=torch.Generator().manual_seed(5))
    again = run(pos, batch, counts, random_start=True, generator=torch.Generator().manual_seed(5))
    assert first == again
    assert len(set(first)) == len(first)
    picked = batch[torch.tensor(first)]
    assert torch.bincount(picked, minlength=3).tolist() == counts
    # From its (random) start, each cloud continues greedily.
    assert first[1:10] == brute_fps(pos, batch, [9, 0, 0], [first[0]])
    starts = {
        run(pos, batch, counts, random_start=True, generator=torch.Generator().manual_seed(s))[0]
        for s in range(8)
    }
    assert len(starts) > 1


def test_sample_counts():
    sizes = torch.tensor([0, 1, 5, 25, 50, 100])
    assert sample_counts(sizes, num_samples=10).tolist() == [0, 1, 5, 10, 10, 10]
    for ratio in (0.3, 0.6, 1.0):
        expected = [int(np.ceil(np.float32(n) * np.float32(ratio))) for n in sizes.tolist()]
        assert sample_counts(sizes, num_samples=10, ratio=ratio).tolist() == expected
    with pytest.raises(ValueError, match="needs num_samples or ratio"):
        sample_counts(sizes)


def test_rank_in_cloud():
    batch = torch.tensor([0, 0, 0, 2, 2, 3])
    expected, seen = [], {}
    for b in batch.tolist():
        expected.append(seen.get(b, 0))
        seen[b] = seen.get(b, 0) + 1
    assert rank_in_cloud(batch, 4).tolist() == expected


@pytest.fixture
def chunked(monkeypatch):
    # Force the chunked (Z-order) update on small clouds, with chunks of four points.
    import tg_samplenet.ops.farthest_point as module

    monkeypatch.setattr(module, "_CHUNKED_ABOVE", 0)
    monkeypatch.setattr(module, "_CHUNK", 4)


def test_chunked_steps_match_brute_force(chunked, make_clouds):
    sizes = [20, 9, 15, 1, 6]
    pos, batch = make_clouds(sizes, seed=3, dtype=torch.float64)
    selected = [3, 17, 11, 29, 40, 33]
    counts = [8, 4, 6, 1, 6]
    assert run(pos, batch, counts, selected) == brute_fps(pos, batch, counts, selected)
    counts = [20, 9, 15, 1, 6]  # every point: the order of a full farthest point sampling
    assert run(pos, batch, counts) == brute_fps(pos, batch, counts)


def test_chunked_steps_never_repeat_with_duplicate_points(chunked):
    base = torch.rand(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pos = base.repeat(3, 1)
    batch = torch.zeros(15, dtype=torch.long)
    selected = [0, 5, 10]
    index = run(pos, batch, [12], selected)
    # Exact ties may be broken in another order than the dense path, never by repeating.
    assert sorted(index + selected) == list(range(15))
