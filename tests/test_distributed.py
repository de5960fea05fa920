r"""Data-parallel training with :mod:`tg_samplenet.training.distributed`: two CPU processes (gloo)
launched by torchrun on 127.0.0.1 train a small sampler with :func:`fit_sampler` and end
with identical weights, their loss falls, and they match one process that trains on the
same global batches; checkpoints resume across different numbers of processes; the
sharded evaluation gathers exactly the single process's per-cloud results;
:class:`SyncBatchNorm` on gloo gives the whole batch's statistics and gradients; a rank that
holds a single cloud of a batch trains in step (PyG's BatchNorm takes no single-row
shortcut); and the recomputed max pool (SampleNet's path above 2^18 points) merges its
BatchNorm statistics over the ranks, so it too trains as one process on the global batch.

This file is also the workers' script: torchrun runs it with :obj:`__main__`.

Tolerance. The run is in float64. The two-process run differs from the single process only
in the order of sums: each loss and gradient is summed per rank and then averaged, and
BatchNorm's statistics are all-reduced instead of computed in one pass, about 1e-16 relative
per operation. Adam divides each step by the gradients' running RMS plus eps = 1e-8, so
gradients that vanish analytically (the biases before BatchNorm, which it cancels) carry only
that rounding noise and move by at most lr * 1e-16 / 1e-8 per step: after 12 steps at
lr = 1e-2 we measured a largest weight difference of 9e-9 (those biases; every other weight
within 1e-9), 3e-9 for batches split 3 + 2, 2e-8 for batches split 2 + 1 (28 steps) and
1e-9 through the recomputed pool, and allow ATOL = 1e-7. Without synchronised BatchNorm the
same comparison is off by more than 1e-2, and the recomputed pool with each rank's own
statistics by 2.4 (both asserted below), so the tolerance separates a correct run from a
wrong one. (In float32 the losses still agree to 1e-6, but Adam turns the float32 noise of
those vanishing gradients, about 1e-6, into full steps of size lr, so their biases, which do
not change the sampler's output, end up to 0.05 apart: float32 weights cannot be compared
tightly.)
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from distributed_support import one_thread, torchrun
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MLP

import tg_samplenet.nn.recomputed_max_pool as recomputed
from tg_samplenet import SampleNet, chamfer_distance, fit_sampler
from tg_samplenet.nn.recomputed_max_pool import recomputed_max_pool, use_recomputed_pool
from tg_samplenet.training import distributed as tdist
from tg_samplenet.training.distributed import DistributedBatchSampler
from tg_samplenet.training.fit import LossWeights
from tg_samplenet.training.loop import seed_everything

WORLD = 2
SEED = 3
BATCH = 6  # global batch, split 3 + 3
ODD_BATCH = 5  # split 3 + 2
SINGLE_BATCH = 3  # split 2 + 1: rank 1 holds one cloud, one row for the head's BatchNorm
EPOCHS, HALF = 4, 2
ATOL = 1e-7
WEIGHTS = LossWeights(alpha=0.5, lmbda=0.01, gamma=1.0, delta=0.0)


def clouds(num_clouds: int = 21) -> list[Data]:
    r"""Clouds of 40 to 70 points (different sizes per rank exercise the counts of the
    synchronised BatchNorm), each a noisy ellipsoid."""
    generator = torch.Generator().manual_seed(0)
    data = []
    for _ in range(num_clouds):
        n = int(torch.randint(40, 71, (1,), generator=generator))
        pos = torch.randn(n, 3, generator=generator, dtype=torch.float64)
        pos = pos * torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
        data.append(Data(pos=pos))
    return data


def new_sampler() -> SampleNet:
    seed_everything(0)
    return SampleNet(8, k=4, point_channels=(16, 32), head_channels=(32,)).double()


def task_loss(out, data):
    # The frozen "task": the sampled points should cover the cloud (a mean over clouds).
    return chamfer_distance(out.pos, data.pos, out.batch, data.batch)


def train(sampler: SampleNet, loader, epochs: int, checkpoint: Path) -> list[float]:
    return fit_sampler(
        sampler,
        task_loss,
        loader,
        epochs=epochs,
        lr=1e-2,
        loss_weights=WEIGHTS,
        lr_schedule="cosine",
        checkpoint=checkpoint,
        out=checkpoint.with_suffix(".out.pt"),
        progress=False,
    )


def evaluate(sampler: SampleNet, loader) -> torch.Tensor:
    r"""Per-cloud Chamfer distance of the hard samples (eval mode), in loader order."""
    values = []
    with torch.no_grad():
        for data in loader:
            out = sampler(data.pos, data.batch)
            values.append(chamfer_distance(out.pos, data.pos, out.batch, data.batch, "none"))
    return torch.cat(values)


def weights(sampler: SampleNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in sampler.state_dict().items()}


def single_process_loader(data, batch_size: int = BATCH):
    # One process seeing the very global batches of the two-process run.
    batches = DistributedBatchSampler(data, batch_size, seed=SEED, num_replicas=1, rank=0)
    return DataLoader(data, batch_sampler=batches)


def max_difference(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def worker(out: Path):
    r"""What each of the torchrun processes runs."""
    tdist.init_distributed("cpu")
    rank, data = tdist.get_rank(), clouds()
    result: dict = {"world_size": tdist.get_world_size()}
    loader = tdist.training_loader(data, BATCH, seed=SEED)

    # A fresh run, interrupted after HALF epochs and resumed by the same processes.
    sampler = new_sampler()
    train(sampler, loader, HALF, out / "two.pt")
    if tdist.is_main_process():
        shutil.copy(out / "two.pt", out / "two_half.pt")
    result["history"] = train(sampler, loader, EPOCHS, out / "two.pt")
    result["fresh"] = weights(sampler)

    # The single process's checkpoint after HALF epochs, resumed by two processes.
    resumed = new_sampler()
    result["resumed_history"] = train(resumed, loader, EPOCHS, out / "from_single.pt")
    result["resumed"] = weights(resumed)

    # Batches of 5 split 3 + 2: each rank's loss is scaled by its share.
    odd = new_sampler()
    train(odd, tdist.training_loader(data, ODD_BATCH, seed=SEED), EPOCHS, out / "odd.pt")
    result["odd"] = weights(odd)
    # Batches of 3 split 2 + 1: PyG's BatchNorm would take its running statistics for
    # rank 1's single cloud and skip the all-reduce that rank 0 waits in.
    single = new_sampler()
    train(single, tdist.training_loader(data, SINGLE_BATCH, seed=SEED), EPOCHS, out / "one.pt")
    result["single_cloud"] = weights(single)

    # Every batch through the recomputed max pool (the path above 2^18 points), its
    # statistics merged over the ranks; and the same without merging them.
    with mock.patch.object(recomputed, "RECOMPUTE_ABOVE", 0):
        pooled = new_sampler()
        train(pooled, loader, EPOCHS, out / "recomputed.pt")
        result["recomputed"] = weights(pooled)
        with mock.patch.object(recomputed, "_sync_group", lambda bn: None):
            local = new_sampler()
            train(local, loader, EPOCHS, out / "recomputed_local.pt")
        result["recomputed_local"] = weights(local)
    result["pool"] = recomputed_pool_share(rank)

    # The same run without synchronised BatchNorm: what the tolerance must exclude.
    unsynced = new_sampler()
    real = tdist.sync_batch_norm
    tdist.sync_batch_norm = contextlib.nullcontext
    try:
        train(unsynced, loader, EPOCHS, out / "unsynced.pt")
    finally:
        tdist.sync_batch_norm = real
    result["unsynced"] = weights(unsynced)

    # Sharded evaluation, gathered in the single process's order.
    test = DataLoader(clouds(13), batch_size=4)
    result["evaluation"] = tdist.gather_cat(evaluate(sampler, tdist.shard_loader(test)))
    result["count"] = tdist.all_reduce_sum(len(tdist.shard_loader(test).dataset))

    # SyncBatchNorm against one BatchNorm over the whole batch (3 + 5 rows).
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=generator, dtype=torch.float64) * 3 + 1
    norm = torch.nn.BatchNorm1d(4).double()
    with tdist.sync_batch_norm(torch.nn.Sequential(norm)) as model:
        rows = x[:3] if rank == 0 else x[3:]
        rows = rows.clone().requires_grad_()
        y = model(rows)
        (y * torch.arange(1.0, 5.0, dtype=torch.float64)).pow(2).sum().backward()
    result["sync_bn"] = (y.detach(), rows.grad, norm.running_mean.clone(), norm.running_var)
    torch.save(result, out / f"rank{rank}.pt")


POOL_SIZES = ([150, 1, 40], [0, 7, 300, 64])  # rank 0's clouds, rank 1's (one empty)
POOL_CHANNELS = [3, 16, 16, 32]


def pool_mlp() -> MLP:
    torch.manual_seed(0)
    mlp = MLP(POOL_CHANNELS, norm="batch_norm", plain_last=False).double()
    with torch.no_grad():  # non-trivial affine parameters, one negative scale per layer
        for norm in mlp.norms:
            norm.module.weight.uniform_(0.5, 1.5)[0] = -0.7
            norm.module.bias.uniform_(-0.5, 0.5)
    return mlp


def pool_clouds(sizes: list[int], first: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Clouds of the given sizes (uniform in the cube) and an upstream gradient per cloud,
    each drawn from the seed of the cloud's global index (:obj:`first` for the first), so
    that each rank draws its share of the very clouds the single process draws."""
    pos, grad = [], []
    for i, n in enumerate(sizes):
        generator = torch.Generator().manual_seed(100 + first + i)
        pos.append(torch.rand(n, 3, generator=generator, dtype=torch.float64) * 2 - 1)
        grad.append(torch.randn(1, POOL_CHANNELS[-1], generator=generator, dtype=torch.float64))
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return torch.cat(pos), batch, torch.cat(grad)


