import pytest
import torch

from tg_samplenet.ops.matching import first_occurrence, hard_sample
from tg_samplenet.testing import brute_hard_sample


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
