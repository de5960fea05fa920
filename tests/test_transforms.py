import copy

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.transforms import Compose, FixedPoints, NormalizeScale

from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.transforms import SampleNetSampling


def make_data(num_points=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    edge = torch.randint(0, num_points, (2, 30), generator=generator)
    return Data(
        pos=torch.rand(num_points, 3, generator=generator),
        x=torch.randn(num_points, 4, generator=generator),
        normal=torch.randn(num_points, 3, generator=generator),
        part=torch.randint(0, 5, (num_points,), generator=generator),
        y=torch.tensor([2]),
        edge_index=edge,
        edge_attr=torch.randn(30, 2, generator=generator),
        scale=torch.tensor(1.5),
    )


@pytest.fixture
def sampler():
    torch.manual_seed(0)
    return SampleNet(num_out_points=16)


def eval_index(sampler, pos, **kwargs):
    return copy.deepcopy(sampler).eval()(pos, **kwargs).index


def test_carries_every_per_point_attribute(sampler):
    data = make_data()
    original = data.clone()
    out = SampleNetSampling(sampler)(data)
    index = eval_index(sampler, original.pos)
    assert out.num_nodes == index.numel() == 16
    for key in ("pos", "x", "normal", "part"):
        assert torch.equal(out[key], original[key][index]), key
    for key in ("y", "edge_index", "edge_attr", "scale"):
        assert torch.equal(out[key], original[key]), key


def test_changes_the_same_attributes_as_fixed_points(sampler):
    ours, theirs = make_data(), make_data()
    del ours.scale, theirs.scale  # FixedPoints fails on 0-d tensors; ours keeps them
    ours = SampleNetSampling(sampler, num_samples=10)(ours)
    theirs = FixedPoints(10, replace=False)(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_ratio_gives_fps_counts(sampler):
    for n in (25, 7, 1):
        out = SampleNetSampling(sampler, ratio=0.6)(make_data(n))
        assert out.num_nodes == min(16, int(np.ceil(np.float32(n) * np.float32(0.6))))


def test_runs_the_sampler_in_eval_mode_and_restores_it(sampler):
    sampler.train()
    data = make_data()
    pos = data.pos.clone()
    out = SampleNetSampling(sampler, num_samples=8)(data)
    assert sampler.training
    assert torch.equal(out.pos, pos[eval_index(sampler, pos, num_samples=8)])
    assert not out.pos.requires_grad


def test_in_a_dataset_pipeline(sampler):
    transform = Compose([NormalizeScale(), SampleNetSampling(sampler, num_samples=12)])
    data_list = [transform(make_data(30 + i, seed=i)) for i in range(3)]
    batch = next(iter(DataLoader(data_list, batch_size=3)))
    assert batch.pos.shape == (36, 3) and batch.x.shape == (36, 4)
    assert torch.bincount(batch.batch).tolist() == [12, 12, 12]
    assert batch.y.tolist() == [2, 2, 2]


def test_bad_input(sampler):
    with pytest.raises(TypeError, match="wraps a SampleNet"):
        SampleNetSampling(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="not both"):
        SampleNetSampling(sampler, num_samples=4, ratio=0.5)
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        SampleNetSampling(sampler, num_samples=0)
    transform = SampleNetSampling(sampler)
    with pytest.raises(TypeError, match="one Data object"):
        transform(Batch.from_data_list([make_data(), make_data()]))
    with pytest.raises(ValueError, match="needs data.pos"):
        transform(Data(x=torch.randn(5, 3)))


def test_repr(sampler):
    assert (
        repr(SampleNetSampling(sampler)) == "SampleNetSampling(SampleNet(16, k=7), num_samples=16)"
    )
    assert repr(SampleNetSampling(sampler, ratio=0.5)).endswith("ratio=0.5)")