def pool_pass(mlp: MLP, pos, batch, upstream) -> tuple:
    r"""The recomputed pool's values, the parameters' gradients of a weighted sum, the
    running statistics."""
    h = recomputed_max_pool(mlp, pos, batch, upstream.size(0))
    (h * upstream).sum().backward()
    grads = [p.grad.clone() for p in mlp.parameters()]
    running = [(n.module.running_mean.clone(), n.module.running_var.clone()) for n in mlp.norms]
    return h.detach(), grads, running


def recomputed_pool_share(rank: int) -> dict:
    r"""This rank's share of the clouds through the recomputed pool with synchronised
    BatchNorm, with CHUNK = 64 (clouds that fill, straddle and share chunks)."""
    mlp = pool_mlp()
    pos, batch, upstream = pool_clouds(POOL_SIZES[rank], len(POOL_SIZES[0]) * rank)
    with mock.patch.object(recomputed, "CHUNK", 64), tdist.sync_batch_norm(mlp):
        values = pool_pass(mlp, pos, batch, upstream)
        # Which path: rank 0 holds 191 points, rank 1 371, the global batch 562.
        with mock.patch.object(recomputed, "RECOMPUTE_ABOVE", 500):
            paths = (use_recomputed_pool(pos.size(0), mlp), use_recomputed_pool(pos.size(0)))
    return {"values": values, "paths": paths}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    r"""The single-process reference (with its checkpoint after HALF epochs), then one
    torchrun launch of two processes, then one process resuming their checkpoint."""
    with one_thread():
        return _runs(tmp_path_factory.mktemp("distributed"))


