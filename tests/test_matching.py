import pytest
import torch

import tg_samplenet.ops.matching as matching
from reproduction.testing import brute_hard_sample, random_clouds
from tg_samplenet.ops.matching import first_occurrence, hard_sample


def test_first_occurrence_matches_python():
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, 6, (40,), generator=generator)
    seen, expected = set(), []
    for value in index.tolist():
        expected.append(value not in seen)
        seen.add(value)
    assert first_occurrence(index).tolist() == expected
    assert first_occurrence(index[:0]).tolist() == []


@pytest.fixture
def problem(make_clouds):
    sizes = [20, 6, 1, 12]
    pos, batch = make_clouds(sizes, seed=1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    # Cloud 0: eight queries close to only three input points, so FPS must complete it.
    near = torch.tensor([4, 4, 9, 4, 17, 9, 17, 4])
    q0 = pos[near] + 1e-3 * torch.randn(8, 3, generator=generator, dtype=torch.float64)
    rest = torch.rand(24, 3, generator=generator, dtype=torch.float64)
    simplified = torch.cat([q0, rest])
    simplified_batch = torch.arange(4).repeat_interleave(8)
    counts = torch.tensor([8, 6, 1, 5])
    return pos, batch, simplified, simplified_batch, counts


def test_hard_sample_matches_brute_force(backend, problem):
    index = hard_sample(*problem)
    assert index.tolist() == brute_hard_sample(*problem)
    pos, batch, _, _, counts = problem
    assert torch.bincount(batch[index], minlength=4).tolist() == counts.tolist()
    assert index.unique().numel() == index.numel()
    assert index[:3].tolist() == [4, 9, 17]  # matched points first, in query order


def test_hard_sample_without_completion(backend, problem):
    index = hard_sample(*problem, complete=False)
    assert index.tolist() == brute_hard_sample(*problem, complete=False)
    assert index[:3].tolist() == [4, 9, 17]
    assert int((problem[1][index] == 0).sum()) == 3


def test_hard_sample_skips_clouds_without_queries(problem):
    pos, batch, simplified, simplified_batch, counts = problem
    keep = simplified_batch != 1  # cloud 1 gets no query: FPS alone fills it
    args = (pos, batch, simplified[keep], simplified_batch[keep], counts)
    index = hard_sample(*args)
    assert index.tolist() == brute_hard_sample(*args)
    cloud_1 = index[batch[index] == 1].tolist()
    assert cloud_1[0] == 20 and sorted(cloud_1) == list(range(20, 26))


@pytest.fixture
def progressive_problem():
    # A progressive sampler's output: 48 simplified points per cloud, 3 to 5 asked for.
    # Cloud 1's first 30 simplified points all lie at one input point, so the first round
    # (2 x 4 + 16 = 24 points) finds one distinct match and that cloud is matched in full.
    sizes = [50, 40, 30]
    pos, batch = random_clouds(sizes, seed=3, dtype=torch.float64)
    generator = torch.Generator().manual_seed(4)
    simplified = torch.rand(48 * 3, 3, generator=generator, dtype=torch.float64)
    simplified[48 : 48 + 30] = pos[60] + 1e-4
    simplified_batch = torch.arange(3).repeat_interleave(48)
    counts = torch.tensor([3, 4, 5])
    return pos, batch, simplified, simplified_batch, counts


@pytest.mark.parametrize("complete", [True, False])
def test_a_prefix_of_the_simplified_points_gives_the_same_sample(
    backend, progressive_problem, complete, monkeypatch
):
    rounds = []
    distinct_matches = matching._distinct_matches

    def recorded(pos, batch, simplified, simplified_batch, counts):
        rounds.append(simplified.size(0))
        return distinct_matches(pos, batch, simplified, simplified_batch, counts)

    monkeypatch.setattr(matching, "_distinct_matches", recorded)
    index = hard_sample(*progressive_problem, complete=complete)
    assert index.tolist() == brute_hard_sample(*progressive_problem, complete=complete)
    assert rounds == [24 + 22 + 26, 48 * 3]  # the prefix, then all points for cloud 1
    rounds.clear()
    pos, batch, simplified, simplified_batch, counts = progressive_problem
    keep = simplified_batch != 1
    args = (pos, batch, simplified[keep], simplified_batch[keep], counts)
    assert hard_sample(*args, complete=complete).tolist() == brute_hard_sample(
        *args, complete=complete
    )
    assert rounds == [22 + 26]  # the prefix holds every cloud's matches


def test_a_prefix_keeps_the_order_of_exact_ties(backend, monkeypatch):
    # Points on an integer grid (duplicates, queries equally far from several points): the
    # first round's matches are those of the full matching, ties included.
    pos, batch = random_clouds([60, 45], seed=5)
    pos = (pos * 3).round()
    generator = torch.Generator().manual_seed(6)
    simplified = (torch.rand(2 * 64, 3, generator=generator) * 6).round() / 2
    simplified_batch = torch.arange(2).repeat_interleave(64)
    counts = torch.tensor([6, 9])
    args = (pos, batch, simplified, simplified_batch, counts)
    with_prefix = hard_sample(*args)
    monkeypatch.setattr(matching, "PREFIX_EXTRA", 64)  # no prefix
    assert torch.equal(hard_sample(*args), with_prefix)
