r"""The recomputed max pool that trains SampleNet at large N: its values, running statistics
and gradients against the plain path (the plain path with BatchNorm's statistics detached,
for the gradients of the point MLP), and the threshold that keeps every example on the plain
path. (Under torchrun, tests/test_distributed.py checks the statistics merged over two
processes.)"""

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import MLP, global_max_pool

import tg_samplenet.nn.recomputed_max_pool as recomputed
from reproduction.config import CLASSIFICATION, RECONSTRUCTION, REGISTRATION
from tg_samplenet import SampleNet
from tg_samplenet.nn.recomputed_max_pool import recomputed_max_pool, use_recomputed_pool
from tg_samplenet.training.distributed import SyncBatchNorm

CHANNELS = [3, 16, 16, 32]


def make_mlp(seed: int = 0, **kwargs) -> MLP:
    torch.manual_seed(seed)
    mlp = MLP(CHANNELS, norm="batch_norm", plain_last=False, **kwargs).double()
    with torch.no_grad():  # non-trivial affine parameters, one negative scale per layer
        for norm in mlp.norms:
            norm.module.weight.uniform_(0.5, 1.5)[0] = -0.7
            norm.module.bias.uniform_(-0.5, 0.5)
    return mlp


def detached_statistics_pool(mlp: MLP, pos, batch, num_clouds):
    # The plain path, except that BatchNorm's batch statistics carry no gradient.
    x = pos
    for lin, norm in zip(mlp.lins, mlp.norms):
        z = lin(x)
        var, mean = torch.var_mean(z.detach(), dim=0, unbiased=False)
        bn = norm.module
        x = F.batch_norm(z, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps).relu()
    return global_max_pool(x, batch, size=num_clouds)


def clouds(sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pos = torch.rand(sum(sizes), 3, generator=generator, dtype=torch.float64) * 2 - 1
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, batch


# Chunks of 64 points: clouds that fill, straddle and share chunks, a point, an empty cloud.
SIZES = [150, 1, 40, 0, 7, 300, 64]


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(recomputed, "CHUNK", 64)


def grads(mlp):
    return [p.grad.clone() for p in mlp.parameters()]


def test_values_and_running_statistics_equal_the_plain_path(small_chunks):
    pos, batch = clouds(SIZES)
    B = len(SIZES)
    ours, plain = make_mlp(), make_mlp()
    h = recomputed_max_pool(ours, pos, batch, B)
    expected = global_max_pool(plain(pos), batch, size=B)
    torch.testing.assert_close(h, expected, rtol=1e-10, atol=1e-10)
    assert bool((h[3] == 0).all())  # the empty cloud pools to zero
    for a, b in zip(ours.norms, plain.norms):
        torch.testing.assert_close(a.module.running_mean, b.module.running_mean)
        torch.testing.assert_close(a.module.running_var, b.module.running_var)
        assert int(a.module.num_batches_tracked) == int(b.module.num_batches_tracked) == 1


def test_gradients_equal_the_plain_path_with_detached_statistics(small_chunks):
    pos, batch = clouds(SIZES, seed=1)
    B = len(SIZES)
    upstream = torch.randn(B, CHANNELS[-1], generator=torch.Generator().manual_seed(2))
    upstream = upstream.double()
    ours, reference, plain = make_mlp(), make_mlp(), make_mlp()
    (recomputed_max_pool(ours, pos, batch, B) * upstream).sum().backward()
    (detached_statistics_pool(reference, pos, batch, B) * upstream).sum().backward()
    (global_max_pool(plain(pos), batch, size=B) * upstream).sum().backward()
    for a, b in zip(grads(ours), grads(reference)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # The dropped term is not negligible: the plain path's gradients differ.
    differences = [float((a - c).abs().max()) for a, c in zip(grads(ours), grads(plain))]
    assert max(differences) > 1e-3


def test_duplicate_points_give_the_same_parameter_gradients(small_chunks):
    # Copies of a point tie for every channel's maximum; the plain path splits the gradient
    # between them, the recompute gives it to the first: the parameters' gradients agree.
    pos, batch = clouds([120, 90], seed=3)
    pos = torch.cat([pos[:120], pos[:120], pos[120:]])
    batch = torch.cat([batch[:120], batch[:120], batch[120:]]).sort().values
    ours, reference = make_mlp(), make_mlp()
    recomputed_max_pool(ours, pos, batch, 2).sum().backward()
    detached_statistics_pool(reference, pos, batch, 2).sum().backward()
    for a, b in zip(grads(ours), grads(reference)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_sampler_trains_with_the_recomputed_pool_above_the_threshold(monkeypatch):
    pos, batch = clouds([300, 200, 250, 120], seed=4)

    def run(threshold):
        monkeypatch.setattr(recomputed, "RECOMPUTE_ABOVE", threshold)
        torch.manual_seed(0)
        sampler = SampleNet(16).double().train()
        out = sampler(pos, batch)
        out.simplified.pow(2).sum().backward()
        return out.simplified, sampler

    simplified, ours = run(0)
    expected, plain = run(10**9)
    torch.testing.assert_close(simplified, expected, rtol=1e-9, atol=1e-9)
    # The head sees the same pooled features, so its gradients are the plain path's.
    for a, b in zip(ours.head.parameters(), plain.head.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-8)
    assert all(p.grad is not None for p in ours.point_mlp.parameters())


def test_threshold_keeps_every_example_on_the_plain_path():
    assert not use_recomputed_pool(recomputed.RECOMPUTE_ABOVE)
    assert use_recomputed_pool(recomputed.RECOMPUTE_ABOVE + 1)
    for profiles in (CLASSIFICATION, REGISTRATION, RECONSTRUCTION):
        for name, profile in profiles.items():
            batch_size = max(profile.batch_size, getattr(profile, "task_batch_size", 0) or 0)
            # A registration sampler sees both clouds of every pair.
            assert not use_recomputed_pool(2 * batch_size * profile.num_points), name


def test_synchronised_layers_without_a_process_group_compute_alone(small_chunks):
    # SyncBatchNorm layers (what data-parallel training swaps in) outside torchrun: nothing
    # to merge, the values and running statistics are those of plain BatchNorm.
    pos, batch = clouds(SIZES, seed=5)
    ours, plain = make_mlp(), make_mlp()
    for norm in ours.norms:
        bn, sync = norm.module, SyncBatchNorm(norm.module.num_features).double()
        sync.load_state_dict(bn.state_dict())
        norm.module = sync
    h = recomputed_max_pool(ours, pos, batch, len(SIZES))
    expected = global_max_pool(plain(pos), batch, size=len(SIZES))
    torch.testing.assert_close(h, expected, rtol=1e-10, atol=1e-10)
    for a, b in zip(ours.norms, plain.norms):
        torch.testing.assert_close(a.module.running_var, b.module.running_var)
    n = recomputed.RECOMPUTE_ABOVE
    assert not use_recomputed_pool(n, ours) and use_recomputed_pool(n + 1, ours)


def test_rejects_an_mlp_it_cannot_recompute():
    pos, batch = clouds([10])
    with pytest.raises(ValueError, match="Linear -> BatchNorm -> ReLU"):
        recomputed_max_pool(make_mlp(dropout=0.5), pos, batch, 1)
    torch.manual_seed(0)
    no_norm = MLP(CHANNELS, norm=None, plain_last=False).double()
    with pytest.raises(ValueError, match="Linear -> BatchNorm -> ReLU"):
        recomputed_max_pool(no_norm, pos, batch, 1)