def _runs(out: Path) -> dict:
    data = clouds()
    reference = new_sampler()
    train(reference, single_process_loader(data), HALF, out / "single.pt")
    shutil.copy(out / "single.pt", out / "from_single.pt")
    history = train(reference, single_process_loader(data), EPOCHS, out / "single.pt")
    torchrun(Path(__file__), out, timeout=240)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    back = new_sampler()
    back_history = train(back, single_process_loader(data), EPOCHS, out / "two_half.pt")
    odd = new_sampler()
    train(odd, single_process_loader(data, ODD_BATCH), EPOCHS, out / "odd_single.pt")
    single = new_sampler()
    train(single, single_process_loader(data, SINGLE_BATCH), EPOCHS, out / "one_single.pt")
    with mock.patch.object(recomputed, "RECOMPUTE_ABOVE", 0):
        pooled = new_sampler()
        train(pooled, single_process_loader(data), EPOCHS, out / "recomputed_single.pt")
    test = DataLoader(clouds(13), batch_size=4)
    return dict(
        odd=weights(odd),
        single_cloud=weights(single),
        recomputed=weights(pooled),
        reference=weights(reference),
        history=history,
        evaluation=evaluate(reference.eval(), test),
        ranks=ranks,
        back=weights(back),
        back_history=back_history,
    )


