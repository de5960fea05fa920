r"""Training-mode :obj:`global_max_pool(mlp(pos), batch)` whose memory does not grow with the
number of points: the per-point MLP runs chunk by chunk without storing activations, and only
the points that win a channel's maximum are recomputed with gradient.

A max pool sends gradient to one point per cloud and channel (its winner), so the recompute
on at most :math:`B \cdot C` points gives the plain path's gradient, with one difference:
BatchNorm's batch statistics are computed over all points, exactly as the plain path computes
them, but enter the recompute as constants. The plain path also differentiates through them
(every point then gets a gradient through the means and variances); that term is dropped
here. :class:`~tg_samplenet.nn.sampler.SampleNet` therefore uses this pool only above
:obj:`RECOMPUTE_ABOVE` points per batch, a size that no example reaches, so their results are
those of the plain path.

Under data-parallel training the BatchNorm layers are synchronised ones
(:func:`~tg_samplenet.training.distributed.sync_batch_norm`), and so are the statistics here:
each process's count, mean and squared deviations are merged over the group (two all-reduces
per layer, in float64), so every process normalises with the statistics of the whole global
batch and moves the running statistics identically, as one process on that batch would. The
winners are per cloud, so each process finds its own; the statistics stay constants of the
recompute, and DistributedDataParallel averages the gradients: one process training on the
global batch gets the same steps.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MLP

__all__ = ["RECOMPUTE_ABOVE", "use_recomputed_pool", "recomputed_max_pool"]

# Points per batch above which SampleNet trains with the recomputed pool (the largest example,
# the paper's reconstruction profile, has 50 x 2048 = 102,400).
RECOMPUTE_ABOVE = 1 << 18
# Points per chunk of the no-grad passes (a few MiB of features per layer).
CHUNK = 1 << 14


def use_recomputed_pool(num_points: int, mlp: Optional[MLP] = None) -> bool:
    r"""Whether a training batch of :obj:`num_points` points uses :func:`recomputed_max_pool`
    (more than :obj:`RECOMPUTE_ABOVE` points). When :obj:`mlp`'s BatchNorm layers are
    synchronised over a process group, :obj:`num_points` counts the points of the whole
    global batch (one all-reduce): every process then takes the same path, as their
    collectives must match, and the one a single process would take on that batch.

    Args:
        num_points (int): Points of this process's training batch.
        mlp (torch_geometric.nn.MLP, optional): The per-point MLP, whose BatchNorm layers
            tell whether processes train together. (default: :obj:`None`,
            :obj:`num_points` alone)

    :rtype: :class:`bool`
    """
    group = None
    if mlp is not None:
        groups = [_sync_group(norm.module) for norm in mlp.norms]
        group = next((g for g in groups if g is not None), None)
    if group is not None:
        device = mlp.lins[0].weight.device if dist.get_backend(group) == "nccl" else "cpu"
        count = torch.tensor([num_points], dtype=torch.int64, device=device)
        dist.all_reduce(count, group=group)
        num_points = int(count)
    return num_points > RECOMPUTE_ABOVE


def _sync_group(bn: torch.nn.Module) -> Optional[Any]:
    # The process group over which a training-mode BatchNorm layer synchronises its batch
    # statistics: torch.nn.SyncBatchNorm and tg_samplenet.training.distributed.SyncBatchNorm name it
    # in `process_group` (None: the default group); None for a layer that does not (or a
    # group of one process, where there is nothing to merge).
    if not (hasattr(bn, "process_group") and bn.training):
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = bn.process_group if bn.process_group is not None else dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


class _Statistics(NamedTuple):
    mean: Tensor  # [C] biased batch mean of a layer's pre-norm features
    var: Tensor  # [C] biased batch variance (what the normalisation divides by)
    count: int  # the points they are taken over (every process's, when synchronised)


def _merge(mean: Tensor, m2: Tensor, count: int, group: Any) -> tuple[Tensor, Tensor, int]:
    # Chan et al.'s merge of every process's (count, mean, sum of squared deviations) in
    # float64: the global mean from the sums, then the deviations about it.
    total = torch.cat([mean.new_tensor([count]), mean * count])
    dist.all_reduce(total, group=group)
    merged = total[1:] / total[0].clamp(min=1)
    m2 = m2 + (mean - merged).square() * count
    dist.all_reduce(m2, group=group)
    return merged, m2, int(total[0])


def _check_structure(mlp: MLP):
    from torch_geometric.nn.norm import BatchNorm

    ok = (
        not mlp.plain_last
        and not mlp.act_first
        and isinstance(mlp.act, torch.nn.ReLU)
        and all(float(p) == 0.0 for p in mlp.dropout)
        and all(isinstance(n, BatchNorm) and n.module.affine for n in mlp.norms)
    )
    if not ok:
        raise ValueError(
            "recomputed_max_pool needs an MLP of Linear -> BatchNorm -> ReLU layers "
            "(plain_last=False, no dropout)"
        )


def _folded(lin: torch.nn.Module, bn: torch.nn.BatchNorm1d, stats: _Statistics):
    # BatchNorm with fixed statistics is an affine map: fold it into the Linear layer, as
    # [C_out, 1] bias and [C_out, C_in] weight for features stored channel-major.
    scale = bn.weight / torch.sqrt(stats.var + bn.eps)
    bias = (lin.bias - stats.mean) * scale + bn.bias
    return bias.unsqueeze(1), lin.weight * scale.unsqueeze(1)


def _segment_argmax(x: Tensor, part: Tensor, num_segments: int) -> tuple[Tensor, Tensor]:
    # Per row of x [C, n] and per segment of its sorted segment vector part [n] (ids from 0),
    # the maximum and the first column that holds it: [C, S] each.
    index = part.view(1, -1).expand_as(x)
    value = x.new_full((x.size(0), num_segments), -float("inf"))
    value = value.scatter_reduce(1, index, x, "amax")
    row, col = (x == value.gather(1, index)).nonzero(as_tuple=True)  # sorted by (row, col)
    key = row * num_segments + part[col]
    first = torch.ones_like(key, dtype=torch.bool)
    first[1:] = key[1:] != key[:-1]
    arg = torch.empty_like(value, dtype=torch.long)
    arg.view(-1)[key[first]] = col[first]
    return value, arg


def _statistics_pass(
    mlp: MLP, pos: Tensor, batch: Tensor, num_clouds: int, known: list[_Statistics]
) -> tuple[_Statistics, Optional[Tensor]]:
    # One no-grad pass over all points, chunk by chunk with features stored channel-major
    # ([C, chunk]: reductions over points then run along memory). It returns the mean and
    # variance of the pre-norm features of layer len(known), the layers before it normalised
    # with their (complete) batch statistics; chunks are merged with Chan et al.'s pairwise
    # update in float64. The pass over the last layer also returns each cloud's and
    # channel's winner [B, C]: ReLU(a z + b) grows with z where the scale a = gamma / sigma
    # is positive, so the winner is the argmax of sign(gamma) z (lowest index among ties).
    # A synchronised BatchNorm's statistics are merged over its process group.
    layer = len(known)
    folded = [_folded(mlp.lins[j], mlp.norms[j].module, s) for j, s in enumerate(known)]
    lin, bn = mlp.lins[layer], mlp.norms[layer].module
    last = layer == len(mlp.lins) - 1
    sign = torch.where(bn.weight >= 0, 1.0, -1.0).to(pos.dtype) if last else None
    weight = lin.weight if sign is None else lin.weight * sign.unsqueeze(1)
    bias = (lin.bias if sign is None else lin.bias * sign).unsqueeze(1)
    C = weight.size(0)
    mean = torch.zeros(C, dtype=torch.float64, device=pos.device)
    m2 = torch.zeros_like(mean)
    if last:
        best = pos.new_full((num_clouds, C), -float("inf"))
        winner = torch.zeros((num_clouds, C), dtype=torch.long, device=pos.device)
    for start in range(0, pos.size(0), CHUNK):
        x = pos[start : start + CHUNK].t()
        for b, w in folded:
            x = torch.addmm(b, w, x).relu_()
        x = torch.addmm(bias, weight, x)
        n = x.size(1)
        mean_c = x.mean(1, keepdim=True)
        m2_c = (x - mean_c).square_().sum(1)
        delta = mean_c.view(-1).double() - mean
        mean += delta * (n / (start + n))
        m2 += m2_c.double() + delta.square() * (start * n / (start + n))
        if last:
            part = batch[start : start + CHUNK]
            low, high = int(part[0]), int(part[-1]) + 1
            if low + 1 == high:  # one cloud: a plain argmax along memory
                value, arg = x.max(1, keepdim=True)
            else:
                value, arg = _segment_argmax(x, part - low, high - low)
            value, arg = value.t(), arg.t() + start  # [clouds of the chunk, C]
            better = value > best[low:high]
            best[low:high] = torch.where(better, value, best[low:high])
            winner[low:high] = torch.where(better, arg, winner[low:high])
    count = pos.size(0)
    group = _sync_group(bn)
    if group is not None:
        mean, m2, count = _merge(mean, m2, count, group)
    mean = mean if sign is None else mean * sign.double()
    stats = _Statistics(mean.to(pos.dtype), (m2 / max(count, 1)).to(pos.dtype), count)
    return stats, winner if last else None


def _update_running_statistics(bn: torch.nn.BatchNorm1d, stats: _Statistics):
    # What BatchNorm1d.forward does in training mode: count the batch and move the running
    # estimates towards the batch mean and the unbiased batch variance.
    if not bn.track_running_stats:
        return
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    total = stats.count
    unbiased = stats.var * (total / max(total - 1, 1))
    bn.running_mean.mul_(1 - factor).add_(stats.mean, alpha=factor)
    bn.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)


def recomputed_max_pool(mlp: MLP, pos: Tensor, batch: Tensor, num_clouds: int) -> Tensor:
    r"""The per-cloud max pool of a training-mode per-point MLP (Linear, BatchNorm, ReLU),
    :math:`\mathbf{h}_{b,c} = \max_{i : b_i = b} \mathrm{MLP}(\mathbf{p}_i)_c`, in memory that
    does not grow with the number of points :math:`N`.

    1. One no-grad pass over chunks of points per layer computes that layer's batch mean and
       variance over all :math:`N` points (the layers before it normalised with theirs), as
       the plain path's BatchNorm does; the running statistics are updated as it would.
       Synchronised BatchNorm layers take them over every process's points (see the
       module's docstring).
    2. The last of these passes also finds the winner :math:`i^*(b, c)` of every cloud and
       channel.
    3. The MLP is recomputed with gradient on the (at most :math:`B \cdot C`) winners only,
       BatchNorm using the batch statistics of step 1 as constants, and
       :math:`\mathbf{h}_{b,c} = \mathrm{MLP}(\mathbf{p}_{i^*(b,c)})_c`.

    The values equal the plain path's (up to rounding), and so do the gradients, except for
    the BatchNorm statistics' own gradient, which is dropped (the plain path with the
    statistics detached gives the same gradients). Empty clouds pool to zero, as
    :func:`~torch_geometric.nn.global_max_pool` gives.

    Args:
        mlp (torch_geometric.nn.MLP): The per-point MLP, with BatchNorm and ReLU after every
            layer and no dropout.
        pos (torch.Tensor): Points :obj:`[N, 3]`.
        batch (torch.LongTensor): Sorted batch vector :obj:`[N]`.
        num_clouds (int): The number of clouds :math:`B`.

    :rtype: :class:`torch.Tensor` of shape :obj:`[num_clouds, C]`
    """
    _check_structure(mlp)
    C = mlp.lins[-1].weight.size(0)
    synchronised = any(_sync_group(norm.module) is not None for norm in mlp.norms)
    if pos.size(0) == 0 and not synchronised:  # else the others' all-reduces wait for this one
        return pos.new_zeros(num_clouds, C)
    data = pos.detach()
    with torch.no_grad():
        stats: list[_Statistics] = []
        for _ in range(len(mlp.lins)):
            layer_stats, winner = _statistics_pass(mlp, data, batch, num_clouds, stats)
            stats.append(layer_stats)
        if mlp.training:
            for norm, s in zip(mlp.norms, stats):
                _update_running_statistics(norm.module, s)
        present = torch.bincount(batch, minlength=num_clouds)[:num_clouds] > 0
        points, slot = torch.unique(winner[present], return_inverse=True)

    x = pos[points]
    for lin, norm, s in zip(mlp.lins, mlp.norms, stats):
        bn = norm.module
        x = F.batch_norm(lin(x), s.mean, s.var, bn.weight, bn.bias, False, 0.0, bn.eps).relu()
    h = pos.new_zeros(num_clouds, C)
    return h.index_put((present.nonzero().view(-1),), x.gather(0, slot))
