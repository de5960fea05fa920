import copy
import inspect
import warnings

import numpy as np
import pytest
import torch
import torch_geometric.nn

from tg_samplenet.nn.fps_drop_in import SampleNetFPS
from tg_samplenet.nn.sampler import SampleNet
from tg_samplenet.ops.farthest_point import fps


def float32_ceil(n, ratio):
    return int(np.ceil(np.float32(n) * np.float32(ratio)))


def pyg_radius_works():
    # PyG 2.7 runs radius on torch_cluster; PyG 2.8 needs pyg-lib and ignores torch_cluster.
    try:
        torch_geometric.nn.radius(torch.zeros(1, 3), torch.zeros(1, 3), 1.0)
    except ImportError:
        return False
    return True


def eval_index(sampler, pos, batch, **kwargs):
    reference = copy.deepcopy(sampler).eval()
    with torch.no_grad():
        return reference(pos, batch, **kwargs).index


@pytest.fixture
def sampler_fps():
    torch.manual_seed(0)
    return SampleNetFPS(SampleNet(num_out_points=64))


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
    if pyg_radius_works():  # PyG's own fps runs here
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


def test_is_a_module_of_the_model_it_serves(sampler_fps, make_clouds):
    pos, batch = make_clouds([40, 24], seed=5)
    host = torch.nn.Module()
    host.fps = sampler_fps
    assert set(host.state_dict()) == {f"fps.sampler.{k}" for k in sampler_fps.sampler.state_dict()}
    torch.manual_seed(1)
    other = torch.nn.Module()
    other.fps = SampleNetFPS(SampleNet(num_out_points=64))
    assert not torch.equal(other.fps(pos, batch, 0.5), host.fps(pos, batch, 0.5))
    other.load_state_dict(host.state_dict())
    assert torch.equal(other.fps(pos, batch, 0.5), host.fps(pos, batch, 0.5))


def test_moves_with_the_model(sampler_fps, make_clouds, device):
    pos, batch = make_clouds([30, 18], seed=6)
    expected = eval_index(sampler_fps.sampler, pos, batch, ratio=0.5)
    host = torch.nn.Sequential(torch.nn.Linear(3, 3))
    host.fps = sampler_fps
    host.to(device)
    assert next(sampler_fps.sampler.parameters()).device.type == device.type
    index = sampler_fps(pos.to(device), batch.to(device), 0.5)
    assert index.device.type == device.type
    assert torch.equal(index.cpu(), expected)
    with pytest.raises(ValueError, match="move the model"):
        sampler_fps(pos.to("meta"), None, 0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_accepts_the_position_dtypes_fps_accepts(sampler_fps, make_clouds, dtype):
    pos, batch = make_clouds([50, 33], seed=7, dtype=dtype)
    index = sampler_fps(pos, batch, 0.25)
    # Cast to the sampler's float32, as the docstring says.
    assert torch.equal(index, eval_index(sampler_fps.sampler, pos.float(), batch, ratio=0.25))
    with pytest.raises(TypeError, match="floating point"):
        sampler_fps(torch.zeros(10, 3, dtype=torch.long))


def test_casts_with_the_model_but_keeps_float32_at_half_precision(sampler_fps, make_clouds):
    pos, batch = make_clouds([45, 20], seed=8, dtype=torch.float64)
    host = torch.nn.Module()
    host.fps = sampler_fps
    host.double()
    assert next(sampler_fps.sampler.parameters()).dtype == torch.float64
    assert torch.equal(
        sampler_fps(pos, batch, 0.5), eval_index(sampler_fps.sampler, pos, batch, ratio=0.5)
    )
    for cast in (host.half, host.bfloat16, lambda: host.to(torch.float16)):
        cast()
        assert next(sampler_fps.sampler.parameters()).dtype == torch.float32
    assert SampleNetFPS(SampleNet(8).half()).sampler.point_mlp.lins[0].weight.dtype == torch.float32


def test_warns_once_per_size_past_what_the_sampler_learned(make_clouds):
    pos, batch = make_clouds([100, 60], seed=9)
    sampler_fps = SampleNetFPS(SampleNet(num_out_points=16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler_fps(pos, batch, 0.1)  # 10 and 6 points: within what it learned
        assert caught == []
        sampler_fps(pos, batch, 0.5)  # 50 points per cloud
        sampler_fps(pos, batch, 0.5)
        sampler_fps(pos, batch, 0.25)  # 25
    assert all(w.filename == __file__ for w in caught)  # points at the caller
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "asked for 50 points per cloud" in messages[0] and "learned 16" in messages[0]
    assert "asked for 25 points per cloud" in messages[1]


def test_rejects_other_samplers_and_bad_ratios(sampler_fps):
    with pytest.raises(TypeError, match="wraps a SampleNet"):
        SampleNetFPS(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"ratio must lie in \(0, 1\]"):
        sampler_fps(torch.rand(10, 3), ratio=1.5)


def test_repr(sampler_fps):
    assert repr(sampler_fps) == "SampleNetFPS(SampleNet(64, k=7))"


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


@pytest.mark.skipif(not pyg_radius_works(), reason="PyG's radius needs torch_cluster or pyg-lib")
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
    assert all(p.grad is not None for p in sa1.conv.parameters())
    assert all(p.grad is None for p in sa1.sample.parameters())  # indices carry no gradient
    # Same shapes as PyG's own fps in the same module.
    reference = SAModule(0.5, 0.4, MLP([3, 16, 32]))
    assert reference(None, pos, batch)[0].shape == (52, 32)


def test_fps_per_layer_calls_the_running_layers_sampler():
    from tg_samplenet import FPSPerLayer

    calls = []

    def recorder(name):
        def sample(x, batch=None, ratio=0.5, random_start=True, batch_size=None):
            calls.append((name, x.size(0), ratio))
            return fps(x, batch, ratio, False, batch_size)

        return sample

    class Layer(torch.nn.Module):
        def __init__(self, inner=None):
            super().__init__()
            self.inner = inner

        def forward(self, pos):
            idx = shared_fps(pos, None, 0.5)  # the module-level fps of a foreign model
            return pos[idx] if self.inner is None else self.inner(pos[idx])

    outer, inner = Layer(), Layer()
    outer.inner = inner
    router = FPSPerLayer({outer: recorder("outer"), inner: recorder("inner")})
    shared_fps = router
    pos = torch.rand(40, 3, generator=torch.Generator().manual_seed(0))
    assert outer(pos).shape == (10, 3)
    assert calls == [("outer", 40, 0.5), ("inner", 20, 0.5)]  # the innermost layer wins
    with pytest.raises(RuntimeError, match="outside all of its layers"):
        router(pos)
    fallback = FPSPerLayer({inner: recorder("x")}, default=fps)
    assert torch.equal(fallback(pos, None, 0.5, False), fps(pos, None, 0.5, False))
    router.remove()
    with pytest.raises(RuntimeError, match="outside"):
        outer(pos)  # hooks removed: no layer is running for the router
    with pytest.raises(TypeError, match="must map modules"):
        FPSPerLayer({"sa1": fps})
    with pytest.raises(TypeError, match="non-empty dict"):
        FPSPerLayer({})


def test_fps_per_layer_holds_the_samplers_as_submodules():
    from tg_samplenet import FPSPerLayer

    torch.manual_seed(0)
    layer = torch.nn.Linear(1, 1)
    router = FPSPerLayer({layer: SampleNetFPS(SampleNet(num_out_points=8))})
    assert any(k.startswith("samplers.0.sampler.") for k in router.state_dict())
    assert next(router.double().parameters()).dtype == torch.float64