def test_both_ranks_end_with_identical_weights(runs):
    first, second = runs["ranks"]
    assert first["world_size"] == second["world_size"] == WORLD
    for key in ("fresh", "resumed"):
        for name, value in first[key].items():
            assert torch.equal(value, second[key][name]), (key, name)
    assert first["history"] == second["history"]


def test_loss_falls(runs):
    history = runs["ranks"][0]["history"]
    assert len(history) == EPOCHS
    assert history[-1] < 0.9 * history[0]


def test_two_processes_match_one_on_the_same_global_batches(runs):
    two = runs["ranks"][0]
    assert max_difference(two["fresh"], runs["reference"]) < ATOL
    assert two["history"] == pytest.approx(runs["history"], rel=1e-12)
    # The same comparison without SyncBatchNorm fails by far: the tolerance means something.
    assert max_difference(two["unsynced"], runs["reference"]) > 1e-2


def test_batches_that_do_not_split_evenly(runs):
    assert max_difference(runs["ranks"][0]["odd"], runs["odd"]) < ATOL


def test_resume_on_a_different_number_of_processes(runs):
    # 1 -> 2: two processes finish what one started; 2 -> 1: one finishes what two started.
    assert max_difference(runs["ranks"][0]["resumed"], runs["reference"]) < ATOL
    assert runs["ranks"][0]["resumed_history"][:HALF] == runs["history"][:HALF]
    assert max_difference(runs["back"], runs["reference"]) < ATOL
    assert runs["back_history"][:HALF] == runs["ranks"][0]["history"][:HALF]


def test_a_rank_with_a_single_cloud(runs):
    first, second = runs["ranks"]
    assert all(torch.equal(v, second["single_cloud"][k]) for k, v in first["single_cloud"].items())
    assert max_difference(first["single_cloud"], runs["single_cloud"]) < ATOL


def test_recomputed_pool_trains_as_one_process(runs):
    first, second = runs["ranks"]
    assert all(torch.equal(v, second["recomputed"][k]) for k, v in first["recomputed"].items())
    assert max_difference(first["recomputed"], runs["recomputed"]) < ATOL
    # Each rank's own statistics (what the pool computed before it merged them) are far off.
    assert max_difference(first["recomputed_local"], runs["recomputed"]) > 1e-2


def test_recomputed_pool_merges_the_statistics_over_the_ranks(runs):
    # One process on all 7 clouds: the ranks' values are its values, their gradients add up
    # to its gradient (each rank's sum covers its clouds), and every rank's running
    # statistics are its running statistics.
    parts = [rank["pool"]["values"] for rank in runs["ranks"]]
    mlp = pool_mlp()
    pos, batch, upstream = pool_clouds(POOL_SIZES[0] + POOL_SIZES[1], 0)
    with mock.patch.object(recomputed, "CHUNK", 64), one_thread():
        values, grads, running = pool_pass(mlp, pos, batch, upstream)
    torch.testing.assert_close(torch.cat([part[0] for part in parts]), values)
    for i, grad in enumerate(grads):
        torch.testing.assert_close(parts[0][1][i] + parts[1][1][i], grad)
    for part in parts:
        for (mean, var), (expected_mean, expected_var) in zip(part[2], running):
            torch.testing.assert_close(mean, expected_mean)
            torch.testing.assert_close(var, expected_var)
    # Both ranks take the path of the 562 points of the global batch, not of their own.
    assert [rank["pool"]["paths"] for rank in runs["ranks"]] == [(True, False), (True, False)]


