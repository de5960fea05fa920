r"""Training-mode :obj:`global_max_pool(mlp(pos), batch)` in memory that does not grow with
the number of points: the MLP runs chunk by chunk without gradient, and only the points that
win a channel's maximum are recomputed with it (BatchNorm statistics, synchronised over a
process group if the layers are, enter as constants)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MLP

from tg_samplenet.ops.checks import InputError

__all__ = ["RECOMPUTE_ABOVE", "use_recomputed_pool", "recomputed_max_pool"]

# Points per batch above which SampleNet trains with the recomputed pool (above every example).
RECOMPUTE_ABOVE = 1 << 18
CHUNK = 1 << 14  # points per chunk of the no-grad passes


def use_recomputed_pool(num_points: int, mlp: Optional[MLP] = None) -> bool:
    r"""Whether a training batch of :obj:`num_points` points (summed over the process group
    of :obj:`mlp`'s synchronised BatchNorm layers) exceeds :obj:`RECOMPUTE_ABOVE`.

    Args:
        num_points (int): Points of this process's training batch.
        mlp (torch_geometric.nn.MLP, optional): The per-point MLP. (default: :obj:`None`)

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
    # The group (of more than one process) a training-mode synchronised BatchNorm uses.
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
    # Every process's (count, mean, sum of squared deviations) merged in float64.
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
        raise InputError(
            "mlp",
            "recomputed_max_pool needs mlp to be an MLP of Linear -> BatchNorm -> ReLU layers "
            "(plain_last=False, no dropout)",
        )


def _folded(lin: torch.nn.Module, bn: torch.nn.BatchNorm1d, stats: _Statistics):
    # BatchNorm with fixed statistics folded into the Linear layer (channel-major features).
    scale = bn.weight / torch.sqrt(stats.var + bn.eps)
    bias = (lin.bias - stats.mean) * scale + bn.bias
    return bias.unsqueeze(1), lin.weight * scale.unsqueeze(1)


def _segment_argmax(x: Tensor, part: Tensor, num_segments: int) -> tuple[Tensor, Tensor]:
    # Per row of x [C, n] and segment of the sorted part [n]: the maximum and its first column.
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
    # One no-grad pass in channel-major chunks: the batch statistics of layer len(known)'s
    # pre-norm features (chunks merged in float64), and for the last layer each cloud's and
    # channel's winner, the argmax of sign(gamma) z (ReLU(a z + b) grows with z where a > 0).
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
    # As BatchNorm1d.forward in training mode.
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
    :math:`\mathbf{h}_{b,c} = \max_{i : b_i = b} \mathrm{MLP}(\mathbf{p}_i)_c`, recomputed
    with gradient on the winners :math:`i^*(b, c)` only. Values and gradients are the plain
    path's but for the gradient through the BatchNorm statistics; empty clouds pool to zero.

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
