import inspect

import numpy as np
import pytest
import torch
import torch_geometric.nn

from tg_samplenet.nn.fps_drop_in import SampleNetFPS
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.farthest_point import fps


def float32_ceil(n, ratio):
    return int(np.ceil(np.float32(n) * np.float32(ratio)))


def has_torch_cluster():
    try:
        import torch_cluster  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def sampler_fps():
    torch.manual_seed(0)
    return SampleNetFPS(SampleNet(num_out_points=16))


def test_signature_matches_pyg_fps(sampler_fps):
    def described(function):
        return [
            (p.name, p.default, p.kind) for p in inspect.signature(function).parameters.values()
        ]

    expected = described(torch_geometric.nn.fps)
    names = [name for name, _, _ in expected]
    assert names == ["x", "batch", "ratio", "random_start", "batch_size"]
    assert described(sampler_fps) == expected


@pytest.mark.parametrize("ratio", [0.6, 0.3, 0.25, 1.0])
def test_counts_equal_fps(sampler_fps, make_clouds, ratio):
    sizes = [25, 50, 1, 7, 40]
    pos, batch = make_clouds(sizes, seed=1)
    index = sampler_fps(pos, batch, ratio=ratio)
    counts = torch.bincount(batch[index], minlength=5).tolist()
    assert counts == [float32_ceil(n, ratio) for n in sizes]
    assert counts == torch.bincount(batch[fps(pos, batch, ratio=ratio)], minlength=5).tolist()
    if has_torch_cluster():
        reference = torch_geometric.nn.fps(pos, batch, ratio=ratio)
        assert counts == torch.bincount(batch[reference], minlength=5).tolist()
    picked = batch[index]
    assert bool((picked[1:] >= picked[:-1]).all())  # grouped by cloud in batch order
    assert index.unique().numel() == index.numel()


def test_called_like_pyg_models_call_fps(sampler_fps, make_clouds):
    pos, batch = make_clouds([30, 12], seed=2)
    positional = sampler_fps(pos, batch, 0.5)
    assert torch.equal(sampler_fps(pos, ratio=0.5, batch=batch), positional)  # TransitionDown
    assert torch.equal(sampler_fps(pos, batch, 0.5, False, 2), positional)
    single = sampler_fps(pos[:30])  # no batch vector: one cloud, ratio 0.5
    assert single.numel() == 15 and bool((single < 30).all())
    trailing = sampler_fps(pos, batch, ratio=0.5, batch_size=3)  # cloud 2 is empty
    assert torch.equal(trailing, positional)


def test_runs_the_sampler_in_eval_mode_without_gradients(sampler_fps, make_clouds):
    pos, batch = make_clouds([20], seed=3)
    sampler_fps.sampler.train()
    index = sampler_fps(pos.requires_grad_(), batch, ratio=0.5)
    assert sampler_fps.sampler.training  # its mode is restored
    assert index.dtype == torch.long and not index.requires_grad
    sampler_fps.sampler.eval()
    assert torch.equal(sampler_fps.sampler(pos, batch, ratio=0.5).index, index)


def test_rejects_other_samplers_and_bad_ratios(sampler_fps):
    with pytest.raises(TypeError, match="wraps a SampleNet"):
        SampleNetFPS(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"ratio must lie in \(0, 1\]"):
        sampler_fps(torch.rand(10, 3), ratio=1.5)


def test_repr(sampler_fps):
    assert repr(sampler_fps) == "SampleNetFPS(SampleNet(16, k=7))"


class SAModule(torch.nn.Module):
    # PyG's examples/pointnet2_classification.py set-abstraction module, with the sampler
    # passed in where the example calls torch_geometric.nn.fps.
    def __init__(self, ratio, r, nn, sample=torch_geometric.nn.fps):
        super().__init__()
        self.ratio, self.r, self.sample = ratio, r, sample
        self.conv = torch_geometric.nn.PointNetConv(nn, add_self_loops=False)

    def forward(self, x, pos, batch):
        idx = self.sample(pos, batch, ratio=self.ratio)
        row, col = torch_geometric.nn.radius(
            pos, pos[idx], self.r, batch, batch[idx], max_num_neighbors=64
        )
        edge_index = torch.stack([col, row], dim=0)
        x_dst = None if x is None else x[idx]
        x = self.conv((x, x_dst), (pos, pos[idx]), edge_index)
        return x, pos[idx], batch[idx]


@pytest.mark.skipif(not has_torch_cluster(), reason="PyG's radius needs torch_cluster")
def test_inside_a_pointnet2_set_abstraction(sampler_fps, make_clouds):
    from torch_geometric.nn import MLP

    sizes = [64, 40]
    pos, batch = make_clouds(sizes, seed=4)
    torch.manual_seed(4)
    sa1 = SAModule(0.5, 0.4, MLP([3, 16, 32]), sample=sampler_fps)
    sa2 = SAModule(0.25, 0.8, MLP([32 + 3, 32, 64]), sample=sampler_fps)
    x, pos1, batch1 = sa1(None, pos, batch)
    assert x.shape == (32 + 20, 32)
    assert torch.bincount(batch1).tolist() == [32, 20]
    x, pos2, batch2 = sa2(x, pos1, batch1)
    assert x.shape == (8 + 5, 64) and torch.bincount(batch2).tolist() == [8, 5]
    x.sum().backward()  # the task network still trains through the sampled points
    assert all(p.grad is not None for p in sa1.parameters())
    # Same shapes as PyG's own fps in the same module.
    reference = SAModule(0.5, 0.4, MLP([3, 16, 32]))
    assert reference(None, pos, batch)[0].shape == (52, 32)