def test_sharded_evaluation_equals_the_single_process(runs):
    # The trained weights differ in the last digits, so evaluate the gathered results of the
    # two processes against their own single-process equivalent: each rank evaluated whole
    # batches of the same loader, so the values are bit-identical.
    two = runs["ranks"][0]
    assert two["count"] == 13
    assert two["evaluation"].shape == (13,)
    assert torch.equal(two["evaluation"], runs["ranks"][1]["evaluation"])
    sampler = new_sampler()
    sampler.load_state_dict(two["fresh"])
    with one_thread():
        expected = evaluate(sampler.eval(), DataLoader(clouds(13), batch_size=4))
    assert torch.equal(two["evaluation"], expected)


def test_sync_batch_norm_equals_batch_norm_over_the_global_batch(runs):
    generator = torch.Generator().manual_seed(1)
    x = (torch.randn(8, 4, generator=generator, dtype=torch.float64) * 3 + 1).requires_grad_()
    norm = torch.nn.BatchNorm1d(4).double()
    y = norm(x)
    (y * torch.arange(1.0, 5.0, dtype=torch.float64)).pow(2).sum().backward()
    parts = [runs["ranks"][0]["sync_bn"], runs["ranks"][1]["sync_bn"]]
    torch.testing.assert_close(torch.cat([parts[0][0], parts[1][0]]), y.detach())
    torch.testing.assert_close(torch.cat([parts[0][1], parts[1][1]]), x.grad)
    for part in parts:
        torch.testing.assert_close(part[2], norm.running_mean)
        torch.testing.assert_close(part[3], norm.running_var)


@pytest.mark.parametrize("world, batch_size", [(2, 6), (3, 7), (4, 4)])
def test_batch_sampler_splits_the_same_global_batches(world, batch_size):
    data = list(range(23))
    one = DistributedBatchSampler(data, batch_size, seed=5, num_replicas=1, rank=0)
    ranks = [
        DistributedBatchSampler(data, batch_size, seed=5, num_replicas=world, rank=r)
        for r in range(world)
    ]
    for epoch in (0, 1):
        for sampler in [one, *ranks]:
            sampler.set_epoch(epoch)
        parts = list(zip(*ranks))
        assert len(parts) == len(one) == 23 // batch_size
        for batch, shares in zip(one, parts):
            assert sorted(sum(shares, [])) == sorted(batch)
    # Each rank's loss, a mean over its share, times loss_scale averages to the batch mean.
    sizes = [len(next(iter(s))) for s in ranks]
    scales = [s.loss_scale for s in ranks]
    assert sum(n / batch_size for n in sizes) == pytest.approx(1.0)
    assert [scale * batch_size / world for scale in scales] == pytest.approx(sizes)


def test_batch_sampler_reshuffles_per_epoch_from_the_seed():
    data = list(range(20))
    a = DistributedBatchSampler(data, 4, seed=1, num_replicas=2, rank=0)
    b = DistributedBatchSampler(data, 4, seed=1, num_replicas=2, rank=0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


def test_without_a_process_group_everything_is_the_single_process():
    data = clouds(5)
    loader = tdist.training_loader(data, 2, seed=0)
    assert type(loader) is DataLoader and loader.batch_size == 2 and loader.drop_last
    assert tdist.shard_loader(loader) is loader
    values = torch.arange(3.0)
    assert tdist.gather_cat(values) is values
    assert tdist.all_reduce_sum(7) == 7 and tdist.get_world_size() == 1
    assert tdist.init_distributed("cpu") == torch.device("cpu")
    fn = task_loss
    with tdist.data_parallel(torch.nn.Linear(1, 1), fn) as objective:
        assert objective is fn


def test_bad_batch_sizes_are_refused():
    with pytest.raises(ValueError, match="smaller than the 4 processes"):
        DistributedBatchSampler(list(range(10)), 3, num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        DistributedBatchSampler(list(range(10)), 0, num_replicas=1, rank=0)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
