import pytest
import torch

from reproduction.baselines import fps_sample, random_sample, voxel_sample
from reproduction.reporting import markdown_table, results_table, write_results
from reproduction.testing import brute_fps, random_clouds

SIZES = [1024, 500, 20, 1, 300]


def make_batch(seed=0):
    return random_clouds(SIZES, seed=seed)


@pytest.mark.parametrize("sample", [fps_sample, random_sample, voxel_sample])
def test_counts_uniqueness_and_grouping(sample):
    pos, batch = make_batch()
    index = sample(pos, batch, 32)
    assert torch.bincount(batch[index], minlength=5).tolist() == [min(32, n) for n in SIZES]
    assert bool((batch[index][1:] >= batch[index][:-1]).all())
    assert index.unique().numel() == index.numel()
    assert sample(pos[:0], batch[:0], 8).numel() == 0


def test_fps_sample_is_greedy_farthest_point_order():
    pos, batch = make_batch(1)
    index = fps_sample(pos, batch, 16)
    assert index.tolist() == brute_fps(pos, batch, [min(16, n) for n in SIZES])


def test_random_sample_is_seeded_and_uniform():
    pos, batch = make_batch()
    first = random_sample(pos, batch, 32, torch.Generator().manual_seed(3))
    again = random_sample(pos, batch, 32, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    # Each point of the 20-point cloud is kept with probability 8/20 = 0.4.
    gen = torch.Generator().manual_seed(0)
    small = (batch == 2).nonzero().view(-1)
    hits = torch.zeros(pos.size(0))
    for _ in range(2000):
        hits[random_sample(pos, batch, 8, gen)] += 1
    freq = hits[small] / 2000
    assert torch.allclose(freq, torch.full_like(freq, 0.4), atol=0.05)


def _coverage(pos, sample):
    # Largest distance from an input point to its nearest sampled point.
    return torch.cdist(pos, pos[sample]).min(1).values.max()


def test_voxel_sample_covers_the_cloud_better_than_random():
    gen = torch.Generator().manual_seed(0)
    worse = 0
    for _ in range(5):
        pos = torch.rand(2000, 3, generator=gen)
        batch = torch.zeros(2000, dtype=torch.long)
        voxel = _coverage(pos, voxel_sample(pos, batch, 64))
        rand = _coverage(pos, random_sample(pos, batch, 64, gen))
        worse += int(voxel >= rand)
    assert worse == 0


def test_results_files(tmp_path):
    data = write_results(
        tmp_path,
        "classification",
        "accuracy",
        True,
        0.9,
        {"fps": {32: 0.5, 8: 0.25}, "samplenet": {32: 0.75}},
        num_points=1024,
    )
    assert (tmp_path / "results.json").exists()
    table = (tmp_path / "results.md").read_text()
    assert "m=32 (SR 32)" in table and "m=8 (SR 128)" in table
    assert "| samplenet | 0.75 | – |" in table
    assert results_table(data, 1024) in table
    assert markdown_table(["a"], [[1.5]]).splitlines()[-1] == "| 1.5 |"
